"""On SQLite, datetimes written by the bulk paths are stored as SQLAlchemy stores them.

SQLite compares the stored text: a value in sqlite3's own format
(``2026-11-30 02:00:00+00:00``) beside SQLAlchemy's (``2026-11-30 02:00:00.000000``)
sorts by accident, not by time. Read here as the raw text in the file.
"""

import re
import sqlite3
from datetime import UTC, datetime

from newsletter.models import Subscriber
from newsletter.store.deliveries import AudienceRow
from newsletter.tracking.webhook import ingest_sendgrid
from tests.fakes.event_webhook import body_of, sent_edition, sg_event
from tests.helpers import build_config

SQLALCHEMY_FORMAT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")


def raw_texts(path, sql):
    with sqlite3.connect(path) as conn:
        return [v for row in conn.execute(sql) for v in row]


def test_frozen_deliveries_store_their_times_in_sqlalchemys_format(sqlite_store, tmp_path):
    rows = sqlite_store.upsert_subscribers([Subscriber(email="a@example.com")])
    eid, _ = sqlite_store.create_edition(
        digest="weekly",
        period="2026-11-30T07:00",
        subject="s",
        window_start=datetime(2026, 11, 23, tzinfo=UTC),
        window_end=datetime(2026, 11, 30, tzinfo=UTC),
    )
    release = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    sqlite_store.freeze_audience(
        eid,
        [AudienceRow(subscriber_id=rows[0][0], email="a@example.com", variant="default",
                     release_at=release)],
    )  # fmt: skip
    values = raw_texts(tmp_path / "test.db", "select release_at, updated_at from deliveries")
    assert values[0] == "2026-11-30 02:00:00.000000"
    assert SQLALCHEMY_FORMAT.fullmatch(values[1]), values


def test_webhook_events_store_their_times_in_sqlalchemys_format(sqlite_store, tmp_path):
    sent = sent_edition(sqlite_store, ["a@example.com"])
    ev = sg_event("delivered", sent.deliveries[0], sent.edition_id)
    ingest_sendgrid(sqlite_store, build_config(env={}), body_of([ev]))
    values = raw_texts(tmp_path / "test.db", "select occurred_at, received_at from events")
    assert len(values) == 2
    assert all(SQLALCHEMY_FORMAT.fullmatch(v) for v in values), values


def test_migration_0006_rewrites_sqlite3s_form_and_keeps_the_instants(tmp_path):
    from alembic import command

    from newsletter.store import open_store
    from newsletter.store.db import _alembic_config

    path = tmp_path / "old.db"
    store = open_store(f"sqlite:///{path}", migrate=False)
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
    sent = sent_edition(store, ["a@example.com", "b@example.com"])
    a, b = (d.delivery_id for d in sent.deliveries)
    # as the bulk paths wrote them before: sqlite3's form, microseconds left out at zero
    with sqlite3.connect(path) as conn:
        old = "update deliveries set updated_at = ?, release_at = ? where id = ?"
        conn.execute(old, ("2026-11-30 02:00:00+00:00", None, a))
        conn.execute(old, ("2026-11-30 02:00:00.250000+00:00", "2026-11-30 01:00:00+00:00", b))
    store.migrate()
    assert store.revision() >= "0006"
    assert raw_texts(path, "select updated_at, release_at from deliveries order by id") == [
        "2026-11-30 02:00:00.000000",
        None,
        "2026-11-30 02:00:00.250000",
        "2026-11-30 01:00:00.000000",
    ]
    got = {d.id: (d.updated_at, d.release_at) for d in store.list_deliveries(sent.edition_id)}
    assert got == {
        a: (datetime(2026, 11, 30, 2, 0, tzinfo=UTC), None),
        b: (
            datetime(2026, 11, 30, 2, 0, 0, 250000, tzinfo=UTC),
            datetime(2026, 11, 30, 1, tzinfo=UTC),
        ),
    }
    store.close()
