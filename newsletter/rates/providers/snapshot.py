"""A bundled offline snapshot: the demo's rates, no network.

The file (JSON) holds USD-based quotes for a few consecutive days:
``{"source": "snapshot", "base": "USD", "days": {"2026-11-27": {"KZT": "510.12", …}}}``
where each value is how many units of the currency one USD buys. The snapshot
serves the newest day on or before the one asked for.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

from newsletter.errors import RatesError
from newsletter.rates.providers.base import Quote, Quotes, RatesProvider

BUNDLED = Path(__file__).resolve().parents[2] / "samples" / "rates-snapshot.json"


class SnapshotProvider(RatesProvider):
    name = "snapshot"

    def fetch(self, day: date) -> Quotes:
        path = Path(self.cfg.snapshot) if self.cfg.snapshot else BUNDLED
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            days = sorted((date.fromisoformat(d), v) for d, v in data["days"].items())
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise RatesError(f"unreadable rates snapshot: {err}", where=str(path)) from err
        usable = [(d, v) for d, v in days if d <= day]
        if not usable:
            raise RatesError(f"no snapshot rates on or before {day}", where=str(path))
        snap_day, values = usable[-1]
        quotes: dict[str, Quote] = {"USD": Quote("USD", Decimal(1))}
        try:
            # value = currency units per USD; as a quote in USD base: 1 unit costs 1/value USD
            for cur, per_usd in values.items():
                quotes[cur] = Quote(cur, Decimal(1), nominal=Decimal(per_usd))
        except InvalidOperation as err:
            raise RatesError(f"bad number in snapshot for {snap_day}", where=str(path)) from err
        return Quotes(source=self.name, base="USD", day=snap_day, quotes=quotes)
