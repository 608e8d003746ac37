"""Central Bank of Uzbekistan: ``json/all/YYYY-MM-DD/``, JSON.

A list of ``{"Ccy": "USD", "Nominal": "1", "Rate": "12194.21", "Diff": "-16.5",
"Date": "01.04.2026", …}``: UZS per ``Nominal`` units, with the day change in
``Diff``. Its TMT is a market cross far off the 3.5 peg (4037.68 UZS on
1 April 2026, i.e. 0.331 TMT/USD), which is why the starter config asks the
peg, not CBU, for TMT.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import date
from typing import Any

from newsletter.i18n import N_
from newsletter.rates.providers.base import (
    Quote,
    Quotes,
    RatesProvider,
    dotted_date,
    number,
    positive,
    read_items,
)

logger = logging.getLogger(__name__)


class CbuProvider(RatesProvider):
    name = "cbu"
    home = "UZS"
    label = N_("Central Bank of Uzbekistan")
    default_url = "https://cbu.uz/en/arkhiv-kursov-valyut/json"

    def fetch(self, day: date) -> Quotes:
        url = f"{self.base_url}/all/{day:%Y-%m-%d}/"
        body = self.download(url)
        with self.garbage(url):
            items = json.loads(body.decode("utf-8-sig"))
            if not isinstance(items, list):
                raise ValueError(f"expected a JSON list, got {type(items).__name__}")
            dated = [(dotted_date(i.get("Date"), "Date"), i) for i in items if isinstance(i, dict)]
            if not dated:
                raise ValueError("no rates in the list")
            # every entry carries its own date; they agree in a sound answer
            published = Counter(d for d, _ in dated).most_common(1)[0][0]
            odd = sorted({i.get("Ccy", "?") for d, i in dated if d != published})
            if odd:
                logger.warning("rates: %s: %s dated otherwise; left out", url, ", ".join(odd))
            quotes = read_items((i for d, i in dated if d == published), _quote, url)
        return Quotes(source=self.name, base="UZS", day=published, quotes=quotes)


def _quote(item: dict[str, Any]) -> Quote:
    code = str(item.get("Ccy") or "").strip().upper()
    if len(code) != 3:
        raise ValueError(f"Ccy: not a currency code: {code!r}")
    diff = item.get("Diff")
    return Quote(
        currency=code,
        value=positive(number(str(item["Rate"]), f"{code} Rate"), code),
        nominal=positive(number(str(item["Nominal"]), f"{code} Nominal"), code),
        change=number(str(diff), f"{code} Diff") if diff not in (None, "") else None,
    )
