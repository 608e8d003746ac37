"""The demo (examples/demo.toml, what `make demo` and `make screenshots` run)
shows everything issue 14 asked of an edition, and `check` passes on every
variant of each of its digests. Run as the real tool, on a throwaway database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lxml.html
import pytest

REPO = Path(__file__).parents[1]
AT = "2026-11-30T07:05:00+05:00"  # the Makefile's DEMO_AT


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    db = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env |= {
        "NEWSLETTER_SECRET_KEY": "demo-only-not-a-secret",
        "NEWSLETTER_CONFIG": str(REPO / "examples" / "demo.toml"),
    }

    def nl(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "newsletter", "--db", db, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, (args, result.stderr)
        return result.stdout

    nl("init")
    nl("subscribers", "import", str(REPO / "subscribers" / "sample.csv"))
    nl("ingest")
    return nl


@pytest.mark.parametrize("digest", ["weekly", "weekly-ru"])
def test_check_passes_on_every_demo_variant(demo, digest):
    report = json.loads(demo("check", "--digest", digest, "--at", AT, "--json"))
    assert (report["ok"], report["errors"], report["warnings"]) == (True, [], [])
    assert len(report["variants"]) > 5


@pytest.mark.parametrize(
    ("digest", "lang", "greeting", "note", "rates"),
    [
        ("weekly", "en", "Hi Айгерим,", "Good morning from Almaty.", ["KZT/USD", "0.001969"]),
        (
            "weekly-ru",
            "ru",
            "Здравствуйте, Айгерим!",
            "Доброе утро из Алматы.",
            ["USD/KZT", "1 USD = 507,9 KZT"],
        ),
    ],
)
def test_the_demo_shows_masthead_greeting_note_and_rates(demo, digest, lang, greeting, note, rates):
    who = "aigerim.sadykova@example.com"
    html = demo("preview", "--digest", digest, "--at", AT, "--as", who)
    doc = lxml.html.document_fromstring(html)
    assert doc.get("lang") == lang
    (h1,) = doc.xpath("//h1")
    assert h1.text_content().strip() == "The Steppe Ledger"
    text = " ".join(doc.text_content().split())
    assert greeting in text and note in text
    rows = [
        [" ".join(td.text_content().split()) for td in tr.xpath("td")]
        for tr in doc.xpath("//table[@class='rt']//tr")
    ]
    assert len(rows) == 5 and rates in [row[:2] for row in rows], rows
    plain = demo("preview", "--digest", digest, "--at", AT, "--as", who, "--format", "text")
    assert greeting in plain and note in plain
