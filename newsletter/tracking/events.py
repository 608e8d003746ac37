"""A provider event, normalized: what the store records and acts on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass
class TrackedEvent:
    """One provider event, normalized, ready to store."""

    provider: str
    provider_event_id: str
    type: str
    raw_type: str
    email: str
    occurred_at: datetime
    raw: dict[str, Any]
    reason: str = ""
    url: str = ""
    #: from our custom args; checked against the deliveries table before use
    delivery_id: int | None = None
    edition_id: int | None = None
    #: the provider's message id, to match events that carry no custom args
    message_id: str = ""
    #: (subscriber status, reason) when the address must never be mailed again
    suppress: tuple[str, str] | None = None
    #: a temporary failure (deferred, blocked) that counts toward the soft-bounce limit
    soft_bounce: bool = False
    #: the reader re-joined SendGrid's unsubscribe group: lift that group's unsubscribe
    resubscribe: bool = False
