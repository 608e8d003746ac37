"""Masthead and voice: logo, greeting, editor's note, In this issue, teasers,
one link per title, topics in the footer (issue 14)."""

from __future__ import annotations

import re
from dataclasses import replace

import lxml.html
import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import ConfigError, DigestConfig, SiteConfig
from newsletter.delivery.mime import render_message
from newsletter.delivery.send import send_edition
from newsletter.models import Recipient, Subscriber
from newsletter.render.check import links_of
from newsletter.render.compile import render, render_html, render_text
from newsletter.render.note import note_html, note_text
from newsletter.render.personalize import FIRST_NAME, first_name
from newsletter.render.voice import teaser, topics
from tests.helpers import build_config, make_edition, sg_config
from tests.render_data import load_content


def doc_of(html: str):
    return lxml.html.document_fromstring(html)


# --------------------------------------------------------------------------- masthead


def test_the_masthead_is_the_one_h1_with_the_site_name():
    doc = doc_of(render_html(load_content(8)))
    (h1,) = doc.xpath("//h1")
    assert h1.text_content().strip() == "The Steppe Ledger"
    assert h1.xpath(".//a/@href") == ["https://steppe-ledger.example/"]


def test_a_logo_has_its_width_height_and_alt_text():
    site = replace(
        load_content(1).site,
        logo_url="https://steppe-ledger.example/logo.png",
        logo_width=220,
        logo_height=40,
        logo_alt="The Steppe Ledger: news from Central Asia",
    )
    doc = doc_of(render_html(load_content(8, site=site)))
    (h1,) = doc.xpath("//h1")
    (img,) = h1.xpath(".//img")
    assert (img.get("src"), img.get("width"), img.get("height")) == (
        "https://steppe-ledger.example/logo.png",
        "220",
        "40",
    )
    assert img.get("alt") == "The Steppe Ledger: news from Central Asia"
    # without alt text of its own, the site name
    plain = doc_of(render_html(load_content(1, site=replace(site, logo_alt=""))))
    assert plain.xpath("//h1//img/@alt") == ["The Steppe Ledger"]


@pytest.mark.parametrize(
    "extra, message",
    [
        ('logo_url = "https://x.example/l.png"', "logo_width and logo_height"),
        ('logo_url = "https://x.example/l.png"\nlogo_width = 200\nlogo_height = 0', "1 to 600"),
        ('logo_url = "logo.png"\nlogo_width = 200\nlogo_height = 40', "absolute http(s) URL"),
    ],
)
def test_a_logo_without_its_size_or_url_is_refused(tmp_path, extra, message):
    from newsletter.config import load_config

    (tmp_path / "n.toml").write_text(f"[site]\n{extra}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "n.toml", env={})
    assert "site.logo_" in str(err.value) and message in str(err.value)


# --------------------------------------------------------------------------- greeting


@pytest.mark.parametrize(
    "name, first",
    [
        ("Aigerim Sadykova", "Aigerim"),
        ("Айгерим", "Айгерим"),
        ("A. Reader", "A. Reader"),
        ("Dr. Aliyev", "Dr. Aliyev"),
        ("  ", ""),
    ],
)
def test_first_name(name, first):
    assert first_name(name) == first


class _Wire:
    def __init__(self, data: bytes):
        self.data = data

    def as_bytes(self) -> bytes:
        # whitespace folded: the HTML part's long lines are broken at spaces
        # (delivery.mime.short_lines), which HTML reads as one space
        return b" ".join(self.data.split())


def _message(rendered, name):
    """The message as it goes on the wire, 8bit (both parts as written)."""
    from newsletter.delivery.backends.base import OutgoingMessage

    out = OutgoingMessage(rendered, "digest@steppe-ledger.example", "", "", "weekly.x", "weekly", 1)
    recipient = Recipient(7, "reader@example.com", name, "https://x.example/u", "")
    return _Wire(render_message(out, recipient, eight_bit=True).data)


def test_the_greeting_uses_the_first_name_or_the_fallback_in_the_raw_message():
    r = render(load_content(6))
    assert f"Hi {FIRST_NAME}," in r.text and f"Hi {FIRST_NAME}," in r.html
    assert r.fallbacks == {FIRST_NAME: "there"}
    raw = _message(r, "Aigerim Sadykova").as_bytes()
    assert raw.count(b"Hi Aigerim,") == 2  # text and HTML parts, as they go out
    anonymous = _message(r, "").as_bytes()
    assert anonymous.count(b"Hi there,") == 2 and b"%%first_name%%" not in anonymous
    custom = render(
        load_content(6, digest=replace(load_content(1).digest, greeting_fallback="friend"))
    )
    assert _message(custom, "").as_bytes().count(b"Hi friend,") == 2


def test_sendgrid_gets_the_first_name_or_the_fallback_as_a_substitution(sqlite_store, sg, tmp_path):  # noqa: F811
    store = sqlite_store
    cfg = sg_config(tmp_path, sg)
    eid = make_edition(store, emails=["a@example.com", "b@example.com"])
    store.upsert_subscriber(Subscriber(email="a@example.com", name="Aigerim Sadykova"))
    store.upsert_subscriber(Subscriber(email="b@example.com", name=""))
    r = render(load_content(3))
    from newsletter.delivery.backends import make_backend

    send_edition(store, cfg, eid, {"default": r}, make_backend(cfg))
    (body,) = sg.bodies
    subs = {p["to"][0]["email"]: p["substitutions"] for p in body["personalizations"]}
    assert subs["a@example.com"][FIRST_NAME] == "Aigerim"
    assert subs["b@example.com"][FIRST_NAME] == "there"


def test_the_web_archive_greets_nobody():
    c = load_content(6)
    c.web = True
    assert "Hi " not in render_text(c) and FIRST_NAME not in render_html(c)


# --------------------------------------------------------------------------- the note


NOTE = """Good morning from **Almaty**. This week: the [grid study](https://steppe-ledger.example/grid)
and a <script>alert(1)</script> that must stay text.

- one
- two
"""


def test_the_note_in_html_and_text():
    html = note_html(NOTE)
    assert "<strong>Almaty</strong>" in html
    assert '<a href="https://steppe-ledger.example/grid">grid study</a>' in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    text = note_text(NOTE)
    assert "Good morning from Almaty." in text
    assert "grid study (https://steppe-ledger.example/grid)" in text
    c = load_content(6, note=NOTE)
    page = render_html(c)
    assert "<strong>Almaty</strong>" in page
    plain = render_text(c)
    assert (
        "https://steppe-ledger.example/grid" in plain.split()
        or "(https://steppe-ledger.example/grid)" in plain
    )
    # every link of the HTML is in the text
    words = set(re.split(r"[\s()]+", plain))
    assert [h for h in links_of(page) if h not in words] == []
    # no headings of its own: the outline stays one h1 masthead
    assert "<h1>" not in note_html("# Big news\n\ntext") and "Big news" in note_html("# Big news")
    # no note, no trace
    assert 'class="nt"' not in render_html(load_content(6))


def test_the_notes_paragraphs_are_wrapped_as_paragraphs_in_the_text_part():
    """A line break inside a Markdown paragraph is a space: the text part wraps
    each paragraph whole (the demo's Russian note, whose source lines are longer
    than 78 columns, came out with a one-word line after each of them)."""
    from pathlib import Path

    note = (Path(__file__).parents[1] / "examples/notes/weekly-ru/2026-11-30.md").read_text()
    plain = render_text(load_content(6, note=note))
    start = plain.index("Доброе утро")
    paragraph = plain[start : plain.index("\n\n", start)].splitlines()
    # greedy wrapping: every line but the last is full, no word would fit on it
    for line, following in zip(paragraph, paragraph[1:], strict=False):
        assert len(line) + 1 + len(following.split()[0]) > 78, paragraph
    assert " ".join(paragraph).startswith("Доброе утро из Алматы. Тенге завершил неделю")
    # hard breaks and list items keep their own lines
    assert note_text("one  \ntwo\\\nthree\n\n- a\n  b\n- c") == "one\ntwo\nthree\n\n- a b\n- c"


def test_a_quote_and_a_code_block_in_the_note_read_as_such_in_both_parts():
    """The HTML has a blockquote and a pre; the text part a quote on one line that
    starts with "> " and the code's lines as written, without the fences."""
    md = (
        "Readers wrote:\n\n> The tenge held\n> all week.\n\n"
        "```\nKZT  508.6\nUZS 12042\n```\n\nThanks."
    )
    html = note_html(md)
    assert "<blockquote>" in html and "<pre><code>KZT  508.6\nUZS 12042\n</code></pre>" in html
    assert note_text(md) == (
        "Readers wrote:\n\n> The tenge held all week.\n\nKZT  508.6\nUZS 12042\n\nThanks."
    )
    # in the edition's text part too, nothing of the Markdown's markers is left
    plain = render_text(load_content(6, note=md))
    assert "> The tenge held all week." in plain and "KZT  508.6\nUZS 12042" in plain
    assert "```" not in plain and "> all week" not in plain


def test_the_note_command_writes_shows_and_removes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    (tmp_path / "newsletter.toml").write_text('[[digests]]\nname = "weekly"\n', encoding="utf-8")
    (tmp_path / "note.md").write_text(NOTE, encoding="utf-8")
    run = CliRunner().invoke
    out = run(cli, ["note", "note.md", "--date", "2026-11-30"])
    assert out.exit_code == 0, out.output
    path = tmp_path / "notes" / "weekly" / "2026-11-30.md"
    assert path.read_text(encoding="utf-8") == NOTE.strip() + "\n"
    shown = run(cli, ["note", "--date", "2026-11-30"])
    assert shown.output == NOTE.strip() + "\n"
    bad = tmp_path / "bad.md"
    bad.write_bytes(b"\xff\xfe not utf-8")
    refused = run(cli, ["note", "bad.md", "--date", "2026-11-30"])
    assert (
        refused.exit_code == 2 and "bad.md" in refused.output and "Traceback" not in refused.output
    )
    assert path.read_text(encoding="utf-8") == NOTE.strip() + "\n"  # nothing lost
    gone = run(cli, ["note", "--remove", "--date", "2026-11-30"])
    assert gone.exit_code == 0 and not path.exists()


# --------------------------------------------------------------------------- stories


def test_in_this_issue_lists_every_story_above_the_threshold():
    many = doc_of(render_html(load_content(8)))
    (h2,) = many.xpath('//h2[contains(@class, "toch")]')
    assert h2.text_content() == "In this issue"
    items = [li.text_content() for li in many.xpath('//ul[@class="toc"]/li')]
    assert items == [a.title for a in load_content(8).articles]
    assert "IN THIS ISSUE" in render_text(load_content(8))
    few = load_content(5)
    assert "In this issue" not in render_html(few) and "IN THIS ISSUE" not in render_text(few)
    more = replace(load_content(1).digest, contents_above=2)
    assert "In this issue" in render_html(load_content(3, digest=more))


def test_teasers_are_about_35_words_and_configurable():
    long = " ".join(f"w{i}" for i in range(100))
    assert teaser(long) == " ".join(f"w{i}" for i in range(35)) + "…"
    assert teaser(" ".join(long.split()[:38])) == " ".join(long.split()[:38])  # close enough
    assert teaser(long, 0) == ""
    c = load_content(6)
    doc = doc_of(render_html(c))
    for p in doc.xpath('//p[@class="s"]'):
        assert len(p.text_content().split()) <= 40
    short = replace(c.digest, teaser_words=10)
    doc = doc_of(render_html(load_content(6, digest=short)))
    assert max(len(p.text_content().split()) for p in doc.xpath('//p[@class="s"]')) <= 10


def test_one_link_per_title_plus_one_read_more():
    c = load_content(12)
    links = links_of(render_html(c))
    for a in c.articles:
        assert links.count(a.url) == 2, a.url


# --------------------------------------------------------------------------- footer


def test_footer_topics_by_display_name_in_the_digests_order_collapsed():
    assert topics(["Kazakhstan"]) == "Kazakhstan"
    assert topics(["Kazakhstan", "Energy"]) == "Kazakhstan and Energy"
    assert topics(["A", "B", "C", "D", "E", "F"], 4) == "A, B, C, D and 2 more"
    digest = DigestConfig(
        tags=["uzbekistan", "kazakhstan"] + [f"extra-topic-{i}" for i in range(1, 49)]
    )
    names = ["Kazakhstan", "Uzbekistan"] + sorted(f"extra-topic-{i}" for i in range(1, 49))
    c = load_content(3, digest=digest, reason_tags=names)
    text = " ".join(render_text(c).split())
    assert "news about Uzbekistan, Kazakhstan, Extra topic 1, Extra topic 2 and 46 more." in text
    page = " ".join(doc_of(render_html(c)).text_content().split())
    assert "news about Uzbekistan, Kazakhstan, Extra topic 1, Extra topic 2 and 46 more." in page
    assert "extra-topic" not in page


def test_no_dot_between_the_footer_links():
    doc = doc_of(render_html(load_content(3)))
    (links,) = [p for p in doc.xpath('//div[@class="f"]/p') if p.xpath(".//a")]
    assert "·" not in links.text_content()


def test_no_dot_between_the_rates_sources():
    """The same for the rates' sources under the table: with the banks' real
    names a line at 320 px ended in "National Bank of the Kyrgyz Republic ·"."""
    c = load_content(3)
    (line,) = doc_of(render_html(c)).xpath('//table[@class="rt"]/following-sibling::p[1]')
    text = " ".join(line.text_content().split())
    assert "·" not in text
    assert text.endswith("Rates: 1 NBKR, 2 NBK, 3 NBT, 4 CBU, 5 CBT"), text


def test_site_config_defaults_have_no_logo():
    assert SiteConfig().logo_url == "" and DigestConfig().teaser_words == 35


def test_the_note_is_frozen_with_the_edition(project):
    """Sent as written when the edition was compiled; a later edit changes nothing sent."""
    from newsletter.editions.frozen import render_frozen
    from newsletter.store import open_store

    run = CliRunner().invoke
    (project / "note.md").write_text("Hello from the **newsroom**.\n", encoding="utf-8")
    assert run(cli, ["note", "note.md", "--date", "2026-11-30"]).exit_code == 0
    assert run(cli, ["subscribers", "import", "subscribers.csv"]).exit_code in (0, 3)
    result = run(cli, ["run", "--at", "2026-11-30T07:05:00+05:00"])
    assert result.exit_code == 0, result.output
    eml = next(project.rglob("*.eml")).read_bytes()
    assert b"Hello from the newsroom." in eml  # the text part, as it went out
    assert b"<strong>newsroom</strong>" in eml
    (project / "notes" / "weekly" / "2026-11-30.md").write_text("Changed.\n", encoding="utf-8")
    cfg = build_config(project)
    store = open_store(cfg.database_url)
    try:
        (rendered,) = list(render_frozen(store, cfg, 1).values())[:1]
    finally:
        store.close()
    assert "Hello from the newsroom." in rendered.text and "Changed." not in rendered.text
