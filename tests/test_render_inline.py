"""Both CSS inliners, configured for MJML output, behave the same."""

import re

import lxml.etree
import lxml.html
import mjml
import pytest

from newsletter.render.compile import compile_mjml, render_html
from newsletter.render.inline import inline_css
from tests.fakes.http import LoopbackServer, Reply
from tests.render_data import load_content

ENGINES = ["premailer", "css-inline"]


def styles(html):
    return "\n".join(s.text_content() for s in lxml.html.document_fromstring(html).xpath("//style"))


def declarations(style):
    """A style attribute as a set of (property, value): order and spacing aside."""
    out = set()
    for part in style.split(";"):
        if ":" in part:
            k, v = part.split(":", 1)
            value = re.sub(r"(?<![\d.])0px\b", "0", " ".join(v.split()).lower())
            out.add((k.strip().lower(), value))
    return out


@pytest.mark.parametrize("engine", ENGINES)
def test_media_queries_important_and_style_blocks_are_kept(engine):
    compiled = compile_mjml(load_content(5))
    out = inline_css(compiled, engine)
    before, after = styles(compiled), styles(out)
    for rule in (
        "@media only screen and (max-width: 480px)",
        "@media (prefers-color-scheme: dark)",
        "max-width: 100% !important",
        "background: #0d1117 !important",
        "@media only screen and (min-width:480px)",  # MJML's own column widths
    ):
        assert rule in before and rule in after, rule
    assert out.count("<style") == compiled.count("<style")
    assert out.startswith("<!doctype html>")


@pytest.mark.parametrize("engine", ENGINES)
def test_styles_are_inlined_but_no_attributes_added(engine):
    out = render_html(load_content(5), inliner=engine)
    doc = lxml.html.document_fromstring(out)
    title_link = doc.xpath('//h3[@class="ct"]/a')[0]
    assert ("text-decoration", "none") in declarations(title_link.get("style"))
    thumbs = doc.xpath('//div[@class="ci"]//img')
    assert thumbs and all(i.get("width") == "180" for i in thumbs)  # what Outlook sizes by
    assert not doc.xpath('//div[@class="ci"][@width]')
    # MJML's reset is left in <style>, not copied onto every cell
    assert "mso-table-lspace" not in " ".join(doc.xpath("//td/@style"))
    assert "data-premailer" not in out and "data-css-inline" not in out


@pytest.mark.parametrize("engine", ENGINES)
def test_no_network_even_for_linked_fonts_and_stylesheets(engine):
    with LoopbackServer(
        lambda req: Reply(200, b"p { color: red; }", {"Content-Type": "text/css"})
    ) as srv:
        src = (
            f'<mjml><mj-head><mj-font name="Ubuntu" href="{srv.url("/font.css")}" />'
            '<mj-attributes><mj-all font-family="Ubuntu, Arial" /></mj-attributes></mj-head>'
            "<mj-body><mj-section><mj-column><mj-text><p>x</p></mj-text></mj-column>"
            "</mj-section></mj-body></mjml>"
        )
        compiled = mjml.mjml2html(src)
        assert srv.url("/font.css") in compiled  # MJML links the font
        out = inline_css(compiled, engine)
    assert srv.requests == []
    assert f'href="{srv.url("/font.css")}"' in out  # and the link stays for the clients


def test_a_lowercase_doctype_survives():
    compiled = mjml.mjml2html("<mjml><mj-body></mj-body></mjml>")
    assert compiled.startswith("<!doctype html>")
    for engine in ENGINES:
        assert inline_css(compiled, engine).startswith("<!doctype html>\n<html")


def test_both_engines_give_the_same_result():
    """Same text, same links, and the same declarations on every element."""
    compiled = compile_mjml(load_content(30, layout="tags"))
    a, b = (lxml.html.document_fromstring(inline_css(compiled, e)) for e in ENGINES)
    assert " ".join(a.text_content().split()) == " ".join(b.text_content().split())
    # css-inline parses like a browser and adds the implied <tbody>; lxml does not
    ea, eb = ([e for e in d.iter(tag=lxml.etree.Element) if e.tag != "tbody"] for d in (a, b))
    assert [e.tag for e in ea] == [e.tag for e in eb]
    comments = [[c.text for c in d.iter(tag=lxml.etree.Comment)] for d in (a, b)]
    assert comments[0] == comments[1]  # the Outlook conditionals
    for x, y in zip(ea, eb, strict=True):
        assert {k: v for k, v in x.attrib.items() if k != "style"} == {
            k: v for k, v in y.attrib.items() if k != "style"
        }
        assert declarations(x.get("style", "")) == declarations(y.get("style", "")), (
            x.tag,
            x.get("class"),
        )


def test_premailer_defaults_would_break_mjml():
    """Why the configuration matters: stock premailer strips !important."""
    from premailer import Premailer

    compiled = compile_mjml(load_content(2))
    stock = Premailer(compiled, allow_network=False).transform()
    ours = inline_css(compiled, "premailer")
    dark = re.compile(r"@media \(prefers-color-scheme: dark\)\s*\{[^@]*")
    assert "!important" not in dark.search(styles(stock)).group(0)
    assert "!important" in dark.search(styles(ours)).group(0)
    assert not stock.lower().startswith("<!doctype")
