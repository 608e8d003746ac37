"""Every source over a real HTTP server on 127.0.0.1: RSS, Atom, WordPress REST, JSON."""

import contextlib
import copy
import gzip
import json
import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import unquote

import feedparser
import pytest
from click.testing import CliRunner

from newsletter.articles.ingest import ingest
from newsletter.articles.normalize import ItemNormalizer
from newsletter.articles.sources import rss
from newsletter.articles.sources.jsonfile import JsonSource
from newsletter.cli import cli
from newsletter.config import ArticlesConfig, Config, SourceConfig
from newsletter.models import SourceState
from tests.fakes.http import LoopbackServer, Reply
from tests.helpers import DATA, ROOT

FEEDS = DATA / "feeds"
WP_SAMPLE = DATA / "wp-rest" / "demo.wp-api.org_posts_embed_sample.json"
NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def shared_server():
    """One loopback server for the module: stopping one costs half a second."""
    box = {}
    with LoopbackServer(lambda req: box["handler"](req)) as srv:
        srv.box = box
        yield srv


@pytest.fixture
def loopback(shared_server):
    @contextlib.contextmanager
    def use(handler):
        shared_server.box["handler"] = handler
        shared_server.requests.clear()
        yield shared_server

    return use


def run(store, *sources):
    return ingest(store, Config(), list(sources))


def rss_doc(items, channel="Site"):
    body = "".join(items)
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/">'
        f"<channel><title>{channel}</title><link>https://site.example/</link>{body}"
        "</channel></rss>"
    ).encode()


def rss_item(n, *, title=None, cats=("Kazakhstan",), when=None, desc=None, link=None):
    when = when or NOW - timedelta(hours=n)
    cats_xml = "".join(f"<category><![CDATA[{c}]]></category>" for c in cats)
    return (
        f"<item><title>{title or f'Story {n}'}</title>"
        f"<link>{link or f'https://site.example/story-{n}/'}</link>"
        f"<pubDate>{format_datetime(when)}</pubDate><dc:creator>Desk</dc:creator>{cats_xml}"
        f'<guid isPermaLink="false">https://site.example/?p={n}</guid>'
        f"<description><![CDATA[{desc or f'<p>Summary {n}.</p>'}]]></description></item>"
    )


def serve(body, content_type="application/rss+xml; charset=UTF-8", **headers):
    return lambda req: Reply(200, body, {"Content-Type": content_type, **headers})


# --------------------------------------------------------------------------- RSS


def test_real_wordpress_feed_keeps_every_category_as_a_tag_and_unescapes_titles(
    sqlite_store, loopback
):
    body = (FEEDS / "laminas_wordpress-rss2-dc-atom.xml").read_bytes()
    with loopback(serve(body)) as srv:
        report = run(sqlite_store, SourceConfig(name="norm", url=srv.url("/feed/")))
    (rep,) = report.sources
    assert (rep.error, rep.fetched, rep.stored.inserted) == ("", 10, 10)
    got = {a.uid: a for a in sqlite_store.find_articles()}
    first = got["http://www.norm2782.com/?p=114"]
    assert first.title == "Wth… reading books?"
    assert [t.name for t in first.tags] == ["New Zealand", "Personal", "Programming", "Study"]
    assert first.author == "norm2782"
    assert first.published_at == datetime(2009, 3, 2, 8, 9, 33, tzinfo=UTC)
    assert "don’t" in first.summary_text


def test_enclosure_and_content_images(sqlite_store, loopback):
    body = (FEEDS / "rsparser_natasha.xml").read_bytes()
    with loopback(serve(body)) as srv:
        run(sqlite_store, SourceConfig(name="natasha", url=srv.url("/feed/")))
    a = {a.uid: a for a in sqlite_store.find_articles()}["https://www.natashatherobot.com/?p=6602"]
    assert a.image_url.startswith("https://www.natashatherobot.com/wp-content/uploads/")
    assert {"passkit", "passkit-pass", "iphone"} <= a.tag_slugs
    assert a.author == "Natasha Murashev"


@pytest.mark.parametrize(
    "path",
    [
        FEEDS / "laminas_wordpress-rss2-dc-atom.xml",
        FEEDS / "rsparser_natasha.xml",
        ROOT / "newsletter" / "samples" / "feed.xml",
    ],
    ids=lambda p: p.name,
)
def test_fast_reader_and_feedparser_agree_on_real_feeds(path):
    body = path.read_bytes()
    fast, slow = ItemNormalizer("s"), ItemNormalizer("s")
    for it in rss._rss_items(body):
        fast.add(it)
    parsed = feedparser.parse(body, sanitize_html=False, resolve_relative_uris=False)
    for it in rss._feedparser_items(parsed):
        slow.add(it)
    assert fast.articles and fast.articles == slow.articles
    assert fast.problems == slow.problems == []


def test_conditional_get_second_fetch_is_304_and_changes_nothing(store, loopback):
    body = rss_doc([rss_item(1), rss_item(2)])

    def handler(req):
        if req.headers.get("If-None-Match") == '"v1"':
            return Reply(304, b"", {"ETag": '"v1"'})
        return Reply(
            200,
            body,
            {
                "Content-Type": "application/rss+xml",
                "Etag": '"v1"',  # servers spell it either way
                "Last-Modified": "Sat, 28 Nov 2026 11:00:00 GMT",
            },
        )

    with loopback(handler) as srv:
        src = SourceConfig(name="site", url=srv.url("/feed/"))
        first = run(store, src).sources[0]
        second = run(store, src).sources[0]
        assert "If-None-Match" not in srv.requests[0].headers
        assert srv.requests[1].headers["If-None-Match"] == '"v1"'
        assert srv.requests[1].headers["If-Modified-Since"] == "Sat, 28 Nov 2026 11:00:00 GMT"
    assert first.stored.inserted == 2
    assert second.not_modified and second.fetched == 0 and second.stored.inserted == 0
    assert store.count_articles() == 2
    state = store.get_source_state(f"rss:{src.url}")
    assert state == SourceState(
        etag='"v1"',
        last_modified="Sat, 28 Nov 2026 11:00:00 GMT",
        last_ingest_at=state.last_ingest_at,
    )
    assert state.last_ingest_at is not None
    assert store.get_source_state("rss:http://never.invalid/") == SourceState()


def test_per_tag_feed_and_site_feed_store_each_story_once(sqlite_store, loopback):
    site = rss_doc([rss_item(1, cats=("Kazakhstan", "Energy")), rss_item(2, cats=("Sport",))])
    tag = rss_doc([rss_item(1, cats=("Kazakhstan", "Energy"))])

    def handler(req):
        return Reply(200, tag if req.path == "/tag/kazakhstan/feed/" else site)

    with loopback(handler) as srv:
        report = run(
            sqlite_store,
            SourceConfig(name="kz", url=srv.url("/tag/kazakhstan/feed/")),
            SourceConfig(name="site", url=srv.url("/feed/")),
        )
    assert [s.stored.inserted for s in report.sources] == [1, 1]
    assert report.sources[1].stored.unchanged == 1
    assert sqlite_store.count_articles() == 2
    assert [a.title for a in sqlite_store.find_articles(tags=["kazakhstan"])] == ["Story 1"]


def test_add_tags_marks_every_item_of_a_source(sqlite_store, loopback):
    body = rss_doc([rss_item(1, cats=())])
    with loopback(serve(body)) as srv:
        run(sqlite_store, SourceConfig(name="kz", url=srv.url("/f"), add_tags=["Kazakhstan"]))
    (a,) = sqlite_store.find_articles(tags=["kazakhstan"])
    assert a.tags[0].name == "Kazakhstan"


def test_atom_feed_through_feedparser(sqlite_store, loopback):
    atom = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Site</title><id>urn:site</id><updated>2026-11-28T10:00:00Z</updated>
  <entry>
    <title type="html">Tom &amp;amp; Jerry in Алматы</title>
    <link rel="alternate" href="https://site.example/a/?utm_campaign=x"/>
    <id>urn:uuid:1</id>
    <published>2026-11-28T09:00:00+05:00</published>
    <updated>2026-11-28T10:00:00Z</updated>
    <author><name>Ainur</name></author>
    <category term="kazakhstan" label="Kazakhstan"/>
    <summary type="html">&lt;p&gt;Hello&lt;script&gt;x()&lt;/script&gt;&lt;/p&gt;</summary>
  </entry>
</feed>""".encode()
    with loopback(serve(atom, "application/atom+xml")) as srv:
        rep = run(sqlite_store, SourceConfig(name="atom", url=srv.url("/atom"))).sources[0]
    assert rep.error == "" and rep.stored.inserted == 1
    (a,) = sqlite_store.find_articles()
    assert (a.uid, a.url, a.title) == (
        "urn:uuid:1",
        "https://site.example/a/",
        "Tom & Jerry in Алматы",
    )
    assert a.published_at == datetime(2026, 11, 28, 4, tzinfo=UTC)
    assert a.updated_at == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert a.summary_html == "<p>Hello</p>"
    assert [(t.slug, t.name) for t in a.tags] == [("kazakhstan", "Kazakhstan")]


def test_gzip_responses_are_unzipped(sqlite_store, loopback):
    body = gzip.compress(rss_doc([rss_item(1)]))
    with loopback(serve(body, **{"Content-Encoding": "gzip"})) as srv:
        rep = run(sqlite_store, SourceConfig(name="gz", url=srv.url("/f"))).sources[0]
        assert srv.requests[0].headers["Accept-Encoding"] == "gzip"
    assert rep.error == "" and rep.stored.inserted == 1


def test_an_updated_article_is_updated_in_place(store, loopback):
    first = rss_doc([rss_item(1, title="Draft title")])
    second = rss_doc([rss_item(1, title="Final title", cats=("Kazakhstan", "Energy"))])
    bodies = [first, second]
    with loopback(lambda req: Reply(200, bodies.pop(0))) as srv:
        src = SourceConfig(name="site", url=srv.url("/f"))
        run(store, src)
        (before,) = store.find_articles()
        rep = run(store, src).sources[0]
    assert rep.stored.updated == 1
    (after,) = store.find_articles()
    assert after.id == before.id
    assert after.title == "Final title"
    assert after.tag_slugs == {"kazakhstan", "energy"}


def test_cyrillic_survives_feed_store_and_cli_json(project, loopback):
    title = "Қазақстан мен Oʻzbekiston: жаңа келісім"
    body = rss_doc([rss_item(1, title=title, cats=("Қазақстан",), desc=f"<p>{title} ғ ү ө</p>")])
    with loopback(serve(body)) as srv:
        result = CliRunner().invoke(cli, ["ingest", srv.url("/feed/")])
    assert result.exit_code == 0, result.output
    out = CliRunner().invoke(cli, ["articles", "--tag", "Қазақстан", "--json"])
    (a,) = json.loads(out.output)
    assert a["title"] == title
    assert a["tags"] == ["қазақстан"] and a["tag_names"] == ["Қазақстан"]
    assert a["summary"] == f"{title} ғ ү ө"


# --------------------------------------------------------------------------- WordPress REST


def wp_posts(count):
    """Posts shaped exactly like the real _embed sample, one per hour back from NOW."""
    (sample,) = json.loads(WP_SAMPLE.read_text())
    posts = []
    for n in range(1, count + 1):
        p = copy.deepcopy(sample)
        when = NOW - timedelta(hours=n)
        p["id"] = 1000 + n
        p["guid"]["rendered"] = f"https://wp.example/?p={1000 + n}"
        p["link"] = f"https://wp.example/2026/11/post-{n}/"
        p["title"]["rendered"] = f"Post {n} &#8211; Алматы"
        p["excerpt"]["rendered"] = f"<p>Excerpt {n} [&hellip;]</p>\n"
        p["date_gmt"] = p["modified_gmt"] = when.strftime("%Y-%m-%dT%H:%M:%S")
        p["date"] = p["modified"] = (when + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S")
        p["sticky"] = n == 3
        p["tags"] = [7] if n % 2 else [8]
        p["_embedded"]["wp:term"] = [
            p["_embedded"]["wp:term"][0],
            [{"id": 7, "name": "Kazakhstan", "slug": "kazakhstan", "taxonomy": "post_tag"}]
            if n % 2
            else [{"id": 8, "name": "Oil &amp; Gas", "slug": "oil-gas", "taxonomy": "post_tag"}],
        ]
        if n == 1:
            p["featured_media"] = 55
            p["_embedded"]["wp:featuredmedia"] = [
                {
                    "id": 55,
                    "alt_text": "Ministers in Tashkent",
                    "source_url": "https://wp.example/up/full.jpg",
                    "media_details": {
                        "sizes": {"large": {"source_url": "https://wp.example/up/large.jpg"}}
                    },
                }
            ]
        if n == 2:
            p["_embedded"]["wp:featuredmedia"] = [{"code": "rest_forbidden"}]
        posts.append(p)
    return posts


class FakeWordPress:
    TAGS = [{"id": 7, "slug": "kazakhstan", "name": "Kazakhstan"}, {"id": 8, "slug": "oil-gas"}]

    def __init__(self, posts):
        self.posts = posts

    def __call__(self, req):
        q = {k: v[0] for k, v in req.query.items()}
        if req.path == "/wp-json/wp/v2/tags":
            slugs = {unquote(s) for s in q.get("slug", "").split(",")}
            return self.json([t for t in self.TAGS if t["slug"] in slugs])
        if req.path != "/wp-json/wp/v2/posts":
            return self.json({"code": "rest_no_route"}, 404)
        posts = self.posts
        if "tags" in q:
            wanted = {int(t) for t in q["tags"].split(",")}
            posts = [p for p in posts if wanted & set(p["tags"])]
        if "modified_after" in q:
            posts = [p for p in posts if p["modified_gmt"] > q["modified_after"]]
        posts = sorted(posts, key=lambda p: p["modified_gmt"], reverse=True)
        per_page, page = int(q.get("per_page", 10)), int(q.get("page", 1))
        pages = max(1, -(-len(posts) // per_page))
        if page > pages:
            return self.json({"code": "rest_post_invalid_page_number"}, 400)
        chunk = posts[(page - 1) * per_page : page * per_page]
        return self.json(
            chunk, headers={"X-WP-Total": str(len(posts)), "X-WP-TotalPages": str(pages)}
        )

    @staticmethod
    def json(data, status=200, headers=None):
        return Reply(
            status,
            json.dumps(data).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )


def test_wordpress_pages_follow_total_pages_and_use_embed(store, loopback):
    with loopback(FakeWordPress(wp_posts(25))) as srv:
        src = SourceConfig(name="wp", type="wordpress", url=srv.url("/"), per_page=10)
        rep = run(store, src).sources[0]
        pages = [r.query.get("page") for r in srv.requests]
        first = srv.requests[0].query
    assert rep.error == "" and rep.stored.inserted == 25
    assert pages == [["1"], ["2"], ["3"]]
    assert first["per_page"] == ["10"] and first["_embed"] == ["author,wp:featuredmedia,wp:term"]
    assert first["orderby"] == ["modified"] and "modified_after" in first
    by_uid = {a.uid: a for a in store.find_articles()}
    one = by_uid["https://wp.example/?p=1001"]
    assert one.title == "Post 1 – Алматы"
    assert one.author == "xxxxx"  # from _embedded.author of the real sample
    assert (one.image_url, one.image_alt) == (
        "https://wp.example/up/large.jpg",
        "Ministers in Tashkent",
    )
    assert one.summary_text == "Excerpt 1…"
    assert one.published_at == NOW - timedelta(hours=1)
    assert one.tag_slugs == {"uncategorized", "kazakhstan"}
    assert by_uid["https://wp.example/?p=1002"].image_url == ""
    assert {t.name for t in by_uid["https://wp.example/?p=1002"].tags} == {
        "Uncategorized",
        "Oil & Gas",
    }
    assert by_uid["https://wp.example/?p=1003"].pinned  # sticky


def test_wordpress_per_page_defaults_to_the_maximum_of_100(sqlite_store, loopback):
    with loopback(FakeWordPress(wp_posts(3))) as srv:
        run(sqlite_store, SourceConfig(name="wp", type="wordpress", url=srv.url("/wp-json/")))
        assert srv.requests[0].query["per_page"] == ["100"]
        assert srv.requests[0].path == "/wp-json/wp/v2/posts"


def test_wordpress_tag_slugs_resolve_to_ids(sqlite_store, loopback):
    with loopback(FakeWordPress(wp_posts(6))) as srv:
        src = SourceConfig(
            name="wp", type="wordpress", url=srv.url("/"), tags=["kazakhstan", "missing"]
        )
        rep = run(sqlite_store, src).sources[0]
        tag_req, post_req = srv.requests[0], srv.requests[1]
    assert tag_req.path == "/wp-json/wp/v2/tags"
    assert tag_req.query["slug"] == ["kazakhstan,missing"]
    assert post_req.query["tags"] == ["7"]
    assert rep.stored.inserted == 3
    assert rep.problems == ["wp: tag 'missing' does not exist on the site"]
    assert all("kazakhstan" in a.tag_slugs for a in sqlite_store.find_articles())


def test_wordpress_asks_only_for_posts_modified_since_the_last_ingest(sqlite_store, loopback):
    posts = wp_posts(4)
    fake = FakeWordPress(posts)
    with loopback(fake) as srv:
        src = SourceConfig(name="wp", type="wordpress", url=srv.url("/"))
        before = datetime.now(UTC)
        run(sqlite_store, src)
        state = sqlite_store.get_source_state(f"wordpress:{srv.url('/wp-json')}")
        assert before <= state.last_ingest_at <= datetime.now(UTC)
        first_after = srv.requests[0].query["modified_after"][0]
        # an edit to post 2, after the first run
        posts[1]["title"]["rendered"] = "Post 2, corrected"
        posts[1]["modified_gmt"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        rep = run(sqlite_store, src).sources[0]
        second_after = srv.requests[1].query["modified_after"][0]
    # first run: the backfill period; then from the last ingest, less the 14 h overlap
    backfill = datetime.fromisoformat(first_after).replace(tzinfo=UTC)
    assert abs(backfill - (before - timedelta(days=30))) < timedelta(minutes=1)
    expected = (state.last_ingest_at - timedelta(hours=14)).strftime("%Y-%m-%dT%H:%M:%S")
    assert second_after == expected
    assert (rep.fetched, rep.stored.updated) == (1, 1)
    assert "Post 2, corrected" in {a.title for a in sqlite_store.find_articles()}


def test_wordpress_max_pages_stops_and_says_so(sqlite_store, loopback):
    with loopback(FakeWordPress(wp_posts(30))) as srv:
        src = SourceConfig(name="wp", type="wordpress", url=srv.url("/"), per_page=10, max_pages=2)
        rep = run(sqlite_store, src).sources[0]
    assert rep.stored.inserted == 20
    assert rep.problems == ["wp: stopped after max_pages=2 of 3 pages; older posts were not read"]


def test_wordpress_failure_on_a_later_page_keeps_earlier_pages_and_fails(sqlite_store, loopback):
    fake = FakeWordPress(wp_posts(25))

    def handler(req):
        if req.query.get("page") == ["3"]:
            return Reply(500, b"oops")
        return fake(req)

    with loopback(handler) as srv:
        src = SourceConfig(name="wp", type="wordpress", url=srv.url("/"), per_page=10)
        rep = run(sqlite_store, src).sources[0]
        key = f"wordpress:{srv.url('/wp-json')}"
    assert rep.stored.inserted == 20
    assert "HTTP 500" in rep.error and "(after 2 pages)" in rep.error
    assert sqlite_store.get_source_state(key).last_ingest_at is None  # asked again next run


def test_wordpress_password_protected_posts_are_skipped(sqlite_store, loopback):
    posts = wp_posts(2)
    posts[0]["content"]["protected"] = True
    with loopback(FakeWordPress(posts)) as srv:
        rep = run(
            sqlite_store, SourceConfig(name="wp", type="wordpress", url=srv.url("/"))
        ).sources[0]
    assert rep.stored.inserted == 1
    assert rep.problems == ["wp: item 1 ('Post 1 – Алматы'): skipped, password-protected"]


def test_same_story_from_rss_and_wordpress_is_stored_once(store, loopback):
    posts = wp_posts(1)
    feed = rss_doc(
        [
            rss_item(1001, title="Post 1 &#8211; Алматы", link="https://wp.example/2026/11/post-1/")
            .replace("https://site.example/?p=1001", "https://wp.example/?p=1001")
            .replace(
                format_datetime(NOW - timedelta(hours=1001)),
                format_datetime(NOW - timedelta(hours=1)),
            )
        ]
    )
    wp = FakeWordPress(posts)

    def handler(req):
        return Reply(200, feed) if req.path == "/feed/" else wp(req)

    with loopback(handler) as srv:
        report = run(
            store,
            SourceConfig(name="rss", url=srv.url("/feed/")),
            SourceConfig(name="wp", type="wordpress", url=srv.url("/")),
        )
        again = run(
            store,
            SourceConfig(name="rss", url=srv.url("/feed/")),
            SourceConfig(name="wp", type="wordpress", url=srv.url("/")),
        )
    assert store.count_articles() == 1
    assert report.sources[0].stored.inserted == 1
    # the REST copy is no newer: the feed's copy stays, and neither flips the other
    assert [s.stored.updated for s in again.sources] == [0, 0]


# --------------------------------------------------------------------------- JSON


DOC_EXAMPLE = re.compile(r"```json\n(.*?)```", re.S)


def test_json_source_over_http(store, loopback):
    doc = {
        "articles": [
            {
                "id": 42,
                "url": "https://news.example/a/?utm_source=x",
                "title": "Қазақстан &amp; Oʻzbekiston",
                "published": "2026-11-28T11:30:00+05:00",
                "updated": "2026-11-28T12:00:00+05:00",
                "summary": "<p>Text <script>x()</script></p>",
                "author": "Ainur",
                "image": "https://news.example/a.jpg",
                "image_alt": "A photo",
                "tags": ["Kazakhstan", "Featured"],
            }
        ]
    }
    with loopback(serve(json.dumps(doc).encode(), "application/json")) as srv:
        rep = run(store, SourceConfig(name="j", type="json", url=srv.url("/a.json"))).sources[0]
    assert rep.error == "" and rep.problems == []
    (a,) = store.find_articles()
    assert (a.uid, a.url, a.title) == ("42", "https://news.example/a/", "Қазақстан & Oʻzbekiston")
    assert a.published_at == datetime(2026, 11, 28, 6, 30, tzinfo=UTC)
    assert a.summary_html == "<p>Text </p>" and a.pinned and a.author == "Ainur"
    assert (a.image_url, a.image_alt) == ("https://news.example/a.jpg", "A photo")


def test_json_items_that_break_the_schema_are_named_the_rest_stored(sqlite_store, loopback):
    doc = [
        {"url": "https://n.example/1", "title": "Good", "published": "2026-11-28T10:00:00Z"},
        {"url": "https://n.example/2", "title": "No zone", "published": "2026-11-28T10:00:00"},
        {
            "url": "https://n.example/3",
            "title": "Bad tags",
            "published": "2026-11-28T10:00:00Z",
            "tags": "kz",
        },
        {"title": "No url", "published": "yesterday"},
        "just a string",
        {
            "url": "https://n.example/6",
            "title": "Typo",
            "published": "2026-11-28T10:00:00Z",
            "sumary": "x",
        },
    ]
    with loopback(serve(json.dumps(doc).encode(), "application/json")) as srv:
        rep = run(
            sqlite_store, SourceConfig(name="j", type="json", url=srv.url("/a.json"))
        ).sources[0]
    assert rep.error == "" and rep.stored.inserted == 2
    assert rep.problems == [
        "j: item 2 ('No zone'): skipped, published: '2026-11-28T10:00:00' needs a UTC offset, "
        "e.g. 2026-11-28T09:30:00+05:00",
        "j: item 3 ('Bad tags'): skipped, tags: expected a list of strings, got 'kz'",
        "j: item 4 ('No url'): skipped, url: missing; published: not an ISO 8601 time: 'yesterday'",
        "j: item 5: skipped, expected an object, got str",
        "j: item 6 ('Typo'): unknown field 'sumary' ignored (fields: url, title, published, id, "
        "updated, summary, content, author, image, image_alt, tags, pinned)",
    ]


def test_json_file_that_is_not_json_fails_with_line_and_column(sqlite_store, tmp_path):
    bad = tmp_path / "articles.json"
    bad.write_text('[{"url": "https://n.example/1",\n "title": }]')
    rep = run(sqlite_store, SourceConfig(name="j", type="json", url=str(bad))).sources[0]
    assert rep.error == f"{bad}: not valid JSON: line 2 column 11: Expecting value"


def test_the_documented_json_example_ingests(sqlite_store, tmp_path):
    text = (ROOT / "docs" / "articles.md").read_text(encoding="utf-8")
    example = DOC_EXAMPLE.search(text).group(1)
    path = tmp_path / "articles.json"
    path.write_text(example, encoding="utf-8")
    rep = run(sqlite_store, SourceConfig(name="doc", type="json", url=str(path))).sources[0]
    assert rep.error == "" and rep.problems == [] and rep.stored.inserted >= 2
    src = JsonSource(SourceConfig(type="json", url=str(path)), ArticlesConfig())
    assert src.key == f"json:{path}"


def test_oversized_values_fit_the_columns(store, loopback):
    long_url = "https://site.example/" + "a" * 1900
    body = rss_doc(
        [
            rss_item(1, title="T" * 5000, cats=("K" * 500, "Kazakhstan"), link=long_url)
            .replace("<dc:creator>Desk</dc:creator>", f"<dc:creator>{'A' * 3000}</dc:creator>")
            .replace("https://site.example/?p=1", "g" * 3000),
            rss_item(2, link="https://site.example/" + "b" * 3000),
        ]
    )
    with loopback(serve(body)) as srv:
        rep = run(store, SourceConfig(name="S" * 300, url=srv.url("/f"))).sources[0]
    assert rep.error == ""
    assert rep.problems == [
        f"{'S' * 300}: item 2 ('Story 2'): skipped, link longer than 2000 characters"
    ]
    (a,) = store.find_articles()
    assert len(a.title) <= 300 and a.title.endswith("…")
    assert len(a.author) <= 200 and a.uid.startswith("sha256:")
    assert all(len(t.slug) <= 100 for t in a.tags) and a.url == long_url
