"""National Bank of the Kyrgyz Republic: ``daily.xml`` plus ``weekly.xml``.

Both are windows-1251 XML with comma decimals ('87,4500'): KGS per
``<Nominal>`` units. ``daily.xml`` has USD, EUR, CNY, KZT and RUB and is dated
with the day its official rates take effect, which NBKR publishes the
afternoon before: so an answer dated one day after the asked day is accepted.
``weekly.xml`` has the rest (TJS, UZS, TMT …), each valid ``<ValidFor>`` days
from its date; only those still valid on the daily date are used. Neither file
takes a date: NBKR cannot answer for past days, and asking for one fails as a
wrong-date answer.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from datetime import date, timedelta

from newsletter.errors import RatesError
from newsletter.i18n import N_
from newsletter.rates.providers.base import (
    Quote,
    Quotes,
    RatesProvider,
    dotted_date,
    number,
    parse_xml,
    positive,
    read_items,
)

logger = logging.getLogger(__name__)


class NbkrProvider(RatesProvider):
    name = "nbkr"
    home = "KGS"
    label = N_("National Bank of the Kyrgyz Republic")
    default_url = "https://www.nbkr.kg/XML"
    days_ahead = 1
    archive = False

    def fetch(self, day: date) -> Quotes:
        published, quotes, _ = self._read(f"{self.base_url}/daily.xml")
        try:
            weekly_day, weekly, valid_for = self._read(f"{self.base_url}/weekly.xml")
        except RatesError as err:
            # the daily file alone still gives KGS/USD and KZT/USD
            logger.warning("rates: nbkr weekly rates unavailable: %s", err)
            weekly_day, weekly, valid_for = published, {}, {}
        for code, q in weekly.items():
            if code in quotes:
                continue
            if weekly_day <= published < weekly_day + timedelta(days=valid_for[code]):
                quotes[code] = q
            else:
                logger.warning(
                    "rates: nbkr weekly %s of %s is not valid on %s; left out",
                    code,
                    weekly_day,
                    published,
                )
        return Quotes(source=self.name, base="KGS", day=published, quotes=quotes)

    def _read(self, url: str) -> tuple[date, dict[str, Quote], dict[str, int]]:
        root = parse_xml(self.download(url), url)
        valid_for: dict[str, int] = {}

        def read(item: ET.Element) -> Quote:
            q = _quote(item)
            valid_for.setdefault(q.currency, _days(item.findtext("ValidFor"), q.currency))
            return q

        with self.garbage(url):
            if root.tag != "CurrencyRates":
                raise ValueError(f"root element is <{root.tag}>, not <CurrencyRates>")
            published = dotted_date(root.get("Date"), "CurrencyRates Date")
            quotes = read_items(root.iter("Currency"), read, url)
        return published, quotes, valid_for


def _quote(item: ET.Element) -> Quote:
    code = (item.get("ISOCode") or "").strip().upper()
    if len(code) != 3:
        raise ValueError(f"ISOCode: not a currency code: {code!r}")
    return Quote(
        currency=code,
        value=positive(number(item.findtext("Value"), f"{code} <Value>"), code),
        nominal=positive(number(item.findtext("Nominal"), f"{code} <Nominal>"), code),
    )


def _days(text: str | None, code: str) -> int:
    """<ValidFor>: days the weekly figure holds; the daily file has none (one day)."""
    if text is None or not text.strip():
        return 1
    days = int(text.strip())
    if days < 1:
        raise ValueError(f"{code} <ValidFor>: must be at least 1, got {days}")
    return days
