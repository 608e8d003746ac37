"""SendGrid Event Webhook payloads, normalized (after django-anymail's signals.py).

Every SendGrid event maps through :data:`EVENT_TYPES` onto the closed set of
normalized types; anything else is ``unknown``. The raw event is kept beside
the normalized one. Events are matched to deliveries through the custom args
every personalization carries (``newsletter_delivery_id`` and
``newsletter_edition_id``), which SendGrid echoes as top-level keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from newsletter.errors import InputError
from newsletter.states import EventType, SubscriberStatus
from newsletter.store.events import TrackedEvent

logger = logging.getLogger(__name__)

PROVIDER = "sendgrid"

#: the closed set of normalized event types
TYPES = tuple(EventType)

#: SendGrid event -> normalized type
EVENT_TYPES: dict[str, EventType] = {
    "processed": EventType.QUEUED,
    "deferred": EventType.DEFERRED,
    "delivered": EventType.DELIVERED,
    "bounce": EventType.BOUNCED,
    "blocked": EventType.BOUNCED,
    "dropped": EventType.DROPPED,
    "spamreport": EventType.COMPLAINED,
    "unsubscribe": EventType.UNSUBSCRIBED,
    "group_unsubscribe": EventType.UNSUBSCRIBED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
    # a reader re-joined the ASM group on SendGrid's own page: the group unsubscribe
    # is lifted (TrackedEvent.resubscribe); no delivery status changes
    "group_resubscribe": EventType.UNKNOWN,
}

#: dropped reason (lower case) -> the subscriber status it means for the address
DROP_SUPPRESSES: dict[str, SubscriberStatus] = {
    "bounced address": SubscriberStatus.BOUNCED,
    "invalid": SubscriberStatus.BOUNCED,
    "unsubscribed address": SubscriberStatus.UNSUBSCRIBED,
    "spam reporting address": SubscriberStatus.COMPLAINED,
}

DELIVERY_ARG = "newsletter_delivery_id"
EDITION_ARG = "newsletter_edition_id"


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 2**62 else None
    if isinstance(value, str) and value.strip().isdigit():
        n = int(value.strip())
        return n if 0 < n < 2**62 else None
    return None


def _when(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return fallback
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return fallback


def _text(value: Any, limit: int = 2000) -> str:
    if value is None:
        return ""
    return str(value)[:limit]


def event_id(raw: dict[str, Any]) -> str:
    """SendGrid's sg_event_id; a stable digest of the event when it has none."""
    given = raw.get("sg_event_id")
    if isinstance(given, str) and given.strip():
        return given.strip()[:200]
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def normalize(raw: dict[str, Any], received_at: datetime) -> TrackedEvent:
    """One SendGrid event as a :class:`TrackedEvent`. Never raises on odd content."""
    raw_type = _text(raw.get("event"), 50)
    bounce_type = _text(raw.get("type"), 50).lower()
    kind = raw_type.lower()
    if kind == "bounce" and bounce_type == "blocked":
        kind = "blocked"
    ntype = EVENT_TYPES.get(kind, EventType.UNKNOWN)
    email = _text(raw.get("email"), 320).strip().lower()
    reason = _text(raw.get("reason") or raw.get("response"))
    ev = TrackedEvent(
        provider=PROVIDER,
        provider_event_id=event_id(raw),
        type=ntype,
        raw_type=raw_type or "(none)",
        email=email,
        occurred_at=_when(raw.get("timestamp"), received_at),
        raw=raw,
        reason=reason,
        url=_text(raw.get("url"), 4000) if ntype == EventType.CLICKED else "",
        delivery_id=_int(raw.get(DELIVERY_ARG)),
        edition_id=_int(raw.get(EDITION_ARG)),
        message_id=_text(raw.get("sg_message_id"), 500).split(".", 1)[0],
    )
    if kind == "bounce":
        ev.suppress = (SubscriberStatus.BOUNCED, f"hard bounce: {reason}"[:500])
    elif kind in ("blocked", "deferred"):
        ev.soft_bounce = True
    elif kind == "spamreport":
        ev.suppress = (SubscriberStatus.COMPLAINED, "spam report")
    elif kind in ("unsubscribe", "group_unsubscribe"):
        ev.suppress = (SubscriberStatus.UNSUBSCRIBED, kind.replace("_", " "))
    elif kind == "group_resubscribe":
        ev.resubscribe = True
    elif kind == "dropped":
        status = DROP_SUPPRESSES.get(reason.strip().lower())
        if status:
            ev.suppress = (status, f"dropped: {reason}"[:500])
    return ev


def _without_nul(value: Any) -> Any:
    """``value`` (parsed JSON) with every U+0000 in its strings and keys made U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


def parse_batch(body: bytes, received_at: datetime) -> tuple[list[TrackedEvent], int]:
    """The events of one webhook request and how many items were not events.

    InputError when the body is not a JSON array (SendGrid always sends one).
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(f"the body is not JSON: {err}") from None
    if not isinstance(data, list):
        raise InputError("the body is not a JSON array of events")
    if b"\\u0000" in body:
        # PostgreSQL's text and JSON refuse U+0000, and one refused event would fail
        # its whole batch (SendGrid retries it for a day): stored as U+FFFD instead
        data = _without_nul(data)
    events: list[TrackedEvent] = []
    invalid = 0
    for item in data:
        if not isinstance(item, dict):
            invalid += 1
            continue
        events.append(normalize(item, received_at))
    if invalid:
        logger.warning("webhook: %d items were not event objects and were skipped", invalid)
    return events, invalid
