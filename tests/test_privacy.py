"""Access and erasure: `subscribers show` prints everything stored about a person,
`subscribers forget` erases it and keeps only a keyed hash that imports recognise."""

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.store import open_store
from newsletter.store.events import TrackedEvent
from newsletter.store.privacy import PersonRecord
from newsletter.store.subscriptions import SignupRequest
from newsletter.tracking.webhook import ingest_sendgrid
from tests.fakes.event_webhook import body_of, sent_edition, sg_event

EMAIL = "aigerim@example.com"


def run(args, db_url, input=None):
    result = CliRunner().invoke(cli, args, env={"NEWSLETTER_DATABASE_URL": db_url}, input=input)
    return result


def everything_in(store) -> str:
    """Every value of every table, as text: where personal data could hide."""
    out = []
    with store.engine.connect() as c:
        for table in sa.inspect(c).get_table_names():
            for row in c.execute(sa.text(f'select * from "{table}"')):
                out.append(repr(tuple(row)))
    return "\n".join(out)


def test_show_then_forget_then_the_import_reports_the_address(project, config, db_url):
    store = open_store(db_url)
    sent = sent_edition(store, [EMAIL, "olmas@example.org"])
    # left the daily, then asked for it again on the form
    store.leave(sent.deliveries[0].subscriber_id, ["daily"])
    store.request_signup(
        SignupRequest(
            email=EMAIL, digests=["daily"], topics=["energy"], ip="203.0.113.9", consent_text="v2"
        )
    )
    ingest_sendgrid(
        store,
        config,
        body_of([sg_event("delivered", sent.deliveries[0]), sg_event("open", sent.deliveries[0])]),
    )
    with store.begin() as c:
        c.execute(
            sa.text("update subscribers set name = 'Aigerim B' where email = :e"), {"e": EMAIL}
        )

    shown = run(["subscribers", "show", "Aigerim@Example.com", "--json"], db_url)
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.output)
    assert record["subscriber"]["email"] == EMAIL and record["subscriber"]["name"] == "Aigerim B"
    by_digest = {s["digest"]: s for s in record["subscriptions"]}
    assert by_digest["*"]["consent_source"] == "import"
    assert by_digest["daily"]["consent_source"] == "form"
    assert by_digest["daily"]["consent_ip"] == "203.0.113.9"
    assert by_digest["daily"]["consent_text"] == "v2"
    assert [d["digest"] for d in record["deliveries"]] == ["weekly"]
    assert sorted(e["type"] for e in record["events"]) == ["delivered", "opened"]
    text = run(["subscribers", "show", EMAIL], db_url)
    assert "every digest: active; topics: subscriber tags; consent: import" in text.output
    assert "daily: pending; topics: energy; consent: form" in text.output
    assert "from 203.0.113.9, text v2" in text.output
    assert "events (2):" in text.output

    gone = run(["subscribers", "forget", EMAIL, "--yes"], db_url)
    assert gone.exit_code == 0 and gone.output == f"{EMAIL}: erased\n"
    dump = everything_in(store)
    for personal in (EMAIL, "Aigerim B", "203.0.113.9"):
        assert personal not in dump
    assert "olmas@example.org" in dump  # the others are untouched
    # the edition keeps its counts
    with store.engine.connect() as c:
        assert c.execute(sa.text("select count(*) from deliveries")).scalar_one() == 2
    missing = run(["subscribers", "show", EMAIL], db_url)
    assert missing.exit_code != 0
    assert missing.output.strip().splitlines()[-1] == f"Error: {EMAIL}: no such subscriber"

    csv = project / "again.csv"
    csv.write_text(f"email,name\nnew@example.com,New\n{EMAIL.upper()},Aigerim\n", encoding="utf-8")
    imported = run(["subscribers", "import", str(csv)], db_url)
    assert imported.exit_code == 3
    assert "1 added, 0 updated, 0 unchanged, 1 rejected (1 erased on request)" in imported.output
    assert "line 3: address erased on request (subscribers forget): not imported" in imported.output
    assert store.get_subscriber(EMAIL) is None
    refused = run(["subscribers", "add", EMAIL], db_url)
    assert refused.exit_code == 2 and "erased on request" in refused.output
    assert store.get_subscriber(EMAIL) is None
    again = run(["subscribers", "add", EMAIL, "--resubscribe"], db_url)
    assert again.exit_code == 0 and store.get_subscriber(EMAIL).status == "active"
    store.close()


def test_forget_asks_first_and_a_no_changes_nothing(project, db_url):
    store = open_store(db_url)
    sent_edition(store, [EMAIL])
    r = run(["subscribers", "forget", EMAIL], db_url, input="n\n")
    assert r.exit_code == 1
    assert store.get_subscriber(EMAIL).email == EMAIL
    store.close()


def test_forgetting_someone_never_sent_to_removes_every_row(store):
    """No delivery refers to them: the subscriber row goes too, with its tags and
    subscriptions, and only the keyed hash stays; the others keep theirs."""
    from newsletter.models import Subscriber

    store.upsert_subscribers(
        [Subscriber(email=EMAIL, tags=["energy"]), Subscriber(email="b@example.com", tags=["x"])]
    )
    sid = store.get_subscriber(EMAIL).id
    assert store.forget(EMAIL, "hash-of-aigerim") is True
    assert store.get_subscriber(EMAIL) is None
    with store.engine.connect() as c:
        for table in ("subscriber_tags", "subscriptions"):
            rows = c.execute(sa.text(f"select subscriber_id from {table}")).scalars().all()
            assert sid not in rows and rows, table
    assert store.forgotten_among(["hash-of-aigerim", "other"]) == {"hash-of-aigerim"}
    assert store.forget("nobody@example.com", "hash-of-nobody") is False


def test_events_that_arrive_after_forget_do_not_bring_the_address_back(project, config, db_url):
    store = open_store(db_url)
    sent = sent_edition(store, [EMAIL, "olmas@example.org"])
    mine, theirs = sent.deliveries
    assert run(["subscribers", "forget", EMAIL, "--yes"], db_url).exit_code == 0
    # SendGrid reports opens and clicks for days, and retries a batch for a day:
    # the address comes back in the event and in its raw payload
    late = [
        sg_event("open", mine),
        sg_event("click", mine, url=f"https://steppe-ledger.example/?who={EMAIL}"),
        sg_event("bounce", mine, reason=f"550 {EMAIL}: no such user"),
        {**sg_event("spamreport"), "email": EMAIL.upper()},  # matches no delivery
        sg_event("open", theirs),
    ]
    report = ingest_sendgrid(store, config, body_of(late))
    assert report.result.stored == 5  # kept for the edition's counts, without the address
    dump = everything_in(store)
    assert EMAIL not in dump.lower()
    assert "olmas@example.org" in dump  # the others' events are stored as they came
    with store.engine.connect() as c:
        opened = c.execute(
            sa.text("select opened from deliveries where id = :i"), {"i": mine.delivery_id}
        ).scalar_one()
    assert opened  # the erased delivery still counts as opened
    store.close()


def test_show_tells_how_each_consent_was_given_cli_import_form(project, config, db_url):
    open_store(db_url).close()  # the database exists (on SQLite only `init` makes one)
    csv = project / "list.csv"
    csv.write_text("email,name\nimported@example.com,Imp\n", encoding="utf-8")
    assert run(["subscribers", "import", str(csv)], db_url).exit_code == 0
    assert run(["subscribers", "add", "added@example.com"], db_url).exit_code == 0
    store = open_store(db_url)
    store.request_signup(
        SignupRequest(email="form@example.com", digests=["weekly"], topics=[], ip="203.0.113.7")
    )
    store.close()
    how = {}
    for email in ("imported@example.com", "added@example.com", "form@example.com"):
        shown = run(["subscribers", "show", email, "--json"], db_url)
        assert shown.exit_code == 0, shown.output
        (sub,) = json.loads(shown.output)["subscriptions"]
        assert sub["consent_at"]
        how[email] = (sub["consent_source"], sub["consent_ip"])
    assert how == {
        "imported@example.com": ("import", ""),
        "added@example.com": ("cli", ""),
        "form@example.com": ("form", "203.0.113.7"),
    }


def _plain(row):
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row._mapping.items()}


def test_show_prints_every_column_of_every_row_about_the_person(project, config, db_url):
    """`show --json` is every column of the person's rows, in the tables' column order
    (subscriptions without their ids; deliveries with their edition's digest and
    period), byte for byte; the text form is built from the same record."""
    from newsletter.store.schema import deliveries, editions, events, subscribers, subscriptions

    store = open_store(db_url)
    sent = sent_edition(store, [EMAIL, "olmas@example.org"])
    store.leave(sent.deliveries[0].subscriber_id, ["daily"])
    store.request_signup(
        SignupRequest(email=EMAIL, digests=["daily"], topics=["energy"], ip="203.0.113.9")
    )
    store.set_subscriber_tags(sent.deliveries[0].subscriber_id, ["water", "energy"])
    ingest_sendgrid(store, config, body_of([sg_event("delivered", sent.deliveries[0])]))
    with store.engine.connect() as c:
        sub = c.execute(sa.select(subscribers).where(subscribers.c.email == EMAIL)).one()
        subs = c.execute(
            sa.select(subscriptions)
            .where(subscriptions.c.subscriber_id == sub.id)
            .order_by(subscriptions.c.digest)
        ).all()
        dels = c.execute(
            sa.select(deliveries, editions.c.digest, editions.c.period)
            .join(editions, editions.c.id == deliveries.c.edition_id)
            .where(deliveries.c.subscriber_id == sub.id)
        ).all()
        evs = c.execute(sa.select(events).where(events.c.email == EMAIL)).all()
    expected = {
        "subscriber": _plain(sub),
        "tags": ["energy", "water"],
        "subscriptions": [
            {k: v for k, v in _plain(s).items() if k not in ("id", "subscriber_id")} for s in subs
        ],
        "deliveries": [_plain(d) for d in dels],
        "events": [_plain(e) for e in evs],
    }
    assert list(expected["subscriber"]) == [c.name for c in subscribers.columns]
    record = store.person(EMAIL)
    assert isinstance(record, PersonRecord) and record.as_dict() == expected
    assert len(expected["events"]) == 1 and len(expected["subscriptions"]) == 2
    shown = run(["subscribers", "show", EMAIL, "--json"], db_url)
    assert shown.exit_code == 0, shown.output
    assert shown.output == json.dumps(expected, indent=2, ensure_ascii=False, default=str) + "\n"

    s, (every, daily), (d,), (e,) = (
        expected["subscriber"],
        expected["subscriptions"],
        expected["deliveries"],
        expected["events"],
    )
    text = run(["subscribers", "show", EMAIL], db_url)
    assert text.exit_code == 0, text.output
    assert text.output == "\n".join(
        [
            f"{EMAIL}  active",
            "  name: ",
            "  timezone: ",
            f"  created_at: {s['created_at']}",
            f"  updated_at: {s['updated_at']}",
            "  soft_bounces: 0",
            "  tags: energy, water",
            "subscriptions (2):",
            f"  every digest: active; topics: subscriber tags; consent: import at "
            f"{every['consent_at']}; confirmed {every['confirmed_at']}",
            f"  daily: pending; topics: energy; consent: form at {daily['consent_at']} from "
            f"203.0.113.9; left {daily['unsubscribed_at']}",
            "deliveries (1):",
            f"  weekly {d['period']}: delivered (to {EMAIL})",
            "events (1):",
            f"  {e['occurred_at']} sendgrid delivered -> delivered",
            "",
        ]
    )
    store.close()


def test_show_and_forget_run_the_same_statements_however_many_deliveries_a_reader_has(store):
    """The reader's delivery ids are not spelled out in one IN list (unbounded: a
    reader of a daily for years has thousands), the events are found through the
    deliveries table: the same statements for one delivery as for three."""
    few, many = "one@example.org", EMAIL
    sent = [sent_edition(store, [few, many], period="2026-11-30T07:00")]
    sent += [
        sent_edition(store, [many], period=p) for p in ("2026-12-07T07:00", "2026-12-14T07:00")
    ]
    # events without an address (as some providers send): found by their delivery
    store.record_events(
        [
            TrackedEvent(
                provider="sendgrid",
                provider_event_id=f"no-address-{d.delivery_id}",
                type="delivered",
                raw_type="delivered",
                email="",
                occurred_at=datetime.now(UTC),
                raw={"event": "delivered", "note": "alias@example.net"},
                delivery_id=d.delivery_id,
            )
            for d in [s.deliveries[-1] for s in sent] + [sent[0].deliveries[0]]
        ]
    )
    seen: list[str] = []

    def statement(conn, cursor, text, params, context, executemany):
        seen.append(text)

    sa.event.listen(store.engine, "before_cursor_execute", statement)
    try:
        statements = {}
        records = {}
        for email in (few, many):
            seen.clear()
            records[email] = store.person(email)
            statements[email] = list(seen)
        assert len(records[many].deliveries) == 3 and len(records[many].events) == 3
        assert len(records[few].deliveries) == 1 and len(records[few].events) == 1
        assert statements[few] == statements[many]
        for email in (few, many):
            seen.clear()
            assert store.forget(email, f"hash-of-{email}")
            statements[email] = list(seen)
        assert statements[few] == statements[many]
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", statement)
    assert "alias@example.net" not in everything_in(store)
