"""Rates per date, currency and source."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, func, insert, select, update

from newsletter.models import Rate
from newsletter.store.base import StoreBase, utcnow
from newsletter.store.schema import rates


def _to_rate(r: Row[Any]) -> Rate:
    return Rate(
        currency=r.currency,
        quote=r.quote,
        value=Decimal(r.value),
        rate_date=r.rate_date,
        source=r.source,
        change_pct=Decimal(r.change_pct) if r.change_pct is not None else None,
        digits=r.digits,
    )


class RateQueries(StoreBase):
    def save_rates(self, items: Iterable[Rate]) -> int:
        """Store rates; a rate already stored for its day and source is overwritten."""
        n = 0
        now = utcnow()
        with self.begin() as conn:
            for r in items:
                key = (
                    (rates.c.rate_date == r.rate_date)
                    & (rates.c.currency == r.currency)
                    & (rates.c.quote == r.quote)
                    & (rates.c.source == r.source)
                )
                values = {
                    "value": str(r.value),
                    "change_pct": None if r.change_pct is None else str(r.change_pct),
                    "digits": r.digits,
                    "fetched_at": now,
                }
                if not conn.execute(update(rates).where(key).values(**values)).rowcount:
                    conn.execute(
                        insert(rates).values(
                            rate_date=r.rate_date,
                            currency=r.currency,
                            quote=r.quote,
                            source=r.source,
                            **values,
                        )
                    )
                n += 1
        return n

    def previous_rate(self, currency: str, quote: str, source: str, before: date) -> Rate | None:
        """The newest stored rate from ``source`` dated strictly before ``before``."""
        q = (
            select(rates)
            .where(
                (rates.c.currency == currency)
                & (rates.c.quote == quote)
                & (rates.c.source == source)
                & (rates.c.rate_date < before)
            )
            .order_by(rates.c.rate_date.desc())
            .limit(1)
        )
        with self.connect() as conn:
            row = conn.execute(q).first()
        return _to_rate(row) if row else None

    def latest_rate(
        self,
        currency: str,
        quote: str,
        on_or_before: date,
        sources: Sequence[str] | None = None,
        *,
        min_digits: int | None = None,
    ) -> Rate | None:
        """The newest stored rate on or before a date, from ``sources`` (None: any),
        good to at least ``min_digits`` significant digits when given.

        Of several sources with a figure on that newest day, the one listed
        first in ``sources`` wins, else the one fetched last.
        """
        cond = (
            (rates.c.currency == currency)
            & (rates.c.quote == quote)
            & (rates.c.rate_date <= on_or_before)
        )
        if sources is not None:
            if not sources:
                return None
            cond &= rates.c.source.in_(list(sources))
        if min_digits is not None:
            cond &= rates.c.digits >= min_digits
        newest = select(func.max(rates.c.rate_date)).where(cond).scalar_subquery()
        with self.connect() as conn:
            rows = list(
                conn.execute(select(rates).where(cond & (rates.c.rate_date == newest))).all()
            )
        if not rows:
            return None
        rank = {name: i for i, name in enumerate(sources or ())}
        rows.sort(key=lambda r: r.fetched_at, reverse=True)
        rows.sort(key=lambda r: rank.get(r.source, len(rank)))
        return _to_rate(rows[0])
