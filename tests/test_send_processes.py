"""Real `newsletter send` processes against the fake SendGrid: sharing a send, and crashes.

Two processes on one edition never send the same delivery (PostgreSQL and
SQLite). A sender killed with SIGKILL at random points, many times, loses
nobody and sends nobody twice: each subscriber is accepted exactly once by the
fake server or listed as unresolved.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.store import open_store
from newsletter.store.schema import events
from tests.fakes.sendgrid import FakeSendGrid
from tests.helpers import AT, ROOT, SAMPLE_CONFIG, SECRET, SENDGRID_KEY, prepare, sender


@pytest.mark.parametrize(
    "engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_two_senders_share_one_edition_and_never_send_a_delivery_twice(engine, tmp_path, request):
    db_url = (
        f"sqlite:///{tmp_path / 'news.db'}"
        if engine == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    eid, env = prepare(tmp_path, db_url, 200)
    with FakeSendGrid(api_key=SENDGRID_KEY, latency=0.12) as fake:
        procs = [sender(env, fake.url) for _ in range(2)]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errors
        assert fake.delivered() == Counter({f"p{i}@example.com": 1 for i in range(200)})
        assert sorted(int(t.delivery_id) for t in fake.accepted) == sorted(
            set(int(t.delivery_id) for t in fake.accepted)
        )
    store = open_store(db_url)
    assert store.delivery_counts(eid) == {"default": {"accepted": 200}}
    workers = {b.worker for b in store.list_batches(eid)}
    assert len(workers) == 2, "both processes should have sent part of the edition"
    assert store.get_edition(eid).status == "sent"
    store.close()


@pytest.mark.parametrize(
    "engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_send_workers_share_one_edition_and_never_send_anyone_twice(engine, tmp_path, request):
    """`newsletter send --workers 3`: three processes, every subscriber exactly once."""
    db_url = (
        f"sqlite:///{tmp_path / 'news.db'}"
        if engine == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    n = 300
    eid, env = prepare(tmp_path, db_url, n)
    # slow enough answers that the helpers (spawned: a second or two to start) find work
    with FakeSendGrid(api_key=SENDGRID_KEY, latency=0.3) as fake:
        proc = subprocess.run(
            [sys.executable, "-m", "newsletter", "send", "--at", AT, "--workers", "3", "--json"],
            env={**env, "NEWSLETTER_SENDGRID_HOST": fake.url},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert fake.delivered() == Counter({f"p{i}@example.com": 1 for i in range(n)})
        ids = [int(t.delivery_id) for t in fake.accepted]
        assert len(ids) == len(set(ids)) == n

    sent = json.loads(proc.stdout)["digests"][-1]["send"]
    store = open_store(db_url)
    batches = store.list_batches(eid)
    # the report adds up what every process did; on PostgreSQL a claim skips rows
    # another process holds locked, so a batch may be short and there may be more
    assert (sent["accepted"], sent["batches"], sent["failed"]) == (n, len(batches), 0)
    assert len(batches) >= n // 10
    assert sum(b.size for b in batches) == n and max(b.size for b in batches) <= 10
    assert store.delivery_counts(eid) == {"default": {"accepted": n}}
    workers = {b.worker for b in batches}
    # more than one process sent (on a loaded machine a late helper may find nothing left)
    assert 2 <= len(workers) <= 3, f"the processes should have shared the send: {workers}"
    assert store.get_edition(eid).status == "sent"
    store.close()


def test_send_workers_and_delivery_processes_are_checked(tmp_path):
    path = tmp_path / "newsletter.toml"
    path.write_text(SAMPLE_CONFIG, encoding="utf-8")
    env = {"NEWSLETTER_CONFIG": str(path), "NEWSLETTER_SECRET_KEY": SECRET}
    out = CliRunner().invoke(cli, ["send", "--workers", "0"], env=env)
    assert out.exit_code == 2 and "--workers" in out.output
    path.write_text(
        SAMPLE_CONFIG.replace("[delivery]", "[delivery]\nprocesses = 0"), encoding="utf-8"
    )
    out = CliRunner().invoke(cli, ["send", "--workers", "2"], env=env)
    assert out.exit_code != 0 and "delivery.processes" in out.output


def kill_loop(fake: FakeSendGrid, env: dict, rounds: int, deadline: float) -> int:
    """Start a sender, let it reach a random point, SIGKILL it; repeat. Returns the kills.

    Two rounds in three kill just after the sender's n-th request reached the fake
    (before its answer, or before the answer was recorded); every third kills at
    a random time after the start (while compiling, recovering, claiming...).
    """
    rng = random.Random(6)
    kills = 0
    for i in range(rounds):
        if time.monotonic() > deadline:
            break
        before = fake.sent_requests
        proc = sender(env, fake.url)
        if i % 3 == 2:
            time.sleep(rng.uniform(0.2, 2.5))
        else:
            target = before + rng.randint(1, 3)
            while proc.poll() is None and fake.sent_requests < target:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is not None:
            break  # it finished the edition before we could kill it
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    return kills


def per_delivery(fake: FakeSendGrid) -> Counter:
    return Counter(int(t.delivery_id) for t in fake.accepted if fake.went_out(t))


def finish(env: dict, host: str) -> None:
    proc = sender(env, host)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 3), err


def check_none_lost_none_twice(store, eid: int, fake: FakeSendGrid) -> list:
    taken = per_delivery(fake)
    rows = store.list_deliveries(eid)
    unresolved = []
    for d in rows:
        n = taken.get(d.id, 0)
        assert d.status in ("accepted", "unresolved"), d
        if d.status == "accepted":
            assert n == 1, f"delivery {d.id} taken {n} times"
        else:
            assert n <= 1, f"unresolved delivery {d.id} taken {n} times"
            unresolved.append(d)
    return unresolved


@pytest.mark.slow
def test_killed_senders_lose_nobody_and_send_nobody_twice(tmp_path):
    """Plain sends: unknown batches are held; webhook events then settle them."""
    db_url = f"sqlite:///{tmp_path / 'news.db'}"
    eid, env = prepare(tmp_path, db_url, 250)
    with FakeSendGrid(api_key=SENDGRID_KEY, latency=0.03) as fake:
        kills = kill_loop(fake, env, rounds=12, deadline=time.monotonic() + 32)
        assert kills >= 5
        finish(env, fake.url)
        store = open_store(db_url)
        held = check_none_lost_none_twice(store, eid, fake)
        taken = per_delivery(fake)
        assert held, "no kill left a batch with an unknown outcome"
        # the tracking webhook now stores what SendGrid reports for what it took
        # (SendGrid's clock: after the requests)
        now = datetime.now(UTC)
        with store.begin() as conn:
            for d in held:
                if taken.get(d.id):
                    conn.execute(
                        sa.insert(events).values(
                            provider="sendgrid",
                            provider_event_id=f"ev{d.id}",
                            delivery_id=d.id,
                            edition_id=eid,
                            type="queued",
                            raw_type="processed",
                            email=d.email,
                            occurred_at=now,
                            reason="",
                            url="",
                            received_at=now,
                            raw={"event": "processed"},
                        )
                    )
        finish(env, fake.url)
        still = check_none_lost_none_twice(store, eid, fake)
        assert all(not taken.get(d.id) for d in still)
        # what is left never reached SendGrid: the operator sends it again
        for batch in store.unresolved_batches(eid):
            out = CliRunner().invoke(cli, ["send", "--resolve", batch.id, "resend"], env=env)
            assert out.exit_code == 0, out.output
        finish(env, fake.url)
        assert not check_none_lost_none_twice(store, eid, fake)
        assert per_delivery(fake) == Counter({d.id: 1 for d in store.list_deliveries(eid)})
        assert store.get_edition(eid).status == "sent"
        store.close()


@pytest.mark.slow
def test_killed_scheduled_senders_cancel_and_resend_unknown_batches(tmp_path):
    """With send_at and batch ids every unknown batch is cancelled and sent again."""
    db_url = f"sqlite:///{tmp_path / 'news.db'}"
    eid, env = prepare(tmp_path, db_url, 250, sendgrid="schedule_delay = 600\ncancel_margin = 60\n")
    # answers take 0.2 s, longer than the kill loop's 0-50 ms wait after a request
    # arrives: a targeted kill lands before the answer even on a loaded machine, so
    # some batch is always left unknown and has to be cancelled
    with FakeSendGrid(api_key=SENDGRID_KEY, latency=0.2) as fake:
        kills = kill_loop(fake, env, rounds=12, deadline=time.monotonic() + 32)
        assert kills >= 5
        finish(env, fake.url)
        store = open_store(db_url)
        assert not check_none_lost_none_twice(store, eid, fake)
        assert "cancel" in fake.scheduled.values(), "no kill left a batch to cancel"
        assert per_delivery(fake) == Counter({d.id: 1 for d in store.list_deliveries(eid)})
        assert fake.delivered() == Counter({f"p{i}@example.com": 1 for i in range(250)})
        assert store.get_edition(eid).status == "sent"
        store.close()
