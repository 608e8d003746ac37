"""Nobody is mailed after they left: claims skip subscribers who are no longer active
or who left the edition's digest.

A delivery whose subscriber unsubscribed, bounced, complained or was suppressed
after the freeze becomes ``left`` when its turn comes, and is never sent. An
unsubscribe made during a send counts in that edition's statistics. The load
test sends with a real ``newsletter send`` process to the fake SendGrid while
readers unsubscribe through the real one-click endpoint, and checks the
fake's clock: no reader's message reached it after their unsubscribe answered.
"""

from __future__ import annotations

import random
import threading
import time

import httpx
import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.delivery.message import UnsubscribeLinks, unsubscribe_url
from newsletter.delivery.send import send_edition
from newsletter.store import open_store
from newsletter.store.schema import events
from newsletter.tracking import unsubscribe as unsub
from newsletter.tracking.app import create_app
from newsletter.tracking.status import edition_status
from tests.fakes.event_webhook import LiveApp
from tests.fakes.recording import RecordingBackend
from tests.fakes.sendgrid import FakeSendGrid
from tests.helpers import (
    AT,
    DELIVERY_CONFIG,
    RENDER,
    SECRET_ENV,
    SENDGRID_KEY,
    build_config,
    freeze_audience,
    make_edition,
    prepare,
    sender,
    statuses,
    unfinished,
)

ONE_CLICK = {
    "content": b"List-Unsubscribe=One-Click",
    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
}


def subscriber_ids(store, eid):
    return {d.subscriber_id: d for d in store.list_deliveries(eid)}


def test_a_claim_skips_subscribers_who_left_since_the_freeze(store, make_config):
    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV, delivery={"batch_size": 2})
    eid = make_edition(store, 7)
    rows = store.list_deliveries(eid)
    # after the freeze: two unsubscribe, one bounces, one is suppressed, one
    # leaves this digest only (and keeps the others)
    kinds = ("unsubscribed", "unsubscribed", "bounced", "suppressed")
    for d, status in zip(rows[:4], kinds, strict=True):
        assert store.suppress_subscriber(d.subscriber_id, status, "test")
    assert store.leave(rows[4].subscriber_id, ["weekly"]) == ["weekly"]
    backend = RecordingBackend(cfg)
    report = send_edition(store, cfg, eid, {"default": RENDER}, backend)
    # the first two claims found only leavers and moved on: no empty batch was sent
    assert sorted(backend.sent) == [d.id for d in rows[5:]]
    assert report.accepted == 2 and report.left == 5
    assert statuses(store, eid) == {"left": 5, "accepted": 2}
    left = {d.id: d.error for d in store.list_deliveries(eid, status="left")}
    assert left == {
        rows[0].id: "unsubscribed",
        rows[1].id: "unsubscribed",
        rows[2].id: "bounced",
        rows[3].id: "suppressed",
        rows[4].id: "left the digest",
    }
    assert all(d.batch_id is None for d in store.list_deliveries(eid, status="left"))
    # leaving is not a failure: the edition is sent, and a rerun sends nobody
    assert store.get_edition(eid).status == "sent"
    send_edition(store, cfg, eid, {"default": RENDER}, backend)
    assert len(backend.sent) == 2


def test_an_unsubscribe_during_a_send_counts_in_that_edition(store, db_url, project, make_config):
    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV, delivery={"batch_size": 2})
    first = make_edition(store, 4)
    send_edition(store, cfg, first, {"default": RENDER}, RecordingBackend(cfg))
    # the next edition of the same digest, to the same readers, is being sent
    eid, _ = store.create_edition(
        digest="weekly", period="p-next", subject="s", window_start=None, window_end=None
    )
    readers = [(d.subscriber_id, d.email) for d in store.list_deliveries(first)]
    freeze_audience(store, eid, {"default": readers})
    links = UnsubscribeLinks(cfg, "weekly")

    def leave(sid):
        token = links(sid).rsplit("/", 1)[1]
        unsub.leave(cfg, store, unsub.resolve(cfg, store, token), ["weekly"])

    mailed, other = readers[0][0], readers[1][0]
    send_until_stopped(store, cfg, eid, _OneBatch(cfg))  # readers 0 and 1 are mailed
    leave(readers[2][0])  # before their turn: counted here, and not mailed
    leave(mailed)
    send_edition(store, cfg, eid, {"default": RENDER}, RecordingBackend(cfg))
    by_sub = subscriber_ids(store, eid)
    assert by_sub[mailed].status == "unsubscribed"
    assert by_sub[readers[2][0]].status == "left"
    assert by_sub[other].status == "accepted"
    data = edition_status(store, eid)
    assert data["counts"]["unsubscribed"] == 1 and data["counts"]["left"] == 1
    assert data["unsubscribes"] == 2
    # the earlier edition is not credited with them
    assert edition_status(store, first)["unsubscribes"] == 0
    out = CliRunner().invoke(cli, ["--db", db_url, "status", str(eid)])
    assert "unsubscribes 2 (mailed 1, before their turn 1)" in out.output
    assert "  left                 1" in out.output


def test_an_unsubscribe_answers_only_after_the_readers_message_in_flight_is_out(store, make_config):
    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV)
    eid = make_edition(store, 1)
    batch = store.claim_batch(eid, backend="recording", limit=1)  # a sender is calling
    (d,) = batch.deliveries
    token = UnsubscribeLinks(cfg, "weekly")(d.subscriber_id).rsplit("/", 1)[1]
    done = threading.Event()

    def leave():
        unsub.leave(cfg, store, unsub.resolve(cfg, store, token), ["weekly"])
        done.set()

    threading.Thread(target=leave, daemon=True).start()
    assert not done.wait(0.5), "answered while the reader's message was still in flight"
    store.finish_batch(batch.id, message_id="m")  # the provider answered
    assert done.wait(5)
    # the send applies the events that came while its deliveries were claimed
    store.apply_stored_events(edition_id=eid)
    assert store.delivery_status(d.id) == "unsubscribed"


class _OneBatch(RecordingBackend):
    """Sends one batch, then stops the send (as a crash between batches would)."""

    def send_batch(self, message, recipients, provider_batch_id=""):
        if self.sent:
            from newsletter.errors import TransientError

            raise TransientError("stop here")
        return super().send_batch(message, recipients, provider_batch_id=provider_batch_id)


def send_until_stopped(store, cfg, eid, backend):
    from newsletter.errors import TransientError

    with pytest.raises(TransientError):
        send_edition(store, cfg, eid, {"default": RENDER}, backend)


@pytest.mark.slow
@pytest.mark.parametrize(
    "engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_nobody_is_mailed_after_their_one_click_unsubscribe_answered(
    engine, tmp_path, request, make_config
):
    n = 3000
    db_url = (
        f"sqlite:///{tmp_path / 'news.db'}"
        if engine == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    eid, env = prepare(tmp_path, db_url, n)
    cfg = build_config(
        tmp_path, env=env, delivery={"batch_size": 50, "sendgrid": {"concurrency": 2}}
    )
    store = open_store(db_url)
    rows = {d.subscriber_id: d for d in store.list_deliveries(eid)}
    answered: dict[str, float] = {}
    stop = threading.Event()
    with (
        FakeSendGrid(api_key=SENDGRID_KEY, latency=0.15) as fake,
        LiveApp(create_app(cfg, store)) as srv,
    ):

        def readers_leave(seed):
            rng = random.Random(seed)
            order = list(rows)[seed::2]
            rng.shuffle(order)
            with httpx.Client() as client:
                for sid in order:
                    if stop.is_set():
                        return
                    url = unsubscribe_url(cfg, sid, "weekly").removeprefix(cfg.site.public_url)
                    r = client.post(srv.url(url), **ONE_CLICK)
                    assert r.status_code == 200
                    answered[rows[sid].email] = time.time()

        proc = sender(env, fake.url)
        leaving = [threading.Thread(target=readers_leave, args=(i,), daemon=True) for i in (0, 1)]
        time.sleep(0.3)
        for t in leaving:
            t.start()
        _, err = proc.communicate(timeout=120)
        stop.set()
        for t in leaving:
            t.join(timeout=30)
        assert proc.returncode == 0, err
        taken = {t.email: t.at for t in fake.accepted}
    late = {e: taken[e] - t for e, t in answered.items() if e in taken and taken[e] > t}
    print(f"{engine}: {len(answered)} unsubscribes during the send, mailed after: {len(late)}")
    assert len(answered) > 100, "the send ended before readers could leave"
    assert late == {}, f"{len(late)} readers mailed after their unsubscribe answered"
    counts = statuses(store, eid)
    assert counts.get("left", 0) + len(taken) == n
    assert counts.get("left", 0) > 0
    # every unsubscribe made during the send is counted in this edition
    data = edition_status(store, eid)
    assert data["unsubscribes"] == len(answered)
    store.close()


def test_send_says_how_many_left_before_their_turn(project):
    eid = unfinished(project)
    cfg = build_config(project)
    store = open_store(cfg.database_url)
    (first, *_) = store.list_deliveries(eid)
    assert store.suppress_subscriber(first.subscriber_id, "unsubscribed", "test")
    store.close()
    out = CliRunner().invoke(cli, ["send", "--at", AT])
    assert out.exit_code == 0, out.output
    assert "1 not sent: they left (unsubscribed, bounced, suppressed) before their turn" in (
        out.stdout
    )
    assert len(list((project / "outbox" / f"edition-{eid}").glob("*.eml"))) == 21


def held_next_edition(store, cfg, n=6, size=4):
    """Readers who got an earlier edition, and the next edition of the digest whose
    first batch (``size`` readers) is held: its worker died, the outcome unknown."""
    from tests.helpers import dead_worker

    first = make_edition(store, n)
    send_edition(store, cfg, first, {"default": RENDER}, RecordingBackend(cfg))
    eid, _ = store.create_edition(
        digest="weekly", period="p-next", subject="s", window_start=None, window_end=None
    )
    readers = [(d.subscriber_id, d.email) for d in store.list_deliveries(first)]
    freeze_audience(store, eid, {"default": readers})
    batch = store.claim_batch(eid, backend="recording", limit=size, worker=dead_worker())
    backend = RecordingBackend(cfg)
    assert send_edition(store, cfg, eid, {"default": RENDER}, backend).unresolved == size
    assert store.get_batch(batch.id).status == "unknown"
    return first, eid, batch, backend


def held_sendgrid_event(d, eid):
    """SendGrid's "delivered" for a delivery of the held batch, after its request."""
    from datetime import UTC, datetime

    from newsletter.store.events import TrackedEvent

    return TrackedEvent(
        provider="sendgrid",
        provider_event_id=f"sg-{d.id}-delivered",
        type="delivered",
        raw_type="delivered",
        email=d.email,
        occurred_at=datetime.now(UTC),
        raw={"event": "delivered", "sg_message_id": "LATEMSG.filterdrecv-1"},
        delivery_id=d.id,
        edition_id=eid,
        message_id="LATEMSG",
    )


@pytest.mark.parametrize(
    ("settle", "ends"),
    [
        ("webhook", "unsubscribed"),  # a SendGrid event for another reader of the batch
        ("stored", "unsubscribed"),  # one stored while claimed, applied by the send
        ("resend-proven", "unsubscribed"),  # --resolve resend finds SendGrid's event
        ("resend", "left"),  # --resolve resend: no evidence, queued again, claimed
        ("sent", "unsubscribed"),  # --resolve sent
        ("failed", "failed"),  # --resolve failed
    ],
)
def test_an_unsubscribe_while_held_counts_in_the_held_edition(
    settle, ends, store, db_url, project, make_config
):
    """A reader one-click unsubscribes while their delivery of the edition being
    sent is held. The unsubscribe counts in that edition (not the one before); it
    neither settles nor moves the held batch; once the batch is settled the delivery
    ends as if the unsubscribe had come after the settle."""
    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV, delivery={"batch_size": 4})
    first, eid, batch, backend = held_next_edition(store, cfg)
    reader, other = batch.deliveries[1], batch.deliveries[3]
    with LiveApp(create_app(cfg, store)) as srv:
        url = unsubscribe_url(cfg, reader.subscriber_id, "weekly")
        r = httpx.post(srv.url(url.removeprefix(cfg.site.public_url)), **ONE_CLICK)
        assert r.status_code == 200
    # held as it was: our own record is no evidence of what SendGrid took
    assert statuses(store, eid) == {"accepted": 2, "unresolved": 4}
    assert [b.id for b in store.unresolved_batches(eid)] == [batch.id]
    # counted in the held edition, and the earlier one is not credited with it
    assert store.delivery_status(subscriber_ids(store, first)[reader.subscriber_id].id) == (
        "accepted"
    )
    assert edition_status(store, first)["unsubscribes"] == 0
    data = edition_status(store, eid)
    assert (data["unsubscribes"], data["unsubscribes_held"]) == (1, 1)
    out = CliRunner().invoke(cli, ["--db", db_url, "status", str(eid)])
    assert "unsubscribes 1 (mailed 0, before their turn 0, while held 1)" in out.output

    if settle == "webhook":
        store.record_events([held_sendgrid_event(other, eid)])
    elif settle in ("stored", "resend-proven"):
        # SendGrid's event came in while the batch was still claimed: it settled nothing
        ev = held_sendgrid_event(other, eid)
        with store.begin() as conn:
            conn.execute(
                events.insert().values(
                    provider=ev.provider,
                    provider_event_id=ev.provider_event_id,
                    delivery_id=other.id,
                    edition_id=eid,
                    type="delivered",
                    raw_type="delivered",
                    email=other.email,
                    occurred_at=ev.occurred_at,
                    reason="",
                    url="",
                    received_at=ev.occurred_at,
                    raw=ev.raw,
                )
            )
        if settle == "stored":
            store.apply_stored_events(edition_id=eid)  # as the send does at its end
    if settle not in ("webhook", "stored"):
        decision = "resend" if settle.startswith("resend") else settle
        out = CliRunner().invoke(cli, ["--db", db_url, "send", "--resolve", batch.id, decision])
        assert out.exit_code == 0, out.output
        if settle == "resend-proven":
            assert "4 skipped" in out.output
    if settle != "resend":  # settled at once, in the settling transaction
        assert store.delivery_status(reader.id) == ends
    send_edition(store, cfg, eid, {"default": RENDER}, backend)

    assert store.delivery_status(reader.id) == ends
    # never mailed again after the unsubscribe answered
    assert reader.id not in backend.sent
    if settle == "resend":  # the batch's other readers were sent again
        held = {d.id for d in batch.deliveries}
        assert held & set(backend.sent) == held - {reader.id}
    if settle in ("webhook", "stored", "resend-proven"):
        assert store.delivery_status(other.id) == "delivered"
    assert store.unresolved_batches(eid) == []
    data = edition_status(store, eid)
    assert (data["unsubscribes"], data["unsubscribes_held"]) == (1, 0)
    assert data["counts"]["unsubscribed"] == (ends == "unsubscribed")
    assert edition_status(store, first)["unsubscribes"] == 0
    assert store.get_edition(eid).status in ("sent", "partially_failed")
