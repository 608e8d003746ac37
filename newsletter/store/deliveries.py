"""Deliveries and batches: the persisted state machine of a send.

One delivery row per (edition, subscriber), written before the first message
goes out (the frozen audience). A batch is claimed, and the claim committed,
before the provider is called; afterwards its deliveries become accepted or
failed. A batch still claimed when its worker died has an unknown outcome: it
is never silently re-sent or dropped, but resolved (see ``newsletter.delivery``).

Allowed transitions live in one table, ``TRANSITIONS``, and every status
change goes through :func:`check_transition`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, insert, or_, select, update

from newsletter.errors import NewsletterError
from newsletter.store.base import StoreBase, utcnow
from newsletter.store.schema import batches, deliveries, subscribers

TRANSITIONS: dict[str, set[str]] = {
    "queued": {"claimed"},
    "claimed": {"accepted", "failed", "queued", "unresolved"},
    "unresolved": {"queued", "accepted", "failed"},
    "accepted": {"delivered", "deferred", "bounced", "dropped", "complained", "unsubscribed"},
    "failed": {"queued"},
}


class TransitionError(NewsletterError):
    """A delivery was asked to move to a state it cannot reach."""


def check_transition(current: str, target: str) -> None:
    if target not in TRANSITIONS.get(current, set()):
        raise TransitionError(f"a delivery cannot go from {current} to {target}")


@dataclass(frozen=True)
class AudienceRow:
    subscriber_id: int
    email: str
    variant: str
    release_at: datetime | None = None


@dataclass(frozen=True)
class ClaimedDelivery:
    id: int
    subscriber_id: int
    email: str
    variant: str
    name: str = ""


@dataclass(frozen=True)
class Batch:
    id: str
    edition_id: int
    variant: str
    backend: str
    deliveries: tuple[ClaimedDelivery, ...]


class DeliveryQueries(StoreBase):
    def freeze_audience(
        self, edition_id: int, rows: Iterable[AudienceRow], *, chunk: int = 2000
    ) -> int:
        """Write one queued delivery per recipient. Rows already there are kept as they are."""
        now = utcnow()
        added = 0
        buf: list[AudienceRow] = []

        def flush() -> int:
            with self.begin() as conn:
                have = set(
                    conn.execute(
                        select(deliveries.c.subscriber_id).where(
                            (deliveries.c.edition_id == edition_id)
                            & deliveries.c.subscriber_id.in_([r.subscriber_id for r in buf])
                        )
                    ).scalars()
                )
                new = [
                    {
                        "edition_id": edition_id,
                        "subscriber_id": r.subscriber_id,
                        "email": r.email,
                        "variant": r.variant,
                        "status": "queued",
                        "release_at": r.release_at,
                        "updated_at": now,
                    }
                    for r in buf
                    if r.subscriber_id not in have
                ]
                if new:
                    conn.execute(insert(deliveries), new)
                return len(new)

        for row in rows:
            buf.append(row)
            if len(buf) >= chunk:
                added += flush()
                buf = []
        if buf:
            added += flush()
        return added

    def claim_batch(
        self,
        edition_id: int,
        *,
        backend: str,
        limit: int,
        worker: str = "",
        variant: str | None = None,
        now: datetime | None = None,
    ) -> Batch | None:
        """Claim up to ``limit`` queued deliveries of one variant, and commit the claim.

        On PostgreSQL rows are locked with FOR UPDATE SKIP LOCKED, so several
        workers can share one send; on SQLite the write transaction serialises them.
        Returns None when nothing is left to claim.
        """
        now = now or utcnow()
        ready = and_(
            deliveries.c.edition_id == edition_id,
            deliveries.c.status == "queued",
            or_(deliveries.c.release_at.is_(None), deliveries.c.release_at <= now),
        )
        with self.begin() as conn:
            if variant is None:
                variant = conn.execute(
                    select(deliveries.c.variant).where(ready).order_by(deliveries.c.id).limit(1)
                ).scalar_one_or_none()
                if variant is None:
                    return None
            q = (
                select(
                    deliveries.c.id,
                    deliveries.c.subscriber_id,
                    deliveries.c.email,
                    subscribers.c.name,
                )
                .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                .where(ready & (deliveries.c.variant == variant))
                .order_by(deliveries.c.id)
                .limit(limit)
            )
            if self.dialect == "postgresql":
                q = q.with_for_update(of=deliveries, skip_locked=True)
            rows = conn.execute(q).all()
            if not rows:
                return None
            batch_id = uuid.uuid4().hex
            conn.execute(
                insert(batches).values(
                    id=batch_id,
                    edition_id=edition_id,
                    variant=variant,
                    status="claimed",
                    backend=backend,
                    size=len(rows),
                    worker=worker,
                    claimed_at=now,
                )
            )
            ids = [r.id for r in rows]
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(ids) & (deliveries.c.status == "queued"))
                .values(status="claimed", batch_id=batch_id, updated_at=now)
            )
        return Batch(
            id=batch_id,
            edition_id=edition_id,
            variant=variant,
            backend=backend,
            deliveries=tuple(
                ClaimedDelivery(r.id, r.subscriber_id, r.email, variant, r.name) for r in rows
            ),
        )

    def finish_batch(
        self,
        batch_id: str,
        *,
        message_id: str = "",
        failed: dict[int, str] | None = None,
        requeue: Sequence[int] = (),
        accepted_ids: dict[int, str] | None = None,
    ) -> None:
        """Record what the provider said of a claimed batch.

        Deliveries in ``failed`` become failed with their reason, those in
        ``requeue`` go back to queued (the provider certainly did not take them),
        and the rest become accepted with ``message_id`` (or their own id from
        ``accepted_ids``).
        """
        failed = failed or {}
        accepted_ids = accepted_ids or {}
        requeue_set = set(requeue)
        now = utcnow()
        with self.begin() as conn:
            ids = list(
                conn.execute(
                    select(deliveries.c.id).where(
                        (deliveries.c.batch_id == batch_id)
                        & deliveries.c.status.in_(("claimed", "unresolved"))
                    )
                ).scalars()
            )
            for did, reason in failed.items():
                if did in ids:
                    conn.execute(
                        update(deliveries)
                        .where(deliveries.c.id == did)
                        .values(status="failed", error=reason[:2000], updated_at=now)
                    )
            if requeue_set:
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id.in_([i for i in ids if i in requeue_set]))
                    .values(status="queued", batch_id=None, updated_at=now)
                )
            accepted = [i for i in ids if i not in failed and i not in requeue_set]
            own = [i for i in accepted if i in accepted_ids]
            for did in own:
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id == did)
                    .values(status="accepted", message_id=accepted_ids[did], updated_at=now)
                )
            rest = [i for i in accepted if i not in accepted_ids]
            for start in range(0, len(rest), 1000):
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id.in_(rest[start : start + 1000]))
                    .values(status="accepted", message_id=message_id, updated_at=now)
                )
            status = "accepted" if accepted else ("failed" if failed else "requeued")
            conn.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(status=status, message_id=message_id, finished_at=now)
            )

    def claimed_batches(self, edition_id: int) -> list[dict]:
        """Batches still claimed: their worker is calling the provider, or died doing so."""
        q = select(batches).where(
            (batches.c.edition_id == edition_id) & (batches.c.status == "claimed")
        )
        with self.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(batches.c.claimed_at))]

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
                .where((deliveries.c.batch_id == batch_id) & (deliveries.c.status == "claimed"))
                .values(status="unresolved", error=reason, updated_at=now)
            ).rowcount
            conn.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(status="unknown", error=reason)
            )
        return n

    def unresolved_batches(self, edition_id: int | None = None) -> list[dict]:
        q = select(batches).where(batches.c.status == "unknown")
        if edition_id is not None:
            q = q.where(batches.c.edition_id == edition_id)
        with self.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(batches.c.claimed_at))]

    def resolve_batch(self, batch_id: str, decision: str) -> int:
        """An operator's decision on an unknown batch: ``resend`` or ``sent`` or ``failed``."""
        target = {"resend": "queued", "sent": "accepted", "failed": "failed"}[decision]
        now = utcnow()
        with self.begin() as conn:
            values: dict = {"status": target, "updated_at": now}
            if target == "queued":
                values["batch_id"] = None
            n = conn.execute(
                update(deliveries)
                .where((deliveries.c.batch_id == batch_id) & (deliveries.c.status == "unresolved"))
                .values(**values)
            ).rowcount
            conn.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(status="resolved", error=f"resolved: {decision}", finished_at=now)
            )
        return n

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
                func.sum(func.cast(deliveries.c.opened, _int())),
                func.sum(func.cast(deliveries.c.clicked, _int())),
            )
            .where(deliveries.c.edition_id == edition_id)
            .group_by(deliveries.c.variant)
        )
        with self.connect() as conn:
            return {
                v: {"opened": int(o or 0), "clicked": int(c or 0)} for v, o, c in conn.execute(q)
            }

    def list_deliveries(self, edition_id: int, *, status: str | None = None) -> list[dict]:
        q = (
            select(deliveries)
            .where(deliveries.c.edition_id == edition_id)
            .order_by(deliveries.c.id)
        )
        if status:
            q = q.where(deliveries.c.status == status)
        with self.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]


def _int():  # noqa: ANN202
    from sqlalchemy import Integer

    return Integer
