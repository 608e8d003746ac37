"""Events: stored once, matched to deliveries, statuses by precedence, suppressions."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from newsletter.store.schema import events
from newsletter.tracking import sendgrid
from newsletter.tracking.webhook import ingest_sendgrid
from tests.fakes.event_webhook import body_of, sent_edition, sg_event
from tests.helpers import DATA, build_config

NOW = datetime(2026, 12, 1, tzinfo=UTC)
EXAMPLES = json.loads((DATA / "sendgrid_event_examples.json").read_text())


@pytest.fixture
def cfg():
    return build_config(env={})


def post(store, cfg, events):
    return ingest_sendgrid(store, cfg, body_of(events)).result


def delivery(store, did):
    with store.engine.connect() as c:
        return c.execute(
            sa.text("select status, opened, clicked from deliveries where id = :i"), {"i": did}
        ).one()


def subscriber(store, email):
    sub = store.get_subscriber(email)
    with store.engine.connect() as c:
        row = c.execute(
            sa.text("select status_reason, soft_bounces from subscribers where email = :e"),
            {"e": email},
        ).one()
    return sub.status, row.status_reason, row.soft_bounces


# ------------------------------------------------------------------ normalization


@pytest.mark.parametrize(
    "name, ntype",
    [
        ("processed", "queued"),
        ("dropped", "dropped"),
        ("delivered", "delivered"),
        ("deferred", "deferred"),
        ("bounce:bounce", "bounced"),
        ("bounce:blocked", "bounced"),
        ("open", "opened"),
        ("click", "clicked"),
        ("spamreport", "complained"),
        ("unsubscribe", "unsubscribed"),
        ("group_unsubscribe", "unsubscribed"),
        ("group_resubscribe", "unknown"),
    ],
)
def test_each_documented_event_normalizes_and_keeps_its_raw_form(name, ntype):
    raw = EXAMPLES["per_event_examples"][name]
    ev = sendgrid.normalize(raw, NOW)
    assert ev.type == ntype
    assert ev.raw == raw and ev.raw_type == raw["event"]
    assert ev.provider_event_id == raw["sg_event_id"]
    assert ev.occurred_at == datetime.fromtimestamp(1513299569, UTC)
    assert ev.email == "example@test.com"


def test_suppression_and_soft_bounce_classification():
    ex = EXAMPLES["per_event_examples"]
    assert sendgrid.normalize(ex["bounce:bounce"], NOW).suppress[0] == "bounced"
    blocked = sendgrid.normalize(ex["bounce:blocked"], NOW)
    assert blocked.suppress is None and blocked.soft_bounce
    assert sendgrid.normalize(ex["deferred"], NOW).soft_bounce
    assert sendgrid.normalize(ex["spamreport"], NOW).suppress[0] == "complained"
    assert sendgrid.normalize(ex["unsubscribe"], NOW).suppress[0] == "unsubscribed"
    assert sendgrid.normalize(ex["group_unsubscribe"], NOW).suppress[0] == "unsubscribed"
    assert sendgrid.normalize(ex["dropped"], NOW).suppress[0] == "bounced"  # "Bounced Address"
    for reason, expected in [
        ("Unsubscribed Address", "unsubscribed"),
        ("Spam Reporting Address", "complained"),
        ("Invalid", "bounced"),
    ]:
        assert sendgrid.normalize({**ex["dropped"], "reason": reason}, NOW).suppress[0] == expected
    spam_content = sendgrid.normalize({**ex["dropped"], "reason": "Spam Content"}, NOW)
    assert spam_content.suppress is None
    for name in ("delivered", "open", "click", "processed", "group_resubscribe"):
        ev = sendgrid.normalize(ex[name], NOW)
        assert ev.suppress is None and not ev.soft_bounce


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"event": None, "timestamp": "soon"},
        {"event": ["x"], "email": 5, "timestamp": 1e30, "newsletter_delivery_id": "drop table"},
        {"event": "machine_learning_event", "sg_event_id": ""},
        {"event": "open", "newsletter_delivery_id": True, "newsletter_edition_id": -3},
    ],
)
def test_odd_events_normalize_to_unknown_or_safe_values_without_raising(raw):
    ev = sendgrid.normalize(raw, NOW)
    assert ev.type in sendgrid.TYPES
    assert ev.delivery_id is None and ev.edition_id is None
    assert ev.provider_event_id  # a stable digest when sg_event_id is missing
    assert sendgrid.normalize(raw, NOW).provider_event_id == ev.provider_event_id


# ------------------------------------------------------------------ storing


def test_each_event_is_stored_once_even_within_one_batch(store, cfg):
    sent = sent_edition(store, ["a@example.com"])
    d = sent.deliveries[0]
    ev = sg_event("delivered", d, sent.edition_id)
    first = post(store, cfg, [ev, ev, dict(ev)])
    assert (first.stored, first.duplicates) == (1, 2)
    again = post(store, cfg, [ev])
    assert (again.stored, again.duplicates) == (0, 1)
    assert store.event_type_counts(sent.edition_id) == {"delivered": 1}


def test_events_are_matched_through_the_custom_args_and_raw_is_kept(store, cfg):
    sent = sent_edition(store, ["a@example.com", "b@example.com"])
    a, b = sent.deliveries
    post(store, cfg, [sg_event("delivered", a, sent.edition_id, response="250 OK")])
    post(store, cfg, [sg_event("bounce", b, sent.edition_id, reason="550 5.1.1 no such user")])
    assert delivery(store, a.delivery_id).status == "delivered"
    assert delivery(store, b.delivery_id).status == "bounced"
    with store.engine.connect() as c:
        rows = c.execute(
            sa.text("select delivery_id, type, raw_type, reason, raw from events order by id")
        ).all()
    assert [(r.delivery_id, r.type, r.raw_type) for r in rows] == [
        (a.delivery_id, "delivered", "delivered"),
        (b.delivery_id, "bounced", "bounce"),
    ]
    raw = rows[1].raw if isinstance(rows[1].raw, dict) else json.loads(rows[1].raw)
    assert raw["reason"] == "550 5.1.1 no such user"
    assert rows[1].reason == "550 5.1.1 no such user"


def test_text_and_raw_are_stored_as_sent(store, cfg):
    # on PostgreSQL a batch travels to the INSERT as one JSON document: quotes,
    # backslashes, non-ASCII and JSON-looking text must come out as they went in
    sent = sent_edition(store, ["a@example.com"])
    odd = 'said "no" \\ C:\\x {"a": 1} — ünïcødé ✓ \'quoted\''
    ev = sg_event("bounce", sent.deliveries[0], sent.edition_id, reason=odd, nested={"k": [odd]})
    assert post(store, cfg, [ev]).stored == 1
    with store.engine.connect() as c:
        row = c.execute(sa.select(events.c.reason, events.c.raw, events.c.occurred_at)).one()
    assert row.reason == odd
    assert row.raw == ev
    assert row.occurred_at == datetime.fromtimestamp(ev["timestamp"], UTC)


def test_a_nul_character_in_an_event_is_replaced_not_fatal_to_the_batch(store, cfg):
    # PostgreSQL's text and JSON refuse U+0000; an event carrying one must not fail
    # its batch (SendGrid would retry the batch for a day, and the rest with it)
    sent = sent_edition(store, ["a@example.com", "b@example.com"])
    a, b = sent.deliveries
    odd = sg_event("bounce", a, sent.edition_id, reason="550 bad\u0000byte", **{"x\u0000": 1})
    result = post(store, cfg, [odd, sg_event("delivered", b, sent.edition_id)])
    assert result.stored == 2
    assert delivery(store, a.delivery_id).status == "bounced"
    assert delivery(store, b.delivery_id).status == "delivered"
    with store.engine.connect() as c:
        row = c.execute(sa.select(events.c.reason, events.c.raw).order_by(events.c.id)).first()
    assert row.reason == "550 bad\ufffdbyte"
    assert row.raw["x\ufffd"] == 1 and row.raw["reason"] == "550 bad\ufffdbyte"


def test_concurrent_identical_requests_store_and_count_each_event_once(store, cfg):
    # SendGrid retries a request it thinks failed while the first is still running:
    # the two requests' answers add up to each event stored once (on PostgreSQL the
    # INSERT … ON CONFLICT DO NOTHING RETURNING says which request stored it)
    sent = sent_edition(store, [f"r{i}@example.com" for i in range(40)])
    batch = [sg_event("delivered", d, sent.edition_id) for d in sent.deliveries]
    batch += [sg_event("open", d, sent.edition_id) for d in sent.deliveries]
    start = threading.Barrier(2)

    def request():
        start.wait()
        return post(store, cfg, batch)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: request(), range(2)))
    assert sorted(r.stored for r in results) == [0, len(batch)]
    assert sum(r.duplicates for r in results) == len(batch)
    assert sum(r.deliveries_changed for r in results) == len(sent.deliveries)
    assert store.event_type_counts(sent.edition_id) == {"delivered": 40, "opened": 40}
    assert {delivery(store, d.delivery_id) for d in sent.deliveries} == {("delivered", True, False)}


def test_events_for_unknown_messages_are_kept_and_counted(store, cfg):
    sent = sent_edition(store, ["a@example.com"])
    d = sent.deliveries[0]
    foreign = [
        sg_event("delivered"),  # no custom args, unknown message id
        {**sg_event("delivered", d, sent.edition_id), "newsletter_delivery_id": "999999"},
        # our delivery id, another address: another installation's id
        {**sg_event("delivered", d, sent.edition_id), "email": "other@example.com"},
        # our delivery id, another edition
        {**sg_event("delivered", d), "newsletter_edition_id": str(sent.edition_id + 50)},
    ]
    result = post(store, cfg, foreign)
    assert (result.stored, result.unmatched) == (4, 4)
    assert store.unmatched_event_count() == 4
    assert delivery(store, d.delivery_id).status == "accepted"
    assert store.event_type_counts(sent.edition_id) == {}


def test_events_without_custom_args_match_by_message_id_and_address(store, cfg):
    sent = sent_edition(store, ["a@example.com"], message_id="XMSG1")
    ev = sg_event("delivered", sg_message_id="XMSG1.filter0001.1.2.0", email="A@Example.com")
    assert post(store, cfg, [ev]).unmatched == 0
    assert delivery(store, sent.deliveries[0].delivery_id).status == "delivered"


# ------------------------------------------------------------------ precedence


def test_delivered_stays_delivered_after_a_late_deferred(store, cfg):
    sent = sent_edition(store, ["a@example.com"])
    d = sent.deliveries[0]
    post(store, cfg, [sg_event("delivered", d)])
    post(store, cfg, [sg_event("deferred", d, response="421 try later")])
    post(store, cfg, [sg_event("processed", d)])
    assert delivery(store, d.delivery_id).status == "delivered"


def test_an_open_implies_delivered_and_a_click_implies_an_open(store, cfg):
    sent = sent_edition(store, ["a@example.com", "b@example.com"])
    a, b = sent.deliveries
    post(store, cfg, [sg_event("deferred", a), sg_event("open", a)])
    assert tuple(delivery(store, a.delivery_id)) == ("delivered", True, False)
    post(store, cfg, [sg_event("click", b, url="https://news.example/1")])
    assert tuple(delivery(store, b.delivery_id)) == ("delivered", True, True)
    post(store, cfg, [sg_event("delivered", b)])
    assert tuple(delivery(store, b.delivery_id)) == ("delivered", True, True)


def test_events_for_a_claimed_delivery_wait_until_it_is_accepted(store, cfg):
    from newsletter.models import Subscriber
    from newsletter.store.deliveries import AudienceRow

    ((sid, _),) = store.upsert_subscribers([Subscriber(email="c@example.com")])
    eid, _ = store.create_edition(
        digest="weekly", period="p1", subject="s", window_start=None, window_end=None
    )
    store.freeze_audience(eid, [AudienceRow(sid, "c@example.com", "default")])
    batch = store.claim_batch(eid, backend="sendgrid", limit=10)
    (claimed,) = batch.deliveries
    from tests.fakes.event_webhook import Sent

    d = Sent(claimed.id, sid, "c@example.com", "default")
    # SendGrid's events overtake our own bookkeeping of the provider's answer
    post(store, cfg, [sg_event("delivered", d, eid), sg_event("open", d, eid)])
    assert delivery(store, d.delivery_id).status == "claimed"
    store.finish_batch(batch.id, message_id="m")
    assert delivery(store, d.delivery_id).status == "accepted"
    assert store.apply_stored_events([d.delivery_id]) == 1
    assert tuple(delivery(store, d.delivery_id)) == ("delivered", True, False)


def test_provider_events_resolve_an_unresolved_delivery(store, cfg):
    sent = sent_edition(store, ["a@example.com", "b@example.com"])
    a, b = sent.deliveries
    with store.begin() as c:
        c.execute(sa.text("update deliveries set status = 'unresolved'"))
    post(store, cfg, [sg_event("processed", a)])
    assert delivery(store, a.delivery_id).status == "accepted"
    assert delivery(store, b.delivery_id).status == "unresolved"


# ------------------------------------------------------------------ suppression


@pytest.mark.parametrize(
    "kind, extra, status",
    [
        ("bounce", {"type": "bounce", "reason": "550 no such user"}, "bounced"),
        ("spamreport", {}, "complained"),
        ("unsubscribe", {}, "unsubscribed"),
        ("group_unsubscribe", {"asm_group_id": 10}, "unsubscribed"),
        ("dropped", {"reason": "Bounced Address"}, "bounced"),
        ("dropped", {"reason": "Unsubscribed Address"}, "unsubscribed"),
    ],
)
def test_these_events_suppress_the_address_for_all_future_sends(
    sqlite_store, cfg, kind, extra, status
):
    sent = sent_edition(sqlite_store, ["a@example.com", "b@example.com"])
    result = post(sqlite_store, cfg, [sg_event(kind, sent.deliveries[0], **extra)])
    assert result.suppressed == 1
    assert subscriber(sqlite_store, "a@example.com")[0] == status
    assert subscriber(sqlite_store, "b@example.com")[0] == "active"
    active = [s.email for s in sqlite_store.iter_subscribers(status=("active",))]
    assert active == ["b@example.com"]


def test_a_drop_for_spam_content_does_not_suppress(store, cfg):
    sent = sent_edition(store, ["a@example.com"])
    post(store, cfg, [sg_event("dropped", sent.deliveries[0], reason="Spam Content")])
    assert subscriber(store, "a@example.com")[0] == "active"
    assert delivery(store, sent.deliveries[0].delivery_id).status == "dropped"


def test_an_unmatched_hard_bounce_still_suppresses_the_address(store, cfg):
    sent_edition(store, ["a@example.com"])
    post(store, cfg, [sg_event("bounce", email="A@example.com", reason="550 gone")])
    assert subscriber(store, "a@example.com")[0] == "bounced"


def test_a_stronger_suppression_is_never_weakened(store, cfg):
    sent = sent_edition(store, ["a@example.com"])
    d = sent.deliveries[0]
    post(store, cfg, [sg_event("spamreport", d)])
    post(store, cfg, [sg_event("unsubscribe", d), sg_event("bounce", d, reason="x")])
    status, reason, _ = subscriber(store, "a@example.com")
    assert (status, reason) == ("complained", "spam report")


def test_group_resubscribe_lifts_the_group_unsubscribe_and_nothing_else(store, cfg):
    sent = sent_edition(store, ["a@example.com", "b@example.com"])
    a, b = sent.deliveries
    post(store, cfg, [sg_event("group_unsubscribe", a, asm_group_id=10)])
    post(store, cfg, [sg_event("unsubscribe", b)])
    assert [s.email for s in store.iter_audience("weekly")] == []
    post(
        store,
        cfg,
        [
            sg_event("group_resubscribe", a, asm_group_id=10),
            sg_event("group_resubscribe", b, asm_group_id=10),
        ],
    )
    assert subscriber(store, "a@example.com")[:2] == ("active", "group resubscribe")
    # b left through a global unsubscribe, which a group resubscribe does not undo
    assert subscriber(store, "b@example.com")[0] == "unsubscribed"
    assert [s.email for s in store.iter_audience("weekly")] == ["a@example.com"]
    # the unsubscribe and the resubscribe in one batch: the later one wins
    post(
        store,
        cfg,
        [
            sg_event("group_resubscribe", a, asm_group_id=10, timestamp=1896000002),
            sg_event("group_unsubscribe", a, asm_group_id=10, timestamp=1896000001),
        ],
    )
    assert subscriber(store, "a@example.com")[0] == "active"


_periods = iter(range(1, 10**6))


def editions_with_event(store, cfg, emails, n, kind, **extra):
    out = []
    for _ in range(n):
        sent = sent_edition(store, emails, period=f"period-{next(_periods)}")
        post(store, cfg, [sg_event(kind, sent.deliveries[0], **extra)])
        out.append(sent)
    return out


def test_soft_bounces_suppress_after_the_configured_number_in_a_row(store):
    cfg = build_config(env={}, webhook={"soft_bounce_limit": 3})
    editions_with_event(store, cfg, ["a@example.com"], 2, "deferred", response="421 later")
    assert subscriber(store, "a@example.com") == ("active", "", 2)
    editions_with_event(store, cfg, ["a@example.com"], 1, "bounce", type="blocked", reason="x")
    status, reason, count = subscriber(store, "a@example.com")
    assert (status, count) == ("suppressed", 3)
    assert reason == "soft bounces: 3 in a row"


def test_a_delivery_breaks_the_soft_bounce_streak(store):
    cfg = build_config(env={}, webhook={"soft_bounce_limit": 3})
    editions_with_event(store, cfg, ["a@example.com"], 2, "deferred")
    editions_with_event(store, cfg, ["a@example.com"], 1, "delivered")
    assert subscriber(store, "a@example.com") == ("active", "", 0)
    editions_with_event(store, cfg, ["a@example.com"], 2, "deferred")
    assert subscriber(store, "a@example.com") == ("active", "", 2)


def test_repeated_deferrals_of_one_message_count_once(store):
    cfg = build_config(env={}, webhook={"soft_bounce_limit": 2})
    (sent,) = editions_with_event(store, cfg, ["a@example.com"], 1, "deferred", attempt="1")
    d = sent.deliveries[0]
    post(store, cfg, [sg_event("deferred", d, attempt=str(i)) for i in range(2, 6)])
    assert subscriber(store, "a@example.com") == ("active", "", 1)


def test_a_late_delivered_event_lifts_a_soft_bounce_suppression(store):
    cfg = build_config(env={}, webhook={"soft_bounce_limit": 2})
    sents = editions_with_event(store, cfg, ["a@example.com"], 2, "deferred")
    assert subscriber(store, "a@example.com")[0] == "suppressed"
    post(store, cfg, [sg_event("delivered", sents[-1].deliveries[0])])
    assert subscriber(store, "a@example.com") == ("active", "", 0)


def test_a_soft_bounce_limit_of_zero_counts_but_never_suppresses(store):
    cfg = build_config(env={}, webhook={"soft_bounce_limit": 0})
    editions_with_event(store, cfg, ["a@example.com"], 3, "deferred")
    assert subscriber(store, "a@example.com") == ("active", "", 3)
