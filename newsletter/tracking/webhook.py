"""Receiving a signed SendGrid event batch: verify, normalize, store, apply."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from newsletter.audience.privacy import erase_forgotten
from newsletter.config import Config
from newsletter.store import Store
from newsletter.store.events import RecordResult
from newsletter.tracking import sendgrid

logger = logging.getLogger(__name__)


@dataclass
class WebhookReport:
    result: RecordResult
    #: array items that were not event objects
    invalid: int = 0

    def as_dict(self) -> dict[str, int]:
        return {**self.result.as_dict(), "invalid": self.invalid}


def ingest_sendgrid(
    store: Store, cfg: Config, body: bytes, *, received_at: datetime | None = None
) -> WebhookReport:
    """Store and apply one (already verified) SendGrid event batch.

    Returns only once the events are committed. Raises InputError when the
    body is not a JSON array.
    """
    events, invalid = sendgrid.parse_batch(body, received_at or datetime.now(UTC))
    # an address erased on request is not stored again by a late event
    erase_forgotten(store, cfg.secrets.secret_key, events)
    result = store.record_events(events, soft_bounce_limit=cfg.webhook.soft_bounce_limit)
    logger.info(
        "webhook: %d events, %d stored, %d duplicates, %d unmatched, %d suppressed",
        result.received,
        result.stored,
        result.duplicates,
        result.unmatched,
        result.suppressed,
    )
    return WebhookReport(result=result, invalid=invalid)
