"""The edition in headless Chromium (Debian's package, driven by Playwright).

Runs in CI, never skipped there: without Chromium these tests fail when
CI=true (scripts/system-deps.sh, run by `make test`, installs it). Elsewhere
they are skipped with a message saying how to install it.
"""

import pytest

from newsletter.preview.screenshot import browser, open_page
from newsletter.render.compile import render_html
from tests.helpers import require_chromium
from tests.render_data import load_content

pytestmark = pytest.mark.browser
ENGINES = ["premailer", "css-inline"]


@pytest.fixture(scope="module")
def chromium():
    require_chromium()
    with browser() as b:
        yield b


@pytest.fixture(scope="module")
def view(chromium, editions):
    """view(engine, width, dark=False): the 30-story edition loaded once per variation."""
    pages = {}

    def get(engine, width, dark=False):
        key = (engine, width, dark)
        if key not in pages:
            pages[key] = open_page(
                chromium, editions[engine], width, images="placeholder", dark=dark
            )
        return pages[key]

    yield get
    for page in pages.values():
        page.close()


@pytest.fixture(scope="module")
def editions():
    c = load_content(30)
    return {engine: render_html(c, inliner=engine) for engine in ENGINES}


@pytest.fixture(scope="module")
def short():
    """Fewer stories where a full-page screenshot is taken (they are slow)."""
    c = load_content(8)
    return {engine: render_html(c, inliner=engine) for engine in ENGINES}


def boxes(page, selector):
    return page.evaluate(
        """sel => [...document.querySelectorAll(sel)].map(e => {
            const r = e.getBoundingClientRect();
            return {x: r.left, y: r.top, w: r.width, h: r.height, right: r.right, bottom: r.bottom};
        })""",
        selector,
    )


def card_boxes(page):
    """Per card after the lead: the image box (None without an image) and the text box."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.c:not(.lead)')].map(card => {
            const box = e => { if (!e) return null; const r = e.getBoundingClientRect();
                return {x: r.left, y: r.top, w: r.width, h: r.height}; };
            return [box(card.querySelector('.ci')), box(card.querySelector('.cb'))];
        })"""
    )


def no_horizontal_scroll(page):
    return page.evaluate(
        "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        " && document.body.scrollWidth <= document.documentElement.clientWidth"
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_at_375_px_no_horizontal_scroll_and_the_cards_stack(view, engine):
    page = view(engine, 375)
    assert no_horizontal_scroll(page)
    images, texts = boxes(page, ".c .ci"), boxes(page, ".c:not(.lead) .cb")
    assert len(images) == 26 and len(texts) == 29  # 29 cards after the lead, 3 without image
    for i, b in card_boxes(page):
        assert b["w"] >= 330  # full width: 375 minus 2 x 20 px padding, give or take
        if i:
            assert b["y"] >= i["y"] + i["h"] - 1  # text under the image
            assert abs(i["x"] - b["x"]) < 1 and i["w"] >= 330


@pytest.mark.parametrize("engine", ENGINES)
def test_at_600_px_image_and_text_sit_side_by_side(view, engine):
    page = view(engine, 600)
    assert no_horizontal_scroll(page)
    cards = card_boxes(page)
    assert sum(1 for i, _ in cards if i) == 26
    for i, b in cards:
        if i:
            assert b["x"] >= i["x"] + i["w"] - 1  # text right of the image
            assert abs(b["y"] - i["y"]) < 1


def test_readable_at_320_px(view):
    page = view("premailer", 320)
    assert no_horizontal_scroll(page)
    sizes = page.evaluate(
        "() => [...document.querySelectorAll('.s')]"
        ".map(e => parseFloat(getComputedStyle(e).fontSize))"
    )
    assert sizes and min(sizes) >= 16
    assert min(b["w"] for b in boxes(page, ".s")) >= 270


@pytest.mark.parametrize("width", [375, 600])
def test_touch_targets_are_at_least_44_px(view, width):
    page = view("premailer", width)
    targets = page.evaluate(
        """() => [...document.querySelectorAll('a')].map(a => {
            const r = (a.querySelector('img') || a).getBoundingClientRect();
            return [a.textContent.trim().slice(0, 30) || a.href, r.width, r.height];
        })"""
    )
    assert len(targets) > 60  # two per story (title, "Read more"), the footer's
    small = [t for t in targets if t[1] < 44 or t[2] < 44]
    assert small == []


def test_images_scale_to_their_box(view):
    page = view("premailer", 375)
    widths = page.evaluate(
        "() => [...document.images].map(i => [i.getBoundingClientRect().width, i.naturalWidth])"
    )
    assert widths and all(w <= 335.5 and natural == 1200 for w, natural in widths)


@pytest.mark.parametrize("engine", ENGINES)
def test_dark_mode_styles_apply(chromium, short, engine):
    colours = {}
    for dark in (False, True):
        page = open_page(chromium, short[engine], 375, images="placeholder", dark=dark)
        colours[dark] = page.evaluate(
            """() => [getComputedStyle(document.body).backgroundColor,
                      getComputedStyle(document.querySelector('.main')).backgroundColor,
                      getComputedStyle(document.querySelector('.ct a')).color,
                      getComputedStyle(document.querySelector('.s')).color]"""
        )
        page.close()
    assert colours[False] == [
        "rgb(243, 244, 246)",
        "rgb(255, 255, 255)",
        "rgb(31, 35, 40)",
        "rgb(31, 35, 40)",
    ]
    assert colours[True] == [
        "rgb(13, 17, 23)",
        "rgb(22, 27, 34)",
        "rgb(230, 237, 243)",
        "rgb(230, 237, 243)",
    ]


@pytest.mark.parametrize("width", [375, 600])
def test_both_inliners_look_the_same(chromium, short, width):
    shots = []
    for engine in ENGINES:
        page = open_page(chromium, short[engine], width, images="placeholder")
        shots.append(page.screenshot(full_page=True))
        page.close()
    assert shots[0] == shots[1]


@pytest.fixture(scope="module")
def russian():
    """The 30-story edition in Russian, the rates as banks print them (the demo's
    weekly-ru): the longest figures and words of any edition."""
    c = load_content(30)
    c.digest.language = "ru"
    c.digest.rates_convention = "bank"
    return render_html(c)


@pytest.mark.parametrize("width", [320, 375, 600])
@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_the_russian_edition_at_each_width(chromium, russian, width, dark):
    """No horizontal scroll; in the rates table a change never breaks ("▲ +0,05"
    over a lone "%" at 320 px) and a figure breaks only after its "=" ("1 USD =" /
    "12 042 UZS", never "12 042" / "UZS"); dark mode reaches the new parts."""
    page = open_page(chromium, russian, width, images="placeholder", dark=dark)
    try:
        assert no_horizontal_scroll(page)
        rows = page.evaluate(
            """() => [...document.querySelectorAll('.rt tr')].map(tr => {
                // the lines a piece of text is laid out on
                const lines = (node, start, end) => {
                    const range = document.createRange();
                    if (start === undefined) range.selectNodeContents(node);
                    else { range.setStart(node, start); range.setEnd(node, end); }
                    return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
                };
                const figure = tr.cells[1].firstChild, text = figure.data;
                const eq = text.indexOf('=') + 1;
                return {figure: text, change: tr.cells[2].textContent,
                        change_lines: lines(tr.cells[2].querySelector('span[role=img]')),
                        // each side of the "=" on one line
                        sides: [lines(figure, 0, eq), lines(figure, eq + 1, text.length)]};
            })"""
        )
        assert len(rows) == 5
        for row in rows:
            assert row["change_lines"] == 1, row
            assert row["sides"] == [1, 1], row
        colours = page.evaluate(
            """() => ['.hd a', '.gr', '.toc li', '.rt td'].map(s =>
                getComputedStyle(document.querySelector(s)).color)"""
        )
        expected = "rgb(230, 237, 243)" if dark else "rgb(31, 35, 40)"
        assert colours == [expected] * 4
    finally:
        page.close()
