"""Formatting the rates header: enough digits to mean something, honest signs.

Everything here is pure and works on :class:`~decimal.Decimal` from end to end,
so a figure is never rounded twice or printed in exponent form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from functools import lru_cache

from babel.numbers import get_decimal_symbol, get_group_symbol

from newsletter import i18n
from newsletter.i18n import N_
from newsletter.models import RateLine, RatesHeader

_CENT = Decimal("0.01")


@lru_cache(maxsize=32)
def separators(locale: str) -> tuple[str, str]:
    """(thousands, decimal) for ``locale`` ('ru', 'ru_RU', 'ru-RU') from CLDR:
    (',', '.') in English, (no-break space, ',') in Russian."""
    loc = i18n.locale(locale)
    return get_group_symbol(loc), get_decimal_symbol(loc)


@lru_cache(maxsize=32)
def _percent_pattern(locale: str) -> str:
    """Where the number and the sign go: '{}%' in English, '{}\u00a0%' in Russian."""
    pattern = i18n.locale(locale).percent_formats[None].pattern.split(";")[0]
    return re.sub(r"[#0,.]+", "{}", pattern, count=1)


def group(number: str, locale: str = "en") -> str:
    """'12194.5' -> '12,194.5' (en) or '12 194,5' (ru, with a no-break space)."""
    thousands, decimal = separators(locale)
    sign = number[0] if number[:1] in ("-", "+") else ""
    whole, _, frac = number[len(sign) :].partition(".")
    groups: list[str] = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    return sign + thousands.join(groups) + (decimal + frac if frac else "")


def significant(value: Decimal, digits: int = 4) -> str:
    """``value`` with at least ``digits`` significant digits, never in exponent form.

    Small values get as many decimals as it takes (0.0000820061 -> '0.00008201');
    large values keep all their integer digits (12194.21 -> '12194').
    """
    if value == 0:
        return "0"
    exponent = value.adjusted()  # position of the first significant digit
    places = max(digits - 1 - exponent, 0)
    with localcontext() as ctx:
        # quantize needs room for every digit it keeps, however large the value
        ctx.prec = max(28, exponent + places + 2)
        rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    return f"{rounded:f}"


def _round_pct(change: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = max(28, change.adjusted() + 4)
        return change.quantize(_CENT, rounding=ROUND_HALF_EVEN)


def percent(change: Decimal | None, locale: str = "en") -> str:
    """'+0.12%', '-1.05%', '0.00%' (never '-0.00%' or '+0.00%'); '' when unknown.

    The number, the separators and the place of the percent sign are the
    locale's: '+0,12\u00a0%' in Russian."""
    if change is None:
        return ""
    rounded = _round_pct(change)
    sign = "+" if rounded > 0 else "-" if rounded < 0 else ""
    return sign + _size(rounded, locale)


def _size(rounded: Decimal, locale: str) -> str:
    """'0.12%' for +0.12 or -0.12: the percentage without its sign."""
    return _percent_pattern(locale).format(group(f"{rounded.copy_abs():f}", locale))


def direction(change: Decimal | None) -> str:
    """up, down or flat, as the printed percentage reads (so '0.00%' is always flat)."""
    if change is None:
        return "flat"
    rounded = _round_pct(change)
    return "up" if rounded > 0 else "down" if rounded < 0 else "flat"


def figure(
    value: Decimal,
    currency: str,
    quote: str,
    *,
    convention: str = "ticker",
    digits: int = 4,
    locale: str = "en",
) -> str:
    """'0.001966' (ticker) or '1 USD = 508.6 KZT' (bank) for KZT/USD = ``value``."""
    if convention == "bank":
        with localcontext() as ctx:
            ctx.prec = 28
            inverse = Decimal(1) / value
        return f"1 {quote} = {group(significant(inverse, digits), locale)} {currency}"
    return group(significant(value, digits), locale)


def label(currency: str, quote: str, convention: str = "ticker") -> str:
    """The row's label, which names the figure beside it: 'KZT/USD' for 0.001966
    (ticker), 'USD/KZT' for '1 USD = 508.6 KZT' (bank)."""
    return f"{quote}/{currency}" if convention == "bank" else f"{currency}/{quote}"


#: what a reader calls a currency in the words a screen reader reads
#: (translated where shown)
CURRENCY_NAMES = {
    "KGS": N_("som"),
    "KZT": N_("tenge"),
    "TJS": N_("somoni"),
    "UZS": N_("sum"),
    "TMT": N_("manat"),
    "AZN": N_("manat"),
    "RUB": N_("rouble"),
    "CNY": N_("yuan"),
    "EUR": N_("euro"),
    "USD": N_("dollar"),
}

ARROWS = {"up": "▲", "down": "▼", "flat": "="}


def words(currency: str, change: Decimal | None, locale: str = "en") -> str:
    """'tenge stronger by 0.34%', 'sum weaker by 0.1%', 'manat unchanged'; '' when unknown.

    Says what the arrow and the colour say, for a screen reader, in ``locale``."""
    if change is None:
        return ""
    _ = i18n.lang(locale)
    name = _(CURRENCY_NAMES[currency]) if currency in CURRENCY_NAMES else currency
    rounded = _round_pct(change)
    if rounded == 0:
        return _("{currency} unchanged", currency=name)
    size = _size(rounded, locale)
    if rounded > 0:
        return _("{currency} stronger by {change}", currency=name, change=size)
    return _("{currency} weaker by {change}", currency=name, change=size)


def legend(quote: str, locale: str = "en") -> str:
    """What the arrows mean, printed under the rates."""
    _ = i18n.lang(locale)
    if quote == "USD":
        return _("▲ stronger, ▼ weaker against the US dollar since the previous business day")
    return _(
        "▲ stronger, ▼ weaker against {currency} since the previous business day", currency=quote
    )


def as_of(day: date, locale: str = "en") -> str:
    """'as of 27 Nov', 'на 27 нояб.'."""
    _ = i18n.lang(locale)
    return _("as of {date}", date=_.short_day(day))


@dataclass(frozen=True)
class RateRow:
    """One line of the rates header as printed."""

    label: str  # "KZT/USD"
    figure: str  # "0.001966" or "1 USD = 508.6 KZT"
    change: str  # "+0.34%", "" when unknown
    direction: str  # up | down | flat: the currency against the quote
    arrow: str  # ▲ ▼ =, "" when unknown
    words: str  # "tenge stronger by 0.34%"
    as_of: str  # "as of 27 Nov", "" for a figure of the edition's date
    note: int  # footnote number of the source, 0 with a single source


def rate_rows(header: RatesHeader, convention: str = "ticker", locale: str = "en") -> list[RateRow]:
    """The header's rows, every one in ``convention``: the label matches the
    figure, and the change, arrow and words are the currency's against the quote."""
    return [_row(header, line, convention, locale) for line in header.items]


def _row(header: RatesHeader, line: RateLine, convention: str, locale: str) -> RateRow:
    note = header.note(line)
    if line.legacy is not None:
        d = line.legacy
        return RateRow(
            d.get("pair", ""),
            d.get("text", ""),
            d.get("change", ""),
            d.get("direction", "flat"),
            ARROWS.get(d.get("direction", "flat"), "=") if d.get("change") else "",
            "",
            d.get("as_of", ""),
            note,
        )
    known = line.change_pct is not None
    return RateRow(
        label=label(line.currency, line.quote, convention),
        figure=figure(
            line.value,
            line.currency,
            line.quote,
            convention=convention,
            digits=line.digits,
            locale=locale,
        ),
        change=percent(line.change_pct, locale),
        direction=direction(line.change_pct),
        arrow=ARROWS[direction(line.change_pct)] if known else "",
        words=words(line.currency, line.change_pct, locale),
        as_of=as_of(line.rate_date, locale) if line.dated else "",
        note=note,
    )


def short_date(day: date, locale: str = "en") -> str:
    """'3 Mar' (CLDR's abbreviation for ``locale``), whatever the process locale is."""
    return i18n.lang(locale).short_day(day)
