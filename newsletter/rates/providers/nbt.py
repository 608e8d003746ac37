"""National Bank of Tajikistan: ``export_xml.php?date=YYYY-MM-DD&export=xmlout``, XML.

TJS per ``<Nominal>`` units of each currency (10 KZT = 0.1971 TJS); the day
the figures are for is ``<ValCurs Date="2026-05-18">``. Covers KGS, KZT, UZS,
TMT and USD. No published change: it comes from stored history.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date

from newsletter.i18n import N_
from newsletter.rates.providers.base import (
    Quote,
    Quotes,
    RatesProvider,
    number,
    parse_xml,
    positive,
    read_items,
)


class NbtProvider(RatesProvider):
    name = "nbt"
    home = "TJS"
    label = N_("National Bank of Tajikistan")
    default_url = "https://www.nbt.tj/en/kurs/export_xml.php"

    def fetch(self, day: date) -> Quotes:
        url = f"{self.base_url}?date={day:%Y-%m-%d}&export=xmlout"
        root = parse_xml(self.download(url), url)
        with self.garbage(url):
            if root.tag != "ValCurs":
                raise ValueError(f"root element is <{root.tag}>, not <ValCurs>")
            published = date.fromisoformat((root.get("Date") or "").strip())
            quotes = read_items(root.iter("Valute"), _quote, url)
        return Quotes(source=self.name, base="TJS", day=published, quotes=quotes)


def _quote(item: ET.Element) -> Quote:
    code = (item.findtext("CharCode") or "").strip().upper()
    if len(code) != 3:
        raise ValueError(f"<CharCode>: not a currency code: {code!r}")
    return Quote(
        currency=code,
        value=positive(number(item.findtext("Value"), f"{code} <Value>"), code),
        nominal=positive(number(item.findtext("Nominal"), f"{code} <Nominal>"), code),
    )
