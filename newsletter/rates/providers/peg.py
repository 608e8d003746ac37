"""A fixed peg: TMT has been 3.50 per USD since 1 January 2015.

No network. The pegs come from ``[rates] pegs`` (units per 1 USD) and are
quoted for whatever day is asked, with a published change of zero: a peg does
not move. Meant as the fallback (or the only source) for a pegged currency no
central bank publishes in a machine-readable form.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from newsletter.errors import RatesError
from newsletter.i18n import N_
from newsletter.rates.providers.base import PRECISION, Quote, Quotes, RatesProvider


class PegProvider(RatesProvider):
    name = "peg"
    label = N_("fixed peg")

    def fetch(self, day: date) -> Quotes:
        if not self.cfg.pegs:
            raise RatesError("no pegs configured", where="rates.pegs")
        quotes = {
            # a peg is exact: no published digits limit it
            cur: Quote(
                cur,
                Decimal(1),
                nominal=Decimal(str(per_usd)),
                change=Decimal(0),
                digits=PRECISION,
            )
            for cur, per_usd in self.cfg.pegs.items()
        }
        return Quotes(source=self.name, base="USD", day=day, quotes=quotes)
