"""The normalization rules every source shares, and hostile HTML."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.articles import normalize
from newsletter.articles.normalize import Item, ItemNormalizer

WHEN = datetime(2026, 11, 28, 6, 30, tzinfo=UTC)


def item(n=1, **kw):
    base = dict(
        position=n,
        uid=f"https://site.example/?p={n}",
        link=f"https://site.example/story-{n}/",
        title=f"Story {n}",
        summary="<p>Short summary.</p>",
        published=WHEN,
    )
    base.update(kw)
    return Item(**base)


def one(it, **kw):
    norm = ItemNormalizer("site", **kw)
    norm.add(it)
    return norm


# --------------------------------------------------------------------------- ids and URLs


def test_id_is_the_guid_else_the_canonical_url():
    assert one(item(uid="guid-1")).articles[0].uid == "guid-1"
    a = one(item(uid="", link="https://Site.Example:443/a/?utm_source=x#top")).articles[0]
    assert a.uid == a.url == "https://site.example/a/"


def test_tracking_parameters_and_fragment_are_stripped_real_ones_kept():
    url = normalize.clean_url(
        "https://site.example/news/?p=5&utm_source=rss&utm_medium=feed&fbclid=abc&gclid=1"
        "&mc_cid=2&lang=ru#comments"
    )
    assert url == "https://site.example/news/?p=5&lang=ru"
    assert normalize.clean_url("https://x.example/a?ref=1&sid=9", ["REF"]) == (
        "https://x.example/a?sid=9"
    )


def test_non_http_links_are_refused_with_a_message():
    norm = one(item(link="javascript:alert(1)", title="Bad"))
    assert norm.articles == []
    assert norm.problems == [
        "site: item 1 ('Bad'): skipped, link is not an http(s) URL: 'javascript:alert(1)'"
    ]


def test_relative_links_resolve_against_the_source():
    norm = one(item(link="/2026/11/story/"), base_url="https://site.example/feed/")
    assert norm.articles[0].url == "https://site.example/2026/11/story/"


def test_a_very_long_guid_is_hashed_to_fit():
    a = one(item(uid="x" * 5000)).articles[0]
    assert a.uid.startswith("sha256:") and len(a.uid) < 100


# --------------------------------------------------------------------------- titles, authors


def test_titles_unescape_entities_and_stay_on_one_line():
    a = one(item(title="Wth&#8230; reading\n  books? &amp;#8217;s <b>bold</b>")).articles[0]
    assert a.title == "Wth… reading books? ’s bold"
    assert "\n" not in a.title


def test_alt_text_is_one_line_and_falls_back_to_the_title():
    a = one(item(image_url="https://img.example/a.jpg", image_alt="Line one\nline two")).articles[0]
    assert a.image_alt == "Line one line two"
    b = one(item(image_url="https://img.example/a.jpg")).articles[0]
    assert b.image_alt == "Story 1"
    c = one(item(image_url="javascript:alert(1)")).articles[0]
    assert (c.image_url, c.image_alt) == ("", "")


def test_author_from_rss_email_form():
    a = one(item(author="desk@site.example (Ainur Bekova)")).articles[0]
    assert a.author == "Ainur Bekova"


def test_control_characters_and_lone_surrogates_never_reach_the_store():
    a = one(item(title="Nul\x00here\ud800", summary="<p>a\x00b</p>")).articles[0]
    assert a.title == "Nulhere"
    assert a.summary_text == "ab"


# --------------------------------------------------------------------------- summaries

HOSTILE = """
<p onclick="steal()">Hello <b>world</b><script>alert(1)</script></p>
<style>p { display: none }</style>
<iframe src="https://evil.example/"></iframe>
<a href="javascript:alert(1)">js</a> <a href="data:text/html,x">data</a>
<a href="https://ok.example/" onmouseover="x()">ok</a>
<img src="x" onerror="alert(1)"><svg onload="alert(1)"><circle/></svg>
<form action="https://evil.example"><input name="p"></form>
<object data="x.swf"></object><embed src="x.swf">
<a href=" JaVaScRiPt:alert(1)">spaced</a>
<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></math>
"""


def test_hostile_html_is_sanitized():
    text, safe = normalize.summarize(HOSTILE, 10_000)
    lowered = safe.lower()
    for bad in (
        "<script",
        "alert",
        "<style",
        "<iframe",
        "onclick",
        "onerror",
        "onload",
        "onmouseover",
        "javascript:",
        "data:",
        "<img",
        "<svg",
        "<form",
        "<input",
        "<object",
        "<embed",
        "<math",
    ):
        assert bad not in lowered, bad
    assert '<a href="https://ok.example/" rel="noopener noreferrer">ok</a>' in safe
    assert "<b>world</b>" in safe
    assert "alert" not in text and "display" not in text
    assert text.startswith("Hello world")


def test_wordpress_footer_and_more_marker_are_dropped():
    raw = (
        "<p>Body text goes here [&hellip;]</p>"
        '<p>The post <a href="https://s/a">A</a> appeared first on <a href="https://s">S</a>.</p>'
    )
    text, safe = normalize.summarize(raw, 400)
    assert text == "Body text goes here…"
    assert safe == "<p>Body text goes here…</p>"


def test_summary_is_cut_at_a_word_boundary_with_an_ellipsis_in_text_and_html():
    raw = (
        '<p>Energy ministers from <a href="https://s.example/kz">Kazakhstan</a> and '
        "<em>Uzbekistan</em> agreed in Tashkent to study a shared reserve market.</p>"
        "<p>A second paragraph that will not fit.</p>"
    )
    text, safe = normalize.summarize(raw, 60)
    assert len(text) <= 60
    assert text.endswith("…")
    assert text == "Energy ministers from Kazakhstan and Uzbekistan agreed in…"
    assert safe == (
        '<p>Energy ministers from <a href="https://s.example/kz" rel="noopener noreferrer">'
        "Kazakhstan</a> and <em>Uzbekistan</em> agreed in…</p>"
    )
    assert normalize.html_to_text(safe) == text


def test_summary_length_is_configurable():
    long = "<p>" + " ".join(["слово"] * 200) + "</p>"
    short = one(item(summary=long), summary_length=50).articles[0]
    longer = one(item(summary=long), summary_length=300).articles[0]
    assert len(short.summary_text) <= 50 < len(longer.summary_text) <= 300
    assert short.summary_text.endswith("слово…")


@given(st.text(alphabet=st.sampled_from("ab  қүөәʻ,.\n"), max_size=300), st.integers(10, 120))
def test_truncate_never_exceeds_the_limit_and_keeps_a_prefix(text, limit):
    folded = " ".join(text.split())
    out = normalize.truncate(folded, limit)
    assert len(out) <= limit
    if out != folded:
        assert out.endswith("…")
        assert folded.startswith(out[:-1])


@given(
    st.lists(
        st.sampled_from(
            [
                "Қазақстан",
                "oʻzbek,",
                "tilida.",
                "<b>new</b>",
                "<p>x</p>",
                "a &amp; b",
                "<br>",
                "<ul><li>one</li><li>two;</li></ul>",
                '<a href="https://x.example/">link</a>',
            ]
        ),
        max_size=60,
    ),
    st.integers(20, 200),
)
def test_cut_html_says_the_same_as_cut_text(words, limit):
    text, safe = normalize.summarize(" ".join(words), limit)
    assert normalize.html_to_text(safe) == text
    assert len(text) <= limit


# --------------------------------------------------------------------------- letters, tags, times


def test_cyrillic_kazakh_and_uzbek_letters_survive():
    title = "Қазақстан: ғылым, ұлттық үміт. Oʻzbekiston gʻalabasi. Кыргызстан ёлка"
    a = one(
        item(title=title, summary=f"<p>{title}</p>", tags=["Қазақстан", "Oʻzbekiston"])
    ).articles[0]
    assert a.title == title
    assert a.summary_text == title
    assert [t.name for t in a.tags] == ["Oʻzbekiston", "Қазақстан"]
    assert [t.slug for t in a.tags] == ["oʻzbekiston", "қазақстан"]


def test_decomposed_letters_are_composed():
    decomposed = "Қазақстан".replace("й", "и\u0306") + " и\u0306"
    a = one(item(title=decomposed)).articles[0]
    assert a.title == "Қазақстан й"


def test_tags_case_fold_to_one_slug_first_spelling_names_it():
    a = one(item(tags=["Kazakhstan", "kazakhstan", "KAZAKHSTAN", "Oil &amp; Gas", "  "])).articles[
        0
    ]
    assert [(t.slug, t.name) for t in a.tags] == [
        ("kazakhstan", "Kazakhstan"),
        ("oil-gas", "Oil & Gas"),
    ]


def test_pinned_by_tag_or_flag():
    assert one(item(tags=["Featured"])).articles[0].pinned
    assert one(item(pinned=True)).articles[0].pinned
    assert not one(item(tags=["Kazakhstan"])).articles[0].pinned
    assert one(item(tags=["Top"]), pinned_tags=["top"]).articles[0].pinned


def test_times_are_aware_utc():
    almaty = timezone(timedelta(hours=5))
    a = one(
        item(
            published=datetime(2026, 11, 28, 11, 30, tzinfo=almaty),
            updated=datetime(2026, 11, 28, 12, 0),
        )
    ).articles[0]
    assert a.published_at == WHEN and a.published_at.tzinfo == UTC
    assert a.updated_at == datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Sat, 28 Nov 2026 11:30:00 +0500", WHEN),
        ("2026-11-28T11:30:00+05:00", WHEN),
        ("2026-11-28T06:30:00Z", WHEN),
        ("2026-11-28 06:30:00", WHEN),
        ("Sat, 28 Nov 2026 06:30:00 GMT", WHEN),
        ("not a date", None),
        ("", None),
    ],
)
def test_parse_time(raw, expected):
    assert normalize.parse_time(raw) == expected


# --------------------------------------------------------------------------- items


@pytest.mark.parametrize(
    "kw, missing",
    [
        ({"link": ""}, "link"),
        ({"title": "  "}, "title"),
        ({"published": None}, "date"),
        ({"link": "", "published": None}, "link or date"),
    ],
)
def test_items_without_link_title_or_date_are_skipped_by_name(kw, missing):
    norm = one(item(7, **kw))
    assert norm.articles == []
    (problem,) = norm.problems
    assert problem.startswith("site: item 7")
    assert problem.endswith(f"skipped, no {missing}")


def test_duplicate_guids_and_links_keep_the_first():
    norm = ItemNormalizer("site")
    norm.add(item(1, title="First"))
    norm.add(item(2, uid="https://site.example/?p=1", title="Second"))
    norm.add(item(3, link="https://site.example/story-1/?utm_source=x", title="Third"))
    assert [a.title for a in norm.articles] == ["First"]
    assert norm.problems == [
        "site: item 2 ('Second'): skipped, duplicate guid https://site.example/?p=1 "
        "(same as item 1)",
        "site: item 3 ('Third'): skipped, duplicate link https://site.example/story-1/ "
        "(same as item 1)",
    ]


def test_image_from_content_when_the_feed_has_none_skipping_emoji():
    content = (
        '<p><img class="wp-smiley" src="https://s.w.org/images/core/emoji/15/72x72/1f600.png">'
        '<img src="https://site.example/pixel.gif" width="1" height="1">'
        '<img src="https://site.example/up/photo.jpg" alt="Tashkent &amp; ministers"></p>'
    )
    a = one(item(content=content)).articles[0]
    assert a.image_url == "https://site.example/up/photo.jpg"
    assert a.image_alt == "Tashkent & ministers"
