"""Cross rates through whatever base currency a provider quotes, in Decimal."""

from __future__ import annotations

from decimal import Decimal, localcontext

from newsletter.errors import RatesError
from newsletter.models import Rate
from newsletter.rates.providers.base import Quotes


def unit_price(quotes: Quotes, currency: str) -> Decimal:
    """Base-currency units for one unit of ``currency``."""
    if currency == quotes.base:
        return Decimal(1)
    q = quotes.quotes.get(currency)
    if q is None:
        raise RatesError(f"{quotes.source} has no {currency} on {quotes.day}")
    if q.value <= 0 or q.nominal <= 0:
        raise RatesError(f"{quotes.source} gives a non-positive {currency} rate on {quotes.day}")
    return q.value / q.nominal


def cross_rate(quotes: Quotes, currency: str, quote: str) -> Decimal:
    """How many ``quote`` one unit of ``currency`` is worth (XXX/USD)."""
    with localcontext() as ctx:
        ctx.prec = 28
        return unit_price(quotes, currency) / unit_price(quotes, quote)


def cross_rates(quotes: Quotes, currencies: list[str], quote: str) -> dict[str, Rate]:
    """The XXX/``quote`` rates ``quotes`` can give; currencies it lacks are left out."""
    out = {}
    for cur in currencies:
        try:
            value = cross_rate(quotes, cur, quote)
        except RatesError:
            continue
        out[cur] = Rate(
            currency=cur, quote=quote, value=value, rate_date=quotes.day, source=quotes.source
        )
    return out
