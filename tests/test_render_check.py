"""The preflight checks on one finished message (render/check.py)."""

import pytest

from newsletter.render.check import check_message
from newsletter.render.compile import render
from newsletter.render.personalize import PLACEHOLDERS, personalize
from tests.render_data import load_content

UNSUB = "https://steppe-ledger.example/newsletter/unsubscribe/abc.def"
HEADERS = {
    "List-Unsubscribe": f"<{UNSUB}>, <mailto:unsubscribe@steppe-ledger.example>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def message(count=5, **changes):
    r = render(load_content(count))
    values = dict.fromkeys(PLACEHOLDERS, UNSUB)
    msg = {
        "subject": r.subject,
        "html": personalize(r.html, values, html_part=True),
        "text": personalize(r.text, values, html_part=False),
        "headers": dict(HEADERS),
        "unsubscribe_url": UNSUB,
        "articles": count,
        "max_bytes": 100_000,
        "notes": r.warnings,
    }
    msg.update(changes)
    return msg


def codes(findings, level="error"):
    return sorted({f.code for f in findings if f.level == level})


def test_a_good_message_passes():
    findings = check_message(**message(30))
    assert findings == []


def test_over_budget():
    m = message()
    found = check_message(**{**m, "max_bytes": len(m["html"].encode()) - 1})
    assert codes(found) == ["size"]


def test_missing_alt_text():
    m = message()
    html = m["html"].replace('alt="', 'data-alt="', 1)
    found = check_message(**{**m, "html": html})
    assert codes(found) == ["alt"]
    decorative = html.replace('data-alt="', 'role="presentation" data-alt="', 1)
    assert codes(check_message(**{**m, "html": decorative})) == []


@pytest.mark.parametrize(
    "change",
    [
        lambda m: {"html": m["html"].replace(f'href="{UNSUB}"', 'href="https://x.example/"')},
        lambda m: {"text": m["text"].replace(UNSUB, "")},
        lambda m: {"headers": {}},
        lambda m: {"headers": {"List-Unsubscribe": "<mailto:u@x.example>"}},
        lambda m: {"headers": {"List-Unsubscribe": f"<{UNSUB}>"}},
    ],
    ids=["html-link", "text-url", "no-header", "mailto-only", "no-one-click"],
)
def test_missing_unsubscribe(change):
    m = message()
    assert codes(check_message(**{**m, **change(m)})) == ["unsubscribe"]


@pytest.mark.parametrize("leftover", ["{{ title }}", "{% endif %}", "%%name%%", "<mj-text>"])
def test_unresolved_template_variables(leftover):
    m = message()
    html = m["html"].replace("Read more: ", f"Read more {leftover}: ", 1)
    assert codes(check_message(**{**m, "html": html})) == ["unresolved"]
    text = m["text"] + leftover
    assert codes(check_message(**{**m, "text": text})) == ["unresolved"]


def test_css_in_style_blocks_is_not_a_leftover():
    m = message()
    html = m["html"].replace("</style>", ".x{width:100%}</style>", 1)
    assert codes(check_message(**{**m, "html": html})) == []


def test_empty_edition():
    assert "empty" in codes(check_message(**message(articles=0)))


@pytest.mark.parametrize(
    "href", ["/relative/path", "#top", "javascript:alert(1)", "//cdn.example/x", "http://", ""]
)
def test_links_must_be_absolute_http(href):
    m = message()
    html = m["html"].replace('<a class="rm" href="', f'<a class="rm" href="{href}" data-x="', 1)
    assert codes(check_message(**{**m, "html": html})) == ["link"]


def test_mailto_links_are_allowed_and_relative_images_are_not():
    m = message()
    html = m["html"].replace("</div></body>", '<a href="mailto:ed@x.example">m</a></div></body>')
    assert codes(check_message(**{**m, "html": html})) == []
    html = m["html"].replace('src="https://', 'src="/', 1)
    assert codes(check_message(**{**m, "html": html})) == ["link"]


def test_warnings_images_without_width_long_subjects_and_overflow():
    m = message()
    html = m["html"].replace(' width="180" height="101" alt=', ' width="180" alt=', 1)
    found = check_message(
        **{
            **m,
            "html": html,
            "subject": "x" * 79,
            "notes": ["3 of 30 stories moved to the More stories list"],
        }
    )
    assert codes(found) == []
    assert codes(found, "warning") == ["image-size", "overflow", "subject"]


def test_html_links_missing_from_the_text_part_are_warned_about():
    m = message()
    url = load_content(5).articles[2].url
    found = check_message(**{**m, "text": m["text"].replace(url, "")})
    assert codes(found, "warning") == ["text-links"]
