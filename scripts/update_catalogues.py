"""Re-extract the messages and merge them into every catalogue (`make messages`).

New strings arrive untranslated (the tests say which); strings no longer used
are dropped. English is the source language: its catalogue translates every
string to itself, so it is always complete.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
LOCALE = ROOT / "newsletter" / "locale"
POT = LOCALE / "messages.pot"


def extract() -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "N_",
            "--no-location",
            "--sort-output",
            "--omit-header",
            "-o",
            str(POT),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


def merge(language: str) -> None:
    path = LOCALE / language / "LC_MESSAGES" / "messages.po"
    with POT.open("rb") as fh:
        template = read_po(fh)
    if path.exists():
        with path.open("rb") as fh:
            catalog = read_po(fh, locale=language)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        catalog = read_po(POT.open("rb"), locale=language)
    created = catalog.creation_date  # a re-run with nothing new changes no byte
    catalog.update(template, no_fuzzy_matching=True)
    catalog.creation_date = created
    catalog.obsolete.clear()
    catalog.fuzzy = False
    catalog.project = "newsletter"
    catalog.version = ""
    catalog.copyright_holder = "the newsletter contributors"
    catalog.msgid_bugs_address = ""
    catalog.last_translator = "the newsletter contributors"
    catalog.language_team = language
    catalog.header_comment = (
        f"# The {language} catalogue of newsletter's reader-facing strings.\n"
        "# Source: newsletter/locale/messages.pot; `make messages` merges new strings in."
    )
    if language == "en":
        for message in catalog:
            if message.id:
                message.string = message.id
    with path.open("wb") as fh:
        write_po(fh, catalog, omit_header=False, no_location=True, sort_output=True, width=100)


if __name__ == "__main__":
    extract()
    for lang in sys.argv[1:] or sorted(p.name for p in LOCALE.iterdir() if p.is_dir()):
        merge(lang)
