"""The store on both engines: migrations, idempotent upserts, the unique delivery."""

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from newsletter.models import Subscriber, Tag
from newsletter.store import open_store
from newsletter.store.deliveries import AudienceRow
from tests.helpers import article

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def test_migrations_reach_head_and_rerun_is_a_no_op(db_url):
    from alembic.script import ScriptDirectory

    from newsletter.store.db import _alembic_config

    s = open_store(db_url)
    assert s.revision() == ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert s.revision() >= "0002"
    s.migrate()
    with s.engine.connect() as c:
        names = set(sa.inspect(c).get_table_names())
    assert {"articles", "tags", "subscribers", "editions", "deliveries", "events", "rates"} <= names
    assert "digest_runs" in names
    s.close()


def test_upsert_is_idempotent_and_updates_in_place(store):
    first = store.upsert_articles([article(1), article(2)])
    assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
    again = store.upsert_articles([article(1), article(2)])
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    changed = store.upsert_articles([article(1, title="Story 1, updated")])
    assert changed.updated == 1
    assert store.count_articles() == 2
    titles = {a.title for a in store.find_articles()}
    assert "Story 1, updated" in titles


def test_same_story_from_two_sources_is_stored_once(store):
    store.upsert_articles([article(1, uid="https://x.example/?p=1")])
    store.upsert_articles([article(1, uid="other-source-guid")])  # same URL
    assert store.count_articles() == 1


def test_times_come_back_aware_utc(store):
    store.upsert_articles([article(3)])
    (a,) = store.find_articles()
    assert a.published_at == NOW - timedelta(hours=3)
    assert a.published_at.tzinfo is not None


def test_tag_filter_and_exclusion(store):
    store.upsert_articles(
        [
            article(1, tags=[Tag.from_name("Kazakhstan")]),
            article(2, tags=[Tag.from_name("Uzbekistan")]),
            article(3, tags=[Tag.from_name("KAZAKHSTAN"), Tag.from_name("Sport")]),
        ]
    )
    got = [a.uid for a in store.find_articles(tags=["kazakhstan"])]
    assert got == ["guid-1", "guid-3"]
    got = [a.uid for a in store.find_articles(tags=["kazakhstan"], exclude_tags=["sport"])]
    assert got == ["guid-1"]


def test_one_delivery_per_edition_and_subscriber(store):
    sid, _ = store.upsert_subscriber(Subscriber(email="a@example.com"))
    eid, created = store.create_edition(
        digest="weekly", period="p1", subject="s", window_start=NOW, window_end=NOW
    )
    assert created
    rows = [AudienceRow(sid, "a@example.com", "default")]
    assert store.freeze_audience(eid, rows) == 1
    assert store.freeze_audience(eid, rows) == 0
    with pytest.raises(sa.exc.IntegrityError):
        with store.begin() as c:
            from newsletter.store.schema import deliveries

            c.execute(
                sa.insert(deliveries).values(
                    edition_id=eid,
                    subscriber_id=sid,
                    email="a@example.com",
                    variant="default",
                    status="queued",
                    updated_at=NOW,
                )
            )
    # the same period gives the same edition
    again, created = store.create_edition(
        digest="weekly", period="p1", subject="s", window_start=NOW, window_end=NOW
    )
    assert (again, created) == (eid, False)


def test_claim_commits_before_the_provider_and_finish_records(store):
    ids = [store.upsert_subscriber(Subscriber(email=f"u{i}@example.com"))[0] for i in range(5)]
    eid, _ = store.create_edition(
        digest="w", period="p", subject="s", window_start=NOW, window_end=NOW
    )
    store.freeze_audience(
        eid, [AudienceRow(i, f"u{n}@example.com", "default") for n, i in enumerate(ids)]
    )
    batch = store.claim_batch(eid, backend="outbox", limit=3)
    assert len(batch.deliveries) == 3
    assert store.delivery_counts(eid)["default"] == {"claimed": 3, "queued": 2}
    store.finish_batch(batch.id, message_id="m1", failed={batch.deliveries[0].id: "bad address"})
    assert store.delivery_counts(eid)["default"] == {"accepted": 2, "failed": 1, "queued": 2}
    second = store.claim_batch(eid, backend="outbox", limit=3)
    assert len(second.deliveries) == 2
    assert store.claim_batch(eid, backend="outbox", limit=3) is None


def test_suppressed_subscriber_stays_suppressed_unless_resubscribed(store):
    store.upsert_subscriber(Subscriber(email="a@example.com"))
    store.set_subscriber_status("a@example.com", "suppressed", "hard bounce")
    store.upsert_subscriber(Subscriber(email="a@example.com", name="A"))
    assert store.get_subscriber("a@example.com").status == "suppressed"
    store.upsert_subscriber(Subscriber(email="a@example.com"), resubscribe=True)
    assert store.get_subscriber("a@example.com").status == "active"


def test_lock_excludes_a_second_holder_until_it_expires(store):
    assert store.acquire_lock("run", "a", ttl=timedelta(minutes=5))
    assert not store.acquire_lock("run", "b", ttl=timedelta(minutes=5))
    store.release_lock("run", "a")
    assert store.acquire_lock("run", "b", ttl=timedelta(seconds=-1))  # already expired
    assert store.acquire_lock("run", "c", ttl=timedelta(minutes=5))  # stale lock recovered


def test_a_tag_keeps_its_best_spelling(store):
    store.upsert_articles([article(1, tags=[Tag.from_name("KAZAKHSTAN")])])
    assert [t.name for t, _ in store.list_tags()] == ["KAZAKHSTAN"]
    store.upsert_articles([article(2, tags=[Tag.from_name("Kazakhstan")])])
    store.upsert_articles([article(3, tags=[Tag.from_name("kazakhstan")])])
    assert [(t.slug, t.name, n) for t, n in store.list_tags()] == [("kazakhstan", "Kazakhstan", 3)]


def test_sqlite_reads_do_not_wait_for_a_writer(sqlite_store):
    import threading

    sqlite_store.upsert_articles([article(1)])
    got = []
    with sqlite_store.begin() as conn:  # a writer holds the write lock
        conn.execute(sa.text("UPDATE articles SET title = 'changing'"))
        reader = threading.Thread(target=lambda: got.append(sqlite_store.count_articles()))
        reader.start()
        reader.join(timeout=5)  # a read that took the write lock would wait 30 s
        assert got == [1]


def test_a_mistyped_sqlite_path_is_refused_not_created(tmp_path):
    from newsletter.errors import StoreError

    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path}/no/such/folder/news.db")
    assert not (tmp_path / "no").exists()
    s = open_store(f"sqlite:///{tmp_path}/new-folder/news.db")  # one level is made
    s.close()
