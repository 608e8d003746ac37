"""Bad input, each case over loopback: a clear message naming the source and the item,
the other sources and items still ingested, nothing stored lost, a non-zero exit."""

import contextlib
import socket
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from click.testing import CliRunner

from newsletter.articles.ingest import ingest
from newsletter.cli import cli
from newsletter.config import ArticlesConfig, Config, SourceConfig
from tests.fakes.http import LoopbackServer, Reply

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def item(n, *, title=None, link=None, when=None, guid=None, date=True):
    when = when or NOW - timedelta(hours=n)
    title_xml = "" if title == "" else f"<title>{title or f'Story {n}'}</title>"
    link_xml = "" if link == "" else f"<link>{link or f'https://site.example/{n}/'}</link>"
    date_xml = f"<pubDate>{format_datetime(when)}</pubDate>" if date else ""
    return (
        f"<item>{title_xml}{link_xml}{date_xml}<category>Kazakhstan</category>"
        f'<guid isPermaLink="false">{guid or f"https://site.example/?p={n}"}</guid>'
        f"<description>Summary {n}</description></item>"
    )


def feed(*items):
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>S</title>'
        + "".join(items)
        + "</channel></rss>"
    ).encode()


GOOD = feed(item(1), item(2))


class RawServer:
    """A TCP server on 127.0.0.1 that answers with whatever bytes ``respond`` writes:
    for answers a well-behaved HTTP server never gives (truncated, endless)."""

    def __init__(self, respond):
        self.respond = respond
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def _loop(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            with contextlib.suppress(OSError):
                self.respond(conn)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def shared_server():
    box = {}
    with LoopbackServer(lambda req: box["handler"](req)) as srv:
        srv.box = box
        yield srv


@pytest.fixture
def web(shared_server):
    """The shared loopback server answering with ``handler(req)`` for this test."""

    def use(handler):
        shared_server.box["handler"] = handler
        shared_server.requests.clear()
        return shared_server

    return use


def run(store, *sources, **articles):
    return ingest(store, Config(articles=ArticlesConfig(**articles)), list(sources))


def src(name, url, **kw):
    return SourceConfig(name=name, url=url, **kw)


def by_path(routes):
    def handler(req):
        return routes.get(req.path, Reply(404, b"not here"))

    return handler


# --------------------------------------------------------------------------- documents


def test_malformed_xml_fails_the_source_only(sqlite_store, web):
    srv = web(by_path({"/bad": Reply(200, b"this is {not} <xml"), "/good": Reply(200, GOOD)}))
    report = run(sqlite_store, src("bad", srv.url("/bad")), src("good", srv.url("/good")))
    bad, good = report.sources
    assert bad.error.startswith(f"{srv.url('/bad')}: not a feed:")
    assert good.error == "" and good.stored.inserted == 2
    assert report.failed == [bad]


def test_a_feed_cut_short_keeps_the_items_before_the_cut(sqlite_store, web):
    whole = feed(item(1), item(2), item(3))
    cut = whole[: whole.index(b"<item>", whole.index(b"Story 2")) + 20]
    srv = web(by_path({"/cut": Reply(200, cut)}))
    (rep,) = run(sqlite_store, src("cut", srv.url("/cut"))).sources
    assert rep.error == ""
    assert rep.stored.inserted == 2
    assert rep.problems[0].startswith("cut: feed is not well-formed (")
    assert rep.problems[0].endswith("read 3 items with the forgiving parser")
    assert rep.problems[1:] == ["cut: item 3: skipped, no link or title or date"]


def test_a_feed_cut_before_any_usable_item_fails_the_source(sqlite_store, web):
    whole = feed(item(1), item(2))
    cut = whole[: whole.index(b"<item>") + 20]
    srv = web(by_path({"/cut": Reply(200, cut, {"ETag": '"v1"'})}))
    report = run(sqlite_store, src("cut", srv.url("/cut")))
    (rep,) = report.sources
    assert (
        rep.error == f"{srv.url('/cut')}: feed is not well-formed and no item in it could be used"
    )
    assert report.failed == [rep]
    # the next run asks again in full: the broken answer's ETag was not kept
    run(sqlite_store, src("cut", srv.url("/cut")))
    assert "If-None-Match" not in srv.requests[-1].headers


def test_an_html_page_is_not_a_feed(sqlite_store, web):
    srv = web(by_path({"/": Reply(200, b"<!doctype html><html><body>Hi</body></html>")}))
    (rep,) = run(sqlite_store, src("home", srv.url("/"))).sources
    assert rep.error == f"{srv.url('/')}: not an RSS or Atom feed (got an HTML page)"


def test_items_without_link_title_or_date_are_named_and_the_rest_stored(sqlite_store, web):
    body = feed(item(1), item(2, link=""), item(3, title=""), item(4, date=False), item(5))
    srv = web(by_path({"/f": Reply(200, body)}))
    (rep,) = run(sqlite_store, src("site", srv.url("/f"))).sources
    assert rep.stored.inserted == 2
    assert rep.problems == [
        "site: item 2 ('Story 2'): skipped, no link",
        "site: item 3 ('https://site.example/?p=3'): skipped, no title",
        "site: item 4 ('Story 4'): skipped, no date",
    ]


def test_duplicate_guids_store_the_first_and_name_the_rest(sqlite_store, web):
    body = feed(item(1), item(2, guid="https://site.example/?p=1"), item(3))
    srv = web(by_path({"/f": Reply(200, body)}))
    (rep,) = run(sqlite_store, src("site", srv.url("/f"))).sources
    assert rep.stored.inserted == 2
    assert rep.problems == [
        "site: item 2 ('Story 2'): skipped, duplicate guid https://site.example/?p=1 "
        "(same as item 1)"
    ]
    assert {a.title for a in sqlite_store.find_articles()} == {"Story 1", "Story 3"}


# --------------------------------------------------------------------------- transport


@pytest.mark.parametrize(
    "status, text", [(404, "HTTP 404 Not Found"), (500, "HTTP 500 Internal Server Error")]
)
def test_http_errors(sqlite_store, web, status, text):
    srv = web(by_path({"/f": Reply(status, b"no")}))
    (rep,) = run(sqlite_store, src("site", srv.url("/f"))).sources
    assert rep.error == f"{srv.url('/f')}: {text}"


def test_timeout(sqlite_store, web):
    srv = web(by_path({"/slow": Reply(200, GOOD, delay=3.0), "/good": Reply(200, GOOD)}))
    report = run(
        sqlite_store, src("slow", srv.url("/slow"), timeout=1.0), src("good", srv.url("/good"))
    )
    assert report.sources[0].error == f"{srv.url('/slow')}: timed out after 1s"
    assert report.sources[1].stored.inserted == 2


def test_redirect_loop(sqlite_store, web):
    srv = web(
        by_path(
            {
                "/a": Reply(302, headers={"Location": "/b"}),
                "/b": Reply(302, headers={"Location": "/a"}),
            }
        )
    )
    (rep,) = run(sqlite_store, src("loop", srv.url("/a"))).sources
    assert rep.error.startswith(f"{srv.url('/a')}: redirect loop or too many redirects (HTTP 302")
    assert 2 <= len(srv.requests) <= 12


def test_redirects_are_followed_to_http_only(sqlite_store, web):
    srv = web(
        by_path(
            {
                "/old": Reply(301, headers={"Location": "/feed/"}),
                "/feed/": Reply(200, GOOD),
                "/ftp": Reply(302, headers={"Location": "ftp://127.0.0.1/feed"}),
            }
        )
    )
    ok, ftp = run(sqlite_store, src("moved", srv.url("/old")), src("ftp", srv.url("/ftp"))).sources
    assert ok.stored.inserted == 2
    assert "redirect to a non-HTTP URL 'ftp://127.0.0.1/feed'" in ftp.error


def test_truncated_response(sqlite_store):
    def respond(conn):
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
            + f"Content-Length: {len(GOOD)}\r\n\r\n".encode()
            + GOOD[:100]
        )

    with RawServer(respond) as raw:
        (rep,) = run(sqlite_store, src("cut", raw.url("/f"))).sources
    assert rep.error == f"{raw.url('/f')}: response truncated: got 100 of {len(GOOD)} bytes"
    assert sqlite_store.count_articles() == 0


def endless_feed(conn, head):
    conn.sendall(head + b'<?xml version="1.0"?><rss version="2.0"><channel><title>Big</title>')
    block = b"".join(item(n).encode() for n in range(1, 200))
    sent = 0
    while sent < 50_000_000:
        conn.sendall(block)
        sent += len(block)


def test_a_50_mb_feed_with_its_length_is_refused_before_reading(sqlite_store):
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: 52428800\r\n\r\n"
    )
    with RawServer(lambda conn: endless_feed(conn, head)) as raw:
        (rep,) = run(sqlite_store, src("big", raw.url("/f"))).sources
    assert rep.error == (
        f"{raw.url('/f')}: response is 52428800 bytes, over the 20000000-byte limit "
        "(articles.max_feed_bytes); refused without reading it"
    )


def test_a_50_mb_feed_without_a_length_is_cut_off_at_the_limit(sqlite_store):
    head = b"HTTP/1.0 200 OK\r\nContent-Type: application/rss+xml\r\n\r\n"
    with RawServer(lambda conn: endless_feed(conn, head)) as raw:
        (rep,) = run(sqlite_store, src("big", raw.url("/f"))).sources
    assert rep.error == (
        f"{raw.url('/f')}: response is over the 20000000-byte limit (articles.max_feed_bytes); "
        "refused"
    )


def test_a_gzip_bomb_is_refused(sqlite_store, web):
    import gzip

    bomb = gzip.compress(b"<" + b" " * 30_000_000)
    srv = web(by_path({"/f": Reply(200, bomb, {"Content-Encoding": "gzip"})}))
    (rep,) = run(sqlite_store, src("bomb", srv.url("/f")), max_feed_bytes=1_000_000).sources
    assert "once unzipped" in rep.error


def test_connection_refused(sqlite_store):
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    (rep,) = run(sqlite_store, src("down", f"http://127.0.0.1:{port}/f")).sources
    assert rep.error.startswith(f"http://127.0.0.1:{port}/f: cannot connect:")


# --------------------------------------------------------------------------- nothing lost


def test_a_failing_run_loses_nothing_already_stored(store, web):
    answers = {"/f": Reply(200, GOOD, {"ETag": '"v1"'})}
    srv = web(by_path(answers))
    source = src("site", srv.url("/f"))
    run(store, source)
    before = {a.uid: a for a in store.find_articles()}
    key = f"rss:{source.url}"
    answers["/f"] = Reply(500)
    assert run(store, source).failed
    # a failed fetch keeps the conditional-GET state of the last good one
    assert store.get_source_state(key).etag == '"v1"'
    for broken in (Reply(200, b"<rss><channel><item>"), Reply(200, feed()), Reply(200, b"")):
        answers["/f"] = broken
        run(store, source)
        assert {a.uid: a for a in store.find_articles()} == before


def test_cli_ingest_exits_non_zero_after_ingesting_the_rest(project, web):
    srv = web(by_path({"/good": Reply(200, GOOD), "/down": Reply(503, b"")}))
    (project / "newsletter.toml").write_text(
        (project / "newsletter.toml")
        .read_text()
        .replace(
            '[[sources]]\nname = "sample"\ntype = "rss"\nurl = "feed.xml"\n',
            f'[[sources]]\nname = "down"\nurl = "{srv.url("/down")}"\n\n'
            f'[[sources]]\nname = "good"\nurl = "{srv.url("/good")}"\n',
        )
    )
    result = CliRunner().invoke(cli, ["ingest"])
    assert result.exit_code == 1
    assert f"down: FAILED: {srv.url('/down')}: HTTP 503 Service Unavailable" in result.output
    assert "good: 2 items: 2 new, 0 updated, 0 unchanged" in result.output
    assert "Error: 1 source(s) failed: down" in result.output
    assert "Traceback" not in result.output
    listed = CliRunner().invoke(cli, ["articles"])
    assert "2 articles" in listed.output
