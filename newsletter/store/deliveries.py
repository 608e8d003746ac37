"""Deliveries and batches: the persisted state machine of a send.

One delivery row per (edition, subscriber), written before the first message
goes out (the frozen audience). A batch is claimed, and the claim committed,
before the provider is called; afterwards its deliveries become accepted or
failed. A batch still claimed when its worker died has an unknown outcome: it
is never silently re-sent or dropped, but resolved (see ``newsletter.delivery``).

The allowed moves of deliveries and batches are the tables in
:mod:`newsletter.states` (``DELIVERY``, ``BATCH``). Every UPDATE here carries
``status IN (the target's allowed sources)`` (and the batch), so a late or
repeated call changes nothing it should not, and a refused single-row move
raises :class:`~newsletter.errors.TransitionError`. Provider events change
deliveries through :func:`write_event_statuses`, by precedence.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Integer,
    Row,
    Select,
    Update,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)

from newsletter.errors import InputError, TransitionError
from newsletter.states import (
    BATCH,
    DELIVERY,
    DELIVERY_OPEN,
    EDITION_NOT_SENDING,
    EVENT_DRIVEN,
    BatchStatus,
    DeliveryStatus,
    EditionStatus,
    SubscriberStatus,
    SubscriptionStatus,
    fold,
)
from newsletter.store.base import (
    StoreBase,
    can_move,
    in_parts,
    move_row,
    sqlite_executemany,
    utcnow,
)
from newsletter.store.editions import finish_if_sending
from newsletter.store.schema import (
    ALL_DIGESTS,
    batches,
    deliveries,
    editions,
    events,
    subscribers,
    subscriptions,
)

logger = logging.getLogger(__name__)

B, D = BatchStatus, DeliveryStatus

#: an edition in one of these is never claimed from (store/control.py)
NOT_SENDING = EDITION_NOT_SENDING


class EventWrites(NamedTuple):
    """What :func:`write_event_statuses` did not write (those rows changed nothing)."""

    #: moves the state table refuses (a bug in the caller's fold: not worth a retry)
    refused: int
    #: rows no longer in the status the caller read (moved underneath: read again)
    stale: int


def write_event_statuses(
    conn: Connection, dialect: str, changes: list[dict[str, Any]], now: datetime
) -> EventWrites:
    """Apply event-driven changes ``{"id", "from", "status", "opened", "clicked"}`` in
    the caller's transaction. Returns how many were refused by the state table and
    how many were stale; neither changes anything.

    Each move from ``from`` (the status the caller read, under a row lock) to
    ``status`` is checked against ``DELIVERY`` (staying is a flag-only change),
    and the UPDATE is conditional on the row still being in ``from``: a
    compare-and-set, so the one executemany of a webhook request (thousands of
    rows) needs no statement per target status.
    """
    rows = [c for c in changes if _allowed(c)]
    refused = len(changes) - len(rows)
    if not rows:
        return EventWrites(refused, 0)
    if dialect == "sqlite":
        done = sqlite_executemany(
            conn,
            deliveries,
            "UPDATE deliveries SET {sets} WHERE id = ? AND status = ?",
            [
                {
                    "status": r["status"],
                    "opened": r["opened"],
                    "clicked": r["clicked"],
                    "updated_at": now,
                    "{where}": (r["id"], r["from"]),
                }
                for r in rows
            ],
        )
    elif dialect == "postgresql":
        # one statement whatever the number of rows, the rows one JSON parameter
        # (an executemany is a statement per row to send, parse and plan)
        done = int(
            conn.exec_driver_sql(
                _PG_EVENT_STATUSES,
                {
                    "rows": json.dumps(
                        [[r["id"], r["from"], r["status"], r["opened"], r["clicked"]] for r in rows]
                    ),
                    "now": now,
                },
            ).rowcount
        )
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        stmt = (
            update(deliveries)
            .where(
                (deliveries.c.id == bindparam("b_id"))
                & (deliveries.c.status == bindparam("b_from"))
            )
            .values(
                status=bindparam("b_status"),
                opened=bindparam("b_opened"),
                clicked=bindparam("b_clicked"),
                updated_at=now,
            )
        )
        params = [
            {
                "b_id": r["id"],
                "b_from": r["from"],
                "b_status": r["status"],
                "b_opened": r["opened"],
                "b_clicked": r["clicked"],
            }
            for r in rows
        ]
        done = int(conn.execute(stmt, params).rowcount)
    return EventWrites(refused, len(rows) - done)


#: write_event_statuses on PostgreSQL: compare-and-set on the status each row was read in
_PG_EVENT_STATUSES = """
UPDATE deliveries
SET status = v.r->>2, opened = (v.r->>3)::boolean, clicked = (v.r->>4)::boolean,
    updated_at = %(now)s
FROM json_array_elements(%(rows)s::json) AS v(r)
WHERE deliveries.id = (v.r->>0)::integer AND deliveries.status = v.r->>1
"""


@dataclass(frozen=True, slots=True)
class AudienceRow:
    """One recipient of an explicit audience (``Store.freeze_audience``, store/freeze.py)."""

    subscriber_id: int
    email: str
    variant: str
    release_at: datetime | None = None


class ClaimedDelivery(NamedTuple):
    id: int
    subscriber_id: int
    email: str
    variant: str
    name: str = ""


@dataclass(frozen=True)
class BatchRecord:
    """A batch as stored: one provider request and what became of it."""

    id: str
    edition_id: int
    variant: str
    status: BatchStatus
    backend: str
    message_id: str
    provider_batch_id: str
    size: int
    #: host:pid of the worker that claimed it (or took it over)
    worker: str
    claimed_at: datetime
    finished_at: datetime | None
    error: str


def _batch(row: Row[Any]) -> BatchRecord:
    m = row._mapping
    return BatchRecord(
        id=m["id"],
        edition_id=m["edition_id"],
        variant=m["variant"],
        status=BatchStatus(m["status"]),
        backend=m["backend"],
        message_id=m["message_id"],
        provider_batch_id=m["provider_batch_id"],
        size=m["size"],
        worker=m["worker"],
        claimed_at=m["claimed_at"],
        finished_at=m["finished_at"],
        error=m["error"],
    )


@dataclass(frozen=True)
class DeliveryRecord:
    """A delivery as stored: one edition to one subscriber."""

    id: int
    edition_id: int
    subscriber_id: int
    email: str
    variant: str
    status: DeliveryStatus
    batch_id: str | None
    message_id: str
    error: str
    opened: bool
    clicked: bool
    release_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class Batch:
    """A batch just claimed, with the deliveries to send."""

    id: str
    edition_id: int
    variant: str
    backend: str
    deliveries: tuple[ClaimedDelivery, ...]
    provider_batch_id: str = ""
    claimed_at: datetime | None = None


#: the reader's name, returned with each claimed delivery
_NAME = (
    select(subscribers.c.name)
    .where(subscribers.c.id == deliveries.c.subscriber_id)
    .correlate(deliveries)
    .scalar_subquery()
    .label("name")
)


class DeliveryQueries(StoreBase):
    @contextmanager
    def sending(self) -> Iterator[None]:
        """Hold the database open for a send.

        On SQLite every store call opens and closes its own connection, and the
        last connection to close checkpoints and removes the write-ahead log: a
        full write of the changed pages after every claim. One idle connection
        held for the send avoids that (SQLite still checkpoints as the log
        grows). Other engines need nothing.
        """
        if self.dialect != "sqlite":
            yield
            return
        with self.engine.connect():
            yield

    def claim_batch(
        self,
        edition_id: int,
        *,
        backend: str,
        limit: int,
        worker: str = "",
        variant: str | None = None,
        provider_batch_id: str = "",
        now: datetime | None = None,
        release_before: datetime | None = None,
    ) -> Batch | None:
        """Claim up to ``limit`` queued deliveries of one variant, and commit the claim.

        ``now`` stamps the claim (real time by default: leases and SendGrid's
        cancel deadline are measured from it). ``release_before`` is the run's
        clock (``--at``): deliveries released after it (local-time sends) wait.

        On PostgreSQL rows are locked with FOR UPDATE SKIP LOCKED, so several
        workers can share one send; on SQLite the write transaction (BEGIN
        IMMEDIATE) serialises them. ``provider_batch_id`` is stored with the
        claim, so a batch whose outcome is unknown can be cancelled by it.
        Returns None when nothing is left to claim.
        """
        now = now or utcnow()
        first, claim = _claim_statements(self.dialect != "postgresql")
        params: dict[str, Any] = {
            "c_edition": edition_id,
            "c_release": release_before or now,
            "c_limit": limit,
            "c_now": now,
        }
        with self.begin() as conn:
            if variant is None:
                variant = conn.execute(first, params).scalar_one_or_none()
                if variant is None:
                    return None
            batch_id = uuid.uuid4().hex
            # the batch row first: the deliveries refer to it
            conn.execute(
                insert(batches).values(
                    id=batch_id,
                    edition_id=edition_id,
                    variant=variant,
                    status=B.CLAIMED,
                    backend=backend,
                    size=0,
                    worker=worker,
                    claimed_at=now,
                    provider_batch_id=provider_batch_id,
                    message_id="",
                    error="",
                )
            )
            params |= {"c_variant": variant, "c_batch": batch_id}
            while True:
                claimed = conn.execute(claim, params).all()
                if not claimed:
                    # another worker took the last ones between the two statements
                    conn.execute(delete(batches).where(batches.c.id == batch_id))
                    return None
                # whoever left since the freeze is not mailed: decided now, at claim
                # time, in the claim's transaction, so an unsubscribe committed
                # before it is always seen
                gone = self._skip_leavers(conn, batch_id, now)
                rows = sorted((r for r in claimed if r[0] not in gone), key=lambda r: r[0])
                if rows:
                    break
            conn.execute(update(batches).where(batches.c.id == batch_id).values(size=len(rows)))
        return Batch(
            id=batch_id,
            edition_id=edition_id,
            variant=variant,
            backend=backend,
            deliveries=tuple(ClaimedDelivery(r[0], r[1], r[2], variant, r[3] or "") for r in rows),
            provider_batch_id=provider_batch_id,
            claimed_at=now,
        )

    @staticmethod
    def _skip_leavers(conn: Connection, batch_id: str, now: datetime) -> set[int]:
        """Claimed deliveries of subscribers who left become ``left``. Returns their ids.

        Left: the address is no longer active, or its subscription to the edition's
        digest is not (its own row, else the ``*`` row for every digest). ``error``
        keeps why: the subscriber's status then (``removed`` when it is gone), or
        ``left the digest``.
        """
        return set(
            conn.execute(
                _leavers_update(), {"leavers_batch": batch_id, "leavers_now": now}
            ).scalars()
        )

    def finish_batch(
        self,
        batch_id: str,
        *,
        message_id: str = "",
        failed: dict[int, str] | None = None,
        requeue: Sequence[int] | dict[int, str] = (),
        accepted_ids: dict[int, str] | None = None,
        unresolved: dict[int, str] | None = None,
        batch_status: str | None = None,
        note: str = "",
    ) -> dict[str, int]:
        """Record what the provider said of a claimed (or unresolved) batch.

        Deliveries in ``failed`` become failed with their reason, those in
        ``requeue`` go back to queued (the provider certainly did not take them),
        those in ``unresolved`` are held (outcome unknown), and the rest become
        accepted with ``message_id`` (or their own id from ``accepted_ids``).
        Only deliveries still claimed or unresolved by this batch change, so a
        late or repeated call cannot touch a delivery another batch has since
        claimed. Returns the counts per new status.
        """
        failed = failed or {}
        accepted_ids = accepted_ids or {}
        unresolved = unresolved or {}
        requeue_ids = [i for i in requeue if i not in failed]
        hold_ids = [i for i in unresolved if i not in failed and i not in requeue_ids]
        now = utcnow()
        mine = deliveries.c.batch_id == batch_id

        # no IN (...) of ids here: expanding parameters cannot go with executemany
        def each(
            target: DeliveryStatus, values: dict[str, Any], params: list[dict[str, Any]]
        ) -> int:
            if not params:
                return 0
            # unresolved → unresolved is a hold renewed (the reason may be newer)
            allowed = can_move(deliveries, DELIVERY, target, stay=target == D.UNRESOLVED)
            one = mine & allowed & (deliveries.c.id == bindparam("did"))
            stmt = update(deliveries).where(one).values(status=target, **values)
            return int(conn.execute(stmt, params).rowcount)

        with self.begin() as conn:
            n_failed = each(
                D.FAILED,
                {"error": bindparam("reason"), "updated_at": now},
                [{"did": i, "reason": r[:2000]} for i, r in failed.items()],
            )
            n_queued = each(
                D.QUEUED,
                {"batch_id": None, "updated_at": now},
                [{"did": i} for i in requeue_ids],
            )
            n_own = each(
                D.ACCEPTED,
                {"message_id": bindparam("mid"), "updated_at": now},
                [
                    {"did": i, "mid": m[:500]}
                    for i, m in accepted_ids.items()
                    if i not in failed and i not in unresolved and i not in requeue_ids
                ],
            )
            rest = update(deliveries).where(mine & can_move(deliveries, DELIVERY, D.ACCEPTED))
            if hold_ids:
                rest = rest.where(deliveries.c.id.not_in(hold_ids))
            n_rest = conn.execute(
                rest.values(status=D.ACCEPTED, message_id=message_id[:500], updated_at=now)
            ).rowcount
            n_held = each(
                D.UNRESOLVED,
                {"error": bindparam("reason"), "updated_at": now},
                [{"did": i, "reason": unresolved[i][:2000]} for i in hold_ids],
            )
            accepted = n_own + n_rest
            counts = {
                "accepted": accepted,
                "failed": n_failed,
                "queued": n_queued,
                "unresolved": n_held,
            }
            if batch_status is None:
                batch_status = (
                    B.UNKNOWN
                    if n_held
                    else B.ACCEPTED
                    if accepted
                    else B.FAILED
                    if n_failed
                    else B.REQUEUED
                )
            values: dict[str, Any] = {"finished_at": now}
            if message_id:
                values["message_id"] = message_id[:500]
            if note or n_held:
                values["error"] = (note or unresolved[hold_ids[0]])[:2000]
            try:
                move_row(
                    conn,
                    batches,
                    BATCH,
                    batches.c.id == batch_id,
                    batch_status,
                    what=f"batch {batch_id}",
                    stay=True,
                    **values,
                )
            except TransitionError as err:
                if any(counts.values()):
                    raise
                # nothing of the batch was open: a late or repeated finish
                logger.warning("batch %s: late finish ignored (%s)", batch_id, err.message)
        return counts

    def set_provider_batch(self, batch_id: str, provider_batch_id: str, *, worker: str) -> bool:
        """Store the provider's batch id of a claimed batch (asked for after the claim).

        Only while the batch is still claimed by ``worker``: False when another run
        took it over meanwhile (the lease ran out while the id was asked for) and
        queued it again as one that sent nothing, so the worker must not send it.
        """
        return self._if_still_claimed(batch_id, worker, provider_batch_id=provider_batch_id[:200])

    def take_over_batch(self, batch_id: str, worker: str, new_worker: str) -> bool:
        """Make ``new_worker`` the one resolving a batch ``worker`` left claimed.

        Conditional on the batch still being claimed by ``worker``, so of two
        runs recovering the same dead batch only one goes on.
        """
        return self._if_still_claimed(batch_id, worker, worker=new_worker)

    def _if_still_claimed(self, batch_id: str, holder: str, **values: Any) -> bool:
        """Set ``values`` on a batch only while ``holder`` still holds its claim."""
        with self.begin() as conn:
            return bool(
                conn.execute(
                    update(batches)
                    .where(
                        (batches.c.id == batch_id)
                        & (batches.c.status == B.CLAIMED)
                        & (batches.c.worker == holder)
                    )
                    .values(**values)
                ).rowcount
            )

    def batch_event_evidence(self, batch_id: str) -> tuple[int, str]:
        """Provider facts about a batch whose outcome is unknown.

        Returns (how many of its deliveries have provider events, a provider
        message id seen in them). Events carry our
        delivery id in custom_args and a provider takes or refuses a request whole,
        so one event of any delivery of the batch, whatever its status now, means
        the request was accepted, provided it occurred after the batch was claimed
        (see ``CLOCK_SKEW``): an earlier one is about an earlier request of that
        delivery (an operator's resend, a cancel too late).
        Our own events (an unsubscribe through our link) prove nothing here.
        """
        with self.connect() as conn:
            return _evidence(conn, batch_id)

    def claimed_batches(self, edition_id: int) -> list[BatchRecord]:
        """Batches still claimed: their worker is calling the provider, or died doing so."""
        q = select(batches).where(
            (batches.c.edition_id == edition_id) & (batches.c.status == B.CLAIMED)
        )
        with self.connect() as conn:
            return [_batch(r) for r in conn.execute(q.order_by(batches.c.claimed_at))]

    def batch_delivery_ids(self, batch_id: str) -> list[int]:
        with self.connect() as conn:
            return list(
                conn.execute(
                    select(deliveries.c.id)
                    .where(deliveries.c.batch_id == batch_id)
                    .order_by(deliveries.c.id)
                ).scalars()
            )

    def mark_batch_unresolved(self, batch_id: str, reason: str) -> int:
        """The batch's outcome is unknown: hold its deliveries for a decision."""
        now = utcnow()
        with self.begin() as conn:
            n = conn.execute(
                update(deliveries)
                .where(
                    (deliveries.c.batch_id == batch_id)
                    & can_move(deliveries, DELIVERY, D.UNRESOLVED)
                )
                .values(status=D.UNRESOLVED, error=reason, updated_at=now)
            ).rowcount
            move_row(
                conn,
                batches,
                BATCH,
                batches.c.id == batch_id,
                B.UNKNOWN,
                what=f"batch {batch_id}",
                stay=True,
                error=reason,
            )
        return int(n)

    def unresolved_batches(self, edition_id: int | None = None) -> list[BatchRecord]:
        """Held batches that still have deliveries waiting for a decision."""
        waiting = (
            select(deliveries.c.id)
            .where((deliveries.c.batch_id == batches.c.id) & (deliveries.c.status == D.UNRESOLVED))
            .exists()
        )
        q = select(batches).where((batches.c.status == B.UNKNOWN) & waiting)
        if edition_id is not None:
            q = q.where(batches.c.edition_id == edition_id)
        with self.connect() as conn:
            return [_batch(r) for r in conn.execute(q.order_by(batches.c.claimed_at))]

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        with self.connect() as conn:
            row = conn.execute(select(batches).where(batches.c.id == batch_id)).first()
        return _batch(row) if row else None

    def list_batches(self, edition_id: int) -> list[BatchRecord]:
        with self.connect() as conn:
            return [
                _batch(r)
                for r in conn.execute(
                    select(batches)
                    .where(batches.c.edition_id == edition_id)
                    .order_by(batches.c.claimed_at)
                )
            ]

    def resolve_batch(self, batch_id: str, decision: str) -> int:
        """An operator's decision on an unknown batch: ``resend`` or ``sent`` or ``failed``.

        Only the batch's unresolved deliveries change; returns how many.
        """
        target = {"resend": D.QUEUED, "sent": D.ACCEPTED, "failed": D.FAILED}[decision]
        now = utcnow()
        with self.begin() as conn:
            q = select(batches.c.status).where(batches.c.id == batch_id)
            if self.dialect == "postgresql":
                q = q.with_for_update()  # as the webhook does before settling it
            row = conn.execute(q).first()
            if row is None:
                raise InputError(
                    f"no batch {batch_id}", hint="`newsletter status` lists unresolved batches"
                )
            _check_held(conn, batch_id, row.status)
            values: dict[str, Any] = {"updated_at": now}
            if target == D.QUEUED:
                values["batch_id"] = None
                values["error"] = ""
            elif target == D.FAILED:
                values["error"] = "outcome unknown; marked failed by the operator"
            moved = move_held_deliveries(conn, batch_id, target, **values)
            if target == D.ACCEPTED:
                # taken: what was stored for them while held counts now (our own
                # unsubscribe events too, as if they had come after)
                fold_stored_events(conn, moved, now)
            move_row(
                conn,
                batches,
                BATCH,
                batches.c.id == batch_id,
                B.RESOLVED,
                what=f"batch {batch_id}",
                error=f"resolved: {decision}",
                finished_at=now,
            )
        return len(moved)

    def move_batch(self, batch_id: str, status: str, **values: Any) -> bool:
        """Move one batch to ``status`` (and set ``values``) if ``BATCH`` allows it.

        True when it moved, False when it was there already;
        :class:`TransitionError` when the move is refused.
        """
        with self.begin() as conn:
            return move_row(
                conn,
                batches,
                BATCH,
                batches.c.id == batch_id,
                status,
                what=f"batch {batch_id}",
                **values,
            )

    def move_delivery(self, delivery_id: int, status: str, **values: Any) -> bool:
        """Move one delivery to ``status`` (and set ``values``) if ``DELIVERY`` allows it.

        True when it moved, False when it was there already;
        :class:`TransitionError` when the move is refused.
        """
        with self.begin() as conn:
            return move_row(
                conn,
                deliveries,
                DELIVERY,
                deliveries.c.id == delivery_id,
                status,
                what=f"delivery {delivery_id}",
                updated_at=utcnow(),
                **values,
            )

    def resend_held_batch(self, batch_id: str) -> tuple[int, int, str]:
        """``--resolve BATCH resend``, with the provider's evidence looked at again now.

        In one transaction: when an event from the batch's provider exists for any
        of its deliveries, the batch was accepted and nothing is sent again; else
        its unresolved deliveries are queued again. Returns (queued again, skipped
        because proven accepted, the edition's id as text). A batch of a cancelled
        edition is refused (:class:`InputError`): it can be decided sent or failed.
        """
        now = utcnow()
        with self.begin() as conn:
            q = select(batches.c.status, batches.c.edition_id, batches.c.message_id).where(
                batches.c.id == batch_id
            )
            if self.dialect == "postgresql":
                q = q.with_for_update()  # the webhook settles a held batch under this lock too
            row = conn.execute(q).first()
            if row is None:
                raise InputError(
                    f"no batch {batch_id}", hint="`newsletter status` lists unresolved batches"
                )
            # in this transaction, the edition's row locked: a cancel waits for the
            # resend, or the resend sees the cancel (never queued rows in a cancelled edition)
            edition = select(editions.c.status).where(editions.c.id == row.edition_id)
            if self.dialect == "postgresql":
                edition = edition.with_for_update()
            if conn.execute(edition).scalar_one() == EditionStatus.CANCELLED:
                raise InputError(
                    f"edition {row.edition_id} is cancelled: nothing is sent again",
                    hint=f"decide `newsletter send --resolve {batch_id} sent|failed`",
                )
            _check_held(conn, batch_id, row.status)
            seen, mid = _evidence(conn, batch_id)
            if seen:
                accepted = accept_held_batch(
                    conn,
                    batch_id,
                    row.message_id or mid,
                    f"resend asked, not done: {seen} deliveries have provider events",
                    now,
                )
                # the events stored while they were held count now
                fold_stored_events(conn, accepted, now)
                _finish_if_settled(conn, row.edition_id, now)
                return 0, len(accepted), str(row.edition_id)
            n = len(
                move_held_deliveries(
                    conn, batch_id, D.QUEUED, batch_id=None, error="", updated_at=now
                )
            )
            conn.execute(
                update(batches)
                .where(
                    (batches.c.id == batch_id)
                    & (batches.c.status == B.UNKNOWN)
                    & can_move(batches, BATCH, B.RESOLVED)
                )
                .values(status=B.RESOLVED, error="resolved: resend", finished_at=now)
            )
        return n, 0, str(row.edition_id)

    def delivery_counts(self, edition_id: int) -> dict[str, dict[str, int]]:
        """{variant: {status: count}} for one edition."""
        q = (
            select(deliveries.c.variant, deliveries.c.status, func.count())
            .where(deliveries.c.edition_id == edition_id)
            .group_by(deliveries.c.variant, deliveries.c.status)
        )
        out: dict[str, dict[str, int]] = {}
        with self.connect() as conn:
            for variant, status, n in conn.execute(q):
                out.setdefault(variant, {})[status] = n
        return out

    def engagement_counts(self, edition_id: int) -> dict[str, dict[str, int]]:
        """{variant: {"opened": n, "clicked": n}}."""
        q = (
            select(
                deliveries.c.variant,
                func.sum(func.cast(deliveries.c.opened, Integer)),
                func.sum(func.cast(deliveries.c.clicked, Integer)),
            )
            .where(deliveries.c.edition_id == edition_id)
            .group_by(deliveries.c.variant)
        )
        with self.connect() as conn:
            return {
                v: {"opened": int(o or 0), "clicked": int(c or 0)} for v, o, c in conn.execute(q)
            }

    def delivery_status(self, delivery_id: int) -> str | None:
        with self.connect() as conn:
            return conn.execute(
                select(deliveries.c.status).where(deliveries.c.id == delivery_id)
            ).scalar_one_or_none()

    def list_deliveries(
        self, edition_id: int, *, status: str | None = None
    ) -> list[DeliveryRecord]:
        q = (
            select(deliveries)
            .where(deliveries.c.edition_id == edition_id)
            .order_by(deliveries.c.id)
        )
        if status:
            q = q.where(deliveries.c.status == status)
        with self.connect() as conn:
            return [
                DeliveryRecord(**{**r._mapping, "status": DeliveryStatus(r.status)})
                for r in conn.execute(q)
            ]


@functools.cache
def _claim_statements(ordered: bool) -> tuple[Select[Any], Update]:
    """The claim's two statements, built once per process (building them per claim
    cost more CPU than the claim's own rows): the first ready delivery's variant,
    and the UPDATE that claims up to ``c_limit`` ready deliveries of ``c_variant``
    for batch ``c_batch`` and returns them with the reader's name.

    Ready: queued (the states' table allows the claim), released by the run's clock
    ``c_release`` (local-time sends), and its edition neither paused nor cancelled
    (store/control.py). ``ordered`` (SQLite): SQLite walks the (edition_id, status)
    index in rowid order, so ORDER BY id is free there and keeps batches in id
    order; PostgreSQL would sort every queued row for each claim, and any queued
    rows will do, so there the rows are locked with FOR UPDATE SKIP LOCKED instead.
    """
    edition = bindparam("c_edition", type_=Integer)
    release = bindparam("c_release", type_=deliveries.c.release_at.type)
    ready = and_(
        deliveries.c.edition_id == edition,
        can_move(deliveries, DELIVERY, D.CLAIMED),
        or_(deliveries.c.release_at.is_(None), deliveries.c.release_at <= release),
        ~exists().where((editions.c.id == edition) & editions.c.status.in_(NOT_SENDING)),
    )
    first = select(deliveries.c.variant).where(ready).limit(1)
    pick = select(deliveries.c.id).where(ready & (deliveries.c.variant == bindparam("c_variant")))
    if ordered:
        first = first.order_by(deliveries.c.id)
        pick = pick.order_by(deliveries.c.id).limit(bindparam("c_limit", type_=Integer))
    else:
        first = first.with_for_update(skip_locked=True)
        pick = pick.limit(bindparam("c_limit", type_=Integer)).with_for_update(skip_locked=True)
    claim = (
        update(deliveries)
        .where(deliveries.c.id.in_(pick.scalar_subquery()))
        .values(
            status=D.CLAIMED,
            batch_id=bindparam("c_batch"),
            updated_at=bindparam("c_now", type_=deliveries.c.updated_at.type),
        )
        .returning(deliveries.c.id, deliveries.c.subscriber_id, deliveries.c.email, _NAME)
    )
    return first, claim


@functools.cache
def _leavers_update() -> Update:
    """The UPDATE of :meth:`DeliveryQueries._skip_leavers`, built once: made per claim,
    its aliases and correlated subqueries cost more CPU than the rest of the claim."""
    sub = subscribers.alias("sub")
    status_now = (
        select(sub.c.status).where(sub.c.id == deliveries.c.subscriber_id).scalar_subquery()
    )
    active = (
        select(sub.c.id)
        .where((sub.c.id == deliveries.c.subscriber_id) & (sub.c.status == SubscriberStatus.ACTIVE))
        .exists()
    )
    # nested two levels down: the UPDATE's row, not a second deliveries
    digest = (
        select(editions.c.digest)
        .where(editions.c.id == deliveries.c.edition_id)
        .correlate(deliveries)
        .scalar_subquery()
    )
    own = subscriptions.alias("own")
    every = subscriptions.alias("every")
    own_row = (
        select(own.c.id)
        .where((own.c.subscriber_id == deliveries.c.subscriber_id) & (own.c.digest == digest))
        .correlate(deliveries)
    )
    subscribed = own_row.where(own.c.status == SubscriptionStatus.ACTIVE).exists() | (
        ~own_row.exists()
        & select(every.c.id)
        .where(
            (every.c.subscriber_id == deliveries.c.subscriber_id)
            & (every.c.digest == ALL_DIGESTS)
            & (every.c.status == SubscriptionStatus.ACTIVE)
        )
        .exists()
    )
    return (
        update(deliveries)
        .where(
            (deliveries.c.batch_id == bindparam("leavers_batch"))
            & (deliveries.c.status == D.CLAIMED)
            & can_move(deliveries, DELIVERY, D.LEFT)
        )
        .where(~(active & subscribed))
        .values(
            status=D.LEFT,
            batch_id=None,
            error=case((active, "left the digest"), else_=func.coalesce(status_now, "removed")),
            updated_at=bindparam("leavers_now", type_=deliveries.c.updated_at.type),
        )
        .returning(deliveries.c.id)
    )


def lock_held_batches(conn: Connection, delivery_ids: Iterable[int]) -> None:
    """PostgreSQL: lock the held batches of these deliveries, in id order, first.

    Settling a batch updates deliveries other than the event's own. Two webhook
    requests with events for two deliveries of one held batch would each hold
    its own delivery and wait for the other's: taking the batch row first, in
    the same order everywhere, makes them take turns instead.
    """
    ids = sorted({i for i in delivery_ids if i is not None})
    for among in in_parts(conn.dialect.name, deliveries.c.id, ids):
        held = (
            select(deliveries.c.batch_id)
            .where(among & deliveries.c.batch_id.is_not(None))
            .scalar_subquery()
        )
        conn.execute(
            select(batches.c.id)
            .where(batches.c.id.in_(held) & (batches.c.status == B.UNKNOWN))
            .order_by(batches.c.id)
            .with_for_update()
        ).all()


def settle_held_batches(
    conn: Connection, proofs: Iterable[tuple[int, str, str, datetime]], now: datetime
) -> list[int]:
    """Settle held batches from provider events, inside the caller's transaction.

    ``proofs`` are (delivery id, provider, message id, occurred at) of newly
    stored events. A held (``unknown``) batch with a provider event for any of
    its deliveries, from the time of its request on, was accepted whole: its
    unresolved deliveries become accepted, the batch too, and an edition left
    with nothing open is done. Returns the deliveries settled: the caller folds
    their stored events (:func:`fold_stored_events`).
    """
    by_delivery: dict[int, list[tuple[str, str, datetime]]] = {}
    for did, provider, mid, at in proofs:
        if did is not None and provider and provider != OWN_EVENTS:
            by_delivery.setdefault(did, []).append((provider, mid, at))
    if not by_delivery:
        return []
    held: dict[str, tuple[int, str, str]] = {}
    ids = sorted(by_delivery)
    for among in in_parts(conn.dialect.name, deliveries.c.id, ids):
        q = (
            select(
                deliveries.c.id,
                batches.c.id,
                batches.c.edition_id,
                batches.c.message_id,
                batches.c.claimed_at,
            )
            .join(batches, batches.c.id == deliveries.c.batch_id)
            .where(among & (batches.c.status == B.UNKNOWN))
        )
        for did, bid, eid, bmid, claimed_at in conn.execute(q):
            for provider, mid, at in by_delivery[did]:
                # an event from before this batch's request is about an earlier one
                if bid not in held and at >= claimed_at - CLOCK_SKEW:
                    held[bid] = (eid, bmid or mid, provider)
    settled: list[int] = []
    editions_touched: set[int] = set()
    for bid, (eid, mid, provider) in held.items():
        settled += accept_held_batch(
            conn, bid, mid, f"outcome was unknown; accepted: a {provider} event arrived for it", now
        )
        editions_touched.add(eid)
    for eid in sorted(editions_touched):
        _finish_if_settled(conn, eid, now)
    return settled


def move_held_deliveries(conn: Connection, held: str, target: str, **values: Any) -> list[int]:
    """Batch ``held``'s unresolved deliveries moved to ``target`` (with ``values``),
    where ``DELIVERY`` allows it, in the caller's transaction; returns their ids."""
    return list(
        conn.execute(
            update(deliveries)
            .where(
                (deliveries.c.batch_id == held)
                & (deliveries.c.status == D.UNRESOLVED)
                & can_move(deliveries, DELIVERY, target)
            )
            .values(status=target, **values)
            .returning(deliveries.c.id)
        ).scalars()
    )


def accept_held_batch(
    conn: Connection, batch_id: str, message_id: str, why: str, now: datetime
) -> list[int]:
    """A held batch proven accepted, in the caller's transaction: its unresolved
    deliveries and the batch itself become accepted (``message_id``, the provider's,
    kept where known; ``why`` on the batch). Returns the deliveries moved; the
    caller folds their stored events and finishes the edition if nothing is open."""
    moved = move_held_deliveries(
        conn, batch_id, D.ACCEPTED, message_id=message_id[:500], error="", updated_at=now
    )
    values: dict[str, Any] = {"status": B.ACCEPTED, "finished_at": now, "error": why}
    if message_id:
        values["message_id"] = message_id[:500]
    conn.execute(
        update(batches)
        .where(
            (batches.c.id == batch_id)
            & (batches.c.status == B.UNKNOWN)
            & can_move(batches, BATCH, B.ACCEPTED)
        )
        .values(**values)
    )
    return moved


def fold_stored_events(
    conn: Connection,
    delivery_ids: Iterable[int],
    now: datetime,
    *,
    skip: Collection[tuple[str, str]] = (),
) -> set[int]:
    """Fold every stored event of these deliveries into their status and flags, in
    the caller's transaction, except the events ``skip`` names by (provider,
    provider event id). Returns the deliveries changed.

    Folding is by precedence (:func:`newsletter.states.fold`), so an event folded
    twice changes nothing. Our own events (an unsubscribe through our link) do not
    move a held (``unresolved``) delivery, since only the provider can say it took
    the message; once its batch is settled as accepted they count, as if they had
    come after. The write is a compare-and-set on the status read: a delivery a
    concurrent webhook request moved in between is read and folded again.
    """
    changed: set[int] = set()
    ids = sorted({i for i in delivery_ids if i is not None})
    skipped = set(skip)
    for _ in range(3):
        changes = _stored_folds(conn, ids, skipped)
        refused, stale = write_event_statuses(conn, conn.dialect.name, changes, now)
        if refused:
            # a fold never moves backwards: the same fold would be refused again
            logger.error("%d event-driven delivery changes refused by the state table", refused)
            changes = [c for c in changes if _allowed(c)]
        changed.update(c["id"] for c in changes)
        if not stale:
            return changed
        ids = [c["id"] for c in changes]  # the ones done already change nothing now
    logger.warning("%d deliveries kept moving while their stored events were folded", stale)
    return changed


def _allowed(change: dict[str, Any]) -> bool:
    """Whether :func:`write_event_statuses` writes ``change`` (unless it is stale)."""
    return change["from"] == change["status"] or DELIVERY.allowed(change["from"], change["status"])


def _stored_folds(
    conn: Connection, ids: list[int], skip: set[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The changes folding their stored events (but those in ``skip``) makes to these deliveries."""
    dialect = conn.dialect.name
    rows: dict[int, Any] = {}
    for among in in_parts(dialect, deliveries.c.id, ids):
        q = select(
            deliveries.c.id, deliveries.c.status, deliveries.c.opened, deliveries.c.clicked
        ).where(among & deliveries.c.status.in_(EVENT_DRIVEN))
        rows.update((r.id, r) for r in conn.execute(q))
    types: dict[int, list[str]] = {i: [] for i in rows}
    for among in in_parts(dialect, events.c.delivery_id, sorted(rows)):
        q = select(
            events.c.delivery_id, events.c.provider, events.c.provider_event_id, events.c.type
        ).where(among)
        for ev in conn.execute(q):
            if (ev.provider, ev.provider_event_id) in skip:
                continue
            if rows[ev.delivery_id].status == D.UNRESOLVED and ev.provider == OWN_EVENTS:
                continue  # only the provider can say it took a held message
            types[ev.delivery_id].append(ev.type)
    changes: list[dict[str, Any]] = []
    for did, ts in types.items():
        r = rows[did]
        status, opened, clicked = fold(r.status, ts)
        opened, clicked = opened or bool(r.opened), clicked or bool(r.clicked)
        if (status, opened, clicked) != (r.status, bool(r.opened), bool(r.clicked)):
            changes.append(
                {
                    "id": did,
                    "from": r.status,
                    "status": status,
                    "opened": opened,
                    "clicked": clicked,
                }
            )
    return changes


def _check_held(conn: Connection, batch_id: str, status: str) -> None:
    """Refuse a decision on a batch that is not held, or whose deliveries are all settled."""
    if status != B.UNKNOWN:
        raise InputError(f"batch {batch_id} is {status}, not unresolved; nothing to decide")
    waiting = conn.execute(
        select(func.count()).where(
            (deliveries.c.batch_id == batch_id) & (deliveries.c.status == D.UNRESOLVED)
        )
    ).scalar_one()
    if not waiting:
        raise InputError(f"batch {batch_id} is settled already (no unresolved deliveries)")


def _evidence(conn: Connection, batch_id: str) -> tuple[int, str]:
    """(deliveries of the batch with provider events since its request, a message id)."""
    claimed_at = conn.execute(
        select(batches.c.claimed_at).where(batches.c.id == batch_id)
    ).scalar_one_or_none()
    if claimed_at is None:
        return 0, ""
    mine = select(deliveries.c.id).where(deliveries.c.batch_id == batch_id).scalar_subquery()
    proof = (
        events.c.delivery_id.in_(mine)
        & (events.c.provider != OWN_EVENTS)
        & (events.c.occurred_at >= claimed_at - CLOCK_SKEW)
    )
    n = conn.execute(
        select(func.count(func.distinct(events.c.delivery_id))).where(proof)
    ).scalar_one()
    if not n:
        return 0, ""
    raw = conn.execute(select(events.c.raw).where(proof).limit(1)).scalar_one_or_none()
    return int(n), message_id_of(raw)


def message_id_of(raw: Any) -> str:
    """The X-Message-Id in a SendGrid event (``sg_message_id`` is "<id>.<filter suffix>")."""
    if isinstance(raw, dict):
        return str(raw.get("sg_message_id") or "").split(".", 1)[0]
    return ""


#: how far the provider's clock (an event's timestamp) may be behind ours. A
#: delivery can be in more than one request: `--resolve BATCH resend` sends it again
#: when its first request's outcome is unknown, and a cancel can come too late. An
#: event that occurred before a batch was claimed is about such an earlier request
#: and proves nothing about this batch (its other readers may never have been sent
#: anything).
CLOCK_SKEW = timedelta(minutes=2)

#: the provider name of events we make ourselves (an unsubscribe through our link):
#: they prove nothing about what a provider accepted
OWN_EVENTS = "newsletter"

#: delivery statuses that keep an edition open
OPEN_STATUSES = DELIVERY_OPEN


def deliveries_of(subscriber_id: int) -> Select[tuple[int]]:
    """The ids of a subscriber's deliveries, as a subquery (not an IN list of ids:
    a reader of a daily for years has thousands)."""
    return select(deliveries.c.id).where(deliveries.c.subscriber_id == subscriber_id)


def erase_delivery_addresses(conn: Connection, subscriber_id: int) -> list[int]:
    """Inside an erasure's transaction: the subscriber's deliveries keep their rows (the
    editions' counts) without the address or the provider's error; returns their ids."""
    ids = [
        int(d)
        for (d,) in conn.execute(
            select(deliveries.c.id).where(deliveries.c.subscriber_id == subscriber_id)
        )
    ]
    if ids:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.subscriber_id == subscriber_id)
            .values(email="", error="")
        )
    return ids


def cancel_queued(conn: Connection, edition_id: int, now: datetime) -> int:
    """Inside the caller's transaction: the edition's queued deliveries become
    ``cancelled`` (its cancel); returns how many."""
    return int(
        conn.execute(
            update(deliveries)
            .where(
                (deliveries.c.edition_id == edition_id)
                & (deliveries.c.status == D.QUEUED)
                & can_move(deliveries, DELIVERY, D.CANCELLED)
            )
            .values(status=D.CANCELLED, updated_at=now)
        ).rowcount
    )


def count_in_flight(conn: Connection, edition_id: int) -> int:
    """The edition's deliveries claimed by a worker and not settled yet."""
    return int(
        conn.execute(
            select(func.count()).where(
                (deliveries.c.edition_id == edition_id) & (deliveries.c.status == D.CLAIMED)
            )
        ).scalar_one()
    )


def _finish_if_settled(conn: Connection, edition_id: int, now: datetime) -> None:
    """A sending edition with nothing queued, claimed or held is done (as ``finalize``)."""
    counts: dict[str, int] = {
        status: int(n)
        for status, n in conn.execute(
            select(deliveries.c.status, func.count())
            .where(deliveries.c.edition_id == edition_id)
            .group_by(deliveries.c.status)
        )
    }
    if any(counts.get(s) for s in OPEN_STATUSES):
        return
    failed = counts.get(D.FAILED)
    finish_if_sending(
        conn, edition_id, EditionStatus.PARTIALLY_FAILED if failed else EditionStatus.SENT, now
    )
