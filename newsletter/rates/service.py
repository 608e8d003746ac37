"""The rates header of an edition: providers in order, pair by pair, with history.

For each currency the pair's providers (``[rates.pairs.XXX] providers``, else
``[rates] providers``) are tried in order, each fetched at most once per run;
the first that has the pair wins and the header names it. A provider fails
(and the next is tried) on a timeout, an HTTP error, a body that does not
parse, or an answer for the wrong day: dated after the asked day (beyond what
the provider is known to publish ahead) or older than ``stale_after_days``.
A provider whose published figures carry fewer significant digits than the
pair shows is passed over while a more precise one answers.

Every rate fetched is stored per date, currency and source. The change is the
provider's own published one where it has it (cross-checked against the
stored previous business day, with a warning when they disagree), else the
change since the previous business day stored from the same source, fetched
from that provider when history has a hole. When every provider fails for a
pair the last stored rate is used, marked "as of <date>" once older than
``stale_after_days``. With nothing stored the pair is left out; with no pair
at all the header is empty, a warning is logged, and the edition still goes
out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, localcontext

from newsletter.config import RatesConfig
from newsletter.errors import RatesError
from newsletter.models import Rate, RateLine, RatesHeader
from newsletter.rates import format as fmt
from newsletter.rates.cross import PRECISION, cross_rates, precision
from newsletter.rates.providers import PROVIDERS
from newsletter.rates.providers.base import Quotes, RatesProvider
from newsletter.store import Store

logger = logging.getLogger(__name__)

#: a stored figure at most this many days older is "the previous business day"
#: (Friday before Monday, plus one holiday); a wider gap is a hole in history,
#: e.g. a weekly job's last run, and would pass a week's move off as a day's
PREVIOUS_DAY_WINDOW = 4
#: a provider asked for the day before may answer with a figure this much older
#: (its own previous publication, across weekends and holidays)
PREVIOUS_FETCH_WINDOW = 7
#: published and stored-history changes further apart than this (percentage
#: points: half the last printed digit) disagree
CROSS_CHECK_TOLERANCE = Decimal("0.005")


def check_day(provider: RatesProvider, quotes: Quotes, day: date, stale_after_days: int) -> None:
    """RatesError when ``quotes`` answer for a day other than an acceptable one."""
    if quotes.day > day + timedelta(days=provider.days_ahead):
        raise RatesError(f"answered for {quotes.day}, asked for {day}", where=provider.name)
    if provider.checks_age and (day - quotes.day).days > stale_after_days:
        raise RatesError(
            f"answered with figures of {quotes.day} when asked for {day}: "
            f"older than stale_after_days ({stale_after_days})",
            where=provider.name,
        )


def change_between(value: Decimal, before: Decimal) -> Decimal:
    """The change from ``before`` to ``value``, in percent."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return (value / before - 1) * 100


def source_label(name: str) -> str:
    cls = PROVIDERS.get(name)
    return cls.label if cls is not None and cls.label else name


@dataclass
class _Answer:
    quotes: Quotes
    rates: dict[str, Rate]


@dataclass
class _Run:
    """One header's worth of fetching: each provider asked at most once per day."""

    store: Store
    cfg: RatesConfig
    day: date
    save: bool
    answers: dict[tuple[str, date], _Answer | None] = field(default_factory=dict)
    #: rates fetched in this run, so an unsaved run (a preview) still has them
    fetched: list[Rate] = field(default_factory=list)

    def answer(self, name: str) -> _Answer | None:
        key = (name, self.day)
        if key not in self.answers:
            self.answers[key] = self._fetch(name, self.day, previous_of=None)
        return self.answers[key]

    def previous_answer(self, name: str, rate_date: date) -> _Answer | None:
        key = (name, rate_date - timedelta(days=1))
        if key not in self.answers:
            self.answers[key] = self._fetch(name, key[1], previous_of=rate_date)
        return self.answers[key]

    def _fetch(self, name: str, day: date, *, previous_of: date | None) -> _Answer | None:
        provider = PROVIDERS[name](self.cfg)
        try:
            quotes = provider.fetch(day)
            if previous_of is None:
                check_day(provider, quotes, day, self.cfg.stale_after_days)
            elif not 0 < (previous_of - quotes.day).days <= PREVIOUS_FETCH_WINDOW:
                raise RatesError(
                    f"asked for the day before {previous_of}, answered for {quotes.day}",
                    where=name,
                )
        except RatesError as err:
            if previous_of is None:
                logger.warning("rates: %s failed: %s", name, err)
            else:
                logger.info("rates: no previous day from %s: %s", name, err)
            return None
        rates = cross_rates(quotes, self.cfg.currencies, self.cfg.quote)
        logger.info(
            "rates: %s answered for %s: %s", name, quotes.day, ", ".join(rates) or "no pair"
        )
        self.fetched.extend(rates.values())
        if self.save and rates:
            self.store.save_rates(rates.values())
        return _Answer(quotes, rates)

    def previous(self, rate: Rate) -> Rate | None:
        """The newest figure from the same source before ``rate``'s day, fetched or stored."""
        candidates = [
            r
            for r in self.fetched
            if (r.source, r.currency, r.quote) == (rate.source, rate.currency, rate.quote)
            and r.rate_date < rate.rate_date
        ]
        stored = self.store.previous_rate(rate.currency, rate.quote, rate.source, rate.rate_date)
        if stored is not None:
            candidates.append(stored)
        prev = max(candidates, key=lambda r: r.rate_date, default=None)
        if prev is None or (rate.rate_date - prev.rate_date).days > PREVIOUS_DAY_WINDOW:
            return None
        return prev

    def change(self, rate: Rate, *, live: bool) -> Decimal | None:
        """The day change of ``rate`` in percent, or None when nothing tells it."""
        prev = self.previous(rate)
        if rate.change_pct is not None:
            if prev is not None:
                history = change_between(rate.value, prev.value)
                if abs(history - rate.change_pct) > CROSS_CHECK_TOLERANCE:
                    logger.warning(
                        "rates: %s/%s from %s on %s: published change %s%% disagrees with "
                        "%s%% against the stored figure of %s; showing the published one",
                        rate.currency,
                        rate.quote,
                        rate.source,
                        rate.rate_date,
                        fmt.percent(rate.change_pct).rstrip("%"),
                        fmt.percent(history).rstrip("%"),
                        prev.rate_date,
                    )
            return rate.change_pct
        cls = PROVIDERS.get(rate.source)
        if prev is None and live and cls is not None and cls.archive:
            answer = self.previous_answer(rate.source, rate.rate_date)
            if answer is not None:
                prev = answer.rates.get(rate.currency)
        if prev is None:
            return None
        return change_between(rate.value, prev.value)


def _choose(run: _Run, currency: str, providers: list[str], digits: int) -> Rate | None:
    """The first provider's figure for the pair, preferring one precise enough to show."""
    rough: Rate | None = None
    for name in providers:
        answer = run.answer(name)
        if answer is None or currency not in answer.rates:
            continue
        rate = answer.rates[currency]
        have = rate.digits or precision(answer.quotes, currency, run.cfg.quote)
        if have >= digits:
            return rate
        logger.info(
            "rates: %s gives %s/%s to only %d significant digits; trying the next provider",
            name,
            currency,
            run.cfg.quote,
            have,
        )
        rough = rough or rate
    return rough


def _stored(
    run: _Run, currency: str, providers: list[str], digits: int, *, precise_since: date
) -> Rate | None:
    """The stored figure to fall back on: the newest one precise enough to show
    ``digits`` digits, if it is no older than ``precise_since`` or than any other;
    else the newest."""
    precise = run.store.latest_rate(
        currency, run.cfg.quote, run.day, sources=providers, min_digits=digits
    )
    newest = run.store.latest_rate(currency, run.cfg.quote, run.day, sources=providers)
    if precise is not None and (
        precise.rate_date >= precise_since
        or newest is None
        or precise.rate_date >= newest.rate_date
    ):
        return precise
    return newest


def _shown_digits(rate: Rate, digits: int) -> int:
    """Digits printed: the configured ones, fewer when the figure is not that good."""
    return min(digits, rate.digits) if rate.digits else digits


def build_header(
    store: Store, cfg: RatesConfig, day: date, *, fetch: bool = True, save: bool = True
) -> RatesHeader:
    """Fetch (unless ``fetch`` is False), store (unless ``save`` is False), and
    collect the header's figures for ``day``. Never raises for a provider's failure.

    The figures are formatted when the edition is rendered, in the digest's
    convention (:func:`newsletter.rates.format.rate_rows`).
    """
    run = _Run(store, cfg, day, save)
    header = RatesHeader()
    stale_before = day - timedelta(days=cfg.stale_after_days)
    for cur in cfg.currencies:
        pair = cfg.pair(cur)
        digits = pair.significant_digits or cfg.significant_digits
        rate = _choose(run, cur, pair.providers, digits) if fetch else None
        live = rate is not None
        if rate is None or (rate.digits or digits) < digits:
            # nothing live, or only a rough figure: a stored one precise enough wins
            stored = _stored(run, cur, pair.providers, digits, precise_since=stale_before)
            if rate is None:
                rate = stored
                if rate is not None and fetch:
                    logger.warning(
                        "rates: no provider has %s/%s for %s; showing the stored figure of %s "
                        "from %s",
                        cur,
                        cfg.quote,
                        day,
                        rate.rate_date,
                        rate.source,
                    )
            elif stored is not None and (stored.digits or 0) >= digits:
                logger.info(
                    "rates: %s/%s from %s has only %d significant digits; showing the "
                    "stored figure of %s from %s instead",
                    cur,
                    cfg.quote,
                    rate.source,
                    rate.digits,
                    stored.rate_date,
                    stored.source,
                )
                rate, live = stored, False
        if rate is None:
            logger.warning("rates: no %s/%s rate from any provider or the store", cur, cfg.quote)
            continue
        dated = rate.rate_date != day
        header.items.append(
            RateLine(
                currency=cur,
                quote=cfg.quote,
                value=rate.value,
                change_pct=run.change(rate, live=live),
                digits=_shown_digits(rate, digits),
                source=source_label(rate.source),
                rate_date=rate.rate_date,
                dated=dated,
            )
        )
        if dated and (header.as_of is None or rate.rate_date < header.as_of):
            header.as_of = rate.rate_date
    if not header.items:
        logger.warning("rates: no rates at all; the edition goes out without a rates header")
    return header


def header_to_json(header: RatesHeader) -> list[dict[str, str | int | bool | None]]:
    """The header as the edition stores it (numbers as decimal strings)."""
    return [line.as_dict() for line in header.items]


def header_from_json(data: list[dict] | None) -> RatesHeader:
    """The stored header; an edition frozen with formatted text keeps its text."""
    if not data:
        return RatesHeader()
    header = RatesHeader(items=[_line_from_json(d) for d in data])
    dated = [
        line.rate_date
        for line in header.items
        if line.dated or (line.legacy is not None and line.legacy.get("as_of"))
    ]
    header.as_of = min(dated) if dated else None
    return header


def _line_from_json(d: dict) -> RateLine:
    day = date.fromisoformat(d["date"])
    if "value" not in d:
        currency, _, quote = d["pair"].partition("/")
        legacy = {k: d.get(k, "") for k in ("pair", "text", "change", "direction", "as_of")}
        return RateLine(currency, quote, Decimal(0), None, 0, d["source"], day, legacy=legacy)
    return RateLine(
        currency=d["currency"],
        quote=d["quote"],
        value=Decimal(d["value"]),
        change_pct=None if d.get("change_pct") is None else Decimal(d["change_pct"]),
        digits=int(d["digits"]),
        source=d["source"],
        rate_date=day,
        dated=bool(d.get("dated")),
    )
