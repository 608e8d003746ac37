"""What scheduling costs: the schedule maths, and a run every 5 minutes that finds
nothing due (the common case), with a local-time digest over many subscribers.

    .venv/bin/python benchmarks/schedule_bench.py [subscribers]

Prints figures; writes only into a temporary folder.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import available_timezones

from newsletter import schedule
from newsletter.config import DigestConfig, load_config
from newsletter.jobs.run import run as run_job
from newsletter.models import Article, Subscriber, Tag
from newsletter.store import open_store


def per_call(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def main() -> None:
    subs = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    weekly = DigestConfig(schedule="0 7 * * MON", timezone="Asia/Almaty")
    minutely = DigestConfig(schedule="* * * * *", timezone="Europe/Berlin")
    zones = [schedule.zone(z) for z in sorted(available_timezones())[:400]]
    local = DigestConfig(schedule="0 7 * * MON", timezone="Asia/Almaty", local_time=True)
    figures = [
        ("period of a weekly schedule", lambda: schedule.current_period(weekly, now), 2000),
        ("period of a minutely schedule", lambda: schedule.current_period(minutely, now), 2000),
        (
            "local-time period over 400 zones",
            lambda: schedule.current_period(local, now, zones),
            20,
        ),
        ("next 100 runs of a weekly", lambda: schedule.next_runs(weekly, now, 100), 50),
    ]
    for label, fn, n in figures:
        print(f"{label + ':':34} {per_call(fn, n):.3f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "n.toml").write_text(
            f'database = "sqlite:///{folder}/b.db"\n[delivery]\noutbox_dir = "outbox"\n'
            '[[digests]]\nname = "weekly"\ntags = ["kazakhstan"]\nschedule = "0 7 * * MON"\n'
            'timezone = "Asia/Almaty"\nlocal_time = true\n',
            encoding="utf-8",
        )
        cfg = load_config(folder / "n.toml", env={"NEWSLETTER_SECRET_KEY": "bench-secret-key"})
        store = open_store(cfg.database_url)
        names = [z.key for z in zones[:50]]
        for i in range(subs):
            store.upsert_subscriber(
                Subscriber(email=f"r{i}@example.com", timezone=names[i % len(names)])
            )
        store.upsert_articles(
            [
                Article(
                    uid="a1",
                    url="https://x.example/1",
                    title="Story",
                    published_at=now - timedelta(days=1),
                    tags=[Tag.from_name("Kazakhstan")],
                )
            ]
        )
        start = time.perf_counter()
        # Monday 07:05 at UTC+3: the first of the 50 zones are due
        first = run_job(store, cfg, datetime(2026, 11, 30, 4, 5, tzinfo=UTC))
        took = time.perf_counter() - start
        d = first.digests[0]
        print(
            f"local-time edition, {subs} subscribers in 50 zones: compiled, frozen and first "
            f"zones sent in {took:.2f} s ({d.send.accepted} sent, {d.waiting} waiting)"
        )
        later = datetime(2026, 12, 1, 4, 5, tzinfo=UTC)
        run_job(store, cfg, later)  # every zone is released by now
        start = time.perf_counter()
        n = 10
        for _ in range(n):
            report = run_job(store, cfg, later + timedelta(minutes=5))
        assert report.digests[0].status == "already-sent"
        print(
            f"a run with nothing due ({subs} subscribers, local time): "
            f"{(time.perf_counter() - start) / n * 1e3:.1f} ms"
        )
        store.close()


if __name__ == "__main__":
    main()
