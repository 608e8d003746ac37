"""National Bank of Kazakhstan: ``get_rates.cfm?fdate=DD.MM.YYYY``, XML.

KZT per ``<quant>`` units of each currency (100 UZS = 3.93 KZT), with the day
change in ``<change>`` ('+0.02', '-2.77'). The answer's ``<date>`` is the day
the figures are for. No TMT.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date

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


class NbkProvider(RatesProvider):
    name = "nbk"
    home = "KZT"
    label = N_("National Bank of Kazakhstan")
    default_url = "https://nationalbank.kz/rss/get_rates.cfm"

    def fetch(self, day: date) -> Quotes:
        url = f"{self.base_url}?fdate={day:%d.%m.%Y}"
        root = parse_xml(self.download(url), url)
        with self.garbage(url):
            if root.tag != "rates":
                raise ValueError(f"root element is <{root.tag}>, not <rates>")
            published = dotted_date(root.findtext("date"), "<date>")
            quotes = read_items(root.iter("item"), _quote, url)
        return Quotes(source=self.name, base="KZT", day=published, quotes=quotes)


def _quote(item: ET.Element) -> Quote:
    code = (item.findtext("title") or "").strip().upper()
    if len(code) != 3:
        raise ValueError(f"<title>: not a currency code: {code!r}")
    change = item.findtext("change")
    return Quote(
        currency=code,
        value=positive(number(item.findtext("description"), f"{code} <description>"), code),
        nominal=positive(number(item.findtext("quant"), f"{code} <quant>"), code),
        change=number(change, f"{code} <change>") if change and change.strip() else None,
    )
