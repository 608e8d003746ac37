"""Batch-level evidence: one provider event proves a held batch, whenever it arrives.

SendGrid takes or refuses a request whole. So one event carrying our custom args
for any delivery of a held batch settles every delivery of that batch, in the
webhook's own transaction; ``--resolve BATCH resend`` looks at the evidence again
at that moment; ``status`` asks for a decision only while something is unsettled.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.delivery.send import send_edition
from newsletter.errors import InputError
from newsletter.store.deliveries import OWN_EVENTS
from newsletter.store.events import TrackedEvent
from newsletter.store.schema import events
from newsletter.tracking.unsubscribe import PROVIDER as OUR_PROVIDER
from tests.fakes.recording import RecordingBackend
from tests.helpers import (
    DELIVERY_CONFIG,
    RENDER,
    SECRET_ENV,
    build_config,
    dead_worker,
    make_edition,
    statuses,
)

NOW = datetime(2026, 11, 30, 2, 5, tzinfo=UTC)


def held_batch(store, tmp_path, n=6, size=4):
    """An edition whose first ``size`` deliveries are held after their worker died."""
    cfg = build_config(
        tmp_path, toml=DELIVERY_CONFIG, env=SECRET_ENV, delivery={"batch_size": size}
    )
    eid = make_edition(store, n)
    batch = store.claim_batch(eid, backend="recording", limit=size, worker=dead_worker())
    backend = RecordingBackend(cfg)
    report = send_edition(store, cfg, eid, {"default": RENDER}, backend)
    assert report.unresolved == size
    assert store.get_batch(batch.id).status == "unknown"
    return cfg, eid, batch, backend


def sendgrid_event(d, eid, kind="delivered", n=1):
    return TrackedEvent(
        provider="sendgrid",
        provider_event_id=f"sg-{d.id}-{kind}-{n}",
        type=kind,
        raw_type=kind,
        email=d.email,
        occurred_at=datetime.now(UTC),  # SendGrid's clock: after the batch's request
        raw={"event": kind, "sg_message_id": "LATEMSG.filterdrecv-1"},
        delivery_id=d.id,
        edition_id=eid,
        message_id="LATEMSG",
    )


def test_a_late_event_for_one_delivery_settles_the_whole_held_batch(
    store, db_url, tmp_path, project
):
    cfg, eid, batch, backend = held_batch(store, tmp_path)
    assert store.get_edition(eid).status == "sending"
    # the webhook stores SendGrid's "delivered" for the third recipient of the batch
    store.record_events([sendgrid_event(batch.deliveries[2], eid)])
    rows = {d.id: d for d in store.list_deliveries(eid)}
    for d in batch.deliveries:
        want = "delivered" if d == batch.deliveries[2] else "accepted"
        assert rows[d.id].status == want, rows[d.id]
        assert rows[d.id].message_id == "LATEMSG"
    assert store.get_batch(batch.id).status == "accepted"
    assert store.unresolved_batches(eid) == []
    # nothing else was open: the webhook's transaction finished the edition
    assert store.get_edition(eid).status == "sent"
    # and the operator is told there is nothing to decide, with nothing changed
    out = CliRunner().invoke(cli, ["--db", db_url, "send", "--resolve", batch.id, "resend"])
    assert out.exit_code == 2
    assert (
        out.output.strip()
        == f"Error: batch {batch.id} is accepted, not unresolved; nothing to decide"
    )
    assert statuses(store, eid) == {"accepted": 5, "delivered": 1}
    # a later send sends none of them again
    send_edition(store, cfg, eid, {"default": RENDER}, backend)
    assert {d.id for d in batch.deliveries}.isdisjoint(backend.sent)


def test_our_own_unsubscribe_event_proves_nothing_about_a_held_batch(store, tmp_path):
    _, eid, batch, _ = held_batch(store, tmp_path)
    assert OUR_PROVIDER == OWN_EVENTS
    d = batch.deliveries[0]
    ev = sendgrid_event(d, eid, "unsubscribed")
    store.record_events([TrackedEvent(**{**ev.__dict__, "provider": OUR_PROVIDER})])
    assert statuses(store, eid)["unresolved"] == 4
    assert [b.id for b in store.unresolved_batches(eid)] == [batch.id]


def insert_event(store, eid, d, provider="sendgrid"):
    """An event stored while the delivery was still claimed (it changed nothing then)."""
    with store.begin() as conn:
        conn.execute(
            sa.insert(events).values(
                provider=provider,
                provider_event_id=f"early-{d.id}",
                delivery_id=d.id,
                edition_id=eid,
                type="queued",
                raw_type="processed",
                email=d.email,
                occurred_at=datetime.now(UTC),
                reason="",
                url="",
                received_at=NOW,
                raw={"event": "processed", "sg_message_id": "EARLY.x"},
            )
        )


def test_resolve_resend_looks_at_the_evidence_again_and_skips_what_it_proves(
    store, db_url, tmp_path, project
):
    cfg, eid, batch, backend = held_batch(store, tmp_path)
    # an event that came in between the hold and the operator's decision
    insert_event(store, eid, batch.deliveries[1])
    out = CliRunner().invoke(cli, ["--db", db_url, "send", "--resolve", batch.id, "resend"])
    assert out.exit_code == 0, out.output
    assert (
        f"batch {batch.id}: 0 deliveries queued again; 4 skipped: SendGrid's events prove "
        "it accepted the batch" in out.output
    )
    assert statuses(store, eid) == {"accepted": 6}
    assert store.get_edition(eid).status == "sent"
    send_edition(store, cfg, eid, {"default": RENDER}, backend)
    assert {d.id for d in batch.deliveries}.isdisjoint(backend.sent)


def test_resolve_resend_without_evidence_sends_the_batch_again(store, db_url, tmp_path, project):
    cfg, eid, batch, backend = held_batch(store, tmp_path)
    insert_event(store, eid, batch.deliveries[0], provider=OWN_EVENTS)  # not evidence
    out = CliRunner().invoke(
        cli, ["--db", db_url, "send", "--resolve", batch.id, "resend", "--json"]
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert (data["deliveries"], data["skipped"]) == (4, 0)
    send_edition(store, cfg, eid, {"default": RENDER}, backend)
    assert sorted(backend.sent) == sorted(d.id for d in store.list_deliveries(eid))


def test_status_asks_for_a_decision_only_while_something_is_unsettled(
    store, db_url, tmp_path, project
):
    _, eid, batch, _ = held_batch(store, tmp_path)
    runner = CliRunner()
    out = runner.invoke(cli, ["--db", db_url, "status", str(eid)])
    assert f"UNRESOLVED batch {batch.id}" in out.output
    # deliveries settled one by one (before batch-level evidence existed, say)
    with store.begin() as conn:
        conn.execute(
            sa.text("update deliveries set status = 'delivered' where batch_id = :b"),
            {"b": batch.id},
        )
    out = runner.invoke(cli, ["--db", db_url, "status", str(eid)])
    assert out.exit_code == 0 and "UNRESOLVED" not in out.output
    # deciding it is refused: one line, exit 2, nothing changed
    out = runner.invoke(cli, ["--db", db_url, "send", "--resolve", batch.id, "failed"])
    assert out.exit_code == 2
    assert out.output.strip() == (
        f"Error: batch {batch.id} is settled already (no unresolved deliveries)"
    )
    assert statuses(store, eid) == {"accepted": 2, "delivered": 4}


def test_resolve_of_an_unknown_batch_is_one_line_exit_2(store, db_url, tmp_path, project):
    _, eid, _, _ = held_batch(store, tmp_path)
    out = CliRunner().invoke(cli, ["--db", db_url, "send", "--resolve", "nope", "resend"])
    assert out.exit_code == 2
    assert out.output.strip() == (
        "Error: no batch nope (`newsletter status` lists unresolved batches)"
    )
    assert statuses(store, eid) == {"accepted": 2, "unresolved": 4}


def test_concurrent_events_for_one_held_batch_take_turns(store, make_config):
    """Two webhook requests at once, each with an event for another delivery of one
    held batch: both commit (no deadlock), the batch is settled once."""
    import threading

    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV, delivery={"batch_size": 40})
    eid = make_edition(store, 8 * 40)
    batches = [
        store.claim_batch(eid, backend="recording", limit=40, worker=dead_worker())
        for _ in range(8)
    ]
    send_edition(store, cfg, eid, {"default": RENDER}, RecordingBackend(cfg))
    assert statuses(store, eid) == {"unresolved": 320}
    errors = []
    for batch in batches:
        gate = threading.Barrier(2)

        def post(d, gate=gate):
            gate.wait()
            try:
                store.record_events([sendgrid_event(d, eid)])
            except Exception as err:  # noqa: BLE001 - reported below
                errors.append(err)

        threads = [
            threading.Thread(target=post, args=(d,))
            for d in (batch.deliveries[3], batch.deliveries[30])
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert statuses(store, eid) == {"accepted": 304, "delivered": 16}
    assert store.get_edition(eid).status == "sent"


def test_resolve_resend_of_a_paused_edition_queues_the_batch_and_keeps_the_pause(
    store, db_url, tmp_path, project
):
    """The operator's pause holds: a resend queues the held deliveries again, and
    they wait for `newsletter resume` like everything else still queued."""
    cfg, eid, batch, backend = held_batch(store, tmp_path)
    assert store.control_edition(eid, "pause").changed
    out = CliRunner().invoke(cli, ["--db", db_url, "send", "--resolve", batch.id, "resend"])
    assert out.exit_code == 0, out.output
    assert statuses(store, eid) == {"accepted": 2, "queued": 4}
    assert store.get_edition(eid).status == "paused"
    # nothing goes out while paused; after resume the four are sent once
    send_edition(store, cfg, eid, {"default": RENDER}, backend)
    assert {d.id for d in batch.deliveries}.isdisjoint(backend.sent)
    assert store.control_edition(eid, "resume").changed
    send_edition(store, cfg, eid, {"default": RENDER}, backend)
    assert sorted(d.id for d in batch.deliveries) == sorted(
        d for d in backend.sent if d in {x.id for x in batch.deliveries}
    )
    assert store.get_edition(eid).status == "sent"


def test_a_late_event_of_an_earlier_request_does_not_prove_the_batch_that_resent_it(store):
    """An operator resent a held batch before its events came; the resend's batch is
    held too. The first request's late events are about that request, not the
    second: they must not settle the second batch, whose other readers were maybe
    never sent anything."""
    from datetime import timedelta

    from newsletter.delivery.recovery import recover_batches

    cfg = build_config(env=SECRET_ENV)
    backend = RecordingBackend(cfg)
    eid = make_edition(store, 3)
    first_at = datetime.now(UTC) - timedelta(minutes=30)
    first = store.claim_batch(eid, backend="recording", limit=2, worker=dead_worker(), now=first_at)
    assert recover_batches(store, backend, eid)["held"] == 2
    assert store.resend_held_batch(first.id)[:2] == (2, 0)  # no events yet: resent
    second = store.claim_batch(eid, backend="recording", limit=3, worker=dead_worker())
    assert {d.id for d in first.deliveries} < {d.id for d in second.deliveries}
    assert recover_batches(store, backend, eid)["held"] == 3
    # SendGrid's event of the first request, for one of its readers, comes now
    late = sendgrid_event(first.deliveries[0], eid)
    store.record_events([dataclasses.replace(late, occurred_at=first_at + timedelta(seconds=2))])
    assert store.get_batch(second.id).status == "unknown"
    # (that reader did get it: their own delivery says so; the others wait)
    assert statuses(store, eid) == {"delivered": 1, "unresolved": 2}
    # nor when the operator decides, nor when a run looks at the held batch again
    assert recover_batches(store, backend, eid)["accepted"] == 0
    assert store.resend_held_batch(second.id)[:2] == (2, 0)
    # an event of the request that is held does prove it
    third = store.claim_batch(eid, backend="recording", limit=3, worker=dead_worker())
    assert recover_batches(store, backend, eid)["held"] == 2
    ev = sendgrid_event(third.deliveries[-1], eid, n=2)
    store.record_events([dataclasses.replace(ev, occurred_at=datetime.now(UTC))])
    assert store.get_batch(third.id).status == "accepted"
    assert statuses(store, eid) == {"accepted": 1, "delivered": 2}


def test_events_that_settle_a_held_batch_are_applied_once_and_not_counted_refused(store, tmp_path):
    """The request that settles a held batch: its own events move the delivery on
    from accepted once, in order, and none of them is reported as refused."""
    _, eid, batch, _ = held_batch(store, tmp_path)
    d = batch.deliveries[2]
    result = store.record_events(
        [sendgrid_event(d, eid, "queued"), sendgrid_event(d, eid, "delivered")]
    )
    assert (result.stored, result.refused, result.deliveries_changed) == (2, 0, 1)
    assert statuses(store, eid) == {"accepted": 5, "delivered": 1}
    # an event that does point backwards is still counted (and changes nothing)
    late = store.record_events([sendgrid_event(d, eid, "queued", n=2)])
    assert (late.stored, late.refused, late.deliveries_changed) == (1, 1, 0)
    assert statuses(store, eid) == {"accepted": 5, "delivered": 1}


def test_a_backwards_event_in_the_settling_request_is_counted_refused(store, tmp_path):
    """Our own unsubscribe stored while the batch was held counts once it is settled;
    SendGrid's "delivered" in the settling request then points backwards."""
    _, eid, batch, _ = held_batch(store, tmp_path)
    d = batch.deliveries[0]
    ev = sendgrid_event(d, eid, "unsubscribed")
    store.record_events([dataclasses.replace(ev, provider=OUR_PROVIDER)])
    assert statuses(store, eid)["unresolved"] == 4
    result = store.record_events([sendgrid_event(d, eid, "delivered")])
    assert (result.stored, result.refused, result.deliveries_changed) == (1, 1, 1)
    assert statuses(store, eid) == {"accepted": 5, "unsubscribed": 1}


def test_resend_of_a_held_batch_of_a_cancelled_edition_is_refused_by_the_store(
    store, db_url, tmp_path, project
):
    """The refusal is in resend_held_batch's own transaction (the edition read there,
    locked on PostgreSQL), so a cancel between a check and the resend cannot slip by."""
    _, eid, batch, _ = held_batch(store, tmp_path)
    assert store.control_edition(eid, "cancel").changed
    before = statuses(store, eid)
    assert before == {"accepted": 2, "unresolved": 4}  # nothing else was queued
    with pytest.raises(InputError) as err:
        store.resend_held_batch(batch.id)
    assert err.value.message == f"edition {eid} is cancelled: nothing is sent again"
    assert statuses(store, eid) == before
    assert store.get_batch(batch.id).status == "unknown"
    out = CliRunner().invoke(cli, ["--db", db_url, "send", "--resolve", batch.id, "resend"])
    assert out.exit_code == 2
    assert out.output.strip() == (
        f"Error: edition {eid} is cancelled: nothing is sent again "
        f"(decide `newsletter send --resolve {batch.id} sent|failed`)"
    )
    assert statuses(store, eid) == before
    assert store.get_edition(eid).status == "cancelled"
    # deciding it is still possible, and the edition stays cancelled
    out = CliRunner().invoke(cli, ["--db", db_url, "send", "--resolve", batch.id, "failed"])
    assert out.exit_code == 0, out.output
    assert statuses(store, eid) == {"accepted": 2, "failed": 4}
    assert store.get_edition(eid).status == "cancelled"


def test_event_writes_count_table_refusals_apart_from_rows_moved_underneath(store, tmp_path):
    from newsletter.store.deliveries import EventWrites, write_event_statuses

    _, eid, batch, _ = held_batch(store, tmp_path)
    accepted = [d.id for d in store.list_deliveries(eid) if d.status == "accepted"]
    held = batch.deliveries[0].id

    def change(did, old, new):
        return {"id": did, "from": old, "status": new, "opened": False, "clicked": False}

    with store.begin() as conn:
        done = write_event_statuses(
            conn,
            store.dialect,
            [
                change(accepted[0], "accepted", "delivered"),  # written
                change(accepted[1], "delivered", "accepted"),  # backwards: the table refuses
                change(held, "accepted", "delivered"),  # the row is not accepted: stale
            ],
            datetime.now(UTC),
        )
    assert done == EventWrites(refused=1, stale=1)
    assert statuses(store, eid) == {"accepted": 1, "delivered": 1, "unresolved": 4}


def test_a_fold_the_state_table_refuses_is_not_retried_as_kept_moving(
    store, tmp_path, monkeypatch, caplog
):
    import newsletter.store.deliveries as store_deliveries

    _, eid, _, _ = held_batch(store, tmp_path)
    did = next(d.id for d in store.list_deliveries(eid) if d.status == "accepted")
    calls = []

    def refused_fold(conn, ids, *args):
        calls.append(list(ids))
        return [
            {
                "id": did,
                "from": "delivered",
                "status": "accepted",
                "opened": False,
                "clicked": False,
            }
        ]

    monkeypatch.setattr(store_deliveries, "_stored_folds", refused_fold)
    with store.begin() as conn:
        changed = store_deliveries.fold_stored_events(conn, [did], datetime.now(UTC))
    assert changed == set()
    assert calls == [[did]]  # read once: folding again would be refused again
    assert "1 event-driven delivery changes refused by the state table" in caplog.text
    assert "kept moving" not in caplog.text
