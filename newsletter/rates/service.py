"""The rates header of an edition: providers in order, pair by pair, with history.

For each currency the configured providers are tried in order; the first that
has the pair wins and the header names it. Fetched rates are stored per date,
currency and source. When every provider fails for a pair, the last stored
rate is used and marked "as of <date>" once it is older than the configured
age. With nothing stored at all the pair is left out; with no pair at all the
header is empty (and the edition still goes out).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from decimal import Decimal

from newsletter.config import RatesConfig
from newsletter.errors import RatesError
from newsletter.models import Rate, RateLine, RatesHeader
from newsletter.rates import format as fmt
from newsletter.rates.cross import cross_rates
from newsletter.rates.providers import PROVIDERS
from newsletter.rates.providers.base import Quotes
from newsletter.store import Store

logger = logging.getLogger(__name__)


def fetch_all(cfg: RatesConfig, day: date) -> list[Quotes]:
    """Each configured provider's quotes for ``day``, in order; failures are logged."""
    out = []
    for name in cfg.providers:
        cls = PROVIDERS.get(name)
        if cls is None:
            logger.warning("rates: unknown provider %r skipped", name)
            continue
        try:
            out.append(cls(cfg).fetch(day))
        except RatesError as err:
            logger.warning("rates: %s failed: %s", name, err)
    return out


def _change(store: Store, rate: Rate) -> Decimal | None:
    if rate.change_pct is not None:
        return rate.change_pct
    prev = store.previous_rate(rate.currency, rate.quote, rate.source, rate.rate_date)
    if prev is None or prev.value == 0:
        return None
    return (rate.value - prev.value) / prev.value * 100


def build_header(
    store: Store, cfg: RatesConfig, day: date, *, fetch: bool = True, save: bool = True
) -> RatesHeader:
    """Fetch (unless ``fetch`` is False), store (unless ``save`` is False), and
    format the header for ``day``."""
    chosen: dict[str, Rate] = {}
    if fetch:
        for quotes in fetch_all(cfg, day):
            rates = cross_rates(quotes, cfg.currencies, cfg.quote)
            if save:
                store.save_rates(rates.values())
            for cur, rate in rates.items():
                chosen.setdefault(cur, rate)
    header = RatesHeader()
    stale_before = day - timedelta(days=cfg.stale_after_days)
    for cur in cfg.currencies:
        rate = chosen.get(cur) or store.latest_rate(cur, cfg.quote, day)
        if rate is None:
            logger.warning("rates: no %s/%s rate from any provider or the store", cur, cfg.quote)
            continue
        change = _change(store, rate)
        header.items.append(
            RateLine(
                pair=f"{cur}/{cfg.quote}",
                text=fmt.rate_text(
                    cur,
                    cfg.quote,
                    rate.value,
                    digits=cfg.significant_digits,
                    invert_below=cfg.invert_below.get(cur),
                    locale=cfg.locale,
                ),
                change=fmt.percent(change),
                direction=fmt.direction(change),
                source=rate.source,
                rate_date=rate.rate_date,
                as_of=f"as of {fmt.short_date(rate.rate_date)}"
                if rate.rate_date < stale_before
                else "",
            )
        )
    if not header.items:
        logger.warning("rates: no rates at all; the edition goes out without a rates header")
    return header


def header_to_json(header: RatesHeader) -> list[dict[str, str]]:
    return [line.as_dict() for line in header.items]


def header_from_json(data: list[dict[str, str]] | None) -> RatesHeader:
    if not data:
        return RatesHeader()
    return RatesHeader(
        items=[
            RateLine(
                pair=d["pair"],
                text=d["text"],
                change=d["change"],
                direction=d["direction"],
                source=d["source"],
                rate_date=date.fromisoformat(d["date"]),
                as_of=d.get("as_of", ""),
            )
            for d in data
        ]
    )
