"""The state machines of newsletter/states.py, enforced by the real store on both engines."""

from __future__ import annotations

import ast
import itertools
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.errors import NewsletterError, TransitionError
from newsletter.models import Subscriber
from newsletter.states import (
    BATCH,
    DELIVERY,
    EDITION,
    EVENT_STATUS,
    MACHINES,
    RANK,
    SUBSCRIPTION,
    BatchStatus,
    DeliveryStatus,
    EditionStatus,
    EventType,
    Machine,
    RunStatus,
    SubscriberStatus,
    SubscriptionStatus,
    advance,
)
from newsletter.store import subscriptions as subscriptions_module
from newsletter.store.deliveries import AudienceRow
from newsletter.store.schema import batches, deliveries, editions, subscriptions
from newsletter.store.subscriptions import SignupRequest
from tests.fakes.event_webhook import body_of, sent_edition
from tests.helpers import build_config

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
DOCS = Path(__file__).parent.parent / "docs"


def outcome(machine, current, target):
    if current == target:
        return "stays"
    return "moves" if machine.allowed(current, target) else "refused"


def set_raw(store, table, key, status):
    """Put a row in ``status`` behind the store's back (test set-up only)."""
    with store.begin() as c:
        c.execute(sa.update(table).where(key).values(status=status))


def read_status(store, table, key):
    with store.engine.connect() as c:
        return c.execute(sa.select(table.c.status).where(key)).scalar_one()


def drive(store, machine, table, ids, move):
    """Every (from, to) pair through ``move(row id, to)`` on one row each; returns the
    outcomes seen, by pair."""
    seen = {}
    pairs = list(itertools.product(machine.states, machine.states))
    assert len(ids) >= len(pairs)
    for (current, target), row in zip(pairs, ids, strict=False):
        key = table.c.id == row
        set_raw(store, table, key, current)
        try:
            moved = move(row, target)
        except TransitionError as err:
            assert (err.current, err.target) == (current, target)
            assert str(err) == f"{err.what} is {current}; it cannot become {target}"
            seen[(current, target)] = "refused"
            assert read_status(store, table, key) == current  # nothing changed
            continue
        after = read_status(store, table, key)
        seen[(current, target)] = "moves" if moved else "stays"
        assert after == target
    return seen


def expected(machine):
    return {
        (a, b): outcome(machine, a, b) for a, b in itertools.product(machine.states, machine.states)
    }


def make_editions(store, n):
    ids = []
    for i in range(n):
        eid, _ = store.create_edition(
            digest="w", period=f"p{i}", subject="s", window_start=NOW, window_end=NOW
        )
        ids.append(eid)
    return ids


def test_every_edition_move_is_allowed_or_refused_by_the_table(store):
    ids = make_editions(store, len(EditionStatus) ** 2)
    seen = drive(store, EDITION, editions, ids, store.set_edition_status)
    assert seen == expected(EDITION)
    # the allowed ones are exactly the documented ones
    assert {p for p, o in seen.items() if o == "moves"} == set(EDITION.pairs())


def test_an_edition_starts_compiled_or_skipped(store):
    for i, status in enumerate(EditionStatus):
        make = lambda s=status, i=i: store.create_edition(  # noqa: E731
            digest="w", period=f"s{i}", subject="", window_start=None, window_end=None, status=s
        )
        if status in (EditionStatus.COMPILED, EditionStatus.SKIPPED):
            eid, created = make()
            assert created and store.get_edition(eid).status == status
        else:
            with pytest.raises(TransitionError, match=f"cannot start as {status}"):
                make()
    assert store.find_edition("w", "s2") is None  # nothing was stored for a refused one


def test_a_missing_edition_is_not_found_not_refused(store):
    with pytest.raises(NewsletterError, match="no edition 999"):
        store.set_edition_status(999, EditionStatus.SENDING)


def test_every_batch_move_is_allowed_or_refused_by_the_table(store):
    (eid,) = make_editions(store, 1)
    n = len(BatchStatus) ** 2
    with store.begin() as c:
        c.execute(
            sa.insert(batches),
            [
                dict(
                    id=f"b{i}",
                    edition_id=eid,
                    variant="default",
                    status=BatchStatus.CLAIMED,
                    backend="outbox",
                    claimed_at=NOW,
                    message_id="",
                    provider_batch_id="",
                    size=0,
                    worker="",
                    error="",
                )
                for i in range(n)
            ],
        )
    seen = drive(store, BATCH, batches, [f"b{i}" for i in range(n)], store.move_batch)
    assert seen == expected(BATCH)


def test_every_delivery_move_is_allowed_or_refused_by_the_table(store):
    n = len(DeliveryStatus) ** 2
    rows = store.upsert_subscribers([Subscriber(email=f"r{i}@example.com") for i in range(n)])
    (eid,) = make_editions(store, 1)
    store.freeze_audience(
        eid, [AudienceRow(sid, f"r{i}@example.com", "default") for i, (sid, _) in enumerate(rows)]
    )
    ids = [d.id for d in store.list_deliveries(eid)]
    seen = drive(store, DELIVERY, deliveries, ids, store.move_delivery)
    assert seen == expected(DELIVERY)


def test_every_subscription_move_is_allowed_or_refused_by_the_table(store):
    n = len(SubscriptionStatus) ** 2
    rows = store.upsert_subscribers([Subscriber(email=f"s{i}@example.com") for i in range(n)])
    with store.begin() as c:  # each its own row for "w" (test set-up only)
        c.execute(
            sa.insert(subscriptions),
            [
                dict(
                    subscriber_id=sid,
                    digest="w",
                    status=SubscriptionStatus.ACTIVE,
                    created_at=NOW,
                    updated_at=NOW,
                )
                for sid, _ in rows
            ],
        )
        ids = dict(
            c.execute(
                sa.select(subscriptions.c.id, subscriptions.c.subscriber_id).where(
                    subscriptions.c.digest == "w"
                )
            ).all()
        )
    seen = drive(
        store,
        SUBSCRIPTION,
        subscriptions,
        sorted(ids),
        lambda row, to: store.move_subscription(ids[row], "w", to),
    )
    assert seen == expected(SUBSCRIPTION)
    with pytest.raises(NewsletterError, match="no subscription of subscriber"):
        store.move_subscription(rows[0][0], "other", SubscriptionStatus.ACTIVE)


def _without(machine, current, target):
    """``machine`` with the move ``current`` -> ``target`` taken out."""
    moves = {s: ts - {target} if s == current else ts for s, ts in machine.moves.items()}
    return Machine(machine.name, machine.states, initial=machine.initial, moves=moves)


def test_leaving_rejoining_signing_up_and_confirming_move_through_the_table(store, monkeypatch):
    """Each way a subscription changes status asks SUBSCRIPTION: with a move taken out
    of the table, the store refuses it (or, confirming, leaves the row pending)."""
    Subn = SubscriptionStatus
    ((sid, _),) = store.upsert_subscribers([Subscriber(email="a@example.com")])

    def status(digest):
        return {x.digest: x.status for x in store.subscriptions_of(sid)}.get(digest)

    def table_without(current, target):
        monkeypatch.setattr(
            subscriptions_module, "SUBSCRIPTION", _without(SUBSCRIPTION, *(current, target))
        )

    # a new row split off "*" (active): the move from the "*" row's status
    table_without(Subn.ACTIVE, Subn.UNSUBSCRIBED)
    with pytest.raises(TransitionError, match="to weekly is active; it cannot become unsub"):
        store.leave(sid, ["weekly"])
    assert status("weekly") is None
    monkeypatch.undo()
    assert store.leave(sid, ["weekly"]) == ["weekly"]
    # the row of its own
    table_without(Subn.UNSUBSCRIBED, Subn.ACTIVE)
    with pytest.raises(TransitionError, match="is unsubscribed; it cannot become active"):
        store.rejoin(sid, ["weekly"])
    assert status("weekly") == Subn.UNSUBSCRIBED
    table_without(Subn.UNSUBSCRIBED, Subn.PENDING)
    signup = SignupRequest(email="a@example.com", digests=["weekly"], topics=[])
    with pytest.raises(TransitionError, match="is unsubscribed; it cannot become pending"):
        store.request_signup(signup)
    assert status("weekly") == Subn.UNSUBSCRIBED
    monkeypatch.undo()
    asked = store.request_signup(signup)
    assert asked.pending == ["weekly"] and status("weekly") == Subn.PENDING
    table_without(Subn.PENDING, Subn.ACTIVE)
    assert store.confirm_signup(sid, datetime.now(UTC)) == []
    assert status("weekly") == Subn.PENDING
    monkeypatch.undo()
    assert store.confirm_signup(sid, datetime.now(UTC)) == ["weekly"]
    assert status("weekly") == Subn.ACTIVE


def test_the_bulk_updates_move_only_what_the_table_allows(store):
    """finish_batch on a batch whose deliveries moved meanwhile changes none of them."""
    rows = store.upsert_subscribers([Subscriber(email=f"u{i}@example.com") for i in range(3)])
    (eid,) = make_editions(store, 1)
    store.freeze_audience(
        eid, [AudienceRow(sid, f"u{i}@example.com", "default") for i, (sid, _) in enumerate(rows)]
    )
    batch = store.claim_batch(eid, backend="outbox", limit=3)
    first, second, third = (d.id for d in batch.deliveries)
    # an operator's decision landed first for one, and one was marked failed
    store.move_delivery(first, DeliveryStatus.FAILED, error="refused")
    counts = store.finish_batch(batch.id, message_id="m", unresolved={second: "timeout"})
    assert counts == {"accepted": 1, "failed": 0, "queued": 0, "unresolved": 1}
    got = {d.id: d.status for d in store.list_deliveries(eid)}
    assert got == {first: "failed", second: "unresolved", third: "accepted"}
    assert store.get_batch(batch.id).status == "unknown"
    # events: unresolved → delivered by precedence; the operator's "resend" finds nothing
    assert store.resolve_batch(batch.id, "sent") == 1
    assert store.get_batch(batch.id).status == "resolved"
    with pytest.raises(NewsletterError, match="is resolved, not unresolved"):
        store.resolve_batch(batch.id, "resend")


def test_a_late_finish_of_a_finished_batch_changes_nothing(store, caplog):
    rows = store.upsert_subscribers([Subscriber(email="a@example.com")])
    (eid,) = make_editions(store, 1)
    store.freeze_audience(eid, [AudienceRow(rows[0][0], "a@example.com", "default")])
    batch = store.claim_batch(eid, backend="outbox", limit=3)
    store.finish_batch(batch.id, message_id="m")
    again = store.finish_batch(batch.id, requeue=[batch.deliveries[0].id])
    assert again == {"accepted": 0, "failed": 0, "queued": 0, "unresolved": 0}
    assert store.get_batch(batch.id).status == "accepted"
    assert "late finish ignored" in caplog.text
    assert store.delivery_counts(eid) == {"default": {"accepted": 1}}


# ------------------------------------------------------------------ precedence and table


def test_every_event_driven_move_is_in_the_table():
    for status, event in itertools.product(DeliveryStatus, EventType):
        after = advance(status, event)
        assert after == status or DELIVERY.allowed(status, after), (status, event, after)


def test_once_the_provider_took_a_delivery_it_only_moves_up_the_rank():
    taken = [s for s in DeliveryStatus if RANK[s] > 0]
    for a, b in DELIVERY.pairs():
        if a in taken:
            assert RANK[b] > RANK[a], (a, b)
    # and every such move up to a status an event points to is allowed
    for a in taken:
        for b in set(EVENT_STATUS.values()) - {None}:
            assert DELIVERY.allowed(a, b) == (RANK[b] > RANK[a]), (a, b)


def test_webhook_refusals_are_counted_and_logged_not_raised(store, caplog):
    caplog.set_level(logging.INFO)
    from newsletter.tracking.webhook import ingest_sendgrid

    cfg = build_config(env={})
    sent = sent_edition(store, ["a@example.com"])
    d = sent.deliveries[0]
    common = dict(
        email="a@example.com",
        newsletter_delivery_id=str(d.delivery_id),
        newsletter_edition_id=str(sent.edition_id),
        timestamp=1796000000,
    )
    first = ingest_sendgrid(
        store, cfg, body_of([{"event": "delivered", "sg_event_id": "e1", **common}])
    )
    late = ingest_sendgrid(
        store,
        cfg,
        body_of(
            [
                {"event": "deferred", "sg_event_id": "e2", **common},
                {"event": "processed", "sg_event_id": "e3", **common},
            ]
        ),
    )
    assert first.result.refused == 0
    assert late.result.refused == 2 and late.result.deliveries_changed == 0
    assert late.as_dict()["refused"] == 2
    assert "2 events pointed to a status their delivery cannot take" in caplog.text
    assert store.list_deliveries(sent.edition_id)[0].status == "delivered"


# ------------------------------------------------------------------ the documented diagrams


def parse_diagrams(text):
    """The ```states NAME blocks of a document: {name: (initial, {state: {targets}})}."""
    found = {}
    for name, body in re.findall(r"```states (\w+)\n(.*?)```", text, flags=re.S):
        initial, moves = set(), {}
        for line in body.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            left, arrow, right = line.partition("→")
            assert arrow, f"no → in {line!r}"
            targets = {t.strip() for t in right.split("|") if t.strip()}
            if left.strip() == "[*]":
                initial |= targets
            else:
                moves.setdefault(left.strip(), set()).update(targets)
        found[name] = (initial, moves)
    return found


def test_the_state_diagrams_in_the_docs_are_the_tables():
    diagrams = parse_diagrams((DOCS / "architecture.md").read_text(encoding="utf-8"))
    assert set(diagrams) == set(MACHINES)
    for name, machine in MACHINES.items():
        initial, moves = diagrams[name]
        assert initial == {str(s) for s in machine.initial}, name
        table = {str(s): {str(t) for t in ts} for s, ts in machine.moves.items() if ts}
        assert moves == table, name
        # every state of the enum is in the diagram (final ones as targets)
        shown = initial | set(moves) | set().union(*moves.values())
        assert shown == {str(s) for s in machine.states}, name


# ------------------------------------------------------------------ one vocabulary

PACKAGE = Path(__file__).parent.parent / "newsletter"
#: every stored status word (delivery, batch, edition, subscriber, subscription, a run's
#: outcome per digest)
STATUS_WORDS = {
    str(s)
    for enum in (
        EditionStatus,
        BatchStatus,
        DeliveryStatus,
        SubscriberStatus,
        SubscriptionStatus,
        RunStatus,
    )
    for s in enum
}
EVENT_WORDS = {str(t) for t in EventType}


def _words(node):
    """The string constants ``node`` is or holds (a tuple, a conditional expression)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(*(_words(e) for e in node.elts)) if node.elts else set()
    if isinstance(node, ast.IfExp):
        return _words(node.body) | _words(node.orelse)
    return set()


def _names(node, attr):
    """``x.<attr>``, a bare ``<attr>``, or a call of something named ``*_<attr>``."""
    if isinstance(node, ast.Call):
        node = node.func
        return isinstance(node, ast.Attribute) and node.attr.endswith(f"_{attr}")
    return (isinstance(node, ast.Attribute) and node.attr == attr) or (
        isinstance(node, ast.Name) and node.id == attr
    )


def bare_status_words(source):
    """(line, what) of each status written or compared as a string literal."""
    found = []
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.keyword) and n.arg == "status" and _words(n.value) & STATUS_WORDS:
            found.append((n.value.lineno, "status="))
        elif isinstance(n, ast.Assign) and _words(n.value) & STATUS_WORDS:
            if any(_names(t, "status") for t in n.targets):
                found.append((n.lineno, "status ="))
        elif isinstance(n, ast.Dict):
            for k, v in zip(n.keys, n.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == "status" and _words(v) & STATUS_WORDS:
                    found.append((v.lineno, '"status":'))
        elif isinstance(n, ast.Compare):
            sides = [n.left, *n.comparators]
            for attr, words in (("status", STATUS_WORDS), ("type", EVENT_WORDS)):
                if any(_names(s, attr) for s in sides) and any(_words(s) & words for s in sides):
                    found.append((n.lineno, f"{attr} compared"))
    return found


def test_the_bare_status_check_finds_what_it_looks_for():
    src = (
        'update(t).values(status="active")\n'
        'row = {"status": x if y else "pending"}\n'
        'if sub.status != "forgotten": pass\n'
        'q.where(events.c.type == "unsubscribed")\n'
        'while store.delivery_status(d) == "claimed": pass\n'
        'ok = sub.status == SubscriberStatus.ACTIVE and reason == "imported"\n'
        'out.status = "sent"\n'
        'o = DigestOutcome(digest="w", period="p", status="too-few-articles")\n'
        'failed = [d for d in ds if d.status in ("failed", "stale")]\n'
    )
    assert sorted(line for line, _ in bare_status_words(src)) == [1, 2, 3, 4, 5, 7, 8, 9]


def test_statuses_are_written_and_compared_through_the_enums_only():
    """Every stored status word outside states.py is an enum member, so a renamed or
    removed status cannot leave a stray string behind (a run's per-digest outcome,
    ``DigestOutcome.status``, included: ``RunStatus``)."""
    stray = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.name == "states.py" or "migrations" in rel.parts:
            continue
        stray += [f"{rel}:{line} {what}" for line, what in bare_status_words(path.read_text())]
    assert stray == []
