"""Subscribers and their tag preferences."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, select, update

from newsletter.models import Subscriber
from newsletter.states import SUBSCRIBER_RANK, SubscriberStatus
from newsletter.store.base import StoreBase, update_by_id, utcnow
from newsletter.store.schema import ALL_DIGESTS, subscriber_tags, subscribers, subscriptions

#: statuses that receive editions
SENDABLE = (SubscriberStatus.ACTIVE,)

_CHUNK = 500


def _chunks(items: Sequence[Any], n: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def write_subscriber_changes(
    conn: Connection, changes: list[dict[str, Any]], now: datetime
) -> None:
    """Apply per-subscriber ``{"id": …, column: value}`` changes inside the caller's
    transaction: how the events domain suppresses addresses and keeps streaks."""
    update_by_id(conn, subscribers, changes, updated_at=now)


class AudienceQueries(StoreBase):
    def upsert_subscriber(
        self,
        sub: Subscriber,
        *,
        resubscribe: bool = False,
        consent_source: str = "import",
        conn: Connection | None = None,
    ) -> tuple[int, str]:
        """Insert or update by email. Returns (id, "inserted" | "updated" | "unchanged").

        A suppressed or unsubscribed address keeps its status unless ``resubscribe``.
        """
        ((sid, what),) = self.upsert_subscribers(
            [sub], resubscribe=resubscribe, consent_source=consent_source, conn=conn
        )
        return sid, what

    def upsert_subscribers(
        self,
        subs: Sequence[Subscriber],
        *,
        resubscribe: bool = False,
        consent_source: str = "import",
        conn: Connection | None = None,
    ) -> list[tuple[int, str]]:
        """Insert or update many by email, in one transaction and a few statements.

        Returns (id, outcome) per subscriber, in order. The addresses must be
        distinct and normalized. A non-active address stays as it is when the
        row says active, unless ``resubscribe``; a row that says unsubscribed,
        bounced … suppresses the address. A new subscriber gets every digest (one
        subscription to "*"), its consent recorded as ``consent_source``.
        """
        if conn is None:
            with self.begin() as c:
                return self.upsert_subscribers(
                    subs, resubscribe=resubscribe, consent_source=consent_source, conn=c
                )
        if len({s.email for s in subs}) != len(subs):
            raise ValueError("upsert_subscribers needs distinct addresses")
        now = utcnow()
        emails = [s.email for s in subs]
        existing: dict[str, Any] = {}
        for part in _chunks(emails):
            for r in conn.execute(select(subscribers).where(subscribers.c.email.in_(part))):
                existing[r.email] = r
        have_tags: dict[int, list[str]] = {r.id: [] for r in existing.values()}
        for part in _chunks(sorted(have_tags)):
            for sid, slug in conn.execute(
                select(subscriber_tags.c.subscriber_id, subscriber_tags.c.tag_slug).where(
                    subscriber_tags.c.subscriber_id.in_(part)
                )
            ):
                have_tags[sid].append(slug)

        fresh = [s for s in subs if s.email not in existing]
        if fresh:
            conn.execute(
                insert(subscribers),
                [
                    {
                        "email": s.email,
                        "name": s.name,
                        "timezone": s.timezone,
                        "status": s.status,
                        "status_reason": "" if s.status == SubscriberStatus.ACTIVE else "imported",
                        "soft_bounces": 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for s in fresh
                ],
            )
        ids: dict[str, int] = {e: r.id for e, r in existing.items()}
        for part in _chunks([s.email for s in fresh]):
            ids.update(
                conn.execute(
                    select(subscribers.c.email, subscribers.c.id).where(
                        subscribers.c.email.in_(part)
                    )
                ).all()
            )
        if fresh:
            conn.execute(
                insert(subscriptions),
                [
                    {
                        "subscriber_id": ids[s.email],
                        "digest": ALL_DIGESTS,
                        "status": "active" if s.status != "unsubscribed" else "unsubscribed",
                        "topics": None,
                        "created_at": now,
                        "updated_at": now,
                        "confirmed_at": now,
                        "consent_source": consent_source,
                        "consent_at": now,
                        "consent_ip": "",
                        "consent_text": "",
                    }
                    for s in fresh
                ],
            )
        outcomes: list[tuple[int, str]] = []
        updates: list[dict[str, Any]] = []
        retag: dict[int, list[str]] = {}
        for s in subs:
            sid = ids[s.email]
            wanted_tags = sorted(set(s.tags))
            row = existing.get(s.email)
            if row is None:
                if wanted_tags:
                    retag[sid] = wanted_tags
                outcomes.append((sid, "inserted"))
                continue
            values = {
                "name": row.name,
                "timezone": row.timezone,
                "status": row.status,
                "status_reason": row.status_reason,
                "soft_bounces": row.soft_bounces,
            }
            values["name"], values["timezone"] = s.name, s.timezone
            if s.status == SubscriberStatus.ACTIVE and row.status != SubscriberStatus.ACTIVE:
                if resubscribe:
                    values.update(status=SubscriberStatus.ACTIVE, status_reason="", soft_bounces=0)
                # else: stays suppressed / unsubscribed
            elif s.status != row.status:
                values.update(status=s.status, status_reason="imported")
            changed = any(values[k] != getattr(row, k) for k in values)
            if changed:
                updates.append({"id": sid, **values})
            if sorted(have_tags[sid]) != wanted_tags:
                retag[sid] = wanted_tags
                changed = True
            outcomes.append((sid, "updated" if changed else "unchanged"))
        update_by_id(conn, subscribers, updates, updated_at=now)
        stale = [sid for sid in retag if sid in have_tags and have_tags[sid]]
        for part in _chunks(stale):
            conn.execute(delete(subscriber_tags).where(subscriber_tags.c.subscriber_id.in_(part)))
        tag_rows = [{"subscriber_id": sid, "tag_slug": t} for sid, ts in retag.items() for t in ts]
        if tag_rows:
            conn.execute(insert(subscriber_tags), tag_rows)
        return outcomes

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
