"""Subscribers and their tag preferences."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, update
from sqlalchemy.sql.dml import ReturningInsert

from newsletter.models import Subscriber
from newsletter.states import SUBSCRIBER_RANK, SubscriberStatus
from newsletter.store.base import StoreBase, dialect_insert, update_by_id, utcnow
from newsletter.store.bulk import StoredSubscriber, subscriber_rows
from newsletter.store.schema import subscriber_tags, subscribers

#: statuses that receive editions
SENDABLE = (SubscriberStatus.ACTIVE,)


@functools.cache
def new_subscriber_statement(dialect: str) -> ReturningInsert[Any]:
    """INSERT a pending subscriber unless the address is known, RETURNING its id
    (no row: known). Built once per dialect; parameters ``email``, ``name``, ``now``."""
    now = bindparam("now", type_=subscribers.c.created_at.type)
    return (
        dialect_insert(dialect, subscribers)
        .values(
            email=bindparam("email"),
            name=bindparam("name"),
            timezone="",
            status=SubscriberStatus.PENDING,
            status_reason="signed up, not confirmed",
            soft_bounces=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[subscribers.c.email])
        .returning(subscribers.c.id)
    )


def insert_new_subscriber(
    conn: Connection, dialect: str, email: str, name: str, now: datetime
) -> int | None:
    """Inside a signup's transaction: insert ``email`` as a pending subscriber unless
    the address is known; its id, or None for a known address."""
    sid = conn.execute(
        new_subscriber_statement(dialect), {"email": email, "name": name, "now": now}
    ).scalar()
    return None if sid is None else int(sid)


def delete_pending_subscriber(conn: Connection, subscriber_id: int) -> None:
    """Inside a declined signup's transaction: an address that was only pending goes."""
    conn.execute(
        delete(subscribers)
        .where(subscribers.c.id == subscriber_id)
        .where(subscribers.c.status == SubscriberStatus.PENDING)
    )


#: subscriber statuses a confirmed signup makes active again
REOPENED_BY_CONFIRMING = (SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED)


def activate_confirmed(conn: Connection, subscriber_id: int, now: datetime) -> None:
    """Inside a confirmation's transaction: a pending or unsubscribed subscriber becomes
    active. Conditional, so a bounce or complaint that landed since it was read stays."""
    conn.execute(
        update(subscribers)
        .where(subscribers.c.id == subscriber_id)
        .where(subscribers.c.status.in_(REOPENED_BY_CONFIRMING))
        .values(status=SubscriberStatus.ACTIVE, status_reason="confirmed", updated_at=now)
    )


def erase_subscriber(conn: Connection, subscriber_id: int, now: datetime, *, keep: bool) -> None:
    """Inside an erasure's transaction: the subscriber's tags go; the row goes too, or,
    with ``keep`` (deliveries still refer to it), stays without the address, marked
    ``forgotten``."""
    conn.execute(delete(subscriber_tags).where(subscriber_tags.c.subscriber_id == subscriber_id))
    if not keep:
        conn.execute(delete(subscribers).where(subscribers.c.id == subscriber_id))
        return
    conn.execute(
        update(subscribers)
        .where(subscribers.c.id == subscriber_id)
        .values(
            email=f"forgotten-{subscriber_id}@invalid",
            name="",
            timezone="",
            status=SubscriberStatus.FORGOTTEN,
            status_reason="erased on request",
            updated_at=now,
        )
    )


def write_subscriber_changes(
    conn: Connection, changes: list[dict[str, Any]], now: datetime
) -> None:
    """Apply per-subscriber ``{"id": …, column: value}`` changes inside the caller's
    transaction: how the events domain suppresses addresses and keeps streaks."""
    update_by_id(conn, subscribers, changes, updated_at=now)


def upsert_subscriber_rows(
    conn: Connection, subs: Sequence[Subscriber], *, resubscribe: bool, now: datetime
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The subscribers' side of an import (``SubscriptionQueries.upsert_subscribers``),
    inside the caller's transaction: rows and tags, a statement per table. Returns
    (id, "inserted" | "updated" | "unchanged") per subscriber, in order, and
    (id, status) of each one inserted, who still needs a subscription.

    The addresses must be distinct and normalized. A non-active address stays as it
    is when the row says active, unless ``resubscribe``; a row that says
    unsubscribed, bounced … suppresses the address.
    """
    if len({s.email for s in subs}) != len(subs):
        raise ValueError("upsert_subscribers needs distinct addresses")
    rows = subscriber_rows(conn, now)
    existing = rows.existing([s.email for s in subs])
    have_tags = rows.tags([r.id for r in existing.values()])
    fresh = [s for s in subs if s.email not in existing]
    ids = rows.insert(fresh)
    outcomes: list[tuple[int, str]] = []
    updates: list[StoredSubscriber] = []
    retag: dict[int, list[str]] = {}
    for s in subs:
        wanted_tags = sorted(set(s.tags))
        row = existing.get(s.email)
        if row is None:
            sid = ids[s.email]
            if wanted_tags:
                retag[sid] = wanted_tags
            outcomes.append((sid, "inserted"))
            continue
        sid = row.id
        values = row._replace(name=s.name, timezone=s.timezone)
        if s.status == SubscriberStatus.ACTIVE and row.status != SubscriberStatus.ACTIVE:
            if resubscribe:
                values = values._replace(
                    status=SubscriberStatus.ACTIVE, status_reason="", soft_bounces=0
                )
            # else: stays suppressed / unsubscribed
        elif s.status != row.status:
            values = values._replace(status=s.status, status_reason="imported")
        changed = values != row
        if changed:
            updates.append(values)
        if sorted(have_tags[sid]) != wanted_tags:
            retag[sid] = wanted_tags
            changed = True
        outcomes.append((sid, "updated" if changed else "unchanged"))
    rows.update(updates)
    rows.untag([sid for sid in retag if have_tags.get(sid)])
    rows.tag([(sid, t) for sid, ts in retag.items() for t in ts])
    return outcomes, [(ids[s.email], str(s.status)) for s in fresh]


class AudienceQueries(StoreBase):
    def get_subscriber(
        self, email: str | None = None, *, id: int | None = None
    ) -> Subscriber | None:
        q = select(subscribers)
        q = (
            q.where(subscribers.c.id == id)
            if id is not None
            else q.where(subscribers.c.email == email)
        )
        with self.connect() as conn:
            row = conn.execute(q).first()
            if row is None:
                return None
            return self._with_tags(conn, [row])[0]

    def _with_tags(self, conn: Connection, rows: Sequence[Row[Any]]) -> list[Subscriber]:
        ids = [r.id for r in rows]
        tags: dict[int, list[str]] = {i: [] for i in ids}
        for start in range(0, len(ids), 500):
            for sid, slug in conn.execute(
                select(subscriber_tags.c.subscriber_id, subscriber_tags.c.tag_slug)
                .where(subscriber_tags.c.subscriber_id.in_(ids[start : start + 500]))
                .order_by(subscriber_tags.c.tag_slug)
            ):
                tags[sid].append(slug)
        return [
            Subscriber(
                id=r.id,
                email=r.email,
                name=r.name,
                timezone=r.timezone,
                status=r.status,
                tags=tags[r.id],
            )
            for r in rows
        ]

    def iter_subscribers(
        self, *, status: Iterable[str] | None = None, tag: str | None = None, page: int = 1000
    ) -> Iterator[Subscriber]:
        """All matching subscribers by id, read a page at a time."""
        last = 0
        while True:
            q = select(subscribers).where(subscribers.c.id > last)
            if status is not None:
                q = q.where(subscribers.c.status.in_(list(status)))
            if tag is not None:
                q = q.where(
                    subscribers.c.id.in_(
                        select(subscriber_tags.c.subscriber_id).where(
                            subscriber_tags.c.tag_slug == tag
                        )
                    )
                )
            q = q.order_by(subscribers.c.id).limit(page)
            with self.connect() as conn:
                rows = conn.execute(q).all()
                if not rows:
                    return
                batch = self._with_tags(conn, list(rows))
            yield from batch
            last = rows[-1].id

    def set_subscriber_status(self, email: str, status: str, reason: str = "") -> bool:
        with self.begin() as conn:
            return bool(
                conn.execute(
                    update(subscribers)
                    .where(subscribers.c.email == email)
                    .values(status=status, status_reason=reason, updated_at=utcnow())
                ).rowcount
            )

    def suppress_subscriber(self, subscriber_id: int, status: str, reason: str) -> bool:
        """Set a suppression status unless a stronger one is already set. True if changed."""
        status = SubscriberStatus(status)
        with self.begin() as conn:
            row = conn.execute(
                select(subscribers.c.status).where(subscribers.c.id == subscriber_id)
            ).first()
            if row is None or SUBSCRIBER_RANK[status] <= SUBSCRIBER_RANK[row.status]:
                return False
            conn.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber_id)
                .values(status=status, status_reason=reason[:500], updated_at=utcnow())
            )
            return True

    def set_subscriber_tags(self, subscriber_id: int, tags: Iterable[str]) -> None:
        with self.begin() as conn:
            conn.execute(
                delete(subscriber_tags).where(subscriber_tags.c.subscriber_id == subscriber_id)
            )
            rows = [{"subscriber_id": subscriber_id, "tag_slug": t} for t in sorted(set(tags))]
            if rows:
                conn.execute(insert(subscriber_tags), rows)

    def remove_subscriber(self, email: str) -> bool:
        """Forget a subscriber. Their past deliveries keep the frozen address."""
        from newsletter.store.schema import deliveries

        with self.begin() as conn:
            row = conn.execute(select(subscribers.c.id).where(subscribers.c.email == email)).first()
            if row is None:
                return False
            has_history = conn.execute(
                select(func.count())
                .select_from(deliveries)
                .where(deliveries.c.subscriber_id == row.id)
            ).scalar_one()
            if has_history:
                # keep the row for the delivery history, but never send to it again
                conn.execute(
                    update(subscribers)
                    .where(subscribers.c.id == row.id)
                    .values(
                        status=SubscriberStatus.UNSUBSCRIBED,
                        status_reason="removed",
                        updated_at=utcnow(),
                    )
                )
            else:
                conn.execute(delete(subscribers).where(subscribers.c.id == row.id))
            return True

    def count_subscribers(self) -> dict[str, int]:
        with self.connect() as conn:
            return dict(
                conn.execute(
                    select(subscribers.c.status, func.count()).group_by(subscribers.c.status)
                ).all()
            )
