"""A bundled offline snapshot: the demo's rates, no network.

The file (JSON) holds USD-based quotes for a few consecutive days:
``{"source": "snapshot", "base": "USD", "days": {"2026-11-27": {"KZT": "510.12", …}}}``
where each value is how many units of the currency one USD buys. The snapshot
serves the newest day on or before the one asked for; being a recording, its
old figures are served (and marked "as of" once stale) rather than refused.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

from newsletter.errors import RatesError
from newsletter.i18n import N_
from newsletter.rates.providers.base import (
    Quote,
    Quotes,
    RatesProvider,
    number,
    positive,
    read_items,
    significant_digits,
)

BUNDLED = Path(__file__).resolve().parents[2] / "samples" / "rates-snapshot.json"


class SnapshotProvider(RatesProvider):
    name = "snapshot"
    label = N_("offline snapshot (sample figures)")
    checks_age = False

    def fetch(self, day: date) -> Quotes:
        path = Path(self.cfg.snapshot) if self.cfg.snapshot else BUNDLED
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise RatesError(f"unreadable rates snapshot: {err}", where=where) from err
        with self.garbage(where):
            data = json.loads(text)
            days = sorted((date.fromisoformat(d), v) for d, v in data["days"].items())
            usable = [(d, v) for d, v in days if d <= day]
            if not usable:
                raise RatesError(f"no snapshot rates on or before {day}", where=where)
            snap_day, values = usable[-1]
            # value = currency units per USD; in a USD base: ``per_usd`` units cost 1 USD
            quotes = read_items(values.items(), _quote, where)
        return Quotes(source=self.name, base="USD", day=snap_day, quotes=quotes)


def _quote(item: tuple[str, object]) -> Quote:
    code, text = item
    per_usd = positive(number(text, code), code)
    return Quote(code, Decimal(1), nominal=per_usd, digits=significant_digits(per_usd))
