"""Unsubscribes during a send: is anyone mailed after their unsubscribe was answered?

A sender process sends one edition to ``--subscribers`` readers through the
SendGrid backend, paced at ``--rate`` messages/s, against the fake SendGrid
(in this process, on 127.0.0.1, recording when it read each request). Meanwhile
``--unsubscribes`` one-click unsubscribes a second are POSTed to the real
unsubscribe endpoint (`newsletter serve`'s app under uvicorn), for random readers,
and the time each answer came back is noted.

    .venv/bin/python benchmarks/unsubscribe_during_send.py [--subscribers 50000] [--db URL]

Prints: unsubscribes made during the send, readers mailed after their
unsubscribe answered (target 0), the edition's unsubscribe count (target: the
number made), readers left out at claim time, and the send's time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import SITE_TOML, every_digest_rows, scratch_database  # noqa: E402

API_KEY = "SG.benchmark-key"
SECRET = "benchmark-secret-key-0123456789"


def write_config(folder: Path, db: str, host: str, rate: float) -> Path:
    path = folder / "newsletter.toml"
    path.write_text(
        f"""
database = "{db}"
{SITE_TOML}[delivery]
backend = "sendgrid"
[delivery.sendgrid]
host = "{host}"
concurrency = 4
rate = {rate}
[[digests]]
name = "weekly"
""",
        encoding="utf-8",
    )
    return path


def setup(cfg_path: Path, n: int) -> int:
    import sqlalchemy as sa

    from newsletter.config import load_config
    from newsletter.store import open_store
    from newsletter.store.deliveries import AudienceRow
    from newsletter.store.schema import subscribers, subscriptions

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
                    "name": f"Reader {i}",
                    "timezone": "UTC",
                    "status": "active",
                    "status_reason": "",
                    "soft_bounces": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(1, n + 1)
            ],
        )
        # every reader on every digest ("*"), as an import makes them
        conn.execute(sa.insert(subscriptions), every_digest_rows(range(1, n + 1), now))
    eid, _ = store.create_edition(
        digest="weekly",
        period="bench",
        subject="The Steppe Ledger: weekly digest",
        window_start=now,
        window_end=now,
        info={"edition_date": "30 November 2026"},
        variants={"default": []},
    )
    rows = [AudienceRow(i, f"reader{i}@example.com", "default") for i in range(1, n + 1)]
    store.freeze_audience(eid, rows)
    store.close()
    return eid


def child(cfg_path: str, edition_id: int) -> None:
    from newsletter.config import load_config
    from newsletter.delivery.backends import make_backend
    from newsletter.delivery.send import send_edition
    from newsletter.models import Rendered
    from newsletter.store import open_store

    cfg = load_config(cfg_path)
    store = open_store(cfg.database_url)
    html = "<p>Hello %%name%%</p><a href='%%unsubscribe_url%%'>Unsubscribe</a>"
    render = Rendered(subject="digest", html=html, text="Unsubscribe: %%unsubscribe_url%%\n")
    t = time.perf_counter()
    report = send_edition(store, cfg, edition_id, {"default": render}, make_backend(cfg))
    print(json.dumps({"accepted": report.accepted, "seconds": time.perf_counter() - t}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=50_000)
    ap.add_argument("--rate", type=float, default=1000.0, help="messages/s of the send")
    ap.add_argument("--unsubscribes", type=float, default=20.0, help="one-click POSTs a second")
    ap.add_argument("--db", default="", help="a PostgreSQL URL (default: a fresh SQLite file)")
    ap.add_argument("--child", nargs=2, metavar=("CONFIG", "EDITION"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    import httpx

    from newsletter.config import load_config
    from newsletter.delivery.message import unsubscribe_url
    from newsletter.store import open_store
    from newsletter.tracking.app import create_app
    from newsletter.tracking.status import edition_status
    from tests.fakes.event_webhook import LiveApp
    from tests.fakes.sendgrid import FakeSendGrid

    os.environ["SENDGRID_API_KEY"] = API_KEY
    os.environ["NEWSLETTER_SECRET_KEY"] = SECRET
    os.environ.pop("NEWSLETTER_SENDGRID_HOST", None)
    fake = FakeSendGrid(api_key=API_KEY, validator="fast", keep_bodies=False)
    with fake, tempfile.TemporaryDirectory() as tmp, scratch_database(args.db, Path(tmp)) as db:
        cfg_path = write_config(Path(tmp), db, fake.url, args.rate)
        eid = setup(cfg_path, args.subscribers)
        cfg = load_config(cfg_path)
        store = open_store(cfg.database_url)
        answered: dict[str, float] = {}
        stop = threading.Event()
        with LiveApp(create_app(cfg, store)) as srv:

            def leave() -> None:
                rng = random.Random(12)
                ids = rng.sample(range(1, args.subscribers + 1), args.subscribers)
                with httpx.Client() as client:
                    for sid in ids:
                        if stop.is_set():
                            return
                        t = time.monotonic()
                        path = unsubscribe_url(cfg, sid, "weekly").removeprefix(cfg.site.public_url)
                        r = client.post(
                            srv.url(path),
                            content=b"List-Unsubscribe=One-Click",
                            headers={"Content-Type": "application/x-www-form-urlencoded"},
                        )
                        if r.status_code == 200:
                            answered[f"reader{sid}@example.com"] = time.time()
                        time.sleep(max(0.0, 1 / args.unsubscribes - (time.monotonic() - t)))

            proc = subprocess.Popen(
                [sys.executable, __file__, "--child", str(cfg_path), str(eid)],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(1.0)
            thread = threading.Thread(target=leave, daemon=True)
            thread.start()
            out, _ = proc.communicate()
            stop.set()
            thread.join()
        result = json.loads(out.strip().splitlines()[-1])
        with fake.lock:
            taken = {t.email: t.at for t in fake.accepted}
        late = sorted(taken[e] - t for e, t in answered.items() if e in taken and taken[e] > t)
        data = edition_status(store, eid)
        store.close()
    engine = "postgresql" if db.startswith("postgresql") else "sqlite"
    print(
        f"database: {engine}; {args.subscribers:,} recipients at {args.rate:,.0f}/s, "
        f"{args.unsubscribes:g} one-click unsubscribes/s"
    )
    print(f"send: {result['accepted']:,} accepted in {result['seconds']:.1f}s")
    print(f"unsubscribes answered during the send: {len(answered)}")
    print(
        f"readers mailed after their unsubscribe answered: {len(late)}"
        + (f" (up to {late[-1]:.2f}s after)" if late else "")
    )
    print(
        f"edition's unsubscribes: {data['unsubscribes']} "
        f"(mailed {data['counts']['unsubscribed']}, "
        f"left before their turn {data['counts']['left']})"
    )


if __name__ == "__main__":
    main()
