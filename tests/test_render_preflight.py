"""The preflight catches the template mistakes docs/templates.md warns about: each
check against a user template override with that mistake, rendered for real
(Jinja, MRML, the inliner), and the bundled templates pass every check."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.render.check import check_message
from newsletter.render.compile import render
from newsletter.render.env import bundled_templates
from newsletter.render.personalize import FIRST_NAME, NAME, PLACEHOLDERS, personalize
from tests.render_data import load_content, russian_content

UNSUB = "https://steppe-ledger.example/newsletter/unsubscribe/MTp3ZWVrbHk.8lAd69X1u-4cahWGAy5mfA"
HEADERS = {
    "List-Unsubscribe": f"<{UNSUB}>, <mailto:unsubscribe@steppe-ledger.example>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}
BUNDLED = bundled_templates()


def override(folder: Path, name: str, old: str, new: str, *more: tuple[str, str]) -> str:
    """A copy of the bundled ``name`` in ``folder`` with ``old`` replaced by ``new``
    (and each further (old, new) pair)."""
    text = (BUNDLED / name).read_text(encoding="utf-8")
    for a, b in [(old, new), *more]:
        assert a in text, f"{a!r} is not in the bundled {name}"
        text = text.replace(a, b)
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return str(folder)


def findings(templates: str = "", count: int = 6, *, language: str = "en", wording=(), **kw):
    content = load_content(count, **kw)
    r = render(content, templates=templates)
    values = dict.fromkeys(PLACEHOLDERS, UNSUB)
    values.update({NAME: "Aigerim Sadykova", FIRST_NAME: "Aigerim"})
    return check_message(
        subject=r.subject,
        html=personalize(r.html, values, html_part=True),
        text=personalize(r.text, values, html_part=False),
        headers=HEADERS,
        unsubscribe_url=UNSUB,
        articles=count,
        max_bytes=100_000,
        notes=r.warnings,
        language=language,
        unsubscribe_wording=wording,
    )


def codes(found) -> dict[str, str]:
    return {f.code: f.level for f in found}


@pytest.mark.parametrize("layout", ["list", "tags"])
def test_the_bundled_templates_pass_every_check(layout):
    assert findings(count=30, layout=layout) == []


def test_escape_leftovers_of_a_value_without_mjattr(tmp_path):
    """The issue's case: alt="Carpet “Day” ❤\\u{fe0f} in Ashgabat" passed as ok."""
    content = load_content(3)
    content.articles[1] = replace(
        content.articles[1], image_alt="Carpet “Day” ❤️ in\nAshgabat", title='A "quoted" title'
    )
    tpl = override(
        tmp_path,
        "partials/card.mjml.j2",
        "{%- set alt = (article.image_alt or article.title)|mjattr %}",
        "{%- set alt = (article.image_alt or article.title) %}",
    )
    r = render(content, templates=tpl)
    assert "\\u{fe0f}" in r.html  # what MRML made of it
    found = check_message(
        subject=r.subject,
        html=personalize(r.html, dict.fromkeys(PLACEHOLDERS, UNSUB), html_part=True),
        text=personalize(r.text, dict.fromkeys(PLACEHOLDERS, UNSUB), html_part=False),
        headers=HEADERS,
        unsubscribe_url=UNSUB,
        articles=3,
        max_bytes=100_000,
    )
    assert codes(found).get("escape") == "error"
    (f,) = [f for f in found if f.code == "escape"]
    assert "\\u{fe0f}" in f.message or "\\n" in f.message


@pytest.mark.parametrize("leftover", ["\\n", "\\u{fe0f}", '\\"'])
def test_escape_leftovers_in_text_and_attributes(tmp_path, leftover):
    literal = leftover.replace('"', "&quot;")
    tpl = override(
        tmp_path,
        "partials/header.mjml.j2",
        '<p class="m">',
        f'<p class="m" title="x{literal}y">Edition{literal} ',
    )
    assert codes(findings(tpl)).get("escape") == "error"


def test_no_visible_unsubscribe_link_when_change_topics_points_at_it(tmp_path):
    """The issue's case: only "Change topics" links to the unsubscribe page."""
    tpl = override(
        tmp_path,
        "partials/footer.mjml.j2",
        '<a href="{{ unsubscribe_url }}">{{ _("Unsubscribe") }}</a> ',
        "",
    )
    override(
        tmp_path,
        "digest.txt.j2",
        '{{ _("Unsubscribe") }}: {{ unsubscribe_url }}\n',
        "",
    )
    found = findings(tpl)
    assert codes(found).get("unsubscribe-wording") == "error"
    messages = [f.message for f in found if f.code == "unsubscribe-wording"]
    assert any("HTML" in m for m in messages) and any("text part" in m for m in messages)


@pytest.mark.parametrize(
    "hiding",
    [
        'style="display:none"',
        'style="display: none !important"',
        'style="visibility:hidden"',
        'style="font-size:0; line-height:0"',
        'style="max-height:0; overflow:hidden"',
        'style="mso-hide:all"',
        'style="opacity:0"',
        "hidden",
    ],
)
def test_a_hidden_unsubscribe_link_is_not_a_visible_one(tmp_path, hiding):
    """The word is there but nobody sees it: "Unsubscribe" in a hidden span, with
    "Change topics" the only visible link to the unsubscribe page."""
    tpl = override(
        tmp_path,
        "partials/footer.mjml.j2",
        '<a href="{{ unsubscribe_url }}">{{ _("Unsubscribe") }}</a> ',
        f"<span {hiding}>" + '<a href="{{ unsubscribe_url }}">{{ _("Unsubscribe") }}</a></span> ',
    )
    found = [f for f in findings(tpl) if f.code == "unsubscribe-wording"]
    assert found and found[0].level == "error" and "HTML" in found[0].message


def test_unsubscribe_wording_per_language_and_configurable(tmp_path):
    ru = override(
        tmp_path / "ru",
        "partials/footer.mjml.j2",
        '<a href="{{ unsubscribe_url }}">{{ _("Unsubscribe") }}</a>',
        '<a href="{{ unsubscribe_url }}">Отписаться от рассылки</a>',
    )
    override(tmp_path / "ru", "digest.txt.j2", '{{ _("Unsubscribe") }}: ', "Отписаться: ")
    assert "unsubscribe-wording" not in codes(findings(ru, language="ru"))
    assert "unsubscribe-wording" in codes(findings(ru, language="en"))
    kk = override(
        tmp_path / "kk",
        "partials/footer.mjml.j2",
        '<a href="{{ unsubscribe_url }}">{{ _("Unsubscribe") }}</a>',
        '<a href="{{ unsubscribe_url }}">Хабарламалардан шығу</a>',
    )
    override(tmp_path / "kk", "digest.txt.j2", '{{ _("Unsubscribe") }}: ', "Хабарламалардан шығу: ")
    assert "unsubscribe-wording" in codes(findings(kk, language="kk"))
    found = findings(kk, language="kk", wording=["хабарламалардан шығу"])
    assert "unsubscribe-wording" not in codes(found)


def test_story_titles_at_h2_break_the_outline(tmp_path):
    """The issue's case: story titles and section headings were both h2."""
    tpl = override(
        tmp_path,
        "partials/card.mjml.j2",
        '<h3 class="ct"><a href="{{ url }}">{{ article.title }}</a></h3>',
        '<h2 class="ct"><a href="{{ url }}">{{ article.title }}</a></h2>',
    )
    found = [f for f in findings(tpl, layout="tags") if f.code == "headings"]
    assert found and "story title(s) at h2" in found[0].message


def test_a_masthead_that_is_not_h1_breaks_the_outline(tmp_path):
    tpl = override(
        tmp_path,
        "partials/header.mjml.j2",
        '<h1 class="hd">',
        '<h2 class="hd">',
        ("</h1>", "</h2>"),
    )
    found = [f for f in findings(tpl) if f.code == "headings"]
    assert found and "0 h1" in found[0].message


def test_images_without_height(tmp_path):
    tpl = override(tmp_path, "partials/card.mjml.j2", 'width="180" height="101"', 'width="180"')
    assert codes(findings(tpl)).get("image-size") == "warning"


def test_alt_text_without_style(tmp_path):
    """Images off, unstyled alt text of a block image is a broken-image icon."""
    tpl = override(
        tmp_path,
        "partials/style.mjml.j2",
        " font-size: 13px; line-height: 1.4; color: #59636e; }",
        " }",
    )
    assert codes(findings(tpl)).get("alt-style") == "warning"


def test_a_presentation_table_with_header_cells(tmp_path):
    """The issue's case: the rates table was role=presentation with th scope=row."""
    tpl = override(
        tmp_path,
        "partials/rates.mjml.j2",
        '<td class="p">{{ r.label }}',
        '<th scope="row">{{ r.label }}',
        ('{% endif %}</td><td class="n">', '{% endif %}</th><td class="n">'),
    )
    found = [f for f in findings(tpl) if f.code == "tables"]
    assert found and "rt: role=presentation with header cells" in found[0].message


def test_a_data_table_needs_caption_and_scope(tmp_path):
    tpl = override(
        tmp_path,
        "partials/rates.mjml.j2",
        '<table class="rt" role="presentation"',
        '<table class="rt"',
    )
    found = [f for f in findings(tpl) if f.code == "tables"]
    assert found and "rt: a layout table without role=presentation" in found[0].message
    override(
        tmp_path,
        "partials/rates.mjml.j2",
        '<td class="p">{{ r.label }}',
        "<th>{{ r.label }}",
        ('{% endif %}</td><td class="n">', '{% endif %}</th><td class="n">'),
    )
    text = (tmp_path / "partials/rates.mjml.j2").read_text()
    (tmp_path / "partials/rates.mjml.j2").write_text(
        text.replace('<table class="rt" role="presentation"', '<table class="rt"')
    )
    found = [f for f in findings(tpl) if f.code == "tables"]
    assert found and "needs a caption and th with scope" in found[0].message
    (tmp_path / "partials/rates.mjml.j2").write_text(
        text.replace('<table class="rt" role="presentation"', '<table class="rt"')
        .replace("<th>", '<th scope="row">')
        .replace(
            "{%- for r in rate_rows %}",
            "<caption>Exchange rates</caption>\n{%- for r in rate_rows %}",
        )
    )
    assert "tables" not in codes(findings(tpl))


def test_read_more_links_that_say_the_same_for_every_story(tmp_path):
    tpl = override(
        tmp_path,
        "partials/card.mjml.j2",
        '>{{ _("Read more: %(title)s", title=article.title) }}</a>',
        ">Read more →</a>",
    )
    found = [f for f in findings(tpl) if f.code == "link-text"]
    assert found and "'read more →'" in found[0].message


def test_text_lines_over_78_that_are_not_a_url_alone(tmp_path):
    """The issue's case: "Unsubscribe: <URL>" was 133 columns."""
    tpl = override(
        tmp_path,
        "digest.txt.j2",
        '{{ _("Unsubscribe") }}: {{ unsubscribe_url }}\n',
        '{{ _("Unsubscribe") }}:{{ unsubscribe_url }}\n',
    )
    found = [f for f in findings(tpl) if f.code == "text-width"]
    assert found and found[0].level == "warning"


def test_the_bundled_text_part_keeps_78_columns_with_real_urls():
    r = render(load_content(30))
    long_url = "https://steppe-ledger.example/newsletter/unsubscribe/" + "x" * 120
    values = {**dict.fromkeys(PLACEHOLDERS, long_url), NAME: "A. Reader", FIRST_NAME: "A. Reader"}
    text = personalize(r.text, values, html_part=False)
    for line in text.splitlines():
        assert len(line) <= 78 or line.strip().startswith("https://"), line
    assert f"Unsubscribe:\n{long_url}\n" in text


def test_check_json_names_each_check_by_code(project):
    """`check --json` on a project whose template override has two mistakes."""
    runner = CliRunner()
    assert runner.invoke(cli, ["ingest"]).exit_code == 0
    tpl = project / "tpl"
    override(
        tpl,
        "partials/card.mjml.j2",
        "{%- set alt = (article.image_alt or article.title)|mjattr %}",
        '{%- set alt = (article.image_alt or article.title) ~ "\\n" %}',
    )
    override(
        tpl,
        "partials/footer.mjml.j2",
        '<a href="{{ unsubscribe_url }}">{{ _("Unsubscribe") }}</a> ',
        "",
    )
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text() + '\n[render]\ntemplates = "tpl"\n')
    out = runner.invoke(cli, ["check", "--at", "2026-11-30T07:05:00+05:00", "--json"])
    assert out.exit_code == 1
    data = json.loads(out.output)
    assert {"escape", "unsubscribe-wording"} <= {f["code"] for f in data["errors"]}


@pytest.mark.parametrize("layout", ["list", "tags"])
def test_a_30_story_russian_edition_passes(layout):
    content = russian_content(30, layout=layout)
    r = render(content)
    values = {**dict.fromkeys(PLACEHOLDERS, UNSUB), NAME: "Айгерим", FIRST_NAME: "Айгерим"}
    found = check_message(
        subject=r.subject,
        html=personalize(r.html, values, html_part=True),
        text=personalize(r.text, values, html_part=False),
        headers=HEADERS,
        unsubscribe_url=UNSUB,
        articles=30,
        max_bytes=100_000,
        notes=r.warnings,
        language="ru",
    )
    assert [f for f in found if f.level == "error"] == []
    assert {f.code for f in found} <= {"overflow"}  # the budget moves a few stories


@pytest.mark.parametrize("layout", ["list", "tags"])
def test_bundled_outline_images_rates_and_link_texts(layout):
    """The issue's findings, read straight from the rendered HTML: story titles
    and section headings were both h2; the rates table was role=presentation
    with th scope=row; images had no height; every "Read more →" looked alike."""
    import lxml.html

    doc = lxml.html.document_fromstring(render(load_content(30, layout=layout)).html)
    headings = [(h.tag, h.get("class")) for h in doc.iter("h1", "h2", "h3", "h4")]
    assert headings[0] == ("h1", "hd") and [t for t, _ in headings].count("h1") == 1
    assert {t for t, c in headings if c == "ct"} == {"h3"}  # stories
    assert {t for t, c in headings if "sh" in c.split()} == {"h2"}  # sections
    # a section before the first story ("In this issue" or "Top stories")
    assert headings[1][0] == "h2" and "sh" in headings[1][1].split()
    (rates,) = doc.xpath('//table[@class="rt"]')
    assert rates.get("role") == "presentation" and not rates.xpath(".//th|.//*[@scope]")
    for img in doc.iter("img"):
        assert img.get("width").isdigit() and img.get("height").isdigit(), img.get("src")
        assert "font-size" in img.get("style") and "color" in img.get("style")
    texts: dict[str, set[str]] = {}
    for a in doc.iter("a"):
        texts.setdefault(" ".join(a.text_content().split()), set()).add(a.get("href"))
    assert all(len(hrefs) == 1 for text, hrefs in texts.items() if text), [
        t for t, h in texts.items() if len(h) > 1
    ]


def test_backslashes_in_the_stories_are_no_mrml_escapes(project):
    """A story that mentions C:\\temp or writes \\"quotes\\" is the newsroom's text, not
    a value that missed |mjattr: `check` (and so `run`, which stops on its errors)
    passes it, while the same words left by a template are still caught."""
    feed = project / "feed.xml"
    xml = feed.read_text(encoding="utf-8")
    title = "Central Asian Energy Ministers Agree to Study Joint Reserve Market"
    assert xml.count(f"<title>{title}</title>") == 1
    xml = xml.replace(
        f"<title>{title}</title>",
        f"<title>{title} (see C:\\temp\\new and \\u{{fe0f}})</title>",
    ).replace(
        "<p>Energy ministers from",
        '<p>Files in C:\\new\\reports say \\"no\\". Energy ministers from',
    )
    feed.write_text(xml, encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(cli, ["ingest"]).exit_code == 0
    out = runner.invoke(cli, ["check", "--at", "2026-11-30T07:05:00+05:00", "--json"])
    data = json.loads(out.output)
    assert "escape" not in {f["code"] for f in data["errors"]}, data["errors"]
    assert out.exit_code == 0, data["errors"]
    # an escape the template wrote is still caught in that edition
    tpl = override(
        project / "tpl", "partials/header.mjml.j2", '<p class="m">', '<p class="m">Edition\\n '
    )
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text() + f'\n[render]\ntemplates = "{tpl}"\n')
    out = runner.invoke(cli, ["check", "--at", "2026-11-30T07:05:00+05:00", "--json"])
    assert "escape" in {f["code"] for f in json.loads(out.output)["errors"]}


def test_check_reports_the_budget_and_the_size_on_the_wire(project):
    """`check` gives each variant's decoded HTML (the budget) and the HTML part on
    the wire with and without 8BITMIME; the 8BITMIME figure is what the outbox then
    writes for that variant (within 1 %: the real unsubscribe link, the edition's
    own archive page and the reader's name differ from check's stand-ins)."""
    import re

    runner = CliRunner()
    assert runner.invoke(cli, ["subscribers", "import", "subscribers.csv"]).exit_code == 0
    assert runner.invoke(cli, ["ingest"]).exit_code == 0
    at = "2026-11-30T07:05:00+05:00"
    text = runner.invoke(cli, ["check", "--at", at])
    assert text.exit_code == 0, text.output
    assert re.search(
        r"HTML \d+ bytes \(the budget\), on the wire \d+ \(8BITMIME\) or \d+ ", text.output
    )
    out = runner.invoke(cli, ["check", "--at", at, "--json"])
    variants = json.loads(out.output)["variants"]
    assert variants
    for v in variants.values():
        # 8bit: the same octets, CR LF line ends; without 8BITMIME quoted-printable
        # for this English edition, larger
        assert v["bytes"] < v["wire_bytes_8bitmime"] < v["bytes"] * 1.02
        assert v["wire_encoding_7bit"] == "quoted-printable"
        assert v["wire_bytes_7bit"] > v["wire_bytes_8bitmime"]
    assert runner.invoke(cli, ["run", "--at", at]).exit_code == 0
    sent = []
    for eml in (project / "outbox").rglob("*.eml"):
        body = eml.read_bytes().split(b"Content-Type: text/html", 1)[1]
        part = body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
        sent.append(len(part) + 2)  # the part's last CR LF belongs to the boundary line
    for key, v in variants.items():
        wire = v["wire_bytes_8bitmime"]
        assert any(abs(size - wire) < wire / 100 for size in sent), (key, v, sent)
