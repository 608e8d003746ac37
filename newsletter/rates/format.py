"""Formatting the rates header: enough digits to mean something, honest signs.

Everything here is pure and works on :class:`~decimal.Decimal` from end to end,
so a figure is never rounded twice or printed in exponent form.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

#: thousands and decimal separators by language (CLDR's, for the languages a
#: Central Asian newsroom writes in; a small table rather than a babel dependency)
SEPARATORS = {
    "en": (",", "."),
    "ru": ("\u00a0", ","),
    "kk": ("\u00a0", ","),
    "ky": ("\u00a0", ","),
    "tg": ("\u00a0", ","),
    "tk": ("\u00a0", ","),
    "uz": ("\u00a0", ","),
    "tr": (".", ","),
    "de": (".", ","),
    "fr": ("\u202f", ","),
}

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_CENT = Decimal("0.01")


def separators(locale: str) -> tuple[str, str]:
    """(thousands, decimal) for ``locale`` ('ru', 'ru_RU', 'ru-RU'); English when unknown."""
    lang = locale.replace("-", "_").split("_")[0].lower()
    return SEPARATORS.get(lang, SEPARATORS["en"])


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
    """'+0.12%', '-1.05%', '0.00%' (never '-0.00%' or '+0.00%'); '' when unknown."""
    if change is None:
        return ""
    rounded = _round_pct(change)
    if rounded == 0:
        return group("0.00", locale) + "%"
    return group(f"{rounded:+f}", locale) + "%"


def direction(change: Decimal | None) -> str:
    """up, down or flat, as the printed percentage reads (so '0.00%' is always flat)."""
    if change is None:
        return "flat"
    rounded = _round_pct(change)
    return "up" if rounded > 0 else "down" if rounded < 0 else "flat"


def inverted(value: Decimal, invert_below: float | None) -> bool:
    """Whether XXX/USD = ``value`` is shown as "1 USD = N XXX"."""
    return bool(invert_below) and value < Decimal(str(invert_below))


def inverse_change(change_pct: Decimal) -> Decimal:
    """The change of 1/x, in percent, when x changed by ``change_pct`` percent."""
    return -change_pct * 100 / (100 + change_pct)


def rate_text(
    currency: str,
    quote: str,
    value: Decimal,
    *,
    digits: int = 4,
    invert_below: float | None = None,
    locale: str = "en",
) -> str:
    """'0.002089' or, below the threshold, '1 USD = 12,194 UZS'."""
    if inverted(value, invert_below):
        with localcontext() as ctx:
            ctx.prec = 28
            inverse = Decimal(1) / value
        return f"1 {quote} = {group(significant(inverse, digits), locale)} {currency}"
    return group(significant(value, digits), locale)


def short_date(day: date) -> str:
    """'3 Mar', whatever the process locale is."""
    return f"{day.day} {_MONTHS[day.month - 1]}"
