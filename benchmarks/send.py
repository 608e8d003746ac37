"""Send benchmark: 100,000 subscribers in 3 variants through the SendGrid backend.

The fake SendGrid server (tests/fakes/sendgrid.py) runs in a separate process on
127.0.0.1 and validates every request body against the mail/send JSON schema
(compiled with fastjsonschema, so the fake does not dominate the figure). The
sender runs in a child process of its own, so its peak RSS is the sender's only:
no set-up data, no fake server.

    .venv/bin/python benchmarks/send.py [--subscribers 100000] [--db URL]

Prints: freeze time, send time, recipients/s, the sender's peak RSS, and what the
fake server took. Targets (issue 6): >= 20,000 recipients/s, < 200 MB peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import SITE_TOML, every_digest_rows, scratch_database, start_fake, vm_hwm_kb  # noqa: E402

API_KEY = "SG.benchmark-key"
VARIANTS = ("kazakhstan", "kazakhstan+uzbekistan", "default")


def write_config(folder: Path, db: str, host: str, concurrency: int) -> Path:
    path = folder / "newsletter.toml"
    path.write_text(
        f"""
database = "{db}"
{SITE_TOML}[delivery]
backend = "sendgrid"
[delivery.sendgrid]
host = "{host}"
concurrency = {concurrency}
""",
        encoding="utf-8",
    )
    return path


def page(variant: str) -> tuple[str, str]:
    """A digest-sized HTML (~60 KB) and text part with the per-recipient placeholders."""
    card = (
        '<tr><td style="padding:12px 24px;font-family:Arial,sans-serif">'
        '<a href="https://steppe-ledger.example/{n}/" style="color:#0b5394;font-size:18px">'
        "Story {n} for {v}: the tenge, the som and the sum this week</a>"
        '<p style="margin:6px 0 0;color:#333;font-size:14px;line-height:1.5">'
        + "Central Asian currencies moved against the dollar as energy exports grew. " * 3
        + "</p></td></tr>"
    )
    cards = "".join(card.format(n=n, v=variant) for n in range(60))
    html = (
        "<!doctype html><html><body><table width='100%'>"
        "<tr><td>Hello %%name%%,</td></tr>"
        f"{cards}"
        "<tr><td><a href='%%unsubscribe_url%%'>Unsubscribe</a> · "
        "<a href='%%preferences_url%%'>Preferences</a></td></tr></table></body></html>"
    )
    text = f"Hello %%name%%,\n\n{variant} digest\n" + "\n".join(
        f"Story {n}: https://steppe-ledger.example/{n}/" for n in range(60)
    )
    return html, text + "\n\nUnsubscribe: %%unsubscribe_url%%\n"


def setup(cfg_path: Path, n: int) -> tuple[int, float]:
    """Subscribers (fixture data, inserted in bulk) and an edition; then the timed freeze."""
    import sqlalchemy as sa

    from newsletter.config import load_config
    from newsletter.store import open_store
    from newsletter.store.deliveries import AudienceRow
    from newsletter.store.schema import subscriber_tags, subscribers, subscriptions

    cfg = load_config(cfg_path)
    store = open_store(cfg.database_url)
    now = datetime.now(UTC)
    with store.begin() as conn:
        conn.execute(
            sa.insert(subscribers),
            [
                {
                    "id": i,
                    "email": f"reader{i}@example.com",
                    "name": f"Reader {i}" if i % 7 else "Tom & Jerry",
                    "timezone": "Asia/Almaty",
                    "status": "active" if i % 50 else "unsubscribed",
                    "status_reason": "",
                    "soft_bounces": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(1, n + 1 + n // 49)
            ],
        )
        tags = []
        for i in range(1, n + 1 + n // 49):
            v = VARIANTS[i % 3]
            if v != "default":
                tags += [{"subscriber_id": i, "tag_slug": t} for t in v.split("+")]
        conn.execute(sa.insert(subscriber_tags), tags)
        # every subscriber on every digest ("*"), as an import or the migration makes them
        conn.execute(sa.insert(subscriptions), every_digest_rows(range(1, n + 1 + n // 49), now))
    eid, _ = store.create_edition(
        digest="weekly",
        period="bench",
        subject="The Steppe Ledger: weekly digest",
        window_start=now,
        window_end=now,
        info={"edition_date": "30 November 2026"},
        variants={v: [] for v in VARIANTS},
    )
    # the edition's variants have no articles (the pages are made up in the child), so
    # the one freeze path (editions.freeze, variants from the edition's articles) would
    # freeze nobody: the audience goes to the store's freeze directly, as that path does
    # (benchmarks/scale.py times the real compile and freeze)
    t = time.perf_counter()
    rows = [
        AudienceRow(i, f"reader{i}@example.com", VARIANTS[i % 3])
        for i in range(1, n + 1 + n // 49)
        if i % 50
    ]
    frozen = store.freeze_audience(eid, rows)
    took = time.perf_counter() - t
    store.close()
    print(f"audience frozen: {frozen:,} deliveries in {took:.2f}s")
    return eid, took


def child(cfg_path: str, edition_id: int) -> None:
    """The measured part: send_edition in a process of its own."""
    from newsletter.config import load_config
    from newsletter.delivery.backends import make_backend
    from newsletter.delivery.send import send_edition
    from newsletter.models import Rendered
    from newsletter.store import open_store

    cfg = load_config(cfg_path)
    store = open_store(cfg.database_url)
    renders = {}
    for v in VARIANTS:
        html, text = page(v)
        renders[v] = Rendered(subject="The Steppe Ledger: weekly digest", html=html, text=text)
    base = vm_hwm_kb()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
    report = send_edition(store, cfg, edition_id, renders, make_backend(cfg))
    if os.environ.get("BENCH_PROFILE"):
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    took = time.perf_counter() - t
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    peak = vm_hwm_kb()
    print(
        json.dumps(
            {
                "accepted": report.accepted,
                "failed": report.failed,
                "batches": report.batches,
                "seconds": took,
                "cpu_seconds": cpu,
                "peak_rss_mb": peak / 1024,
                "rss_before_send_mb": base / 1024,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=100_000)
    ap.add_argument(
        "--db",
        default="",
        help="a PostgreSQL URL to run on, in a throwaway schema (default: a fresh SQLite file)",
    )
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--child", nargs=2, metavar=("CONFIG", "EDITION"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    os.environ["SENDGRID_API_KEY"] = API_KEY
    os.environ.setdefault("NEWSLETTER_SECRET_KEY", "benchmark-secret-key-0123456789")
    os.environ.pop("NEWSLETTER_SENDGRID_HOST", None)
    fake, port = start_fake(API_KEY)
    host = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory() as tmp, scratch_database(args.db, Path(tmp)) as db:
            cfg_path = write_config(Path(tmp), db, host, args.concurrency)
            eid, freeze_s = setup(cfg_path, args.subscribers)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(cfg_path), str(eid)],
                stdout=subprocess.PIPE,
                text=True,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            with urllib.request.urlopen(f"{host}/_fake/stats") as resp:
                stats = json.load(resp)
    finally:
        fake.terminate()
        fake.wait()
    rate = result["accepted"] / result["seconds"]
    engine = "postgresql" if db.startswith("postgresql") else "sqlite"
    print(f"database: {engine}; concurrency {args.concurrency}; validator: fastjsonschema")
    print(
        f"sent: {result['accepted']:,} accepted, {result['failed']} failed, "
        f"{result['batches']} batches in {result['seconds']:.2f}s"
    )
    print(
        f"recipients/s: {rate:,.0f}  (with the freeze: "
        f"{result['accepted'] / (result['seconds'] + freeze_s):,.0f})"
    )
    print(
        f"sender CPU: {result['cpu_seconds']:.2f}s "
        f"({result['accepted'] / result['cpu_seconds']:,.0f} recipients per CPU second); "
        f"load average: {os.getloadavg()[0]:.2f}"
    )
    print(
        f"sender peak RSS: {result['peak_rss_mb']:.0f} MB "
        f"(before the send: {result['rss_before_send_mb']:.0f} MB)"
    )
    print(
        f"fake server: {stats['requests']} requests, {stats['accepted']:,} recipients taken, "
        f"{stats['distinct']:,} distinct, statuses {stats['statuses']}"
    )


if __name__ == "__main__":
    main()
