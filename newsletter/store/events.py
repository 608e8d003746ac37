"""Provider events (webhooks) and what they do to deliveries and subscribers.

This is the one place event-driven status changes happen. ``record_events``
runs in one transaction per webhook request:

1. events already stored (same provider and event id) are skipped;
2. the rest are matched to deliveries through the ids in our custom args,
   checked against the delivery's address and edition; events that match
   nothing are kept with no delivery and counted;
3. the events are inserted (on PostgreSQL steps 1-3 run the other way round:
   match and lock first, then one INSERT … ON CONFLICT DO NOTHING RETURNING
   stores the batch and says which events were new);
4. each touched delivery's status moves by precedence only (never backwards,
   see :mod:`newsletter.states`), opened/clicked flags are set; events that
   point backwards are counted (``refused``) and logged, never raised;
5. addresses that hard-bounced, complained or unsubscribed are suppressed;
6. soft-bounce streaks are recomputed from the deliveries' final statuses for
   every subscriber an event touched, so the outcome does not depend on the
   order events arrived in.

The writes to deliveries and subscribers go through the functions their own
modules provide (``deliveries.write_event_statuses``,
``audience.write_subscriber_changes``), in this module's transaction.

On PostgreSQL the delivery rows are locked (FOR UPDATE) so two concurrent
requests cannot both read-modify-write one delivery; on SQLite the write
transaction (BEGIN IMMEDIATE) serialises them. On SQLite the webhook's
transaction is committed with ``synchronous=FULL``: the answer SendGrid gets
means the events survive a power cut.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from newsletter.states import (
    EVENT_DRIVEN,
    SOFT_REASON,
    SUBSCRIBER_RANK,
    DeliveryStatus,
    EventType,
    SubscriberStatus,
    fold,
    refused_by,
    soft_bounce_streak,
)
from newsletter.store.audience import write_subscriber_changes
from newsletter.store.base import StoreBase, chunks, in_parts, sqlite_executemany, utcnow
from newsletter.store.deliveries import (
    OWN_EVENTS,
    deliveries_of,
    fold_stored_events,
    lock_held_batches,
    message_id_of,
    settle_held_batches,
    write_event_statuses,
)
from newsletter.store.schema import deliveries, editions, events, subscribers

logger = logging.getLogger(__name__)

#: editions looked back over when a soft-bounce streak is recomputed
_STREAK_EDITIONS = 200


def erase_events(conn: Connection, email: str, subscriber_id: int | None) -> None:
    """Inside an erasure's transaction: provider events carry the address in their raw
    payload; events of ``email`` or of the subscriber's deliveries keep only their
    type and time (the deliveries found by a subquery: a reader may have thousands)."""
    where = events.c.email == email
    if subscriber_id is not None:
        where = where | events.c.delivery_id.in_(deliveries_of(subscriber_id))
    conn.execute(
        update(events).where(where).values(email="", raw=dict(ERASED_RAW), url="", reason="")
    )


#: the raw payload of an event about an address erased on request
ERASED_RAW: dict[str, Any] = {"erased": True}


@dataclass
class TrackedEvent:
    """One provider event, normalized, ready to store (what the store records and acts on)."""

    provider: str
    provider_event_id: str
    type: EventType
    raw_type: str
    email: str
    occurred_at: datetime
    raw: dict[str, Any]
    reason: str = ""
    url: str = ""
    #: from our custom args; checked against the deliveries table before use
    delivery_id: int | None = None
    edition_id: int | None = None
    #: the provider's message id, to match events that carry no custom args
    message_id: str = ""
    #: (subscriber status, reason) when the address must never be mailed again
    suppress: tuple[SubscriberStatus, str] | None = None
    #: a temporary failure (deferred, blocked) that counts toward the soft-bounce limit
    soft_bounce: bool = False
    #: the reader re-joined SendGrid's unsubscribe group: lift that group's unsubscribe
    resubscribe: bool = False

    def erase(self) -> None:
        """Keep only the type and time, as :func:`erase_events` leaves a stored event
        (an event about an address erased on request that arrives after the erasure)."""
        self.email, self.raw, self.url, self.reason = "", dict(ERASED_RAW), "", ""


@dataclass
class RecordResult:
    """What one batch of events did."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    #: stored, but matching no delivery of ours
    unmatched: int = 0
    #: deliveries whose status or flags changed
    deliveries_changed: int = 0
    #: addresses newly suppressed (subscriber status left active)
    suppressed: int = 0
    #: events pointing to a status their delivery cannot take (late, out of order,
    #: or before the provider's answer was recorded): stored, status kept
    refused: int = 0
    #: delivery ids the events were matched to
    matched: set[int] = field(default_factory=set)

    def as_dict(self) -> dict[str, int]:
        return {
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "unmatched": self.unmatched,
            "deliveries_changed": self.deliveries_changed,
            "suppressed": self.suppressed,
            "refused": self.refused,
        }


@dataclass(frozen=True)
class _Delivery:
    id: int
    edition_id: int
    subscriber_id: int
    email: str
    status: str
    opened: bool
    clicked: bool


_DELIVERY_COLS = (
    deliveries.c.id,
    deliveries.c.edition_id,
    deliveries.c.subscriber_id,
    deliveries.c.email,
    deliveries.c.status,
    deliveries.c.opened,
    deliveries.c.clicked,
    deliveries.c.message_id,
)

_SUBSCRIBER_COLS = (
    subscribers.c.id,
    subscribers.c.email,
    subscribers.c.status,
    subscribers.c.status_reason,
    subscribers.c.soft_bounces,
)


def _event_rows(
    new: list[TrackedEvent], matched: list[_Delivery | None], now: datetime | None
) -> list[dict[str, Any]]:
    """The events table's rows; without ``received_at`` when ``now`` is None."""
    rows = [
        {
            "provider": ev.provider,
            "provider_event_id": ev.provider_event_id,
            "delivery_id": d.id if d else None,
            "edition_id": d.edition_id if d else None,
            "type": str(ev.type),
            "raw_type": ev.raw_type[:50],
            "email": ev.email[:320],
            "occurred_at": ev.occurred_at,
            "reason": ev.reason,
            "url": ev.url,
            "raw": ev.raw,
        }
        for ev, d in zip(new, matched, strict=True)
    ]
    if now is not None:
        for r in rows:
            r["received_at"] = now
    return rows


#: the columns of a new event row -> their PostgreSQL types (received_at is one value)
_PG_EVENT_COLUMNS = {
    "provider": "text",
    "provider_event_id": "text",
    "delivery_id": "integer",
    "edition_id": "integer",
    "type": "text",
    "raw_type": "text",
    "email": "text",
    "occurred_at": "timestamptz",
    "reason": "text",
    "url": "text",
    "raw": "json",
}

#: One statement per batch, its rows one JSON parameter (one json.dumps in C; psycopg
#: dumps a list element by element in Python, ~30 ms a batch as arrays). The unique
#: index settles duplicates, RETURNING names the rows that are new.
_PG_INSERT_EVENTS = (
    "INSERT INTO events ({cols}, received_at) SELECT {cols}, %(now)s FROM "
    "json_to_recordset(%(rows)s::json) AS r({types}) "
    "ON CONFLICT (provider, provider_event_id) DO NOTHING "
    "RETURNING provider, provider_event_id"
).format(
    cols=", ".join(_PG_EVENT_COLUMNS),
    types=", ".join(f"{c} {t}" for c, t in _PG_EVENT_COLUMNS.items()),
)


#: delivery statuses of readers not (known to be) mailed: an unsubscribe recorded on
#: one counts in its edition beside the ``unsubscribed`` ones
UNMAILED = (
    DeliveryStatus.LEFT,
    DeliveryStatus.QUEUED,
    DeliveryStatus.CLAIMED,
    DeliveryStatus.UNRESOLVED,
    DeliveryStatus.FAILED,
    DeliveryStatus.CANCELLED,
)


class EventQueries(StoreBase):
    @contextmanager
    def _durable_begin(self) -> Iterator[Connection]:
        """A write transaction whose commit survives a power cut on SQLite too."""
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                # per connection (the SQLite pool opens a new one each time), before BEGIN
                raw: Any = conn.connection.driver_connection
                raw.execute("PRAGMA synchronous=FULL")
                # each request gets a fresh connection: read the indexes through mmap
                # instead of refilling a cold page cache with read() calls
                raw.execute("PRAGMA mmap_size=268435456")
            with conn.begin():
                yield conn

    # ------------------------------------------------------------------ recording

    def record_events(
        self, items: Sequence[TrackedEvent], *, soft_bounce_limit: int = 5
    ) -> RecordResult:
        """Store each event once and apply it. See the module docstring."""
        result = RecordResult(received=len(items))
        unique: dict[tuple[str, str], TrackedEvent] = {}
        for ev in items:
            unique.setdefault((ev.provider, ev.provider_event_id), ev)
        result.duplicates = len(items) - len(unique)
        if not unique:
            return result
        now = utcnow()
        with self._durable_begin() as conn:
            if self.dialect == "postgresql":
                new, matched = self._store_new_pg(conn, list(unique.values()), now)
            else:
                new, matched = self._store_new(conn, list(unique.values()), now)
            result.duplicates += len(unique) - len(new)
            if not new:
                return result
            for d in matched:
                if d is None:
                    result.unmatched += 1
                else:
                    result.matched.add(d.id)
            result.stored = len(new)
            # one provider event settles the whole held batch of its delivery
            settled = settle_held_batches(
                conn,
                [
                    (d.id, ev.provider, ev.message_id or message_id_of(ev.raw), ev.occurred_at)
                    for ev, d in zip(new, matched, strict=True)
                    if d is not None
                ],
                now,
            )
            folded: set[int] = set()
            if settled:
                # their deliveries are accepted now: fold what was stored for them
                # while held (our own unsubscribes too), then apply this request's
                # events from there, once, like any others (so `refused` counts only
                # those that point backwards from there)
                folded = fold_stored_events(
                    conn, settled, now, skip={(ev.provider, ev.provider_event_id) for ev in new}
                )
                matched = self._match(conn, new)
            changed, result.refused = self._apply_statuses(conn, new, matched, now)
            result.deliveries_changed = len(folded | changed)
            result.suppressed = self._apply_suppressions(conn, new, matched, now)
            self._apply_resubscribes(conn, new, matched, now)
            self._apply_soft_bounces(conn, new, matched, soft_bounce_limit, now)
        return result

    def _store_new(
        self, conn: Connection, unique: list[TrackedEvent], now: datetime
    ) -> tuple[list[TrackedEvent], list[_Delivery | None]]:
        """Insert the events not stored yet; returns them and their deliveries."""
        known = self._known_event_ids(conn, [(ev.provider, ev.provider_event_id) for ev in unique])
        new = [ev for ev in unique if (ev.provider, ev.provider_event_id) not in known]
        if not new:
            return [], []
        matched = self._match(conn, new)
        self._insert_events(conn, _event_rows(new, matched, now))
        return new, matched

    def _store_new_pg(
        self, conn: Connection, unique: list[TrackedEvent], now: datetime
    ) -> tuple[list[TrackedEvent], list[_Delivery | None]]:
        """PostgreSQL: lock and match first, then one INSERT … ON CONFLICT DO NOTHING
        RETURNING says which events are new (also against a concurrent request
        storing the same ones), in three statements whatever the batch size."""
        lock_held_batches(conn, [ev.delivery_id for ev in unique if ev.delivery_id])
        matched = self._match(conn, unique)
        rows = _event_rows(unique, matched, None)
        for r in rows:
            r["occurred_at"] = r["occurred_at"].isoformat()
        params = {"rows": json.dumps(rows), "now": now}
        stored = {(p, e) for p, e in conn.exec_driver_sql(_PG_INSERT_EVENTS, params)}
        keep = [i for i, ev in enumerate(unique) if (ev.provider, ev.provider_event_id) in stored]
        return [unique[i] for i in keep], [matched[i] for i in keep]

    def _known_event_ids(
        self, conn: Connection, keys: list[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        by_provider: dict[str, list[str]] = {}
        for provider, eid in keys:
            by_provider.setdefault(provider, []).append(eid)
        known: set[tuple[str, str]] = set()
        for provider, ids in by_provider.items():
            for among in in_parts(self.dialect, events.c.provider_event_id, ids):
                q = select(events.c.provider_event_id).where(
                    (events.c.provider == provider) & among
                )
                known.update((provider, eid) for eid in conn.execute(q).scalars())
        return known

    def _insert_events(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        # a concurrent request may have stored the same event since we looked
        if self.dialect == "sqlite":
            sqlite_executemany(
                conn,
                events,
                "INSERT INTO events ({cols}) VALUES ({marks}) "
                "ON CONFLICT (provider, provider_event_id) DO NOTHING",
                rows,
            )
            return
        conn.execute(insert(events), rows)  # pragma: no cover - SQLite and PostgreSQL only

    def _match(self, conn: Connection, new: list[TrackedEvent]) -> list[_Delivery | None]:
        """The delivery of each event, or None. Rows are locked on PostgreSQL."""
        lock = self.dialect == "postgresql"
        by_id: dict[int, _Delivery] = {}
        wanted = sorted({ev.delivery_id for ev in new if ev.delivery_id})
        for among in in_parts(self.dialect, deliveries.c.id, wanted):
            q = select(*_DELIVERY_COLS).where(among).order_by(deliveries.c.id)
            if lock:
                q = q.with_for_update(of=deliveries)
            for r in conn.execute(q).all():
                by_id[r.id] = _Delivery(*r[:7])
        # events without our custom args: the provider's message id and the address
        by_message: dict[tuple[str, str], _Delivery] = {}
        loose = [ev for ev in new if not ev.delivery_id and ev.message_id and ev.email]
        message_ids = sorted({ev.message_id for ev in loose})
        for part in chunks(message_ids):
            q = (
                select(*_DELIVERY_COLS)
                .where(deliveries.c.message_id.in_(part))
                .where(deliveries.c.email.in_(sorted({ev.email for ev in loose})))
                .order_by(deliveries.c.id)
            )
            if lock:
                q = q.with_for_update(of=deliveries)
            for r in conn.execute(q):
                by_message[(r.message_id, r.email.lower())] = _Delivery(*r[:7])
        out: list[_Delivery | None] = []
        for ev in new:
            if ev.delivery_id:
                d = by_id.get(ev.delivery_id)
                # an id from another installation sharing the account: not ours
                if d is not None and (
                    (ev.email and d.email.lower() != ev.email)
                    or (ev.edition_id is not None and ev.edition_id != d.edition_id)
                ):
                    d = None
            else:
                d = by_message.get((ev.message_id, ev.email))
            out.append(d)
        return out

    def _apply_statuses(
        self,
        conn: Connection,
        new: list[TrackedEvent],
        matched: list[_Delivery | None],
        now: datetime,
    ) -> tuple[set[int], int]:
        """Fold each delivery's events into its status and flags. Returns (deliveries
        changed, events refused: pointing backwards, so counted and logged)."""
        types: dict[int, list[str]] = {}
        rows: dict[int, _Delivery] = {}
        refused = 0
        for ev, d in zip(new, matched, strict=True):
            if d is not None:
                if d.status == DeliveryStatus.UNRESOLVED and ev.provider == OWN_EVENTS:
                    continue  # only the provider can say it took a held message
                types.setdefault(d.id, []).append(ev.type)
                rows[d.id] = d
                refused += refused_by(d.status, ev.type)
        changes: list[dict[str, Any]] = []
        for did, ts in types.items():
            d = rows[did]
            status, opened, clicked = fold(d.status, ts)
            opened, clicked = opened or d.opened, clicked or d.clicked
            if (status, opened, clicked) != (d.status, d.opened, d.clicked):
                changes.append(
                    {
                        "id": did,
                        "from": d.status,
                        "status": status,
                        "opened": opened,
                        "clicked": clicked,
                    }
                )
        # the rows are locked (PostgreSQL) or the transaction serialised (SQLite), so
        # none moves between the read and this write; either count here would be a bug
        refused_moves, stale = write_event_statuses(conn, self.dialect, changes, now)
        if refused_moves:
            logger.error(
                "%d event-driven delivery changes refused by the state table", refused_moves
            )
        if stale:
            logger.error("%d event-driven delivery changes found their row moved", stale)
        if refused:
            logger.info(
                "%d events pointed to a status their delivery cannot take "
                "(late, out of order or before the send recorded it); statuses kept",
                refused,
            )
        return {c["id"] for c in changes}, refused

    def _subscribers(
        self, conn: Connection, ids: Iterable[int] = (), emails: Iterable[str] = ()
    ) -> list[Any]:
        cols = _SUBSCRIBER_COLS
        found: dict[int, Any] = {}
        for column, values in (
            (subscribers.c.id, sorted(set(ids))),
            (subscribers.c.email, sorted(set(emails))),
        ):
            for among in in_parts(self.dialect, column, values):
                for r in conn.execute(select(*cols).where(among)).all():
                    found[r.id] = r
        return list(found.values())

    def _apply_suppressions(
        self,
        conn: Connection,
        new: list[TrackedEvent],
        matched: list[_Delivery | None],
        now: datetime,
    ) -> int:
        by_sub: dict[int, tuple[str, str]] = {}
        by_email: dict[str, tuple[str, str]] = {}

        def stronger(a: tuple[str, str] | None, b: tuple[str, str]) -> tuple[str, str]:
            if a is None:
                return b
            return max(a, b, key=lambda s: (SUBSCRIBER_RANK[SubscriberStatus(s[0])], s[1]))

        for ev, d in zip(new, matched, strict=True):
            if ev.suppress is None:
                continue
            if d is not None:
                by_sub[d.subscriber_id] = stronger(by_sub.get(d.subscriber_id), ev.suppress)
            elif ev.email:
                # an unmatched event still speaks for the address
                by_email[ev.email] = stronger(by_email.get(ev.email), ev.suppress)
        if not by_sub and not by_email:
            return 0
        changes = []
        newly = 0
        for r in self._subscribers(conn, by_sub, by_email):
            wanted = by_sub.get(r.id)
            if r.email in by_email:
                wanted = stronger(wanted, by_email[r.email])
            assert wanted is not None
            if SUBSCRIBER_RANK[SubscriberStatus(wanted[0])] > SUBSCRIBER_RANK[r.status]:
                changes.append({"id": r.id, "status": wanted[0], "status_reason": wanted[1]})
                newly += r.status == SubscriberStatus.ACTIVE
        if changes:
            write_subscriber_changes(conn, changes, now)
            logger.info("suppressed %d addresses", len(changes))
        return newly

    def _apply_resubscribes(
        self,
        conn: Connection,
        new: list[TrackedEvent],
        matched: list[_Delivery | None],
        now: datetime,
    ) -> int:
        """SendGrid's group_resubscribe lifts the group unsubscribe it reverses (and only
        that: an unsubscribe on our own page or a complaint stays)."""
        last: dict[object, tuple[datetime, bool]] = {}
        for ev, d in zip(new, matched, strict=True):
            if not (ev.resubscribe or ev.suppress):
                continue
            key: object = d.subscriber_id if d is not None else ev.email
            if key in ("", None):
                continue
            if key not in last or ev.occurred_at >= last[key][0]:
                last[key] = (ev.occurred_at, ev.resubscribe)
        ids = [k for k, (_, up) in last.items() if up and isinstance(k, int)]
        emails = [k for k, (_, up) in last.items() if up and isinstance(k, str)]
        if not ids and not emails:
            return 0
        changes = [
            {"id": r.id, "status": SubscriberStatus.ACTIVE, "status_reason": "group resubscribe"}
            for r in self._subscribers(conn, ids, emails)
            if r.status == SubscriberStatus.UNSUBSCRIBED and r.status_reason == "group unsubscribe"
        ]
        write_subscriber_changes(conn, changes, now)
        if changes:
            logger.info("re-subscribed %d addresses (group_resubscribe)", len(changes))
        return len(changes)

    def _apply_soft_bounces(
        self,
        conn: Connection,
        new: list[TrackedEvent],
        matched: list[_Delivery | None],
        limit: int,
        now: datetime,
    ) -> None:
        soft: set[int] = set()
        touched: set[int] = set()
        for ev, d in zip(new, matched, strict=True):
            if d is None:
                continue
            if ev.soft_bounce:
                soft.add(d.subscriber_id)
            else:
                touched.add(d.subscriber_id)
        touched -= soft
        if not soft and not touched:
            return
        candidates = self._subscribers(conn, soft)
        # Any event may change a delivery's final status, and the streak is a function
        # of final statuses only: mail getting through breaks it, and so does a drop
        # replacing a deferral (a dropped message is no soft bounce). Recomputing it
        # for every subscriber an event touched keeps suppression independent of the
        # order events come in; only one with a streak or a suppression can change.
        for among in in_parts(self.dialect, subscribers.c.id, sorted(touched)):
            candidates += conn.execute(
                select(*_SUBSCRIBER_COLS).where(
                    among
                    & (
                        (subscribers.c.soft_bounces > 0)
                        | (subscribers.c.status == SubscriberStatus.SUPPRESSED)
                    )
                )
            ).all()
        if not candidates:
            return
        self._update_streaks(conn, candidates, limit, now)

    def _update_streaks(self, conn: Connection, subs: list[Any], limit: int, now: datetime) -> None:
        recent = select(editions.c.id).order_by(editions.c.id.desc()).limit(_STREAK_EDITIONS)
        recent_ids = list(conn.execute(recent).scalars())
        (in_recent,) = in_parts(self.dialect, deliveries.c.edition_id, recent_ids)
        history: dict[int, list[str]] = {r.id: [] for r in subs}
        for among in in_parts(self.dialect, deliveries.c.subscriber_id, [r.id for r in subs]):
            q = (
                select(
                    deliveries.c.subscriber_id,
                    deliveries.c.status,
                    deliveries.c.opened,
                    deliveries.c.clicked,
                )
                .where(in_recent)
                .where(among)
                .order_by(deliveries.c.id.desc())
            )
            for sid, status, opened, clicked in conn.execute(q).all():
                history[sid].append(DeliveryStatus.DELIVERED if opened or clicked else status)
        changes = []
        for r in subs:
            streak = soft_bounce_streak(history[r.id])
            status, reason = r.status, r.status_reason
            if limit and streak >= limit and status == SubscriberStatus.ACTIVE:
                status = SubscriberStatus.SUPPRESSED
                reason = f"{SOFT_REASON}: {streak} in a row"
            elif status == SubscriberStatus.SUPPRESSED and reason.startswith(SOFT_REASON):
                if not limit or streak < limit:
                    # mail got through after all (a late delivered event), or the
                    # deferral turned out to be a drop
                    status, reason = SubscriberStatus.ACTIVE, ""
                else:
                    reason = f"{SOFT_REASON}: {streak} in a row"
            if (streak, status, reason) != (r.soft_bounces, r.status, r.status_reason):
                changes.append(
                    {"id": r.id, "soft_bounces": streak, "status": status, "status_reason": reason}
                )
        write_subscriber_changes(conn, changes, now)

    def apply_stored_events(
        self, delivery_ids: Sequence[int] | None = None, *, edition_id: int | None = None
    ) -> int:
        """Re-apply the stored events of deliveries (by ids, or of an edition).

        Events that arrived while a delivery was still claimed (the provider
        answered after its events came in) change no status at the time; the
        send calls this afterwards so they count. A held batch with a provider
        event is settled first, and the stored events of all its deliveries are
        folded. Returns deliveries changed.
        """
        now = utcnow()
        with self.begin() as conn:
            q = select(deliveries.c.id, deliveries.c.status).where(
                deliveries.c.status.in_(EVENT_DRIVEN)
            )
            if delivery_ids is not None:
                found: list[Any] = []
                for among in in_parts(self.dialect, deliveries.c.id, sorted(set(delivery_ids))):
                    found += conn.execute(q.where(among)).all()
            elif edition_id is not None:
                found = list(conn.execute(q.where(deliveries.c.edition_id == edition_id)).all())
            else:
                raise ValueError("give delivery_ids or edition_id")
            held = sorted(did for did, status in found if status == DeliveryStatus.UNRESOLVED)
            if self.dialect == "postgresql":
                lock_held_batches(conn, held)  # as the webhook does: batches first
            proofs: list[tuple[int, str, str, datetime]] = []
            for among in in_parts(self.dialect, events.c.delivery_id, held):
                proofs += [
                    (did, provider, message_id_of(raw), at)
                    for did, provider, raw, at in conn.execute(
                        select(
                            events.c.delivery_id,
                            events.c.provider,
                            events.c.raw,
                            events.c.occurred_at,
                        ).where(among)
                    )
                ]
            settled = settle_held_batches(conn, proofs, now)
            return len(fold_stored_events(conn, [did for did, _ in found] + settled, now))

    # ------------------------------------------------------------------ unsubscribes

    def latest_delivery(self, subscriber_id: int, digest: str) -> int | None:
        """The newest delivery of ``digest`` for a subscriber, for an unsubscribe to mark.

        One the provider took, or one of an edition being sent (queued, claimed,
        left at claim time, or held: its batch's outcome unknown), so that an
        unsubscribe during a send counts in that edition. The event stored on a held
        delivery neither moves it nor settles its batch (only the provider's events
        do); once the batch is settled the delivery ends as if the unsubscribe had
        come after: unsubscribed if accepted, left when its resend is claimed,
        failed if the operator says so.
        """
        q = (
            select(deliveries.c.id)
            .where(
                deliveries.c.edition_id.in_(
                    select(editions.c.id).where(editions.c.digest == digest)
                )
            )
            .where(deliveries.c.subscriber_id == subscriber_id)
            .where(
                deliveries.c.status.in_(
                    [
                        *EVENT_DRIVEN,
                        DeliveryStatus.QUEUED,
                        DeliveryStatus.CLAIMED,
                        DeliveryStatus.LEFT,
                    ]
                )
            )
            .order_by(deliveries.c.id.desc())
            .limit(1)
        )
        with self.connect() as conn:
            return conn.execute(q).scalar_one_or_none()

    # ------------------------------------------------------------------ reading

    def engagement_rows(self, edition_id: int) -> list[tuple[str, str, bool, bool, int]]:
        """(variant, status, opened, clicked, count) for one edition's deliveries."""
        q = (
            select(
                deliveries.c.variant,
                deliveries.c.status,
                deliveries.c.opened,
                deliveries.c.clicked,
                func.count(),
            )
            .where(deliveries.c.edition_id == edition_id)
            .group_by(
                deliveries.c.variant, deliveries.c.status, deliveries.c.opened, deliveries.c.clicked
            )
        )
        with self.connect() as conn:
            return [(v, s, bool(o), bool(c), int(n)) for v, s, o, c, n in conn.execute(q)]

    def unsubscribed_unmailed(self, edition_id: int) -> dict[str, int]:
        """{status: deliveries} of an edition that carry an unsubscribe but were not
        (or not known to be) mailed: ``left`` (a claim skipped the reader), ``queued``
        or ``claimed`` (their turn is coming), ``unresolved`` (held: the batch's
        outcome is unknown), ``failed`` (the provider refused it, or the operator
        failed its held batch) or ``cancelled`` (the edition was, before their turn)."""
        q = (
            select(deliveries.c.status, func.count())
            .where(
                (deliveries.c.edition_id == edition_id)
                & deliveries.c.status.in_(UNMAILED)
                & deliveries.c.id.in_(
                    select(events.c.delivery_id).where(
                        (events.c.edition_id == edition_id)
                        & (events.c.type == EventType.UNSUBSCRIBED)
                    )
                )
            )
            .group_by(deliveries.c.status)
        )
        with self.connect() as conn:
            return {s: int(n) for s, n in conn.execute(q)}

    def event_type_counts(self, edition_id: int) -> dict[str, int]:
        q = (
            select(events.c.type, func.count())
            .where(events.c.edition_id == edition_id)
            .group_by(events.c.type)
        )
        with self.connect() as conn:
            return {t: int(n) for t, n in conn.execute(q)}

    def unmatched_event_count(self) -> int:
        with self.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(events).where(events.c.delivery_id.is_(None))
                ).scalar_one()
            )

    def event_times(self, edition_id: int, types: Sequence[str]) -> Iterator[tuple[str, datetime]]:
        """(type, occurred_at) of an edition's events of ``types``, oldest first."""
        q = (
            select(events.c.type, events.c.occurred_at)
            .where((events.c.edition_id == edition_id) & events.c.type.in_(list(types)))
            .order_by(events.c.occurred_at)
        )
        with self.connect() as conn:
            yield from conn.execute(q.execution_options(yield_per=5000))

    def top_links(self, edition_id: int, limit: int = 20) -> list[tuple[str, int, int]]:
        """(url, clicks, distinct recipients who clicked), most clicked first."""
        clicks = func.count()
        people = func.count(func.distinct(events.c.delivery_id))
        q = (
            select(events.c.url, clicks, people)
            .where((events.c.edition_id == edition_id) & (events.c.type == EventType.CLICKED))
            .group_by(events.c.url)
            .order_by(people.desc(), clicks.desc(), events.c.url)
            .limit(limit)
        )
        with self.connect() as conn:
            return [(u, int(c), int(p)) for u, c, p in conn.execute(q)]

    def failure_reasons(self, edition_id: int) -> list[tuple[str, str, int]]:
        """(type, reason, count) of an edition's bounced and dropped events."""
        q = (
            select(events.c.type, events.c.reason, func.count())
            .where(
                (events.c.edition_id == edition_id)
                & events.c.type.in_((EventType.BOUNCED, EventType.DROPPED, EventType.DEFERRED))
            )
            .group_by(events.c.type, events.c.reason)
        )
        with self.connect() as conn:
            return [(t, r, int(n)) for t, r, n in conn.execute(q)]
