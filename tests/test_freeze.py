"""The freeze copies the audience inside the database (issue 17): it must write
exactly what reading the audience subscriber by subscriber gives, on both engines.

The reference is the way the freeze worked before: ``Store.iter_audience`` read
in Python, each subscriber's variant from ``variant_key`` and release from the
period, written as explicit rows (``Store.freeze_audience``) to a twin edition
with the same variants. Both editions' deliveries must be the same.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

import newsletter.store.freeze as store_freeze
from newsletter import schedule
from newsletter.editions.freeze import freeze_audience
from newsletter.editions.variants import variant_key
from newsletter.errors import StoreError
from newsletter.models import Subscriber
from newsletter.store import open_store
from newsletter.store.deliveries import AudienceRow
from newsletter.store.schema import deliveries, subscribers
from tests.helpers import article, build_config

T0 = datetime(2026, 11, 30, 2, tzinfo=UTC)
PERIOD = "2026-11-30T07:00+05:00"
CONFIG = """
[[digests]]
name = "weekly"
tags = ["Energy", "Kazakhstan", "Uzbekistan"]
schedule = "0 7 * * MON"
timezone = "Asia/Almaty"
local_time = true
"""
#: the edition's variants: "sport" and "water" subscribers are left out (no variant)
VARIANTS = ["default", "kazakhstan", "energy+kazakhstan", "uzbekistan", "energy"]
ZONES = ["", "Asia/Tokyo", "Europe/London", "America/New_York", "Asia/Nowhere", "Asia/Almaty"]
TAG_SETS = [
    [],
    ["kazakhstan"],
    ["Energy"],
    ["energy", "kazakhstan"],
    ["uzbekistan"],
    ["sport"],
    ["water"],
]
TOPICS = [None, [], ["Kazakhstan"], ["energy", "Kazakhstan"], ["Sport"], ["uzbekistan", "ENERGY"]]
STATUSES = ["active"] * 6 + [
    "pending",
    "unsubscribed",
    "suppressed",
    "bounced",
    "complained",
    "forgotten",
]


def addresses(rnd: random.Random, n: int, start: int = 0) -> list[str]:
    """Mostly plain addresses, and some that differ from another only by case,
    by a German ß (casefold: ss) or by a space at the end."""
    out = []
    for i in range(start, start + n):
        roll = rnd.random()
        if roll < 0.2:
            out.append(f"Reader{i // 2 * 2}@Example.com")
        elif roll < 0.26:
            out.append(f"stra\u00dfe{i % 3}@example.com")
        elif roll < 0.32:
            out.append(f"strasse{i % 3}@example.com")
        elif roll < 0.38:
            out.append(f"reader{i // 2 * 2}@example.com ")
        else:
            out.append(f"reader{i}@example.com")
    return list(dict.fromkeys(out))


def populate(store, rnd: random.Random, emails: list[str]) -> None:
    subs = [
        Subscriber(
            email=e,
            timezone=rnd.choice(ZONES),
            status=rnd.choice(STATUSES),
            tags=rnd.choice(TAG_SETS),
        )
        for e in emails
    ]
    rows = store.upsert_subscribers(subs)
    for sid, _ in rows:
        roll = rnd.random()
        if roll < 0.15:
            store.leave(sid, ["weekly"])
        elif roll < 0.25:
            store.leave(sid, ["*"])
            store.rejoin(sid, ["weekly"])
        elif roll < 0.5:
            topics = rnd.choice(TOPICS)
            if topics is not None:
                store.set_topics(sid, [rnd.choice(["weekly", "*"])], topics)
        elif roll < 0.55:
            store.leave(sid, ["*"])


def edition(store, period: str, art: int) -> int:
    eid, _ = store.create_edition(
        digest="weekly",
        period=period,
        subject="s",
        window_start=T0,
        window_end=T0,
        status="compiled",
        variants={v: [art] for v in VARIANTS},
    )
    return eid


def reference_rows(store, cfg) -> list[AudienceRow]:
    """The audience read in Python, subscriber by subscriber (the freeze before issue 17)."""
    digest = cfg.digest("weekly")
    home = schedule.zone(digest.timezone)
    period = schedule.period_from_key(digest, PERIOD)
    rows = []
    for sub in store.iter_audience("weekly"):
        key = variant_key(sub.tags)
        if key in VARIANTS:
            release = period.release_at(schedule.subscriber_zone(sub.timezone, home))
            rows.append(AudienceRow(sub.id, sub.email, key, release))
    return rows


def frozen(store, eid: int) -> list[tuple]:
    with store.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.select(
                    deliveries.c.subscriber_id,
                    deliveries.c.email,
                    deliveries.c.variant,
                    deliveries.c.status,
                    deliveries.c.error,
                    deliveries.c.release_at,
                )
                .where(deliveries.c.edition_id == eid)
                .order_by(deliveries.c.subscriber_id)
            )
        ]


@pytest.fixture
def setup(store, tmp_path):
    cfg = build_config(tmp_path, toml=CONFIG, env={})
    store.upsert_articles([article(1)])
    (art,) = [a.id for a in store.find_articles()]
    return cfg, art


def test_the_database_freeze_writes_what_reading_the_audience_gives(store, setup):
    cfg, art = setup
    rnd = random.Random(17)
    populate(store, rnd, addresses(rnd, 240))
    ours, theirs = edition(store, PERIOD, art), edition(store, "2026-11-23T07:00+05:00", art)
    # the compile counts each variant's audience in the database: the same counts
    counted: Counter[str] = Counter()
    for tags, n in store.audience_topic_counts("weekly"):
        counted[variant_key(tags)] += n
    assert counted == Counter(variant_key(sub.tags) for sub in store.iter_audience("weekly"))
    assert len(counted) == 8

    added = freeze_audience(store, cfg, ours)
    expected = store.freeze_audience(theirs, reference_rows(store, cfg))
    got = frozen(store, ours)
    assert got == frozen(store, theirs)
    assert added == expected
    # the data set has what the test is about: left out, variants, zones, duplicates
    assert 40 < len(got) < 200 and {r[2] for r in got} == set(VARIANTS)
    assert len({r[5] for r in got}) == 4
    failed = [r for r in got if r[3] == "failed"]
    assert len(failed) >= 3 and all("duplicate address" in r[4] for r in failed)
    info = store.edition_details(ours).info["audience"]
    assert info == {
        "queued": added,
        "duplicates": len(failed),
        "left_out": store.edition_details(ours).info["audience"]["left_out"],
    }
    assert store.edition_details(theirs).info["audience"]["duplicates"] == len(failed)
    assert store.get_edition(ours).status == "sending"

    # newcomers: more readers (some the same mailbox as one frozen), a frozen
    # subscriber's address taken by a new one, changed topics: only newcomers are added
    populate(store, rnd, addresses(rnd, 80, start=1000) + ["Reader2@EXAMPLE.com"])
    first = got[0]
    with store.begin() as conn:
        conn.execute(
            sa.update(subscribers)
            .where(subscribers.c.id == first[0])
            .values(email="moved@example.com")
        )
    store.upsert_subscribers([Subscriber(email=first[1].strip(), status="active")])
    again = freeze_audience(store, cfg, ours)
    expected = store.freeze_audience(theirs, reference_rows(store, cfg))
    assert (again, frozen(store, ours)) == (expected, frozen(store, theirs))
    assert again > 10
    assert freeze_audience(store, cfg, ours) == 0


def test_a_freeze_that_fails_leaves_nothing_and_the_next_one_freezes(store, setup, monkeypatch):
    cfg, art = setup
    store.upsert_subscribers(
        [Subscriber(email=f"r{i}@example.com", tags=["kazakhstan"]) for i in range(20)]
    )
    eid = edition(store, PERIOD, art)

    def crash(*args, **kwargs):
        raise RuntimeError("the process died here")

    monkeypatch.setattr(store_freeze, "mark_frozen", crash)
    with pytest.raises(RuntimeError):
        freeze_audience(store, cfg, eid)
    assert frozen(store, eid) == []
    assert store.get_edition(eid).status == "compiled"
    monkeypatch.undo()
    assert freeze_audience(store, cfg, eid) == 20
    assert {r[2] for r in frozen(store, eid)} == {"kazakhstan"}


def test_a_topic_set_the_map_lacks_fails_the_freeze_instead_of_dropping_anyone(
    store, setup, monkeypatch
):
    cfg, art = setup
    store.upsert_subscribers([Subscriber(email="a@example.com", tags=["kazakhstan"])])
    eid = edition(store, PERIOD, art)
    monkeypatch.setattr(store_freeze, "topic_sets", lambda conn, digest, dialect: [])
    with pytest.raises(StoreError, match="nothing was frozen"):
        freeze_audience(store, cfg, eid)
    assert frozen(store, eid) == [] and store.get_edition(eid).status == "compiled"


def test_two_freezes_at_once_write_each_delivery_once(store, setup):
    cfg, art = setup
    n = 300
    store.upsert_subscribers([Subscriber(email=f"r{i}@example.com") for i in range(n)])
    eid = edition(store, PERIOD, art)
    start = threading.Barrier(2)
    added: list[int] = []
    errors: list[BaseException] = []

    def freeze() -> None:
        try:
            start.wait()
            added.append(freeze_audience(store, cfg, eid))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=freeze) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(added) == [0, n]
    rows = frozen(store, eid)
    assert len(rows) == len({r[0] for r in rows}) == n
    assert store.edition_details(eid).info["audience"]["queued"] == n


@pytest.mark.postgres
def test_a_large_freeze_refreshes_the_deliveries_statistics(pg_url, tmp_path):
    """Until autovacuum gets to it, PostgreSQL plans a freshly filled deliveries
    table as the empty table it was: the claims and the webhook's lookups that
    follow a freeze are planned for the table as it is, once it is analyzed."""
    store = open_store(pg_url)
    cfg = build_config(tmp_path, toml=CONFIG, env={})
    store.upsert_articles([article(1)])
    (art,) = [a.id for a in store.find_articles()]

    def reltuples() -> float:
        with store.connect() as conn:
            return conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE oid = 'deliveries'::regclass")
            ).scalar_one()

    n = store_freeze.STATISTICS_AFTER + 150
    store.upsert_subscribers([Subscriber(email=f"r{i}@example.com") for i in range(n)])
    assert reltuples() in (-1, 0)  # never analyzed (PostgreSQL 14+: -1)
    eid = edition(store, PERIOD, art)
    assert freeze_audience(store, cfg, eid) == n
    # ANALYZE read the small table whole: the row count, exactly
    assert reltuples() == n
    store.close()
