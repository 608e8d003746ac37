"""Golden files: the default templates' HTML and text for a fixed edition.

A deliberate change to the templates or the renderer changes these files;
review the diff, then update them with:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_render_golden.py
"""

import difflib
import os
from pathlib import Path

import pytest

from newsletter.render.compile import render
from tests.render_data import load_content

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def test_golden_files_are_never_rewritten_in_ci():
    # UPDATE_GOLDEN rewrites the expected files, so every golden test would pass:
    # in CI that would hide any change to the rendered output
    assert not (UPDATE and os.environ.get("CI") == "true"), (
        "UPDATE_GOLDEN=1 is set in CI: golden tests would compare output with itself"
    )


def edition(layout="list"):
    """8 stories as cards and 3 in More stories, the fixed rates; one story
    without an image, one with quotes, an emoji and a line break in its title."""
    c = load_content(11, layout=layout)
    c.articles[5].title = 'Kazakh "Steppe" ❤️ Festival\nDraws Record Crowds'
    c.more_stories = c.articles[8:]
    c.articles = c.articles[:8]
    return c


def compare(name, actual):
    path = GOLDEN / name
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing: run UPDATE_GOLDEN=1 pytest {__file__}"
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), actual.splitlines(True), str(path), "rendered", n=1
            )
        )
        pytest.fail(f"{name} differs from the golden file:\n{diff[:4000]}")


def test_html_golden():
    html = render(edition()).html
    # one element per line, so a diff shows what changed
    compare("digest.html", html.replace("><", ">\n<"))


def test_text_golden():
    compare("digest.txt", render(edition()).text)


def test_text_golden_sections_per_tag():
    compare("digest-tags.txt", render(edition("tags")).text)


def edition_ru(layout="list"):
    """The same edition for a Russian-language digest: every fixed string from
    the ru catalogue, dates and numbers as Russian writes them."""
    from dataclasses import replace

    c = edition(layout)
    c.digest = replace(c.digest, language="ru", title="Еженедельный дайджест")
    c.edition_date = "30 ноября 2026"
    c.subject = "The Steppe Ledger: Еженедельный дайджест, 30 ноября 2026"
    return c


def test_html_golden_ru():
    html = render(edition_ru()).html
    assert '<html lang="ru"' in html
    compare("digest-ru.html", html.replace("><", ">\n<"))


def test_text_golden_ru():
    compare("digest-ru.txt", render(edition_ru()).text)


def test_text_golden_sections_per_tag_ru():
    compare("digest-tags-ru.txt", render(edition_ru("tags")).text)
