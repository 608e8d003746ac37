"""The contract of a rates provider.

``fetch(day)`` returns what the provider publishes for ``day`` as
:class:`Quote` objects: how many units of the provider's base currency one
``nominal`` of a currency costs. Turning quotes into XXX/USD cross rates is
shared code (:func:`newsletter.rates.cross.cross_rates`), not each provider's.
A provider that fails raises :class:`~newsletter.errors.RatesError`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from newsletter.config import RatesConfig


@dataclass(frozen=True)
class Quote:
    """``nominal`` units of ``currency`` cost ``value`` units of the provider's base."""

    currency: str
    value: Decimal
    nominal: Decimal = Decimal(1)
    #: the provider's own published day change of ``value``, in base units, if any
    change: Decimal | None = None

    @property
    def per_unit(self) -> Decimal:
        return self.value / self.nominal


@dataclass(frozen=True)
class Quotes:
    source: str
    base: str
    day: date
    quotes: dict[str, Quote]


class RatesProvider(abc.ABC):
    #: the name used in the config and shown in the header
    name: str = ""

    def __init__(self, cfg: RatesConfig):
        self.cfg = cfg

    @abc.abstractmethod
    def fetch(self, day: date) -> Quotes:
        """The provider's quotes for ``day``; RatesError when it has none."""
