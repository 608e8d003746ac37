"""Migrations 0004 and 0007: CHECK constraints on every status column, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from newsletter.models import Subscriber
from newsletter.states import (
    BatchStatus,
    DeliveryStatus,
    EditionStatus,
    EventType,
    RunStatus,
    SubscriberStatus,
    SubscriptionStatus,
)
from newsletter.store import open_store
from newsletter.store.db import _alembic_config
from newsletter.store.deliveries import AudienceRow
from newsletter.store.runs import DigestRun
from newsletter.store.schema import (
    batches,
    deliveries,
    digest_runs,
    editions,
    events,
    subscribers,
    subscriptions,
)
from tests.fakes.event_webhook import body_of, sent_edition
from tests.helpers import build_config

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)

#: (table, column): every status column
COLUMNS = [
    (editions, "status"),
    (batches, "status"),
    (deliveries, "status"),
    (subscribers, "status"),
    (subscriptions, "status"),
    (events, "type"),
    (digest_runs, "status"),
]


def run_of(digest, status, message=""):
    return DigestRun(
        digest=digest,
        ran_at=NOW,
        exit_code=0,
        status=status,
        period="2026-W48",
        edition_id=None,
        message=message,
        idle_periods=2,
        idle_period="2026-W48",
    )


def one_of_each(store):
    """A sent edition with a batch, deliveries, a subscriber, an event and a run."""
    from newsletter.tracking.webhook import ingest_sendgrid

    sent = sent_edition(store, ["a@example.com", "b@example.com"])
    d = sent.deliveries[0]
    ingest_sendgrid(
        store,
        build_config(env={}),
        body_of(
            [
                {
                    "event": "delivered",
                    "sg_event_id": "e1",
                    "email": "a@example.com",
                    "timestamp": 1796000000,
                    "newsletter_delivery_id": str(d.delivery_id),
                    "newsletter_edition_id": str(sent.edition_id),
                }
            ]
        ),
    )
    store.record_digest_run(run_of("weekly", RunStatus.SENT))
    return sent


def counts(engine):
    with engine.connect() as c:
        return {
            t.name: c.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t, _ in COLUMNS
        }


@pytest.mark.parametrize(("table", "column"), COLUMNS, ids=[f"{t.name}.{c}" for t, c in COLUMNS])
def test_an_unknown_status_is_refused_by_the_database(store, table, column):
    one_of_each(store)
    (pk,) = table.primary_key.columns
    with store.engine.connect() as c:
        row_id = c.execute(sa.select(pk).limit(1)).scalar_one()
    # UPDATE of an existing row
    with pytest.raises(sa.exc.IntegrityError, match=f"ck_{table.name}_{column}|CHECK"):
        with store.engine.begin() as c:
            c.execute(sa.update(table).where(pk == row_id).values({column: "bogus"}))
    # INSERT of a new one: a copy of that row with the unknown value
    with store.engine.connect() as c:
        row = dict(c.execute(sa.select(table).where(pk == row_id)).one()._mapping)
    row.update({column: "bogus"})
    if table is batches:
        row["id"] = "copy"
    elif "id" in row:
        del row["id"]
    for unique in ("email", "period", "provider_event_id", "digest"):
        if unique in row:
            row[unique] = f"other-{row[unique]}"
    if table is deliveries:
        row["subscriber_id"] = store.upsert_subscriber(Subscriber(email="c@example.com"))[0]
    with pytest.raises(sa.exc.IntegrityError, match=f"ck_{table.name}_{column}|CHECK"):
        with store.engine.begin() as c:
            c.execute(sa.insert(table).values(row))
    # and every value of its enum is accepted: a value added to an enum without a
    # migration of its own (the migrations write their values out) fails here
    states = {
        "editions": EditionStatus,
        "batches": BatchStatus,
        "deliveries": DeliveryStatus,
        "events": EventType,
        "subscriptions": SubscriptionStatus,
        "digest_runs": RunStatus,
        "subscribers": SubscriberStatus,
    }[table.name]
    for value in states:
        with store.engine.begin() as c:
            c.execute(sa.update(table).where(pk == row_id).values({column: value}))


def test_the_migration_keeps_every_row_and_foreign_key(db_url):
    """A database just before 0004 with a sent edition in it comes through it whole."""
    store = open_store(db_url, migrate=False)
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    sent = one_of_each(store)
    before = counts(store.engine)
    assert before["deliveries"] == 2 and before["events"] == 1
    store.migrate()
    assert store.revision() >= "0004"  # 0004 applied (later revisions may follow)
    assert counts(store.engine) == before
    # the foreign keys still hold (and still cascade) after SQLite's table copies
    with pytest.raises(sa.exc.IntegrityError):
        with store.engine.begin() as c:
            c.execute(
                sa.insert(deliveries).values(
                    edition_id=9999,
                    subscriber_id=sent.deliveries[0].subscriber_id,
                    email="x@example.com",
                    variant="default",
                    status=DeliveryStatus.QUEUED,
                    updated_at=NOW,
                )
            )
    with pytest.raises(sa.exc.IntegrityError, match="ck_editions_status|CHECK"):
        with store.engine.begin() as c:
            c.execute(sa.update(editions).values(status="draft"))
    store.close()


def test_the_migration_goes_down_and_up_again(db_url):
    store = open_store(db_url)
    one_of_each(store)
    cfg = _alembic_config()
    with store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # as Store.migrate does: SQLite's table copies need foreign keys off
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003")  # to just before 0004
    with store.engine.begin() as c:  # no constraint any more
        c.execute(sa.update(editions).values(status="draft"))
        c.execute(sa.update(editions).values(status=EditionStatus.SENDING))
    store.migrate()
    with pytest.raises(sa.exc.IntegrityError):
        with store.engine.begin() as c:
            c.execute(sa.update(editions).values(status="draft"))
    assert counts(store.engine)["deliveries"] == 2
    store.close()


def test_a_fresh_store_freezes_and_claims_under_the_constraints(store):
    rows = store.upsert_subscribers([Subscriber(email="a@example.com")])
    eid, _ = store.create_edition(
        digest="w", period="p", subject="s", window_start=NOW, window_end=NOW
    )
    store.freeze_audience(eid, [AudienceRow(rows[0][0], "a@example.com", "default")])
    batch = store.claim_batch(eid, backend="outbox", limit=5)
    store.finish_batch(batch.id, message_id="m")
    assert store.get_batch(batch.id).status == BatchStatus.ACCEPTED


def test_every_run_outcome_is_recorded_and_read_back_as_its_enum(store):
    for status in RunStatus:
        store.record_digest_run(run_of("weekly", status))
        got = store.digest_run("weekly")
        assert got.status is status
    assert [r.status for r in store.digest_runs()] == [RunStatus.STALE]


def test_migration_0007_keeps_the_runs_and_rewrites_an_unknown_outcome(db_url):
    """A database at 0006 with runs in it, one with an outcome no release wrote."""
    store = open_store(db_url, migrate=False)
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
    for digest, status, message in [
        ("weekly", "sent", "edition 1: 2 accepted, 0 failed"),
        ("daily", "too-few-articles", "fewer than min_articles=3"),
        ("monthly", "exploded", "by hand"),
        ("blank", "", ""),
    ]:
        store.record_digest_run(run_of(digest, status, message))
    with store.engine.connect() as c:  # no constraint yet: all four are stored
        stored = dict(c.execute(sa.select(digest_runs.c.digest, digest_runs.c.status)).all())
    assert stored["monthly"] == "exploded" and len(stored) == 4
    store.migrate()
    assert store.revision() >= "0007"
    runs = {r.digest: r for r in store.digest_runs()}
    assert {d: (r.status, r.message, r.idle_periods) for d, r in runs.items()} == {
        "weekly": ("sent", "edition 1: 2 accepted, 0 failed", 2),
        "daily": ("too-few-articles", "fewer than min_articles=3", 2),
        "monthly": ("failed", "status was 'exploded' before migration 0007: by hand", 2),
        "blank": ("failed", "status was '' before migration 0007", 2),
    }
    with pytest.raises(sa.exc.IntegrityError, match="ck_digest_runs_status|CHECK"):
        store.record_digest_run(run_of("weekly", "exploded"))
    assert store.digest_run("weekly").status == RunStatus.SENT
    store.close()


def test_migration_0007_goes_down_and_up_again(db_url):
    store = open_store(db_url)
    store.record_digest_run(run_of("weekly", RunStatus.MISSED))
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
    with store.engine.begin() as c:  # no constraint any more
        c.execute(sa.update(digest_runs).values(status="bogus"))
    store.migrate()
    run = store.digest_run("weekly")
    assert (run.status, run.message) == ("failed", "status was 'bogus' before migration 0007")
    with pytest.raises(sa.exc.IntegrityError, match="ck_digest_runs_status|CHECK"):
        with store.engine.begin() as c:
            c.execute(sa.update(digest_runs).values(status="bogus"))
    store.close()
