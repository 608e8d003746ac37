"""The run lock: in one process, across real processes, and after a `kill -9`.

The cross-process tests start real `python -m newsletter run` processes against the
same SQLite file or PostgreSQL schema, as cron would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.errors import StoreError
from newsletter.models import Subscriber
from newsletter.store import open_store
from newsletter.store.locks import worker_id
from tests.fakes.http import LoopbackServer, Reply

ROOT = Path(__file__).parent.parent
AT = "2026-11-30T07:05:00+05:00"

CONFIG = """
database = "{db}"

[site]
name = "The Steppe Ledger"
from_email = "digest@steppe-ledger.example"
postal_address = "1 Abai Avenue, Almaty"

[[sources]]
name = "site"
url = "{feed}"

[delivery]
backend = "outbox"
outbox_dir = "outbox"

[[digests]]
name = "weekly"
tags = ["kazakhstan", "uzbekistan", "kyrgyzstan", "tajikistan", "turkmenistan"]
schedule = "0 7 * * MON"
timezone = "Asia/Almaty"
"""


# --------------------------------------------------------------------------- in one process


def test_a_second_holder_is_refused_until_the_first_releases(db_url):
    a, b = open_store(db_url), open_store(db_url)
    try:
        first = a.run_lock("run", "host-a:1")
        assert first is not None
        assert b.run_lock("run", "host-b:2") is None
        held = b.lock_holder("run")
        assert held.holder == "host-a:1" and not held.stale
        first.release()
        assert b.lock_holder("run") is None
        second = b.run_lock("run", "host-b:2")
        assert second is not None
        assert a.run_lock("run", "host-a:1") is None
        second.release()
    finally:
        a.close()
        b.close()


def test_a_run_whose_lock_connection_dropped_stops(pg_url):
    store, admin = open_store(pg_url), open_store(pg_url)
    try:
        lock = store.run_lock("run", "a:1")
        lock.check()  # fine while the connection lives
        pid = lock._conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with admin.engine.begin() as c:
            c.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with pytest.raises(StoreError, match="lost the run lock"):
            lock.check()
        lock.release()  # still safe to call
        # and the server freed the lock with the connection
        again = admin.run_lock("run", "b:2", wait=5, poll=0.05)
        assert again is not None
        again.release()
    finally:
        store.close()
        admin.close()


def test_a_waiting_run_gets_the_lock_when_the_holder_finishes(db_url):
    a, b = open_store(db_url), open_store(db_url)
    try:
        held = a.run_lock("run", "a:1")
        threading.Timer(0.6, held.release).start()
        started = time.monotonic()
        got = b.run_lock("run", "b:2", wait=10, poll=0.1)
        waited = time.monotonic() - started
        assert got is not None and 0.5 <= waited < 5
        got.release()
        # and a short wait gives up
        held = a.run_lock("run", "a:1")
        started = time.monotonic()
        assert b.run_lock("run", "b:2", wait=0.3, poll=0.1) is None
        assert time.monotonic() - started >= 0.3
        held.release()
    finally:
        a.close()
        b.close()


def test_row_lock_of_a_dead_process_on_this_machine_is_taken_over(store):
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = f"{worker_id().rpartition(':')[0]}:{proc.stdout.strip()}"
    assert store.acquire_lock("run", dead, ttl=timedelta(hours=2))
    # a holder on another machine: only the expiry can tell, so it keeps the lock
    assert store.acquire_lock("other", "elsewhere:1", ttl=timedelta(hours=2))
    assert not store.acquire_lock("other", worker_id(), ttl=timedelta(hours=2))
    assert store.acquire_lock("run", worker_id(), ttl=timedelta(hours=2))
    assert store.lock_holder("run").holder == worker_id()


def test_the_run_lock_replaces_the_row_a_killed_run_left(store):
    store.acquire_lock("run", "gone-host:4242", ttl=timedelta(hours=2))
    lock = store.run_lock("run", worker_id())
    assert lock is not None and lock.how in ("advisory", "flock")
    assert store.lock_holder("run").holder == worker_id()
    lock.release()
    assert store.lock_holder("run") is None


# --------------------------------------------------------------------------- real processes


def _env(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_SECRET_KEY="test-secret-key-0123456789",
        NEWSLETTER_CONFIG=str(project / "newsletter.toml"),
        PYTHONPATH=str(ROOT),
    )
    return env


def _project(tmp_path: Path, db_url: str, feed: str) -> Path:
    (tmp_path / "newsletter.toml").write_text(CONFIG.format(db=db_url, feed=feed), "utf-8")
    shutil.copy(ROOT / "newsletter" / "samples" / "feed.xml", tmp_path / "feed.xml")
    store = open_store(db_url)
    for i in range(5):
        store.upsert_subscriber(Subscriber(email=f"reader{i}@example.com"))
    store.close()
    return tmp_path


def _start_run(project: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "run", "--at", AT, "--json", *args],
        cwd=project,
        env=_env(project),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> tuple[int, dict, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, json.loads(out) if out.strip() else {}, err


def _emls(project: Path) -> list[Path]:
    return sorted((project / "outbox").rglob("*.eml"))


@pytest.fixture
def slow_feed():
    """The sample feed over loopback HTTP, held back until the test sets ``srv.go``: the
    first run holds the lock while it waits, so a second one surely overlaps it."""
    body = (ROOT / "newsletter" / "samples" / "feed.xml").read_bytes()
    go = threading.Event()

    def answer(req):
        go.wait(30)
        return Reply(body=body, headers={"Content-Type": "application/rss+xml"})

    with LoopbackServer(answer) as srv:
        srv.go = go
        yield srv
        go.set()


def _wait_for(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_overlapping_runs_in_two_processes_send_once(db_url, tmp_path, slow_feed):
    project = _project(tmp_path, db_url, slow_feed.url("/feed"))
    first = _start_run(project)
    # the first run holds the lock once it is fetching the feed
    _wait_for(lambda: slow_feed.requests)
    second = _start_run(project)
    code2, report2, err2 = _finish(second)
    # the second gave way cleanly: exit 0, no digest touched, the holder named
    assert code2 == 0, err2
    assert report2["digests"] == [] and report2["locked_by"]
    assert "another run holds the lock" in err2
    # a third is told to wait: it runs once the first is done, and finds the period sent
    third = _start_run(project, "--wait", "60")
    time.sleep(1.0)  # let it reach the lock and wait on it
    slow_feed.go.set()
    code1, report1, err1 = _finish(first)
    code3, report3, err3 = _finish(third)
    assert code1 == code3 == 0, err1 + err3
    assert report1["digests"][0]["status"] == "sent"
    assert report3["digests"][0]["status"] == "already-sent"
    assert len(_emls(project)) == 5


HOLDER = """
import sys, time
from newsletter.store.locks import worker_id
from newsletter.errors import StoreError
from newsletter.store import open_store
store = open_store(sys.argv[1])
lock = store.run_lock("run", worker_id())
print("held" if lock else "refused", flush=True)
time.sleep(120)
"""


def test_a_lock_left_by_a_killed_run_is_recovered(db_url, tmp_path):
    project = _project(tmp_path, db_url, "feed.xml")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db_url],
        cwd=project,
        env=_env(project),
        stdout=subprocess.PIPE,
        text=True,
    )
    store = open_store(db_url)
    try:
        assert holder.stdout.readline().strip() == "held"
        shown = subprocess.run(
            [sys.executable, "-m", "newsletter", "schedule", "--json"],
            cwd=project,
            env=_env(project),
            capture_output=True,
            text=True,
            timeout=60,
        )
        lock = json.loads(shown.stdout)["lock"]
        assert lock["holder"] == f"{worker_id().rpartition(':')[0]}:{holder.pid}"
        assert lock["stale"] is False
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        # nothing released the lock on purpose; the kernel / the server drops it
        _wait_for(lambda: store.lock_holder("run").stale, timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
    started = time.monotonic()
    code, report, err = _finish(_start_run(project, "--wait", "20"))
    assert code == 0, err
    assert time.monotonic() - started < 20
    assert report["digests"][0]["status"] == "sent"
    assert len(_emls(project)) == 5
    assert store.lock_holder("run") is None  # the killed run's row was replaced, then freed
    store.close()
