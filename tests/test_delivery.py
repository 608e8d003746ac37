"""The send's state machine on both engines: freeze, claim, finish, recover, resolve."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.delivery.backends.outbox import OutboxBackend
from newsletter.delivery.message import UnsubscribeLinks, unsubscribe_url
from newsletter.delivery.recovery import resolve
from newsletter.delivery.send import send_edition
from newsletter.errors import InputError
from newsletter.store import open_store
from newsletter.store.schema import events
from tests.fakes.recording import RecordingBackend
from tests.helpers import (
    DELIVERY_CONFIG,
    NOW,
    RENDER,
    SECRET_ENV,
    add_subscribers,
    dead_worker,
    freeze_audience,
    make_edition,
    statuses,
)


def test_freeze_leaves_out_unsubscribed_and_suppressed_and_counts_them(
    store, tmp_path, make_config
):
    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV)
    active = add_subscribers(store, [f"a{i}@example.com" for i in range(4)])
    add_subscribers(store, ["gone@example.com"], status="unsubscribed")
    add_subscribers(store, ["bounced@example.com", "spam@example.com"], status="suppressed")
    # the same mailbox twice, differing only by case: must be sent once
    dup = add_subscribers(store, ["Twin@Example.com", "twin@example.com"])
    eid, _ = store.create_edition(
        digest="weekly", period="p", subject="s", window_start=NOW, window_end=NOW
    )
    audience = [(i, f"a{n}@example.com") for n, i in enumerate(active)]
    audience += [(dup[0], "Twin@Example.com"), (dup[1], "twin@example.com")]
    assert freeze_audience(store, eid, {"default": audience}) == 5
    assert store.get_edition(eid).status == "sending"
    # frozen once: a second freeze adds nothing
    assert freeze_audience(store, eid, {"default": audience}) == 0

    report = send_edition(store, cfg, eid, {"default": RENDER}, OutboxBackend(cfg))
    assert report.left_out == {"unsubscribed": 1, "suppressed": 2}
    assert report.duplicates == 1
    assert report.accepted == 5
    assert statuses(store, eid) == {"accepted": 5, "failed": 1}
    (dup_row,) = store.list_deliveries(eid, status="failed")
    assert dup_row.email == "twin@example.com"
    assert "duplicate address" in dup_row.error
    files = list((tmp_path / "outbox" / f"edition-{eid}").glob("*.eml"))
    assert len(files) == 5
    assert store.get_edition(eid).status == "partially_failed"


def test_a_compiled_edition_is_frozen_by_the_send_itself(store, make_config):
    """A crash between creating an edition and freezing it loses nobody."""
    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV)
    add_subscribers(store, ["a@example.com", "b@example.com"])
    add_subscribers(store, ["c@example.com"], status="unsubscribed")
    eid, _ = store.create_edition(
        digest="weekly",
        period="p",
        subject="s",
        window_start=NOW,
        window_end=NOW,
        status="compiled",
    )
    # an edition's variants are its edition_articles rows
    with store.begin() as conn:
        from newsletter.store.schema import articles, edition_articles

        aid = conn.execute(
            sa.insert(articles).values(
                uid="u",
                url="https://x.example/1",
                title="t",
                published_at=NOW,
                ingested_at=NOW,
                summary_text="",
                summary_html="",
                author="",
                image_url="",
                image_alt="",
                pinned=False,
                source="",
                content_hash="",
            )
        ).inserted_primary_key[0]
        conn.execute(
            sa.insert(edition_articles).values(
                edition_id=eid, variant="default", article_id=aid, position=0
            )
        )
    report = send_edition(store, cfg, eid, {"default": RENDER}, OutboxBackend(cfg))
    assert report.accepted == 2
    assert report.left_out == {"unsubscribed": 1}
    assert store.get_edition(eid).status == "sent"


# --------------------------------------------------------------------------- claiming


def test_the_claim_is_committed_before_the_provider_is_called(db_url, make_config):
    store = open_store(db_url)
    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV, delivery={"batch_size": 3})
    eid = make_edition(store, 7)
    observer = open_store(db_url, migrate=False)  # another connection, as another process
    seen = []

    def check(recipients):
        rows = {d.id: d for d in observer.list_deliveries(eid)}
        for r in recipients:
            row = rows[r.delivery_id]
            assert row.status == "claimed" and row.batch_id
            batch = observer.get_batch(row.batch_id)
            assert batch.status == "claimed" and batch.claimed_at is not None
        seen.append(len(recipients))

    backend = RecordingBackend(cfg, check=check)
    report = send_edition(store, cfg, eid, {"default": RENDER}, backend)
    assert seen == [3, 3, 1]
    assert sorted(backend.sent) == sorted(d.id for d in store.list_deliveries(eid))
    assert report.accepted == 7 and statuses(store, eid) == {"accepted": 7}
    # each delivery carries its batch's message id; each batch is recorded
    batches = store.list_batches(eid)
    assert {b.status for b in batches} == {"accepted"} and len(batches) == 3
    for d in store.list_deliveries(eid):
        assert d.message_id == store.get_batch(d.batch_id).message_id
    observer.close()
    store.close()


# --------------------------------------------------------------------------- recovering


def test_a_dead_workers_batch_is_held_not_resent_and_the_operator_decides(
    store, db_url, project, make_config
):
    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV, delivery={"batch_size": 4})
    eid = make_edition(store, 6)
    batch = store.claim_batch(eid, backend="recording", limit=4, worker=dead_worker())
    backend = RecordingBackend(cfg)
    report = send_edition(store, cfg, eid, {"default": RENDER}, backend)
    held = {d.id for d in batch.deliveries}
    assert held.isdisjoint(backend.sent) and len(backend.sent) == 2
    assert report.unresolved == 4
    assert statuses(store, eid) == {"accepted": 2, "unresolved": 4}
    assert store.get_edition(eid).status == "sending"  # not done while anything is held

    runner = CliRunner()
    out = runner.invoke(cli, ["--db", db_url, "status", str(eid)])
    assert out.exit_code == 0, out.output
    assert f"UNRESOLVED batch {batch.id} (4 recipients)" in out.output
    assert f"newsletter send --resolve {batch.id} resend|sent|failed" in out.output

    out = runner.invoke(cli, ["--db", db_url, "send", "--resolve", batch.id, "resend"])
    assert out.exit_code == 0, out.output
    assert f"batch {batch.id}: 4 deliveries queued again" in out.output
    assert statuses(store, eid) == {"accepted": 2, "queued": 4}

    # the same decision twice is refused, as is a batch that does not exist
    again = runner.invoke(cli, ["--db", db_url, "send", "--resolve", batch.id, "sent"])
    assert again.exit_code == 2
    assert (
        again.output.strip()
        == f"Error: batch {batch.id} is resolved, not unresolved; nothing to decide"
    )
    missing = runner.invoke(cli, ["--db", db_url, "send", "--resolve", "nope", "sent"])
    assert missing.exit_code == 2 and "no batch nope" in missing.output
    bad = runner.invoke(cli, ["--db", db_url, "send", "--resolve", batch.id, "maybe"])
    assert bad.exit_code == 2 and "resend, sent or failed" in bad.output

    send_edition(store, cfg, eid, {"default": RENDER}, backend)
    assert sorted(backend.sent) == sorted(d.id for d in store.list_deliveries(eid))
    assert store.get_edition(eid).status == "sent"


def test_resolving_a_held_batch_as_sent_or_failed_finishes_the_edition(store, make_config):
    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV, delivery={"batch_size": 2})
    eid = make_edition(store, 4)
    first = store.claim_batch(eid, backend="recording", limit=2, worker=dead_worker())
    second = store.claim_batch(eid, backend="recording", limit=2, worker=dead_worker())
    send_edition(store, cfg, eid, {"default": RENDER}, RecordingBackend(cfg))
    assert statuses(store, eid) == {"unresolved": 4}
    done = resolve(store, first.id, "sent")
    assert (done.deliveries, done.edition_status) == (2, "sending")
    done = resolve(store, second.id, "failed")
    assert done.edition_status == "partially_failed"
    assert statuses(store, eid) == {"accepted": 2, "failed": 2}
    with pytest.raises(InputError):
        resolve(store, first.id, "resend")
    with pytest.raises(InputError, match="no batch"):
        resolve(store, "0" * 32, "resend")


def test_an_idempotent_backend_sends_a_dead_workers_batch_again(store, tmp_path, make_config):
    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV, delivery={"batch_size": 3})
    eid = make_edition(store, 5)
    store.claim_batch(eid, backend="outbox", limit=3, worker=dead_worker())
    report = send_edition(store, cfg, eid, {"default": RENDER}, OutboxBackend(cfg))
    assert report.requeued == 3 and report.unresolved == 0
    assert statuses(store, eid) == {"accepted": 5}
    assert len(list((tmp_path / "outbox" / f"edition-{eid}").glob("*.eml"))) == 5


def test_provider_events_prove_an_unknown_batch_was_accepted(store, make_config):
    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV, delivery={"batch_size": 3})
    eid = make_edition(store, 5)
    batch = store.claim_batch(eid, backend="recording", limit=3, worker=dead_worker())
    # the webhook stored a "processed" event for one of the batch's deliveries
    with store.begin() as conn:
        conn.execute(
            sa.insert(events).values(
                provider="sendgrid",
                provider_event_id="ev-1",
                delivery_id=batch.deliveries[1].id,
                edition_id=eid,
                type="queued",
                raw_type="processed",
                email=batch.deliveries[1].email,
                occurred_at=datetime.now(UTC),  # after the batch's request
                reason="",
                url="",
                received_at=NOW,
                raw={"event": "processed", "sg_message_id": "XMSG123.filterdrecv-1.0"},
            )
        )
    backend = RecordingBackend(cfg)
    report = send_edition(store, cfg, eid, {"default": RENDER}, backend)
    assert report.resolved == 3 and report.unresolved == 0
    assert {d.id for d in batch.deliveries}.isdisjoint(backend.sent)
    rows = {d.id: d for d in store.list_deliveries(eid)}
    for d in batch.deliveries:
        assert rows[d.id].status == "accepted" and rows[d.id].message_id == "XMSG123"
    assert store.get_batch(batch.id).status == "accepted"
    assert store.get_edition(eid).status == "sent"


def test_held_batches_are_looked_at_again_when_events_arrive_later(store, make_config):
    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV, delivery={"batch_size": 2})
    eid = make_edition(store, 2)
    batch = store.claim_batch(eid, backend="recording", limit=2, worker=dead_worker())
    send_edition(store, cfg, eid, {"default": RENDER}, RecordingBackend(cfg))
    assert statuses(store, eid) == {"unresolved": 2}
    with store.begin() as conn:
        conn.execute(
            sa.insert(events).values(
                provider="sendgrid",
                provider_event_id="ev-2",
                delivery_id=batch.deliveries[0].id,
                edition_id=eid,
                type="delivered",
                raw_type="delivered",
                email="x",
                occurred_at=datetime.now(UTC),
                reason="",
                url="",
                received_at=NOW,
                raw={},
            )
        )
    report = send_edition(store, cfg, eid, {"default": RENDER}, RecordingBackend(cfg))
    # the batch is accepted on that evidence, and the event itself then counts
    assert report.resolved == 2 and statuses(store, eid) == {"accepted": 1, "delivered": 1}


def test_another_machines_batch_waits_for_its_lease(store, make_config):
    cfg = make_config(
        toml=DELIVERY_CONFIG,
        env=SECRET_ENV,
        delivery={"batch_size": 2, "lease_seconds": 600},
    )
    eid = make_edition(store, 4)
    old = store.claim_batch(
        eid,
        backend="recording",
        limit=2,
        worker="elsewhere:1",
        now=datetime.now(UTC) - timedelta(minutes=11),
    )
    fresh = store.claim_batch(eid, backend="recording", limit=2, worker="elsewhere:2")
    send_edition(store, cfg, eid, {"default": RENDER}, RecordingBackend(cfg))
    assert store.get_batch(old.id).status == "unknown"  # lease over: resolved (held)
    assert store.get_batch(fresh.id).status == "claimed"  # still its worker's
    assert statuses(store, eid) == {"unresolved": 2, "claimed": 2}


def test_fast_unsubscribe_links_match_the_token_module(make_config):
    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV)
    links = UnsubscribeLinks(cfg, "weekly")
    for sid in (0, 1, 7, 12345, 10**9):
        assert links(sid) == unsubscribe_url(cfg, sid, "weekly")


def test_status_json_lists_unresolved_batches(store, db_url, project, make_config):
    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV, delivery={"batch_size": 2})
    eid = make_edition(store, 2)
    batch = store.claim_batch(eid, backend="recording", limit=2, worker=dead_worker())
    send_edition(store, cfg, eid, {"default": RENDER}, RecordingBackend(cfg))
    out = CliRunner().invoke(cli, ["--db", db_url, "status", str(eid), "--json"])
    data = json.loads(out.output)
    assert data["counts"]["unresolved"] == 2
    assert [b["id"] for b in data["unresolved_batches"]] == [batch.id]


def test_events_that_arrive_before_the_provider_answers_still_count(store, make_config):
    from newsletter.store.events import TrackedEvent

    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV)
    eid = make_edition(store, 3)

    def webhook_first(recipients):
        # SendGrid's "delivered" for the first recipient lands while its batch is claimed
        first = recipients[0]
        store.record_events(
            [
                TrackedEvent(
                    provider="sendgrid",
                    provider_event_id="early-1",
                    type="delivered",
                    raw_type="delivered",
                    email=first.email,
                    occurred_at=NOW,
                    raw={},
                    delivery_id=first.delivery_id,
                    edition_id=eid,
                )
            ]
        )

    send_edition(store, cfg, eid, {"default": RENDER}, RecordingBackend(cfg, check=webhook_first))
    assert statuses(store, eid) == {"delivered": 1, "accepted": 2}


def test_a_run_clock_in_the_past_still_stamps_claims_with_real_time(store, make_config):
    # `run --at` a month back must not make this worker's live batches look stale
    cfg = make_config(toml=DELIVERY_CONFIG, env=SECRET_ENV)
    eid = make_edition(store, 2)
    stamps = []

    def look(recipients):
        stamps.extend(b.claimed_at for b in store.claimed_batches(eid))

    past = datetime.now(UTC) - timedelta(days=30)
    send_edition(store, cfg, eid, {"default": RENDER}, RecordingBackend(cfg, check=look), now=past)
    assert len(stamps) == 1
    assert abs(stamps[0] - datetime.now(UTC)) < timedelta(minutes=1)
    assert statuses(store, eid) == {"accepted": 2}
