"""Access and erasure requests: everything stored about a person, and forgetting them.

``forget`` erases the address, name, time zone, tags, subscriptions and
consent records, blanks the address in past deliveries and provider events
(whose raw payloads go too), and keeps one keyed hash of the address
(HMAC-SHA256 with NEWSLETTER_SECRET_KEY) so that an import or ``subscribers
add`` recognises it and does not quietly subscribe the person again. A
confirmed signup through the form is the person's own new consent and lifts
the marker.
"""

from __future__ import annotations

import logging
from typing import Any

from newsletter.audience.subscribers import normalize_email
from newsletter.audience.tokens import address_hash
from newsletter.errors import ConfigError, NotFoundError
from newsletter.store import Store

logger = logging.getLogger(__name__)


def person_record(store: Store, email: str) -> dict[str, Any]:
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
