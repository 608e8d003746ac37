"""Formatting the rates header: enough digits to mean something, honest signs."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

#: thousands and decimal separators by locale (a small table, no babel needed)
SEPARATORS = {
    "en": (",", "."),
    "ru": ("\u00a0", ","),
    "kk": ("\u00a0", ","),
    "uz": ("\u00a0", ","),
    "de": (".", ","),
    "fr": ("\u202f", ","),
}


def group(number: str, locale: str = "en") -> str:
    """'12194.5' -> '12,194.5' (en) or '12 194,5' (ru)."""
    thousands, decimal = SEPARATORS.get(locale.split("_")[0].split("-")[0], SEPARATORS["en"])
    sign = "-" if number.startswith("-") else ""
    number = number.lstrip("-")
    whole, _, frac = number.partition(".")
    groups = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    out = thousands.join(groups)
    return sign + out + (decimal + frac if frac else "")


def significant(value: Decimal, digits: int = 4) -> str:
    """``value`` with at least ``digits`` significant digits, never in exponent form.

    Large values keep all their integer digits: 12194.21 -> '12194' for 4 digits.
    """
    if value == 0:
        return "0"
    exponent = value.adjusted()  # position of the first significant digit
    places = max(digits - 1 - exponent, 0)
    q = Decimal(1).scaleb(-places)
    return f"{value.quantize(q, rounding=ROUND_HALF_EVEN):f}"


def percent(change: Decimal | None) -> str:
    """'+0.12%', '-1.05%', '0.00%' (never '-0.00%'); '' when unknown."""
    if change is None:
        return ""
    rounded = change.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    if rounded == 0:
        return "0.00%"
    return f"{rounded:+f}%"


def direction(change: Decimal | None) -> str:
    if change is None:
        return "flat"
    rounded = change.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    return "up" if rounded > 0 else "down" if rounded < 0 else "flat"


def rate_text(
    currency: str,
    quote: str,
    value: Decimal,
    *,
    digits: int = 4,
    invert_below: float | None = None,
    locale: str = "en",
) -> str:
    """'0.01144' or, below the threshold, '1 USD = 12,194 UZS'."""
    if invert_below is not None and value < Decimal(str(invert_below)):
        inverse = Decimal(1) / value
        return f"1 {quote} = {group(significant(inverse, digits), locale)} {currency}"
    return group(significant(value, digits), locale)


def short_date(day: date) -> str:
    """'3 Mar'."""
    return f"{day.day} {day.strftime('%b')}"
