"""Unsubscribe and preference links.

A link carries a token bound to one subscriber and one list (see
:mod:`newsletter.audience.tokens`): a digest's list in its emails, or the
preferences list (``*``) in the welcome email. A forged or altered token, or
one for a list this installation does not send, is refused before the
database is asked anything, so the answer cannot tell whether an address
exists.

Leaving is per digest: the digest's link (and its List-Unsubscribe one-click
POST) leaves that digest only; "unsubscribe from everything" leaves every
digest. Both are idempotent and can be undone from the page that follows.
Leaving through a link marks the newest delivery of that digest unsubscribed
through an event stored once, so the edition's statistics count it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from newsletter.audience.tokens import make_token, read_token
from newsletter.config import Config, DigestConfig
from newsletter.delivery.message import list_id
from newsletter.errors import InputError
from newsletter.models import Subscriber, slugify
from newsletter.states import DeliveryStatus, EventType, SubscriberStatus, SubscriptionStatus
from newsletter.store import Store
from newsletter.store.events import TrackedEvent
from newsletter.store.schema import ALL_DIGESTS
from newsletter.store.subscriptions import effective

logger = logging.getLogger(__name__)

PROVIDER = "newsletter"
#: seconds an unsubscribe waits for the reader's message in flight to be sent
IN_FLIGHT_WAIT = 30.0


@dataclass
class Reader:
    """Whoever holds a valid link."""

    subscriber_id: int
    list_id: str
    #: the digest of the link; None for the preferences link of the welcome email
    digest: DigestConfig | None
    #: None when the subscriber was removed since the link was sent
    subscriber: Subscriber | None


def preferences_url(cfg: Config, subscriber_id: int) -> str:
    token = make_token(cfg.secrets.secret_key, subscriber_id, list_id(cfg, ALL_DIGESTS))
    return f"{cfg.site.public_url.rstrip('/')}/preferences/{token}"


def resolve(cfg: Config, store: Store, token: str) -> Reader:
    """The reader a token speaks for; InputError for any invalid link."""
    sid, lid = read_token(cfg.secrets.secret_key, token)
    digest: DigestConfig | None = None
    if lid != list_id(cfg, ALL_DIGESTS):
        digest = next((d for d in cfg.digests if list_id(cfg, d.name) == lid), None)
        if digest is None:
            raise InputError("invalid or expired link")
    sub = store.get_subscriber(id=sid)
    if sub is not None and sub.status == SubscriberStatus.FORGOTTEN:
        sub = None
    return Reader(sid, lid, digest, sub)


def mask_email(email: str) -> str:
    """``a••••@example.com``: enough to recognise, too little to harvest."""
    local, _, domain = email.partition("@")
    # a fixed number of dots: the length of the address is not shown either
    return f"{local[:1]}••••@{domain}" if domain else "••••"


def active_digests(cfg: Config, store: Store, reader: Reader) -> list[str]:
    """The configured digests this reader gets now, in config order."""
    sub = reader.subscriber
    if sub is None or sub.id is None or sub.status != SubscriberStatus.ACTIVE:
        return []
    subs = store.subscriptions_of(sub.id)
    return [
        d.name
        for d in cfg.digests
        if (s := effective(subs, d.name)) and s.status == SubscriptionStatus.ACTIVE
    ]


def _record_leave(cfg: Config, store: Store, sub: Subscriber, digest: str, how: str) -> int | None:
    """Count the leave in the digest's newest edition; returns that delivery."""
    assert sub.id is not None
    did = store.latest_delivery(sub.id, digest)
    if did is None:
        return None
    ev = TrackedEvent(
        provider=PROVIDER,
        provider_event_id=f"unsubscribe:{did}",
        type=EventType.UNSUBSCRIBED,
        raw_type=f"unsubscribe-{how}"[:50],
        email=sub.email,
        occurred_at=datetime.now(UTC),
        raw={"subscriber_id": sub.id, "list": list_id(cfg, digest), "delivery_id": did, "via": how},
        delivery_id=did,
    )
    store.record_events([ev], soft_bounce_limit=cfg.webhook.soft_bounce_limit)
    return did


def _wait_while_in_flight(store: Store, delivery_id: int) -> None:
    """Answer only once a message of this reader already handed to a sender is out.

    A claim made after the leave committed skips the reader (``left``); one made
    before it is in flight: the answer waits for the provider's answer (at most
    ``IN_FLIGHT_WAIT`` seconds), so nothing reaches the provider after the reader
    was told they left.
    """
    deadline = time.monotonic() + IN_FLIGHT_WAIT
    while store.delivery_status(delivery_id) == DeliveryStatus.CLAIMED:
        if time.monotonic() > deadline:
            logger.warning(
                "delivery %s is still being sent; the unsubscribe answers anyway", delivery_id
            )
            return
        time.sleep(0.02)


def leave(
    cfg: Config, store: Store, reader: Reader, digests: list[str], *, how: str = "link"
) -> list[str]:
    """Leave ``digests`` (configured names only). Returns those that were active."""
    sub = reader.subscriber
    if sub is None or sub.id is None:
        return []  # removed already: there is nobody to stop mailing
    known = [d.name for d in cfg.digests if d.name in digests]
    left = store.leave(sub.id, known)
    in_flight = [_record_leave(cfg, store, sub, d, how) for d in left]
    for did in in_flight:
        if did is not None:
            _wait_while_in_flight(store, did)
    if left:
        logger.info("subscriber %s left %s via %s", sub.id, ", ".join(left), how)
    return left


def leave_all(cfg: Config, store: Store, reader: Reader) -> list[str]:
    """Leave every digest; the "*" subscription too, so a digest added later stays off."""
    left = leave(cfg, store, reader, [d.name for d in cfg.digests], how="everything")
    sub = reader.subscriber
    if sub is not None and sub.id is not None:
        left += store.leave(sub.id, [ALL_DIGESTS])
    return left


def undo(cfg: Config, store: Store, reader: Reader, digests: list[str]) -> list[str]:
    """Join ``digests`` again (configured names only). Returns those joined."""
    sub = reader.subscriber
    if sub is None or sub.id is None or sub.status != SubscriberStatus.ACTIVE:
        return []
    known = [d.name for d in cfg.digests if d.name in digests]
    if ALL_DIGESTS in digests and any(
        s.digest == ALL_DIGESTS for s in store.subscriptions_of(sub.id)
    ):
        known.append(ALL_DIGESTS)  # everything, as before: digests added later too
    joined = store.rejoin(sub.id, known, how="undo")
    if joined:
        logger.info("subscriber %s rejoined %s", sub.id, ", ".join(joined))
    return joined


@dataclass(frozen=True)
class Choice:
    """A checkbox of the preferences page."""

    value: str
    name: str
    checked: bool


def topic_names(cfg: Config, store: Store) -> dict[str, str]:
    """Every topic the digests cover, slug -> display name, once each, in config order.

    A tag the config spells as a name ("Kazakhstan") shows that spelling; one given
    as a slug shows the name the articles use.
    """
    stored = {t.slug: t.name for t, _ in store.list_tags()}
    names: dict[str, str] = {}
    for d in cfg.digests:
        for tag in d.tags:
            slug = slugify(tag)
            if slug and slug not in names:
                spelled = " ".join(tag.split())
                names[slug] = stored.get(slug, spelled) if spelled == slug else spelled
    return names


def preferences(cfg: Config, store: Store, reader: Reader) -> tuple[list[Choice], list[Choice]]:
    """(digests, topics) as checkboxes: what the reader gets now is checked."""
    sub = reader.subscriber
    if sub is None or sub.id is None:
        return [], []
    subs = store.subscriptions_of(sub.id)
    active = set(active_digests(cfg, store, reader))
    mine: set[str] = set()
    for d in active:
        s = effective(subs, d)
        if s is not None:
            mine.update(s.topics if s.topics is not None else sub.tags)
    names = topic_names(cfg, store)
    stored = {t.slug: t.name for t, _ in store.list_tags()}
    for slug in sorted(mine - set(names)):
        names[slug] = stored.get(slug, slug.replace("-", " ").title())
    digests = [Choice(d.name, d.title, d.name in active) for d in cfg.digests]
    topics = [Choice(slug, name, slug in mine) for slug, name in names.items()]
    return digests, topics


@dataclass
class Saved:
    digests: list[str]
    topics: list[str]
    left: list[str]


def save_preferences(
    cfg: Config, store: Store, reader: Reader, digests: list[str], topics: list[str]
) -> Saved:
    """Get exactly the chosen digests, each with the chosen topics (none chosen:
    everything the digest covers). Unknown values are ignored."""
    sub = reader.subscriber
    if sub is None or sub.id is None or sub.status != SubscriberStatus.ACTIVE:
        return Saved([], [], [])
    offered_digests, offered_topics = preferences(cfg, store, reader)
    want = [c.value for c in offered_digests if c.value in digests]
    chosen = sorted({slugify(t) for t in topics} & {c.value for c in offered_topics})
    left = leave(cfg, store, reader, [c.value for c in offered_digests if c.value not in want])
    store.rejoin(sub.id, want, how="preferences")
    store.set_topics(sub.id, want, chosen)
    logger.info(
        "subscriber %s changed preferences (%d digests, %d tags)", sub.id, len(want), len(chosen)
    )
    names = dict((c.value, c.name) for c in offered_topics)
    return Saved(want, [names[t] for t in chosen], left)
