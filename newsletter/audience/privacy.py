"""Access and erasure requests: everything stored about a person, and forgetting them.

``forget`` erases the address, name, time zone, tags, subscriptions and
consent records, blanks the address in past deliveries and provider events
(whose raw payloads go too), and keeps one keyed hash of the address
(HMAC-SHA256 with NEWSLETTER_SECRET_KEY) so that an import or ``subscribers
add`` recognises it and does not quietly subscribe the person again. A
confirmed signup through the form is the person's own new consent and lifts
the marker. Provider events that arrive after the erasure (late opens, clicks,
a retried batch) are stored without the address (``erase_forgotten``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from newsletter.audience.subscribers import normalize_email
from newsletter.audience.tokens import address_hash, address_hasher
from newsletter.errors import ConfigError, InputError, NotFoundError
from newsletter.store import Store
from newsletter.store.events import TrackedEvent
from newsletter.store.privacy import PersonRecord

logger = logging.getLogger(__name__)


def person_record(store: Store, email: str) -> PersonRecord:
    """Everything stored about ``email``; NotFoundError when nothing is."""
    address = normalize_email(email)
    found = store.person(address)
    if found is None:
        raise NotFoundError("no such subscriber", where=address)
    return found


def forget(store: Store, secret: str, email: str) -> str:
    """Erase ``email``'s personal data, keep its keyed hash. Returns the address.

    NotFoundError when nothing is stored about it (the hash is kept anyway, so
    a copy in an old CSV file is still recognised).
    """
    if not secret:
        raise ConfigError(
            "NEWSLETTER_SECRET_KEY is not set",
            hint="the erased address is kept only as a hash keyed with it",
        )
    address = normalize_email(email)
    known = store.forget(address, address_hash(secret, address))
    if not known:
        raise NotFoundError(
            "no such subscriber (its hash is kept: imports will skip it)", where=address
        )
    logger.info("erased a subscriber's personal data on request")
    return address


def erase_forgotten(store: Store, secret: str, events: Sequence[TrackedEvent]) -> int:
    """Blank, in place, the events about erased addresses, as ``forget`` blanked the
    ones stored before: the provider keeps reporting opens and clicks of old
    messages (and retries a batch for a day) with the address in each event and
    its raw payload. They are still stored and applied, without it. Returns how
    many were blanked."""
    if not secret or not events or not store.has_forgotten():
        return 0
    hasher = address_hasher(secret)
    hashes: dict[str, str] = {}
    for ev in events:
        if ev.email and ev.email not in hashes:
            try:
                address = normalize_email(ev.email)
            except InputError:
                address = ev.email
            hashes[ev.email] = hasher(address)
    gone = store.forgotten_among(hashes.values())
    erased = 0
    for ev in events:
        if ev.email and hashes[ev.email] in gone:
            ev.erase()
            erased += 1
    if erased:
        logger.info("%d events about erased addresses stored without the address", erased)
    return erased
