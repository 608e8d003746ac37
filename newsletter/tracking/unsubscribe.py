"""Unsubscribe and preference links.

A link carries a token bound to one subscriber and one list (see
:mod:`newsletter.audience.tokens`). A forged or altered token, or one for a
list this installation does not send, is refused before the database is
asked anything, so the answer cannot tell whether an address exists.

Unsubscribing is idempotent: the subscriber becomes ``unsubscribed`` (a
stronger suppression such as ``complained`` is kept) and the newest delivery
of that list is marked unsubscribed through an event stored once, so the
edition's statistics count it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from newsletter.audience.tokens import read_token
from newsletter.config import Config, DigestConfig
from newsletter.delivery.message import list_id
from newsletter.errors import InputError
from newsletter.models import Subscriber, slugify
from newsletter.store import Store
from newsletter.tracking.events import TrackedEvent

logger = logging.getLogger(__name__)

PROVIDER = "newsletter"
#: seconds an unsubscribe waits for the reader's message in flight to be sent
IN_FLIGHT_WAIT = 30.0
#: most tags offered on the preferences page besides the digest's own
EXTRA_TOPICS = 12


@dataclass
class Reader:
    """Whoever holds a valid link."""

    subscriber_id: int
    list_id: str
    digest: DigestConfig
    #: None when the subscriber was removed since the link was sent
    subscriber: Subscriber | None


def resolve(cfg: Config, store: Store, token: str) -> Reader:
    """The reader a token speaks for; InputError for any invalid link."""
    sid, lid = read_token(cfg.secrets.secret_key, token)
    for d in cfg.digests:
        if list_id(cfg, d.name) == lid:
            return Reader(sid, lid, d, store.get_subscriber(id=sid))
    raise InputError("invalid or expired link")


def mask_email(email: str) -> str:
    """``a••••@example.com``: enough to recognise, too little to harvest."""
    local, _, domain = email.partition("@")
    # a fixed number of dots: the length of the address is not shown either
    return f"{local[:1]}••••@{domain}" if domain else "••••"


def unsubscribe(cfg: Config, store: Store, reader: Reader, *, how: str = "link") -> None:
    """Unsubscribe the reader. Doing it again changes nothing."""
    sub = reader.subscriber
    if sub is None or sub.id is None:
        return  # removed already: there is nobody to stop mailing
    reason = f"unsubscribed via {how} ({reader.list_id})"
    did = store.latest_delivery(sub.id, reader.digest.name)
    if did is not None:
        ev = TrackedEvent(
            provider=PROVIDER,
            provider_event_id=f"unsubscribe:{did}",
            type="unsubscribed",
            raw_type=f"unsubscribe-{how}"[:50],
            email=sub.email,
            occurred_at=datetime.now(UTC),
            raw={"subscriber_id": sub.id, "list": reader.list_id, "delivery_id": did, "via": how},
            delivery_id=did,
            suppress=("unsubscribed", reason),
        )
        store.record_events([ev], soft_bounce_limit=cfg.webhook.soft_bounce_limit)
    # also when the event was stored before and the address was re-subscribed since
    if store.suppress_subscriber(sub.id, "unsubscribed", reason):
        logger.info("subscriber %s unsubscribed from %s", sub.id, reader.list_id)
    if did is not None:
        _wait_while_in_flight(store, did)


def _wait_while_in_flight(store: Store, delivery_id: int) -> None:
    """Answer only once a message of this reader already handed to a sender is out.

    A claim made after the unsubscribe committed skips the reader (``left``); one
    made before it is in flight: the answer waits for the provider's answer (at
    most ``IN_FLIGHT_WAIT`` seconds), so nothing reaches the provider after the
    reader was told they are unsubscribed.
    """
    deadline = time.monotonic() + IN_FLIGHT_WAIT
    while store.delivery_status(delivery_id) == "claimed":
        if time.monotonic() > deadline:
            logger.warning(
                "delivery %s is still being sent; the unsubscribe answers anyway", delivery_id
            )
            return
        time.sleep(0.02)


@dataclass(frozen=True)
class Topic:
    slug: str
    name: str
    checked: bool


def topics(store: Store, reader: Reader) -> list[Topic]:
    """The tags a reader can choose from: the digest's, their own, the most used."""
    names = {t.slug: t.name for t, _ in store.list_tags()}
    mine = set(reader.subscriber.tags if reader.subscriber else [])
    offered: list[str] = []
    for slug in [*reader.digest.tags, *sorted(mine), *list(names)[:EXTRA_TOPICS]]:
        if slug and slug not in offered:
            offered.append(slug)
    return [Topic(s, names.get(s, s.replace("-", " ").title()), s in mine) for s in offered]


def save_preferences(store: Store, reader: Reader, chosen: list[str]) -> list[str]:
    """Keep only the chosen topics (none chosen: everything the digest covers)."""
    sub = reader.subscriber
    if sub is None or sub.id is None:
        return []
    allowed = {t.slug for t in topics(store, reader)}
    tags = sorted({slugify(c) for c in chosen} & allowed)
    store.set_subscriber_tags(sub.id, tags)
    logger.info("subscriber %s changed preferences (%d tags)", sub.id, len(tags))
    return tags
