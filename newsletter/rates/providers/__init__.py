"""Rates providers, one module each; ``PROVIDERS`` maps config names to classes."""

from __future__ import annotations

from newsletter.rates.providers.base import RatesProvider
from newsletter.rates.providers.cbu import CbuProvider
from newsletter.rates.providers.nbk import NbkProvider
from newsletter.rates.providers.nbkr import NbkrProvider
from newsletter.rates.providers.nbt import NbtProvider
from newsletter.rates.providers.peg import PegProvider
from newsletter.rates.providers.snapshot import SnapshotProvider

PROVIDERS: dict[str, type[RatesProvider]] = {
    cls.name: cls
    for cls in (
        NbtProvider,
        NbkProvider,
        NbkrProvider,
        CbuProvider,
        PegProvider,
        SnapshotProvider,
    )
}

__all__ = ["PROVIDERS", "RatesProvider"]
