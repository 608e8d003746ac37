"""Ingest a generated 10,000-item WordPress-style RSS feed into SQLite; report items/s and memory.

    .venv/bin/python benchmarks/ingest.py [--items 10000] [--http] [--repeat 3]

The feed is written to a temporary folder and read as a file (or, with
--http, served from a loopback HTTP server so the HTTP client is timed too).
It runs the real path: ``newsletter.articles.ingest.ingest`` with a
``[[sources]]`` entry, normalization, sanitizing, the upsert. A second run
of the same feed measures the "nothing changed" path (hash comparison).

Peak memory is the process's maximum resident set size (getrusage), and the
peak of Python allocations during the first ingest (tracemalloc, measured in
a separate pass because tracing slows Python down).
"""

from __future__ import annotations

import argparse
import http.server
import platform
import resource
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.articles.ingest import ingest  # noqa: E402
from newsletter.config import Config, SourceConfig  # noqa: E402
from newsletter.store import open_store  # noqa: E402

COUNTRIES = ["Kazakhstan", "Uzbekistan", "Kyrgyzstan", "Tajikistan", "Turkmenistan"]
TOPICS = ["Energy", "Economy", "Politics", "Culture", "Sport", "Transport", "Қазақстан"]


def make_feed(n: int) -> bytes:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    items = []
    for i in range(n):
        when = format_datetime(now - timedelta(minutes=7 * i))
        cats = "".join(
            f"<category><![CDATA[{c}]]></category>"
            for c in (COUNTRIES[i % 5], TOPICS[i % 7], f"Topic {i % 50}")
        )
        items.append(
            f"<item><title>Story {i}: Алматы &#8211; Oʻzbekiston &amp; the region</title>"
            f"<link>https://steppe-ledger.example/{i}/story-{i}/?utm_source=rss</link>"
            f"<dc:creator><![CDATA[Author {i % 23}]]></dc:creator><pubDate>{when}</pubDate>"
            f'{cats}<guid isPermaLink="false">https://steppe-ledger.example/?p={i}</guid>'
            "<description><![CDATA[<p>Energy ministers from Kazakhstan, Uzbekistan, Kyrgyzstan "
            "and Tajikistan agreed at a meeting in Tashkent to commission a study on a shared "
            "market for reserve power capacity, which would allow grid operators to draw on each "
            "other&#8217;s generation during emergencies.</p><p>Қазақстан мен Өзбекстан "
            "энергетика министрлері кездесті. The region&#8217;s power systems were once closely "
            "integrated under the Soviet-era grid [&#8230;]</p><p>The post "
            f'<a href="https://steppe-ledger.example/{i}/">Story {i}</a> appeared first on '
            '<a href="https://steppe-ledger.example">The Steppe Ledger</a>.</p>]]></description>'
            f'<media:content url="https://steppe-ledger.example/up/{i}.jpg" medium="image">'
            "<media:description>Ministers in Tashkent</media:description></media:content></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:media="http://search.yahoo.com/mrss/">'
        "<channel><title>The Steppe Ledger</title><link>https://steppe-ledger.example/</link>"
        + "".join(items)
        + "</channel></rss>"
    ).encode()


def serve(body: bytes) -> tuple[http.server.ThreadingHTTPServer, str]:
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/feed/"


def timed_ingest(db_url: str, target: str) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, the source's report)."""
    store = open_store(db_url)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        report = ingest(store, Config(), [SourceConfig(name="bench", url=target)])
        return time.perf_counter() - start, time.process_time() - cpu, report.sources[0]
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--http", action="store_true", help="serve the feed over loopback HTTP")
    ap.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        body = make_feed(args.items)
        path = Path(tmp) / "feed.xml"
        path.write_bytes(body)
        httpd = None
        target = str(path)
        if args.http:
            httpd, target = serve(body)
        runs = []
        for n in range(args.repeat):
            db_url = args.db or f"sqlite:///{Path(tmp) / f'bench{n}.db'}"
            first, first_cpu, rep = timed_ingest(db_url, target)
            if rep.error or rep.stored.inserted != args.items:
                sys.exit(f"ingest failed: {rep.error or rep.as_dict()}")
            again, again_cpu, rep2 = timed_ingest(db_url, target)
            runs.append((first, first_cpu, again, again_cpu))
        maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        traced_url = f"sqlite:///{Path(tmp) / 'traced.db'}"
        tracemalloc.start()
        timed_ingest(traced_url, target)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        if httpd:
            httpd.shutdown()

    print(f"python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    print(
        f"feed: {args.items} items, {len(body) / 1e6:.1f} MB, via {'HTTP' if args.http else 'file'}"
    )
    best = min(runs)
    for label, wall, cpu in (
        ("first ingest ", best[0], best[1]),
        ("second ingest", best[2], best[3]),
    ):
        what = "all new" if label.startswith("first") else "all unchanged"
        print(
            f"{label}: {wall:6.2f} s wall {args.items / wall:7.0f} items/s; "
            f"{cpu:6.2f} s CPU {args.items / cpu:7.0f} items/s  ({what})"
        )
    walls = sorted(r[0] for r in runs)
    print(f"first ingest over {len(runs)} runs: wall {', '.join(f'{w:.2f}' for w in walls)} s")
    print(f"peak RSS: {maxrss_mb:.0f} MB; peak Python allocations: {peak / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
