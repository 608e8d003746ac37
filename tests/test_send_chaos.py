"""Chaos: kills, dropped connections, late events, then the operator resends what is held.

Real `newsletter send` processes against the fake SendGrid, on SQLite and on
PostgreSQL (there with two senders at once):

1. rounds of senders, each SIGKILLed at its own random moment, while the fake
   drops the connection after reading one request in ten (the request was taken,
   the answer never comes: an unknown outcome);
   (and one in twenty-five is never taken nor answered: held, and sent again);
2. SendGrid's events arrive late, through the webhook's code, for a random part
   of what the fake took (at least one recipient of each request it took, as
   SendGrid reports every recipient it processes), some between rounds, some at
   the end;
3. one uninterrupted send, then `send --resolve BATCH resend` on every batch
   still held, then a last send.

Counted from what the fake accepted: every subscriber got the edition exactly
once: 0 duplicates, 0 lost.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.store import open_store
from newsletter.tracking.webhook import ingest_sendgrid
from tests.fakes.event_webhook import body_of
from tests.fakes.sendgrid import FakeSendGrid
from tests.helpers import SENDGRID_KEY, build_config, prepare, sender

N = 300


def kill_rounds(fake, env, rng, *, senders: int, rounds: int, deadline: float) -> int:
    """Start ``senders`` processes and SIGKILL each at its own random moment; repeat.

    Most kills come just after one of the fake's next few requests arrived (while
    a request is in flight, or its answer is being recorded); one in four at a
    random time (while starting, recovering, claiming).
    """
    kills = 0
    for _ in range(rounds):
        if time.monotonic() > deadline:
            break
        procs = []
        for _ in range(senders):
            before = fake.sent_requests
            if rng.random() < 0.25:
                when = ("time", time.monotonic() + rng.uniform(0.3, 2.5))
            else:
                when = ("request", before + rng.randint(1, 5), rng.uniform(0, 0.08))
            procs.append((sender(env, fake.url), when))
        live = list(procs)
        while live:
            for item in list(live):
                p, when = item
                if p.poll() is not None:
                    live.remove(item)
                    continue
                due = (
                    time.monotonic() >= when[1]
                    if when[0] == "time"
                    else fake.sent_requests >= when[1]
                )
                if due:
                    if when[0] == "request":
                        time.sleep(when[2])
                    p.send_signal(signal.SIGKILL)
                    p.wait()
                    kills += 1
                    live.remove(item)
            time.sleep(0.002)
        for p, _ in procs:
            p.wait()
            if p.stderr:
                p.stderr.close()
        late_events(fake, env, rng, share=0.5)
    return kills


_reported: set[int] = set()


def late_events(fake: FakeSendGrid, env: dict, rng: random.Random, *, share: float) -> int:
    """SendGrid's "processed" events, late, for part of what it took and has not reported.

    Per request taken: at least one recipient, then each other with ``share``.
    """
    cfg = build_config(Path(env["NEWSLETTER_CONFIG"]).parent, env=env)
    store = open_store(env["NEWSLETTER_DATABASE_URL"])
    by_request: dict[int, list] = defaultdict(list)
    with fake.lock:
        taken = [t for t in fake.accepted if fake.went_out(t)]
    for t in taken:
        by_request[t.request].append(t)
    events = []
    for request, ts in by_request.items():
        if request in _reported or rng.random() > share:
            continue
        _reported.add(request)
        chosen = [t for t in ts if rng.random() < 0.3] or [rng.choice(ts)]
        for t in chosen:
            events.append(
                {
                    "email": t.email,
                    "timestamp": int(time.time()),
                    "event": "processed",
                    "sg_event_id": f"chaos-{request}-{t.delivery_id}",
                    "sg_message_id": f"{t.message_id}.filter0001.1.0",
                    "newsletter_delivery_id": t.delivery_id,
                    "newsletter_edition_id": t.edition_id,
                }
            )
    if events:
        ingest_sendgrid(store, cfg, body_of(events))
    store.close()
    return len(events)


def run_to_the_end(env: dict, host: str, eid: int, tries: int = 6) -> None:
    """Uninterrupted sends until nothing is queued (one may stop after 3 unknowns in a row)."""
    store = open_store(env["NEWSLETTER_DATABASE_URL"])
    try:
        for _ in range(tries):
            proc = sender(env, host)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode in (0, 1, 3), err
            counts = Counter()
            for c in store.delivery_counts(eid).values():
                counts.update(c)
            if not counts["queued"] and not counts["claimed"]:
                return
        raise AssertionError(f"still queued after {tries} sends: {dict(counts)}")
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_chaos_then_resolve_resend_sends_everyone_exactly_once(engine, tmp_path, request):
    db_url = (
        f"sqlite:///{tmp_path / 'news.db'}"
        if engine == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    _reported.clear()
    eid, env = prepare(tmp_path, db_url, N, sendgrid="max_retries = 2\n")
    toml = tmp_path / "newsletter.toml"
    toml.write_text(toml.read_text().replace("timeout = 5", "timeout = 1"))
    rng = random.Random(1207)
    started = time.monotonic()
    with FakeSendGrid(api_key=SENDGRID_KEY, latency=0.1) as fake:
        # dropped connections after the request was read (taken, no answer), one
        # request in ten; one in twenty-five never taken and never answered
        fake.hang = 1.3
        fake.random_faults({"reset": 0.1, "timeout-lost": 0.04}, seed=9)
        kills = kill_rounds(
            fake,
            env,
            rng,
            senders=2 if engine == "postgresql" else 1,
            rounds=8,
            deadline=started + 14,
        )
        assert kills >= 3
        run_to_the_end(env, fake.url, eid)
        late_events(fake, env, rng, share=1.0)  # the rest of the late events
        fake.random_faults({})
        store = open_store(db_url)
        held = store.unresolved_batches(eid)
        runner = CliRunner()
        skipped = 0
        for b in held:
            out = runner.invoke(cli, ["send", "--resolve", b.id, "resend", "--json"], env=env)
            assert out.exit_code == 0, out.output
            skipped += json.loads(out.stdout)["skipped"]
        run_to_the_end(env, fake.url, eid)
        batches = store.list_batches(eid)
        proven = sum(1 for b in batches if "outcome was unknown; accepted" in b.error)
        resent = sum(1 for b in batches if b.error == "resolved: resend")
        requeued = sum(1 for b in batches if "worker died" in b.error)
        taken = Counter(int(t.delivery_id) for t in fake.accepted if fake.went_out(t))
        rows = store.list_deliveries(eid)
        duplicates = {d: n for d, n in taken.items() if n > 1}
        lost = [d.id for d in rows if not taken.get(d.id)]
        print(
            f"{engine}: {kills} kills, {fake.sent_requests} requests, "
            f"{proven} unknown batches proven by events, {len(held)} held at the end "
            f"({resent} resent, {skipped} deliveries skipped by evidence), "
            f"{requeued} dead workers' batches requeued; "
            f"{len(duplicates)} duplicates, {len(lost)} lost, "
            f"{time.monotonic() - started:.1f}s"
        )
        assert duplicates == {} and lost == []
        assert proven + len(held) > 0, "no batch ever had an unknown outcome"
        assert len(rows) == N and sum(taken.values()) == N
        assert fake.delivered() == Counter({f"p{i}@example.com": 1 for i in range(N)})
        assert store.unresolved_batches(eid) == []
        assert store.get_edition(eid).status == "sent"
        store.close()
