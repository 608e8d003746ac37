"""Cross rates through whatever base currency a provider quotes, in Decimal.

A provider quotes "``nominal`` units of XXX cost ``value`` units of its base"
(NBK: 100 UZS = 3.93 KZT). XXX/USD is then the price of one XXX over the price
of one USD, both in the base: (3.93 / 100) / (478.77 / 1). Where the provider
also publishes each price's day change, the same arithmetic on yesterday's
prices (``value - change``) gives the pair's published change.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

from newsletter.errors import RatesError
from newsletter.models import Rate
from newsletter.rates.providers.base import PRECISION, Quotes, significant_digits


def unit_price(quotes: Quotes, currency: str) -> Decimal:
    """Base-currency units for one unit of ``currency``."""
    if currency == quotes.base:
        return Decimal(1)
    q = quotes.quotes.get(currency)
    if q is None:
        raise RatesError(f"{quotes.source} has no {currency} on {quotes.day}")
    if q.value <= 0 or q.nominal <= 0:
        raise RatesError(f"{quotes.source} gives a non-positive {currency} rate on {quotes.day}")
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return q.value / q.nominal


def previous_unit_price(quotes: Quotes, currency: str) -> Decimal | None:
    """Yesterday's price of one unit, from the provider's published change; None if unknown."""
    if currency == quotes.base:
        return Decimal(1)
    q = quotes.quotes.get(currency)
    if q is None or q.change is None:
        return None
    with localcontext() as ctx:
        ctx.prec = PRECISION
        before = q.value - q.change
        return before / q.nominal if before > 0 else None


def cross_rate(quotes: Quotes, currency: str, quote: str) -> Decimal:
    """How many ``quote`` one unit of ``currency`` is worth (XXX/USD)."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return unit_price(quotes, currency) / unit_price(quotes, quote)


def published_change(quotes: Quotes, currency: str, quote: str) -> Decimal | None:
    """The pair's day change in percent from the provider's own published changes."""
    before_cur = previous_unit_price(quotes, currency)
    before_quote = previous_unit_price(quotes, quote)
    if before_cur is None or before_quote is None:
        return None
    with localcontext() as ctx:
        ctx.prec = PRECISION
        before = before_cur / before_quote
        return (cross_rate(quotes, currency, quote) / before - 1) * 100


def cross_rates(quotes: Quotes, currencies: list[str], quote: str) -> dict[str, Rate]:
    """The XXX/``quote`` rates ``quotes`` can give; currencies it lacks are left out."""
    out = {}
    for cur in currencies:
        try:
            value = cross_rate(quotes, cur, quote)
        except RatesError:
            continue
        out[cur] = Rate(
            currency=cur,
            quote=quote,
            value=value,
            rate_date=quotes.day,
            source=quotes.source,
            change_pct=published_change(quotes, cur, quote),
            digits=precision(quotes, cur, quote),
        )
    return out


def precision(quotes: Quotes, currency: str, quote: str) -> int:
    """Significant digits the published figures behind XXX/``quote`` carry.

    A cross rate is no more precise than its least precise leg: NBKR's
    '0,0073' KGS per UZS makes UZS/USD good to 2 digits, whatever the division
    prints. Nominals are exact counts and do not limit it.
    """
    legs = [quotes.quotes[c] for c in (currency, quote) if c != quotes.base]
    return min((q.digits or significant_digits(q.value) for q in legs), default=PRECISION)
