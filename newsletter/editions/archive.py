"""The web archive: each sent edition as a static page, and index pages.

After a send, the edition is rendered once more with the same templates in
"web" mode: every story the edition carried (all variants together, the
default variant's order first), no size budget, and nothing personal: no
name, no unsubscribe or preference links. Layout under ``[archive] dir``::

    index.html                 every digest's editions, newest first
    editions.json              the manifest the index pages are built from
    <digest>/index.html        one digest's editions
    <digest>/<edition id>.html an edition

Publish the folder at ``site.archive_url``: the "View in browser" link of each
email is ``<archive_url>/<digest>/<edition id>.html``. Files are replaced
atomically, and the manifest is updated under a file lock, so two digests
finishing at once cannot lose each other's entries.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import TemplateError

from newsletter.config import Config
from newsletter.editions.frozen import content_for, tag_names
from newsletter.editions.variants import DEFAULT_VARIANT
from newsletter.errors import (
    ConfigError,
    InputError,
    NewsletterError,
    NotFoundError,
    RenderError,
)
from newsletter.models import Rendered
from newsletter.rates.service import header_from_json
from newsletter.render import personalize
from newsletter.render.compile import render
from newsletter.render.env import make_env
from newsletter.states import EditionStatus
from newsletter.store import Store

logger = logging.getLogger(__name__)

MANIFEST = "editions.json"
#: editions in these states went out (at least in part) and are published
PUBLISHED_STATES = (EditionStatus.SENT, EditionStatus.PARTIALLY_FAILED)
#: no size budget on the web
WEB_MAX_BYTES = 50_000_000


def archive_folder(cfg: Config) -> Path:
    return cfg.resolve(cfg.archive.dir)


def render_web(store: Store, cfg: Config, edition_id: int) -> Rendered:
    """The edition as a web page: all its stories, nothing personal."""
    info = store.get_edition(edition_id)
    if info is None:
        raise NotFoundError("no such edition", where=str(edition_id))
    digest = cfg.digest(info.digest)
    details = store.edition_details(edition_id)
    keys = sorted(details.variants, key=lambda k: (k != DEFAULT_VARIANT, k))
    ids = list(dict.fromkeys(a for k in keys for a in details.variants[k]))
    content = content_for(
        cfg,
        digest,
        subject=info.subject,
        edition_date=details.info.get("edition_date", ""),
        articles=store.get_articles(ids),
        rates=header_from_json(details.rates),
        tags=list(digest.tags),
        names=tag_names(store),
        note=details.info.get("note", ""),
    )
    content.web = True
    rendered = render(
        content,
        templates=str(cfg.resolve(cfg.render.templates)) if cfg.render.templates else "",
        inliner=cfg.render.inliner,
        max_bytes=WEB_MAX_BYTES,
    )
    # a user template may still use the per-recipient placeholders: fill them
    # with values that name nobody
    values = personalize.values_for(
        name="", unsubscribe_url=cfg.site.public_url, fallbacks=rendered.fallbacks
    )
    rendered.html = personalize.personalize(rendered.html, values, html_part=True)
    rendered.text = personalize.personalize(rendered.text, values, html_part=False)
    return rendered


def _write(path: Path, data: str) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_manifest(folder: Path) -> list[dict]:
    path = folder / MANIFEST
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise NewsletterError(f"unreadable archive manifest: {err}", where=str(path)) from err
    return data if isinstance(data, list) else []


def _index(cfg: Config, entries: list[dict], *, digest: str = "") -> str:
    which = cfg.digest(digest) if digest else cfg.digests[0]
    language = which.language or cfg.site.language
    env = make_env(str(cfg.resolve(cfg.render.templates)) if cfg.render.templates else "", language)
    try:
        return env.get_template("archive/index.html.j2").render(
            site=cfg.site,
            digest=cfg.digest(digest) if digest else None,
            digests={d.name: d for d in cfg.digests},
            entries=entries,
        )
    except TemplateError as err:
        raise RenderError(f"template error: {err}", where="archive/index.html.j2") from err


def publish(store: Store, cfg: Config, edition_id: int) -> Path:
    """Write (or rewrite) an edition's page and the index pages. Returns the page."""
    folder = archive_folder(cfg)
    info = store.get_edition(edition_id)
    if info is None:
        raise NotFoundError("no such edition", where=str(edition_id))
    rendered = render_web(store, cfg, edition_id)
    page = folder / info.digest / f"{edition_id}.html"
    entry = {
        "digest": info.digest,
        "id": edition_id,
        "subject": info.subject,
        "edition_date": store.edition_details(edition_id).info.get("edition_date", ""),
        "sent_at": (info.sent_at or datetime.now(UTC)).isoformat(timespec="seconds"),
        "path": f"{info.digest}/{edition_id}.html",
    }
    try:
        _write(page, rendered.html)
        with _locked(folder):
            entries = [
                e
                for e in read_manifest(folder)
                if (e.get("digest"), e.get("id")) != (info.digest, edition_id)
            ]
            entries.append(entry)
            entries.sort(key=lambda e: (e.get("sent_at", ""), e.get("id", 0)), reverse=True)
            _write(folder / MANIFEST, json.dumps(entries, indent=1, ensure_ascii=False))
            _write(folder / "index.html", _index(cfg, entries))
            for name in {e["digest"] for e in entries}:
                mine = [e for e in entries if e["digest"] == name]
                if any(d.name == name for d in cfg.digests):
                    _write(folder / name / "index.html", _index(cfg, mine, digest=name))
    except OSError as err:
        raise NewsletterError(
            f"cannot write the web archive: {err.strerror}", where=str(err.filename or folder)
        ) from err
    logger.info("edition %d archived at %s", edition_id, page)
    return page


def publish_after_send(store: Store, cfg: Config, edition_id: int) -> str:
    """The send job's hook: publish when ``[archive] dir`` is set and the edition
    went out. An archive failure is logged, never fails the send that already
    happened; ``newsletter archive`` publishes it again later. Returns the page path or ""."""
    if not cfg.archive.dir:
        return ""
    info = store.get_edition(edition_id)
    if info is None or info.status not in PUBLISHED_STATES:
        return ""
    try:
        return str(publish(store, cfg, edition_id))
    except NewsletterError as err:
        logger.error("edition %d not archived: %s", edition_id, err)
        return ""


def publish_sent(
    store: Store, cfg: Config, *, edition_id: int | None = None, all_sent: bool = False
) -> list[Path]:
    """`newsletter archive`: publish one edition (default: the latest sent) or all."""
    if not cfg.archive.dir:
        raise ConfigError("[archive] dir is not set", where=cfg.path)
    if edition_id is not None:
        chosen = [edition_id]
    else:
        sent = [e for e in store.list_editions(limit=100_000) if e.status in PUBLISHED_STATES]
        if not sent:
            raise NotFoundError("no sent edition to archive")
        chosen = [e.id for e in reversed(sent)] if all_sent else [sent[0].id]
    out = []
    for eid in chosen:
        info = store.get_edition(eid)
        if info is None:
            raise NotFoundError("no such edition", where=str(eid))
        if info.status not in PUBLISHED_STATES:
            raise InputError(f"edition {eid} is {info.status}, not sent", where=str(eid))
        out.append(publish(store, cfg, eid))
    return out
