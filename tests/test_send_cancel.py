"""The cancel path end to end: batch ids, send_at, cancels, against the fake SendGrid.

With ``schedule_delay`` every batch gets a SendGrid batch id once it is claimed
(never before), is sent with ``send_at``, and a batch whose outcome is unknown is
cancelled while that is certain to work (``cancel_margin`` before ``send_at``),
then sent again. Dropped connections on every call of that path, a worker that
dies before it has an id, and a cancel that would come too late are covered.
The fake honours a cancel only ``cancel_cutoff`` seconds or more before send_at,
like SendGrid.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newsletter.delivery.backends import make_backend
from newsletter.delivery.message import UnsubscribeLinks, outgoing
from newsletter.delivery.recovery import AWAITING_PROVIDER_BATCH
from newsletter.errors import TransientError
from newsletter.models import Recipient
from tests.fakes.sendgrid import FakeSendGrid
from tests.helpers import (
    RENDER,
    dead_worker,
    make_edition,
    send,
    sg_config,
    statuses,
)

SCHEDULED = {"schedule_delay": 120, "cancel_margin": 30}


def batch_requests(fake: FakeSendGrid) -> int:
    return sum(1 for m, p, _ in fake.log if (m, p) == ("POST", "/v3/mail/batch"))


def everyone_once(fake: FakeSendGrid, n: int) -> bool:
    return fake.delivered() == {f"reader{i}@example.com": 1 for i in range(n)}


def test_a_batch_id_is_requested_only_for_a_claimed_batch(store, sg, tmp_path):
    cfg = sg_config(tmp_path, sg, batch_size=2, **SCHEDULED)
    eid = make_edition(store, 5)
    report = send(store, cfg, eid)
    assert report.accepted == 5 and report.batches == 3
    # one id per batch; none for the claim that found nothing left
    assert batch_requests(sg) == 3
    assert {b.provider_batch_id for b in store.list_batches(eid)} == {
        body["batch_id"] for body in sg.bodies
    }
    assert all(b in sg.batch_ids for b in (x.provider_batch_id for x in store.list_batches(eid)))


def test_a_dropped_connection_while_getting_a_batch_id_is_retried(sqlite_store, sg, tmp_path):
    cfg = sg_config(tmp_path, sg, batch_size=2, **SCHEDULED)
    eid = make_edition(sqlite_store, 4)
    sg.fail_next("reset", path="/v3/mail/batch")  # SendGrid made one, the answer was lost
    report = send(sqlite_store, cfg, eid)
    # three ids made, one of them lost with its answer; the two batches used the others
    assert report.accepted == 4 and len(sg.batch_ids) == 3 and batch_requests(sg) == 2
    assert everyone_once(sg, 4)


def test_no_batch_id_means_nothing_is_sent_and_the_batch_waits(store, sg, tmp_path):
    cfg = sg_config(tmp_path, sg, batch_size=2, max_retries=1, **SCHEDULED)
    eid = make_edition(store, 2)
    sg.fail_next("500", count=2, path="/v3/mail/batch")
    with pytest.raises(TransientError, match="mail/batch"):
        send(store, cfg, eid)
    assert sg.sent_requests == 0 and statuses(store, eid) == {"queued": 2}
    (b,) = store.list_batches(eid)
    assert b.status == "requeued" and "no provider batch id" in b.error
    send(store, cfg, eid)
    assert everyone_once(sg, 2)


def test_a_worker_that_died_before_storing_its_batch_id_sent_nothing(store, sg, tmp_path):
    cfg = sg_config(tmp_path, sg, batch_size=2, **SCHEDULED)
    eid = make_edition(store, 3)
    store.claim_batch(
        eid,
        backend="sendgrid",
        limit=2,
        worker=dead_worker(),
        provider_batch_id=AWAITING_PROVIDER_BATCH,
    )
    report = send(store, cfg, eid)
    assert report.requeued == 2 and report.unresolved == 0 and sg.scheduled == {}
    assert everyone_once(sg, 3)


def test_a_cancel_whose_answer_was_lost_is_retried_and_the_batch_goes_once(store, sg, tmp_path):
    cfg = sg_config(tmp_path, sg, batch_size=3, timeout=0.5, **SCHEDULED)
    sg.hang = 1.0
    sg.cancel_cutoff = 60  # like SendGrid's 10 minutes, scaled to the test's delay
    eid = make_edition(store, 6)
    sg.fail_next("timeout")  # taken, no answer: unknown
    sg.fail_next("reset", path="/v3/user/scheduled_sends")  # cancelled, answer lost
    report = send(store, cfg, eid)
    assert report.cancelled == 3 and report.unresolved == 0 and report.accepted == 6
    # the retried POST found the batch cancelled already, and PATCHed it
    methods = [(m, s) for m, p, s in sg.log if p.startswith("/v3/user/scheduled_sends")]
    assert methods == [("POST", 400), ("PATCH", 204)]
    assert list(sg.scheduled.values()) == ["cancel"]
    assert everyone_once(sg, 6)
    assert store.get_edition(eid).status == "sent"


def reached_sendgrid(store, cfg_dead, eid, *, claimed_ago: float):
    """A dead worker's batch whose request SendGrid took, ``claimed_ago`` seconds ago."""
    backend = make_backend(cfg_dead)
    pbid = backend.new_provider_batch()
    batch = store.claim_batch(
        eid,
        backend="sendgrid",
        limit=2,
        worker=dead_worker(),
        provider_batch_id=pbid,
        now=datetime.now(UTC) - timedelta(seconds=claimed_ago),
    )
    links = UnsubscribeLinks(cfg_dead, "weekly")
    recs = [
        Recipient(d.id, d.email, d.name, links(d.subscriber_id), "default")
        for d in batch.deliveries
    ]
    backend.send_batch(outgoing(cfg_dead, "weekly", eid, RENDER), recs, provider_batch_id=pbid)
    return pbid


def test_past_the_cancel_deadline_the_batch_is_held_not_cancelled(sqlite_store, sg, tmp_path):
    store = sqlite_store
    sg.cancel_cutoff = 30
    eid = make_edition(store, 2)
    # claimed 100 s ago, sent with send_at 20 s from now: too close to cancel
    (tmp_path / "x").mkdir()
    dead = sg_config(tmp_path / "x", sg, schedule_delay=20, cancel_margin=10)
    reached_sendgrid(store, dead, eid, claimed_ago=100)
    cfg = sg_config(tmp_path, sg, batch_size=2, **SCHEDULED)
    report = send(store, cfg, eid)
    assert report.unresolved == 2 and sg.scheduled == {}
    assert everyone_once(sg, 2)  # the dead worker's request goes out, once


def test_cancel_margin_is_what_keeps_a_late_cancel_from_sending_twice(sqlite_store, sg, tmp_path):
    """With no margin the cancel is tried inside SendGrid's cutoff: answered, not honoured."""
    store = sqlite_store
    sg.cancel_cutoff = 30
    eid = make_edition(store, 2)
    (tmp_path / "x").mkdir()
    dead = sg_config(tmp_path / "x", sg, schedule_delay=20, cancel_margin=1)
    reached_sendgrid(store, dead, eid, claimed_ago=100)
    careless = sg_config(tmp_path, sg, batch_size=2, schedule_delay=120, cancel_margin=1)
    send(store, careless, eid)
    assert list(sg.scheduled.values()) == ["cancel"]
    assert sg.delivered() == {"reader0@example.com": 2, "reader1@example.com": 2}


def test_a_batch_taken_over_while_it_awaited_its_id_is_not_sent_by_the_slow_worker(
    store, sg, tmp_path
):
    """A worker still asking for its batch id when its lease ran out: another run took
    the batch over and queued it again ("sent nothing"), so the slow worker must not
    send it after all: that would send its readers the edition twice."""
    from datetime import timedelta

    from newsletter.delivery.backends import make_backend
    from newsletter.delivery.recovery import recover_batches
    from newsletter.delivery.send import send_edition

    cfg = sg_config(tmp_path, sg, batch_size=2, **SCHEDULED)
    eid = make_edition(store, 4)
    backend = make_backend(cfg)
    other = make_backend(cfg)
    ask = backend.new_provider_batch
    slow = []

    def new_provider_batch():
        if not slow:  # the first id comes back after the lease ran out
            slow.append(1)
            out = recover_batches(store, other, eid, lease=timedelta(0), worker="other:1")
            assert out["requeued"] == 2
        return ask()

    backend.new_provider_batch = new_provider_batch
    report = send_edition(store, cfg, eid, {"default": RENDER}, backend)
    assert everyone_once(sg, 4)
    assert report.accepted == 4 and statuses(store, eid) == {"accepted": 4}
