"""The editor's note of an edition: one Markdown file per digest and edition date.

``notes/<digest>/2026-11-30.md`` (or ``[[digests]] notes_dir``) holds the note of
the edition dated 30 November 2026; ``newsletter note`` writes, shows and
removes it. The note is read when the edition is frozen and kept with it, so a
resumed send or an archive page shows what the first recipients got.
"""

from __future__ import annotations

import logging
import os
from datetime import date
from pathlib import Path

from newsletter.config import Config, DigestConfig
from newsletter.errors import InputError

logger = logging.getLogger(__name__)

#: a note is a few paragraphs; anything near this is a wrong file
MAX_NOTE_BYTES = 20_000


def notes_folder(cfg: Config, digest: DigestConfig) -> Path:
    return cfg.resolve(digest.notes_dir or f"notes/{digest.name}")


def note_path(cfg: Config, digest: DigestConfig, day: date) -> Path:
    return notes_folder(cfg, digest) / f"{day.isoformat()}.md"


def check_note(text: str, where: str) -> str:
    """``text`` if it can be a note; InputError naming ``where`` otherwise."""
    if len(text.encode()) > MAX_NOTE_BYTES:
        raise InputError(f"a note is at most {MAX_NOTE_BYTES} bytes", where=where)
    bad = next((ch for ch in text if ord(ch) < 32 and ch not in "\n\t\r"), None)
    if bad is not None:
        raise InputError(f"the note contains the control character U+{ord(bad):04X}", where=where)
    return text.replace("\r\n", "\n").strip()


def read_note(cfg: Config, digest: DigestConfig, day: date) -> str:
    """The note for the edition of ``day``, or "" when there is none."""
    path = note_path(cfg, digest, day)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ""
    except OSError as err:
        raise InputError(f"cannot read the editor's note: {err.strerror}", where=str(path)) from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError("the editor's note is not UTF-8", where=str(path)) from err
    return check_note(text, str(path))


def period_day(period: str) -> date:
    """The edition date of a period key ("2026-11-30T07:00+05:00": its fire time
    on the digest's clock)."""
    return date.fromisoformat(period[:10])


def note_for_period(cfg: Config, digest: DigestConfig, period: str) -> str:
    """The note of the edition of ``period``, or ""."""
    return read_note(cfg, digest, period_day(period))


def write_note(cfg: Config, digest: DigestConfig, day: date, text: str) -> Path:
    """Store ``text`` as the note of the edition of ``day`` (atomically)."""
    path = note_path(cfg, digest, day)
    text = check_note(text, "note")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
    logger.info("note: wrote %s", path)
    return path


def remove_note(cfg: Config, digest: DigestConfig, day: date) -> bool:
    path = note_path(cfg, digest, day)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
