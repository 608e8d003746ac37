"""Values in MJML attributes survive mjml-python 1.4.2 (MRML 6) unchanged.

MRML writes attribute values with Rust debug escaping: a newline becomes a
literal ``\\n``, an emoji's variation selector ``\\u{fe0f}``, ``"`` ``\\"``.
``mjattr`` must neutralise all of it, in MJML attributes and in the raw HTML
inside ``<mj-text>`` alike.
"""

import unicodedata
from dataclasses import replace

import lxml.html
import mjml
import pytest

from newsletter.render.compile import render_html
from newsletter.render.env import _is_noncharacter, mjattr
from tests.render_data import load_content

TRICKY = [
    'Say "hello"',
    "two\nlines\r\nand\ttabs",
    "I ❤️ Almaty",
    "Flags 🇰🇿 🇺🇿 🇰🇬",
    "Family 👨‍👩‍👧 and skin 👍🏽",
    "back\\slash and <tags> & ampersands",
    "Combining é and Hangul filler \u3164 and ﾞ",
    "Кыргызстан — Қазақстан — Oʻzbekiston",
]


def expected(text: str) -> str:
    """What the attribute should say: whitespace folded, only HTML-illegal chars gone."""
    return "".join(
        ch
        for ch in " ".join(text.split())
        if unicodedata.category(ch) not in ("Cc", "Cs") and not _is_noncharacter(ch)
    )


def compiled_alt(value: str) -> str:
    src = (
        '<mjml><mj-body><mj-section><mj-column><mj-image src="https://x.example/a.jpg" '
        f'alt="{mjattr(value)}" /><mj-text><a href="https://x.example/" title="{mjattr(value)}">'
        "x</a></mj-text></mj-column></mj-section></mj-body></mjml>"
    )
    doc = lxml.html.document_fromstring(mjml.mjml2html(src))
    (alt,) = doc.xpath("//img/@alt")
    (title,) = doc.xpath("//a/@title")
    assert alt == title
    return alt


@pytest.mark.parametrize("value", TRICKY)
def test_tricky_values_round_trip_through_mrml(value):
    assert compiled_alt(value) == expected(value)


def test_unescaped_values_would_break():
    """The reason mjattr exists: without it MRML mangles these values."""
    src = (
        '<mjml><mj-body><mj-section><mj-column><mj-image src="https://x.example/a.jpg" '
        'alt="I ❤️ it\nnow" /></mj-column></mj-section></mj-body></mjml>'
    )
    out = mjml.mjml2html(src)
    assert "\\u{fe0f}" in out and "\\n" in out


def test_every_code_point_round_trips():
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(cps), 20_000):
        text = "".join(map(chr, cps[start : start + 20_000]))
        assert compiled_alt(text) == expected(text), f"block starting at U+{cps[start]:04X}"


def test_plain_values_pass_through_untouched():
    assert (
        mjattr("https://steppe-ledger.example/a-b/?x=1") == "https://steppe-ledger.example/a-b/?x=1"
    )
    assert mjattr("a&b") == "a&amp;b"


@pytest.mark.parametrize("engine", ["premailer", "css-inline"])
def test_titles_and_alt_texts_reach_the_email_intact(engine):
    c = load_content(3)
    a = c.articles[1]
    c.articles[1] = replace(
        a,
        title='The "Silk Road" ❤️ 🇰🇿\nrevival',
        image_alt='A train at "Khorgos" 🚆 ❤️\nat dawn',
    )
    doc = lxml.html.document_fromstring(render_html(c, inliner=engine))
    card = [x for x in doc.xpath('//div[contains(@class, "c")]') if x.get("class") == "c"][0]
    (img,) = card.xpath(".//img")
    assert img.get("alt") == 'A train at "Khorgos" 🚆 ❤️ at dawn'
    assert card.xpath('.//h3[@class="ct"]/a')[0].text_content() == ('The "Silk Road" ❤️ 🇰🇿\nrevival')
    more = card.xpath('.//a[@class="rm"]')[0]
    assert more.get("aria-label") == 'Read more: The "Silk Road" ❤️ 🇰🇿 revival'
    assert "\\u{" not in lxml.html.tostring(doc, encoding="unicode")
