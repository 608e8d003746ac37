"""Rates providers, one module each; ``PROVIDERS`` maps config names to classes."""

from __future__ import annotations

from newsletter.rates.providers.base import RatesProvider
from newsletter.rates.providers.snapshot import SnapshotProvider

PROVIDERS: dict[str, type[RatesProvider]] = {
    "snapshot": SnapshotProvider,
}

__all__ = ["PROVIDERS", "RatesProvider"]
