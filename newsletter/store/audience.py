"""Subscribers and their tag preferences."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import Connection, delete, func, insert, select, update

from newsletter.models import Subscriber
from newsletter.store.base import StoreBase, utcnow
from newsletter.store.schema import subscriber_tags, subscribers

#: statuses that receive editions
SENDABLE = ("active",)


class AudienceQueries(StoreBase):
    def upsert_subscriber(
        self, sub: Subscriber, *, resubscribe: bool = False, conn: Connection | None = None
    ) -> tuple[int, str]:
        """Insert or update by email. Returns (id, "inserted" | "updated" | "unchanged").

        A suppressed or unsubscribed address keeps its status unless ``resubscribe``.
        """
        if conn is None:
            with self.begin() as c:
                return self.upsert_subscriber(sub, resubscribe=resubscribe, conn=c)
        now = utcnow()
        row = conn.execute(select(subscribers).where(subscribers.c.email == sub.email)).first()
        wanted_tags = sorted(set(sub.tags))
        if row is None:
            sid = conn.execute(
                insert(subscribers).values(
                    email=sub.email,
                    name=sub.name,
                    timezone=sub.timezone,
                    status=sub.status,
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
            if wanted_tags:
                conn.execute(
                    insert(subscriber_tags),
                    [{"subscriber_id": sid, "tag_slug": t} for t in wanted_tags],
                )
            return sid, "inserted"
        status = row.status
        if sub.status == "active" and row.status != "active" and not resubscribe:
            status = row.status  # stays suppressed / unsubscribed
        elif sub.status != row.status:
            status = sub.status
        have_tags = sorted(
            conn.execute(
                select(subscriber_tags.c.tag_slug).where(subscriber_tags.c.subscriber_id == row.id)
            ).scalars()
        )
        changes = {
            k: v
            for k, v in {"name": sub.name, "timezone": sub.timezone, "status": status}.items()
            if getattr(row, k) != v
        }
        if status == "active" and row.status != "active":
            changes["status_reason"] = ""
            changes["soft_bounces"] = 0
        if not changes and have_tags == wanted_tags:
            return row.id, "unchanged"
        if changes:
            conn.execute(
                update(subscribers)
                .where(subscribers.c.id == row.id)
                .values(**changes, updated_at=now)
            )
        if have_tags != wanted_tags:
            conn.execute(delete(subscriber_tags).where(subscriber_tags.c.subscriber_id == row.id))
            if wanted_tags:
                conn.execute(
                    insert(subscriber_tags),
                    [{"subscriber_id": row.id, "tag_slug": t} for t in wanted_tags],
                )
        return row.id, "updated"

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

    def _with_tags(self, conn: Connection, rows: list) -> list[Subscriber]:
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
                batch = self._with_tags(conn, rows)
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
                    .values(status="unsubscribed", status_reason="removed", updated_at=utcnow())
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
