"""The default templates: content, accessibility, size budget, plaintext."""

import re
from dataclasses import replace

import lxml.html
import pytest

from newsletter.errors import RenderError
from newsletter.rates.format import rate_rows
from newsletter.render.check import links_of
from newsletter.render.compile import (
    _keep,
    compile_mjml,
    render,
    render_html,
    render_text,
    sent_size,
)
from newsletter.render.env import make_env
from newsletter.render.personalize import PREFERENCES_URL, UNSUBSCRIBE_URL
from newsletter.render.text import WIDTH, is_long_url_line, wrap
from newsletter.render.voice import teaser
from tests.render_data import load_content

ENGINES = ["premailer", "css-inline"]


def doc_of(html):
    return lxml.html.document_fromstring(html)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_30_story_edition_fits_under_100_kb(engine):
    c = load_content(30)
    r = render(c, inliner=engine, max_bytes=100_000)
    assert r.overflow == 0 and not r.warnings
    assert len(r.html.encode()) < 100_000
    titles = [h.text_content() for h in doc_of(r.html).xpath('//h3[@class="ct"]')]
    assert titles == [a.title for a in c.articles]


@pytest.mark.parametrize("engine", ENGINES)
def test_over_budget_stories_move_to_more_stories(engine):
    c = load_content(30)
    r = render(c, inliner=engine, max_bytes=60_000)
    kept = 30 - r.overflow
    assert 1 < kept < 30
    assert len(r.html.encode()) <= 60_000
    # as many cards as fit: one more would not have
    bigger = render_html(_keep(c, kept + 1), inliner=engine)
    assert sent_size(bigger) > 60_000  # the size as sent, placeholders filled
    doc = doc_of(r.html)
    assert len(doc.xpath('//h3[@class="ct"]')) == kept
    listed = doc.xpath('//ul[@class="ms"]//a')
    assert [a.text_content() for a in listed] == [a.title for a in c.articles[kept:]]
    assert [a.get("href") for a in listed] == [a.url for a in c.articles[kept:]]
    assert f"{r.overflow} of 30 stories moved to the More stories list" in r.warnings[0]
    for a in c.articles[kept:]:
        assert a.url in r.text
    assert "MORE STORIES" in r.text


def test_placeholder_growth_is_counted_in_the_budget():
    c = load_content(30)
    size = len(render_html(c).encode())
    r = render(c, max_bytes=size + 10)
    # the two placeholders grow into real URLs when personalised: room is kept
    assert r.overflow > 0


def test_preheader_is_the_lead():
    c = load_content(5)
    doc = doc_of(render_html(c))
    hidden = doc.xpath('//body//div[contains(@style, "display:none")]')[0].text_content()
    lead = c.articles[0]
    assert hidden.startswith(f"{lead.title} — {lead.summary_text[:40]}")
    assert c.preheader.endswith("…") and len(c.preheader) <= 141
    assert "\u200c" in hidden  # the filler after it


def test_language_direction_and_dark_mode():
    c = load_content(3)
    c.site = replace(c.site, language="ar", direction="rtl")
    html = render_html(c)
    doc = doc_of(html)
    assert doc.get("lang") == "ar" and doc.get("dir") == "rtl"
    metas = {m.get("name"): m.get("content") for m in doc.xpath("//meta[@name]")}
    assert metas["color-scheme"] == "light dark"
    assert metas["supported-color-schemes"] == "light dark"
    styles = "\n".join(s.text_content() for s in doc.xpath("//style"))
    assert "@media (prefers-color-scheme: dark)" in styles
    assert "@media only screen and (max-width: 480px)" in styles


def test_every_image_has_alt_text_and_every_table_is_presentational():
    c = load_content(12)
    c.articles[2] = replace(c.articles[2], image_alt="Grain silos at dusk")
    doc = doc_of(render_html(c))
    images = doc.xpath("//img")
    assert len(images) == sum(1 for a in c.articles if a.image_url)
    assert all(i.get("alt") for i in images)
    assert "Grain silos at dusk" in [i.get("alt") for i in images]
    tables = doc.xpath("//table")
    assert tables and all(t.get("role") == "presentation" for t in tables)


def test_html_is_autoescaped():
    c = load_content(2)
    c.articles[1] = replace(
        c.articles[1], title="<script>alert(1)</script> & Co", summary_text="<b>bold</b>"
    )
    doc = doc_of(render_html(c))
    assert not doc.xpath("//script") and not doc.xpath("//b")
    assert "<script>alert(1)</script> & Co" in doc.text_content()
    assert "<b>bold</b>" in doc.text_content()


def test_footer_says_why_and_links_out():
    c = load_content(3)
    doc = doc_of(render_html(c))
    footer = doc.xpath('//div[@class="f"]')[0]
    text = " ".join(footer.text_content().split())
    assert "because you subscribed to news about Kazakhstan, Uzbekistan" in text
    assert c.site.postal_address in text
    links = {a.text_content(): a.get("href") for a in footer.xpath(".//a")}
    assert links == {
        "Unsubscribe": UNSUBSCRIBE_URL,
        "Change topics": PREFERENCES_URL,
        "View in browser": c.archive_url,
    }


def test_web_copy_has_nothing_personal():
    c = load_content(3)
    c.web = True
    c.archive_url = ""
    r = render(c)
    for part in (r.html, r.text):
        assert "%%" not in part and "nsubscribe" not in part
    assert "All editions" in r.html


def test_sections_per_tag():
    c = load_content(12, layout="tags")
    doc = doc_of(render_html(c))
    headings = [h.text_content() for h in doc.xpath('//h2[@class="sh"]')]
    assert headings[0] == "Top stories" and headings[1] == "Kazakhstan"
    headings = headings[1:]
    assert headings == [h for h in ["Kazakhstan", *c.reason_tags[1:], "More news"] if h in headings]
    cards = [h.text_content() for h in doc.xpath('//h3[@class="ct"]')]
    assert sorted(cards) == sorted(a.title for a in c.articles)  # each story once
    text = render_text(c)
    assert text.index("KAZAKHSTAN") < text.index("UZBEKISTAN")


def test_one_list_layout_has_one_section_heading():
    doc = doc_of(render_html(load_content(12)))
    assert [h.text_content() for h in doc.xpath('//h2[@class="sh"]')] == ["Top stories"]


# --------------------------------------------------------------------------- plaintext


@pytest.mark.parametrize("layout", ["list", "tags"])
def test_text_lines_are_at_most_78_columns_except_lone_urls(layout):
    c = load_content(30, layout=layout)
    c.articles[3] = replace(
        c.articles[3],
        url="https://steppe-ledger.example/2026/11/26/" + "a-very-long-slug-" * 8,
    )
    text = render_text(c)
    long_lines = [line for line in text.splitlines() if len(line) > WIDTH]
    assert long_lines and all(is_long_url_line(line) for line in long_lines)
    assert c.articles[3].url in text.split()  # never broken


def test_text_has_aligned_rates_and_every_story():
    c = load_content(8)
    text = render_text(c)
    rate_lines = [line for line in text.splitlines() if re.match(r"^[A-Z]{3}/USD(\[\d\])? ", line)]
    assert len(rate_lines) == 5
    rows = rate_rows(c.rates)
    ends = {line.index(r.figure) + len(r.figure) for line, r in zip(rate_lines, rows, strict=True)}
    assert len(ends) == 1  # the figures are right-aligned in one column
    flat = " ".join(text.split())
    for a in c.articles:
        assert a.title in flat and teaser(a.summary_text) in flat and a.url in text.split()
    assert f"Unsubscribe:\n{UNSUBSCRIBE_URL}\n" in text  # the URL alone on its line


@pytest.mark.parametrize("layout", ["list", "tags"])
@pytest.mark.parametrize("budget", [100_000, 50_000])
def test_every_html_link_is_in_the_text_part(layout, budget):
    r = render(load_content(30, layout=layout), max_bytes=budget)
    words = set(r.text.split())
    links = links_of(r.html)
    assert len(links) > 40
    missing = [h for h in links if h not in words]
    assert missing == []


def test_wrap_keeps_urls_whole_and_hangs_list_items():
    url = "https://example.com/" + "x" * 90
    out = wrap(f"12. {'word ' * 30}\n   Read more: {url}\n- {'item ' * 20}")
    lines = out.splitlines()
    assert all(len(line) <= WIDTH for line in lines if url not in line)
    assert f"   {url}" in lines
    assert lines[1].startswith("    word")  # hangs under the "12. " text
    assert any(line.startswith("  item") for line in lines)


# --------------------------------------------------------------------------- templates


def test_a_user_folder_overrides_one_file_and_falls_back_for_the_rest(tmp_path):
    (tmp_path / "partials").mkdir()
    (tmp_path / "partials" / "header.mjml.j2").write_text(
        '<mj-text><h1 class="hd">Custom masthead for {{ site.name }}</h1></mj-text>\n'
    )
    c = load_content(3)
    html = render_html(c, templates=str(tmp_path))
    assert "Custom masthead for The Steppe Ledger" in html
    assert c.articles[1].title in html  # cards from the bundled partial
    assert "Custom masthead" not in render_text(c, templates=str(tmp_path))


def test_a_template_error_names_the_file_and_line(tmp_path):
    (tmp_path / "partials").mkdir()
    (tmp_path / "partials" / "footer.mjml.j2").write_text(
        "\n\n<mj-text>{{ no_such_thing }}</mj-text>\n"
    )
    with pytest.raises(RenderError) as err:
        render_html(load_content(2), templates=str(tmp_path))
    assert "footer.mjml.j2:3" in str(err.value) and "no_such_thing" in str(err.value)


def test_an_mjml_error_points_at_the_generated_line(tmp_path):
    # MRML 6 refuses spaces without a line break between two head elements
    (tmp_path / "digest.mjml.j2").write_text(
        "<mjml>\n<mj-head>\n<mj-title>{{ subject }}</mj-title> <mj-preview>x</mj-preview>\n"
        "</mj-head>\n<mj-body></mj-body>\n</mjml>\n"
    )
    with pytest.raises(RenderError) as err:
        compile_mjml(load_content(2), templates=str(tmp_path))
    message = str(err.value)
    assert message.startswith("digest.mjml.j2: MJML did not compile: unexpected token")
    assert "(line 3 of the generated MJML, near" in message


def test_templates_are_compiled_once():
    env = make_env("")
    assert make_env("") is env
    t = env.get_template("digest.mjml.j2")
    assert env.get_template("digest.mjml.j2") is t


def test_rates_name_each_figure_source_only_when_there_are_several():
    from datetime import date
    from decimal import Decimal

    from newsletter.models import RateLine, RatesHeader
    from newsletter.render.text import rates_sources, rates_table

    def line(pair, source):
        cur, quote = pair.split("/")
        return RateLine(cur, quote, Decimal("0.1"), Decimal(0), 4, source, date(2026, 11, 27))

    one = RatesHeader([line("KZT/USD", "NBK"), line("KGS/USD", "NBK")])
    assert "[" not in rates_table(rate_rows(one)) and rates_sources(one) == "Rates: NBK"
    two = RatesHeader([line("KZT/USD", "NBK"), line("TMT/USD", "peg"), line("KGS/USD", "NBK")])
    assert [row.split()[0] for row in rates_table(rate_rows(two)).splitlines()] == [
        "KZT/USD[1]",
        "TMT/USD[2]",
        "KGS/USD[1]",
    ]
    assert rates_sources(two) == "Rates: [1] NBK, [2] peg"
