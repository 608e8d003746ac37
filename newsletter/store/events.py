"""Provider events (webhooks) and what they do to deliveries and subscribers."""

from __future__ import annotations

from newsletter.store.base import StoreBase


class EventQueries(StoreBase):
    """Filled by the tracking work: storing events once, status precedence."""
