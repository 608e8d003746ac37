"""Formatting the rates header: digits, inverses, separators, signs."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from newsletter.rates import format as fmt

D = Decimal


@pytest.mark.parametrize(
    "value, digits, text",
    [
        # the site's ticker prints 0.00008 for all of these: four digits tell them apart
        (D("0.0000820061"), 4, "0.00008201"),
        (D("0.0000834763"), 4, "0.00008348"),
        (D("0.00208869"), 4, "0.002089"),
        (D("0.2857142857142857142857142857"), 4, "0.2857"),
        (D("0.2857142857142857142857142857"), 6, "0.285714"),
        (D("0.1"), 4, "0.1000"),  # trailing zeros are digits too
        (D("3.5"), 4, "3.500"),
        (D("9.99996"), 4, "10.000"),  # rounding carries: still at least 4 digits
        (D("12194.21"), 4, "12194"),  # never drops integer digits
        (D("478.77"), 4, "478.8"),
        # tiny
        (D("1.234567E-12"), 4, "0.000000000001235"),
        # huge: no exponent, no lost digits, even past 28 digits of precision
        (D("248832000000.7"), 4, "248832000001"),
        (D("1.5E+40"), 4, "15000000000000000000000000000000000000000"),
        (D("0"), 4, "0"),
    ],
)
def test_significant_digits(value, digits, text):
    assert fmt.significant(value, digits) == text


@pytest.mark.parametrize(
    "number, locale, text",
    [
        ("12194", "en", "12,194"),
        ("12194", "ru", "12\u00a0194"),
        ("12194", "ru_RU", "12\u00a0194"),
        ("1234567.891", "de", "1.234.567,891"),
        ("1234567.891", "fr-FR", "1\u202f234\u202f567,891"),
        ("123", "en", "123"),
        ("0.00008201", "uz", "0,00008201"),
        ("-1234.5", "en", "-1,234.5"),
        ("+1234.50", "kk", "+1\u00a0234,50"),
        ("999", "xx", "999"),
        ("1000", "xx", "1,000"),  # unknown: English
    ],
)
def test_grouping_follows_the_locale(number, locale, text):
    assert fmt.group(number, locale) == text


@pytest.mark.parametrize(
    "change, text, direction",
    [
        (D("0.1234"), "+0.12%", "up"),
        (D("-0.1234"), "-0.12%", "down"),
        (D("0"), "0.00%", "flat"),
        (D("-0"), "0.00%", "flat"),  # negative zero
        (D("-0.0049"), "0.00%", "flat"),  # rounds to -0.00: printed and marked flat
        (D("0.0049"), "0.00%", "flat"),
        (D("-0.005"), "0.00%", "flat"),  # half-even: -0.00
        (D("0.015"), "+0.02%", "up"),
        (D("-0.0051"), "-0.01%", "down"),
        (D("12.5"), "+12.50%", "up"),
        (D("-99.999"), "-100.00%", "down"),
        (D("1234.567"), "+1,234.57%", "up"),
        (D("1E+30"), "+1" + ",000" * 10 + ".00%", "up"),
        (None, "", "flat"),
    ],
)
def test_percent_and_direction(change, text, direction):
    assert fmt.percent(change) == text
    assert fmt.direction(change) == direction
    assert "-0.00" not in text and "+0.00" not in text


def test_percent_in_a_comma_locale():
    assert fmt.percent(D("-1.2345"), "ru") == "-1,23%"
    assert fmt.percent(D("-0.001"), "ru") == "0,00%"


def test_rate_text_inverts_below_the_threshold():
    uzs = D("0.0000820061")
    assert fmt.rate_text("UZS", "USD", uzs, invert_below=0.001) == "1 USD = 12,194 UZS"
    assert fmt.rate_text("UZS", "USD", uzs, invert_below=0.001, locale="ru") == (
        "1 USD = 12\u00a0194 UZS"
    )
    assert fmt.rate_text("UZS", "USD", uzs) == "0.00008201"  # no threshold
    assert fmt.rate_text("UZS", "USD", uzs, invert_below=0) == "0.00008201"  # 0: never
    assert fmt.rate_text("UZS", "USD", uzs, digits=6) == "0.0000820061"
    kzt = D("0.00208869")
    assert fmt.rate_text("KZT", "USD", kzt, invert_below=0.001) == "0.002089"  # above
    assert fmt.rate_text("KZT", "USD", kzt, invert_below=0.01) == "1 USD = 478.8 KZT"
    assert fmt.rate_text("KZT", "USD", kzt, invert_below=0.01, digits=5) == "1 USD = 478.77 KZT"
    # at the threshold exactly: not below it
    assert fmt.rate_text("X", "USD", D("0.001"), invert_below=0.001) == "0.001000"


def test_inverse_of_a_tiny_rate_is_a_huge_grouped_number():
    text = fmt.rate_text("VES", "USD", D("2.5E-12"), invert_below=0.001)
    assert text == "1 USD = 400,000,000,000 VES"


def test_inverse_change_follows_the_printed_figure():
    # UZS/USD down 1%: a dollar costs 1/0.99 - 1 = 1.0101…% more UZS
    assert fmt.percent(fmt.inverse_change(D("-1"))) == "+1.01%"
    assert fmt.percent(fmt.inverse_change(D("0"))) == "0.00%"
    assert fmt.inverse_change(D("25")) == D("-20")


def test_short_date_does_not_depend_on_the_process_locale():
    assert fmt.short_date(date(2026, 3, 3)) == "3 Mar"
    assert fmt.short_date(date(2026, 12, 31)) == "31 Dec"
