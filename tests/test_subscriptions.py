"""Subscriptions per digest: the 0003 migration keeps today's audience (rows written
here, and a database that main made before subscriptions through its own commands:
tests/data/main-before-subscriptions.json), leaving one digest keeps the others,
the audience freeze reads the subscriptions."""

import json
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from newsletter.models import Subscriber
from newsletter.store import Store
from newsletter.store.db import _alembic_config, make_engine
from newsletter.store.schema import metadata
from newsletter.store.subscriptions import SignupRequest
from tests.helpers import article, build_config

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


#: the head of main before the subscriptions
BEFORE = "0002"


def store_before(url: str) -> Store:
    """A database as main makes it before subscriptions (revision 0002)."""
    engine = make_engine(url)
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, BEFORE)
    return Store(engine)


def test_the_migration_keeps_every_subscriber_on_exactly_the_digests_of_today(db_url):
    s = store_before(db_url)
    assert s.revision() == BEFORE
    people = [
        ("aigerim@example.com", "active", ["kazakhstan", "energy"]),
        ("olmas@example.org", "active", []),
        ("left@example.net", "unsubscribed", ["uzbekistan"]),
        ("bounce@example.net", "bounced", []),
        ("moan@example.net", "complained", ["energy"]),
    ]
    with s.engine.begin() as c:
        for i, (email, status, tags) in enumerate(people, start=1):
            c.execute(
                sa.text(
                    "INSERT INTO subscribers (id, email, name, timezone, status, status_reason, "
                    "soft_bounces, created_at, updated_at) VALUES (:i, :e, '', '', :s, '', 0, "
                    ":t, :t)"
                ),
                {"i": i, "e": email, "s": status, "t": T0},
            )
            for t in tags:
                c.execute(
                    sa.text(
                        "INSERT INTO subscriber_tags (subscriber_id, tag_slug) VALUES (:i, :t)"
                    ),
                    {"i": i, "t": t},
                )
    before = {(x.email, tuple(x.tags)) for x in s.iter_subscribers(status=("active",))}
    s.migrate()
    assert s.revision() >= "0003"  # 0003 applied (later revisions may follow)
    for digest in ("weekly", "daily", "a-digest-added-next-year"):
        after = {(x.email, tuple(x.tags)) for x in s.iter_audience(digest)}
        assert after == before
    assert before == {
        ("aigerim@example.com", ("energy", "kazakhstan")),
        ("olmas@example.org", ()),
    }
    (sub,) = s.subscriptions_of(1)
    assert (sub.digest, sub.status, sub.consent_source, sub.consent_at) == (
        "*",
        "active",
        "migration",
        T0,
    )
    assert [x.status for x in s.subscriptions_of(3)] == ["unsubscribed"]
    s.close()


#: a database made by main before subscriptions, through its own commands (see "made_by")
OLD_MAIN = json.loads(
    (Path(__file__).parent / "data" / "main-before-subscriptions.json").read_text("utf-8")
)


def load_old_main(url: str) -> Store:
    """OLD_MAIN's rows in a database at its revision (0001 and 0002 are the files that
    main had). SQLite gets the very values that main stored (its text form of each
    time); PostgreSQL the same values as typed columns."""
    s = store_before(url)
    assert s.revision() == OLD_MAIN["revision"]
    tables = OLD_MAIN["tables"]
    if s.dialect == "sqlite":
        raw = s.engine.raw_connection()
        try:
            for name, data in tables.items():
                cols = ", ".join(data["columns"])
                marks = ", ".join("?" * len(data["columns"]))
                raw.executemany(f"INSERT INTO {name} ({cols}) VALUES ({marks})", data["rows"])
            raw.commit()
        finally:
            raw.close()
        return s
    with s.engine.begin() as c:
        for name, data in tables.items():
            table = metadata.tables[name]
            rows = []
            for values in data["rows"]:
                row = dict(zip(data["columns"], values, strict=True))
                for col, value in row.items():
                    kind = table.c[col].type
                    kind = getattr(kind, "impl", kind)  # a TypeDecorator's own type
                    if value is None:
                        continue
                    if isinstance(kind, sa.DateTime):
                        row[col] = datetime.fromisoformat(value).replace(tzinfo=UTC)
                    elif isinstance(kind, sa.Boolean):
                        row[col] = bool(value)
                    elif isinstance(kind, sa.JSON):
                        row[col] = json.loads(value)
                rows.append(row)
            c.execute(sa.insert(table), rows)
            if "id" in data["columns"] and isinstance(table.c.id.type, sa.Integer):
                c.execute(
                    sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), :n)"),
                    {"n": max(r[0] for r in data["rows"])},
                )
    return s


def test_a_database_made_by_main_before_subscriptions_keeps_its_audience_and_links(
    tmp_path, db_url
):
    import httpx

    from newsletter.tracking.app import create_app
    from tests.fakes.event_webhook import LiveApp

    s = load_old_main(db_url)
    s.migrate()
    assert s.revision() > OLD_MAIN["revision"]
    before = [(e, tags) for e, tags in OLD_MAIN["audience"]]
    assert len(before) == 21
    for digest in ("weekly", "daily", "one-added-later"):
        assert sorted((x.email, sorted(x.tags)) for x in s.iter_audience(digest)) == before
    # the List-Unsubscribe of an email that main sent still works, and leaves that digest
    cfg = build_config(
        tmp_path,
        toml=(
            '[site]\nname = "The Steppe Ledger"\nurl = "https://steppe-ledger.example/"\n'
            'public_url = "https://steppe-ledger.example/newsletter"\n'
            '[[digests]]\nname = "weekly"\ntags = ["kazakhstan"]\n'
            '[[digests]]\nname = "daily"\ntags = ["kazakhstan"]\n'
        ),
        env={"NEWSLETTER_SECRET_KEY": OLD_MAIN["secret_key"]},
        database=db_url,
    )
    link = OLD_MAIN["unsubscribe"]["list_unsubscribe"].removeprefix(cfg.site.public_url)
    reader = OLD_MAIN["unsubscribe"]["email"]
    with LiveApp(create_app(cfg, s)) as srv:
        r = httpx.post(srv.url(link), content=b"List-Unsubscribe=One-Click", timeout=30)
        assert r.status_code == 200
    assert reader not in {x.email for x in s.iter_audience("weekly")}
    assert reader in {x.email for x in s.iter_audience("daily")}
    # the leave is counted in the edition main sent
    (delivery,) = [d for d in OLD_MAIN["tables"]["deliveries"]["rows"] if reader in d]
    with s.engine.connect() as c:
        status = c.execute(
            sa.text("select status from deliveries where id = :i"), {"i": delivery[0]}
        ).scalar_one()
    assert status == "unsubscribed"
    # and new rows get ids past main's
    s.request_signup(SignupRequest(email="new@example.com", digests=["daily"], topics=[]))
    assert s.get_subscriber("new@example.com").id > 24
    s.close()


def test_leaving_one_digest_keeps_the_others_and_undo_rejoins(store):
    (sid, _), (other, _) = store.upsert_subscribers(
        [Subscriber(email="a@example.com", tags=["energy"]), Subscriber(email="b@example.com")]
    )
    assert store.leave(sid, ["weekly"]) == ["weekly"]
    assert store.leave(sid, ["weekly"]) == []  # again: nothing more to leave
    assert [x.email for x in store.iter_audience("weekly")] == ["b@example.com"]
    assert [x.email for x in store.iter_audience("daily")] == ["a@example.com", "b@example.com"]
    assert store.rejoin(sid, ["weekly"]) == ["weekly"]
    weekly = {x.email: x.tags for x in store.iter_audience("weekly")}
    assert weekly == {"a@example.com": ["energy"], "b@example.com": []}
    # leaving everything, then undoing only what was active
    assert sorted(store.leave(sid, ["weekly", "daily"])) == ["daily", "weekly"]
    assert [x.email for x in store.iter_audience("daily")] == ["b@example.com"]
    store.set_topics(other, ["daily"], ["uzbekistan", "kazakhstan"])
    assert {x.email: x.tags for x in store.iter_audience("daily")} == {
        "b@example.com": ["kazakhstan", "uzbekistan"]
    }
    assert {x.email: x.tags for x in store.iter_audience("weekly")}["b@example.com"] == []


def test_a_signup_is_pending_until_confirmed_and_an_old_link_confirms_nothing_new(store):
    out = store.request_signup(
        SignupRequest(email="new@example.com", digests=["weekly"], topics=["energy"], ip="10.0.0.1")
    )
    assert out.pending == ["weekly"]
    sent_at = datetime.now(UTC)
    assert list(store.iter_audience("weekly")) == []
    assert store.get_subscriber("new@example.com").status == "pending"
    later = store.request_signup(
        SignupRequest(email="new@example.com", digests=["weekly", "daily"], topics=[])
    )
    assert later.pending == ["weekly", "daily"]
    # the first mail's link confirms what was asked before it was sent, not "daily"
    assert store.confirm_signup(out.subscriber_id, sent_at) == ["weekly"]
    assert store.confirm_signup(out.subscriber_id, sent_at) == []  # reused
    assert [(x.email, x.tags) for x in store.iter_audience("weekly")] == [
        ("new@example.com", ["energy"])
    ]
    assert list(store.iter_audience("daily")) == []
    subs = {x.digest: x for x in store.subscriptions_of(out.subscriber_id)}
    assert subs["weekly"].consent_source == "form"
    assert subs["weekly"].consent_ip == "10.0.0.1"
    assert subs["weekly"].confirmed_at is not None


def test_a_new_address_signup_writes_its_subscriber_and_subscriptions_in_full(store):
    """On PostgreSQL the new address's rows are one statement (data-modifying CTE);
    they are the rows SQLite's two statements write."""
    out = store.request_signup(
        SignupRequest(
            email="new@example.com",
            digests=["weekly", "daily", "weekly"],
            topics=["energy", "kazakhstan", "energy"],
            name="Aigerim",
            ip="2001:db8::1" + "0" * 80,
            consent_text="v" * 150,
        )
    )
    assert out.pending == ["weekly", "daily"] and out.subscriber_id is not None
    sub = store.get_subscriber("new@example.com")
    assert (sub.id, sub.name, sub.status, sub.timezone) == (
        out.subscriber_id,
        "Aigerim",
        "pending",
        "",
    )
    with store.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT * FROM subscriptions WHERE subscriber_id = :s ORDER BY id"),
            {"s": out.subscriber_id},
        ).mappings()
        got = [dict(r) for r in rows]
        person = conn.execute(
            sa.text("SELECT * FROM subscribers WHERE id = :s"), {"s": out.subscriber_id}
        ).one()
    assert (person.status_reason, person.soft_bounces) == ("signed up, not confirmed", 0)
    assert [r["digest"] for r in got] == ["weekly", "daily"]  # in the order asked
    subs = {x.digest: x for x in store.subscriptions_of(out.subscriber_id)}
    for d in ("weekly", "daily"):
        x = subs[d]
        assert (x.status, x.topics, x.consent_source) == (
            "pending",
            ["energy", "kazakhstan"],
            "form",
        )
        assert x.consent_ip == ("2001:db8::1" + "0" * 80)[:64]
        assert x.consent_text == "v" * 100
        assert x.created_at == x.updated_at == x.consent_at
        assert x.confirmed_at is None and x.unsubscribed_at is None
    # known now: the same signup writes nothing new and keeps the first request
    again = store.request_signup(
        SignupRequest(email="new@example.com", digests=["daily"], topics=[])
    )
    assert again.pending == ["daily"] and again.subscriber_id == out.subscriber_id
    assert {x.digest: x.topics for x in store.subscriptions_of(out.subscriber_id)} == {
        "weekly": ["energy", "kazakhstan"],
        "daily": ["energy", "kazakhstan"],
    }


def test_a_suppressed_address_gets_no_pending_subscription(store):
    sid, _ = store.upsert_subscriber(Subscriber(email="x@example.com"))
    store.set_subscriber_status("x@example.com", "complained", "spam report")
    out = store.request_signup(SignupRequest(email="x@example.com", digests=["weekly"], topics=[]))
    assert out.pending == [] and out.quiet_reason == "address is complained"
    assert [s.digest for s in store.subscriptions_of(sid)] == ["*"]


def test_rate_limit_windows_are_shared_and_reopen(store):
    assert [store.hit("ip:1", 60) for _ in range(3)] == [1, 2, 3]
    assert store.hit("ip:2", 60) == 1
    assert store.hit("ip:short", 0.001) == 1
    import time

    time.sleep(0.01)
    assert store.hit("ip:short", 60) == 1  # the window had closed
    store.release("ip:1")
    assert store.hit("ip:1", 60) == 1


def test_a_signup_over_a_limit_keeps_only_its_hits(store):
    """The limits are counted after the signup's writes (the shared client counter
    last); over one, those writes are rolled back and only the hits stay."""
    from newsletter.store.subscriptions import Limit

    def signup(email: str):
        return store.record_signup(
            SignupRequest(email=email, digests=["weekly"], topics=[]),
            limits=[Limit(f"address:{email}", 5, 60), Limit("ip:1", 2, 60)],
            resend=Limit(f"resend:{email}", 1, 60),
        )

    first, second = signup("a@example.com"), signup("b@example.com")
    assert first.confirm_due and second.confirm_due and not second.limited
    third = signup("c@example.com")
    assert third.limited and not third.confirm_due and third.subscriber_id is None
    assert store.get_subscriber("c@example.com") is None
    # the attempt counted against both, once; the resend claim was rolled back
    assert store.hit("ip:1", 60) == 4
    assert store.hit("address:c@example.com", 60) == 2
    assert store.hit("resend:c@example.com", 60) == 1
    assert store.hit("resend:a@example.com", 60) == 2


def test_several_hits_in_one_statement_count_one_each_in_order(store):
    import time

    with store.begin() as conn:
        assert store.hits(conn, [("a", 60), ("b", 60), ("short", 0.001)]) == [1, 1, 1]
    time.sleep(0.01)
    with store.begin() as conn:
        # short's window had closed: it opens again
        assert store.hits(conn, [("short", 60), ("b", 60), ("a", 60)]) == [1, 2, 2]
        # a key given twice is counted twice (one statement cannot update a row twice)
        assert store.hits(conn, [("a", 60), ("b", 60), ("a", 60)]) == [3, 3, 4]
        assert store.hits(conn, []) == []
    assert [store.hit(k, 60) for k in ("a", "b", "short")] == [5, 4, 2]


def test_a_signup_counts_its_resend_claim_and_limits_last_in_one_statement(store):
    """docs/subscribe.md "Against abuse": the counters are the transaction's last
    statement, their rows taken in the order resend claim, address, client (the
    most shared row last, locked for the shortest time); over a limit the signup
    is rolled back and the limits alone are counted again."""
    from newsletter.store.subscriptions import Limit

    seen: list[object] = []

    def statement(conn, cursor, sql, params, context, executemany):
        if "rate_limits" in sql:
            named = context.compiled_parameters[0]
            seen.append([named[f"key_{i}"] for i in range(len(named) - 1) if f"key_{i}" in named])
        elif sql.strip() not in ("", ";", "SELECT 1"):
            seen.append("statement")

    sa.event.listen(store.engine, "before_cursor_execute", statement)
    sa.event.listen(store.engine, "commit", lambda conn: seen.append("commit"))
    sa.event.listen(store.engine, "rollback", lambda conn: seen.append("rollback"))

    def signup(email: str, ip_limit: int = 100):
        seen.clear()
        return store.record_signup(
            SignupRequest(email=email, digests=["weekly", "daily"], topics=[]),
            limits=[Limit(f"address:{email}", 5, 60), Limit("ip:1", ip_limit, 60)],
            resend=Limit(f"resend:{email}", 1, 60),
        )

    def last_transaction() -> list[object]:
        begun = [i for i, s in enumerate(seen) if s in ("commit", "rollback")]
        start = begun[-2] + 1 if len(begun) > 1 else 0
        return [s for s in seen[start:] if s not in ("commit", "rollback")]

    counters = [["resend:a@example.com", "address:a@example.com", "ip:1"]]
    assert signup("a@example.com").confirm_due
    assert last_transaction()[-1:] == counters and seen[-1] == "commit"
    # known and pending: the same order, still last
    assert not signup("a@example.com").confirm_due
    assert last_transaction()[-1:] == counters and seen[-1] == "commit"
    # known and active: nothing to confirm, so no resend claim
    store.confirm_signup(store.get_subscriber("a@example.com").id, datetime.now(UTC))
    out = signup("a@example.com")
    assert out.pending == [] and not out.confirm_due
    assert last_transaction()[-1:] == [["address:a@example.com", "ip:1"]]
    # over a limit: the signup's transaction rolled back, then the limits alone
    assert signup("b@example.com", ip_limit=1).limited
    assert seen[-2:] == [["address:b@example.com", "ip:1"], "commit"]
    rolled = seen[: seen.index("rollback")]
    assert rolled[-1] == ["resend:b@example.com", "address:b@example.com", "ip:1"]
    assert store.get_subscriber("b@example.com") is None


def test_the_audience_freeze_sends_each_digest_to_its_own_subscribers(store, tmp_path):
    from newsletter.editions.freeze import freeze_audience

    cfg = build_config(
        tmp_path,
        toml='[[digests]]\nname = "weekly"\ntags = ["Energy"]\n\n'
        '[[digests]]\nname = "daily"\ntags = ["Energy", "Kazakhstan"]\n',
        env={},
    )
    (a, _), (b, _) = store.upsert_subscribers(
        [Subscriber(email="a@example.com"), Subscriber(email="b@example.com")]
    )
    store.leave(a, ["weekly"])
    store.set_topics(b, ["daily"], ["kazakhstan"])
    store.upsert_articles([article(1)])
    (art,) = [x.id for x in store.find_articles()]
    frozen = {}
    for digest, variants in (("weekly", ["default"]), ("daily", ["default", "kazakhstan"])):
        eid, _ = store.create_edition(
            digest=digest,
            period="2026-11-30T07:00",
            subject="x",
            window_start=T0,
            window_end=T0,
            variants={v: [art] for v in variants},
        )
        freeze_audience(store, cfg, eid)
        frozen[digest] = sorted((d.email, d.variant) for d in store.list_deliveries(eid))
    assert frozen == {
        "weekly": [("b@example.com", "default")],
        "daily": [("a@example.com", "default"), ("b@example.com", "kazakhstan")],
    }
