"""What is stored about one person, and erasing it on request."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, insert, select

from newsletter.store.audience import erase_subscriber
from newsletter.store.base import StoreBase, utcnow
from newsletter.store.deliveries import deliveries_of, erase_delivery_addresses
from newsletter.store.events import erase_events
from newsletter.store.schema import (
    deliveries,
    editions,
    events,
    forgotten,
    subscriber_tags,
    subscribers,
    subscriptions,
)
from newsletter.store.subscriptions import delete_subscriptions

#: one stored row, column -> value (times as ISO 8601 text)
StoredRow = dict[str, Any]


@dataclass(frozen=True)
class PersonRecord:
    """Everything stored about one person: the answer to an access request.

    Each row is every column the table has, by name, in the table's order: an
    access request must show all of it, a column added later included, so the
    rows are not narrowed to the fields a dataclass would name.
    """

    subscriber: StoredRow
    #: the subscriber's tag slugs, sorted
    tags: list[str]
    #: by digest; without the row's own id and subscriber_id
    subscriptions: list[StoredRow]
    #: by id; each with its edition's ``digest`` and ``period`` last
    deliveries: list[StoredRow]
    #: provider events about the address or its deliveries, oldest first
    events: list[StoredRow]

    def as_dict(self) -> dict[str, Any]:
        """The record as JSON takes it (``subscribers show --json``)."""
        return asdict(self)


def _plain(row: Any) -> StoredRow:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row._mapping.items()}


class PrivacyQueries(StoreBase):
    def person(self, email: str) -> PersonRecord | None:
        """Every row about ``email``: subscriber, tags, subscriptions, deliveries, events."""
        with self.connect() as conn:
            sub = conn.execute(select(subscribers).where(subscribers.c.email == email)).first()
            if sub is None:
                return None
            tags = [
                t
                for (t,) in conn.execute(
                    select(subscriber_tags.c.tag_slug)
                    .where(subscriber_tags.c.subscriber_id == sub.id)
                    .order_by(subscriber_tags.c.tag_slug)
                )
            ]
            subs = conn.execute(
                select(subscriptions)
                .where(subscriptions.c.subscriber_id == sub.id)
                .order_by(subscriptions.c.digest)
            ).all()
            dels = conn.execute(
                select(deliveries, editions.c.digest, editions.c.period)
                .join(editions, editions.c.id == deliveries.c.edition_id)
                .where(deliveries.c.subscriber_id == sub.id)
                .order_by(deliveries.c.id)
            ).all()
            evs = conn.execute(
                select(events)
                .where((events.c.email == email) | events.c.delivery_id.in_(deliveries_of(sub.id)))
                .order_by(events.c.occurred_at, events.c.id)
            ).all()
        return PersonRecord(
            subscriber=_plain(sub),
            tags=tags,
            subscriptions=[
                {k: v for k, v in _plain(s).items() if k not in ("id", "subscriber_id")}
                for s in subs
            ],
            deliveries=[_plain(d) for d in dels],
            events=[_plain(e) for e in evs],
        )

    def forget(self, email: str, address_hash: str) -> bool:
        """Erase ``email``'s personal data, keep ``address_hash``. False when unknown."""
        now = utcnow()
        with self.begin() as conn:
            sub = conn.execute(select(subscribers.c.id).where(subscribers.c.email == email)).first()
            if not conn.execute(
                select(forgotten.c.address_hash).where(forgotten.c.address_hash == address_hash)
            ).first():
                conn.execute(
                    insert(forgotten), [{"address_hash": address_hash, "forgotten_at": now}]
                )
            # each domain erases its own rows, in this one transaction
            dels = erase_delivery_addresses(conn, sub.id) if sub else []
            erase_events(conn, email, sub.id if sub else None)
            if sub is None:
                return False
            delete_subscriptions(conn, sub.id)
            erase_subscriber(conn, sub.id, now, keep=bool(dels))
            return True

    def forgotten_among(self, hashes: Iterable[str]) -> set[str]:
        """Which of ``hashes`` belong to erased addresses."""
        wanted = list(dict.fromkeys(hashes))
        found: set[str] = set()
        with self.connect() as conn:
            for start in range(0, len(wanted), 500):
                found.update(
                    h
                    for (h,) in conn.execute(
                        select(forgotten.c.address_hash).where(
                            forgotten.c.address_hash.in_(wanted[start : start + 500])
                        )
                    )
                )
        return found

    def has_forgotten(self) -> bool:
        with self.connect() as conn:
            return conn.execute(select(forgotten.c.address_hash).limit(1)).first() is not None

    def unforget(self, address_hash: str) -> None:
        """The person gave consent again (a confirmed signup): the marker goes."""
        with self.begin() as conn:
            conn.execute(delete(forgotten).where(forgotten.c.address_hash == address_hash))
