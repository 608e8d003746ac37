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
    # CLDR: a no-break space before the percent sign in Russian
    assert fmt.percent(D("-1.2345"), "ru") == "-1,23\u00a0%"
    assert fmt.percent(D("-0.001"), "ru") == "0,00\u00a0%"
    assert fmt.percent(D("0.5"), "tr") == "+%0,50"  # Turkish puts it first


def test_figure_in_each_convention():
    uzs = D("0.0000820061")
    assert fmt.figure(uzs, "UZS", "USD") == "0.00008201"  # ticker, the default
    assert fmt.figure(uzs, "UZS", "USD", digits=6) == "0.0000820061"
    assert fmt.figure(uzs, "UZS", "USD", convention="bank") == "1 USD = 12,194 UZS"
    assert fmt.figure(uzs, "UZS", "USD", convention="bank", locale="ru") == (
        "1 USD = 12\u00a0194 UZS"
    )
    kzt = D("0.00208869")
    assert fmt.figure(kzt, "KZT", "USD") == "0.002089"
    assert fmt.figure(kzt, "KZT", "USD", convention="bank") == "1 USD = 478.8 KZT"
    assert fmt.figure(kzt, "KZT", "USD", convention="bank", digits=5) == "1 USD = 478.77 KZT"
    assert fmt.label("KZT", "USD") == "KZT/USD"
    assert fmt.label("KZT", "USD", "bank") == "USD/KZT"


def test_inverse_of_a_tiny_rate_is_a_huge_grouped_number():
    text = fmt.figure(D("2.5E-12"), "VES", "USD", convention="bank")
    assert text == "1 USD = 400,000,000,000 VES"


def _header(*lines):
    from newsletter.models import RateLine, RatesHeader

    return RatesHeader(
        [
            RateLine(cur, "USD", D(value), None if change is None else D(change), 4, src, APR2)
            for cur, value, change, src in lines
        ]
    )


APR2 = date(2026, 4, 2)


@pytest.mark.parametrize("convention", ["ticker", "bank"])
def test_one_convention_on_every_row_label_matching_figure(convention):
    header = _header(
        ("KZT", "0.002105", "0.77", "NBK"),
        ("UZS", "0.00008236", "0.43", "CBU"),
        ("TJS", "0.1047", "-0.11", "NBK"),
    )
    rows = fmt.rate_rows(header, convention)
    for row, line in zip(rows, header.items, strict=True):
        if convention == "ticker":
            assert row.label == f"{line.currency}/USD"
            assert "=" not in row.figure and row.figure.startswith("0.")
        else:
            assert row.label == f"USD/{line.currency}"
            assert row.figure.startswith("1 USD = ") and row.figure.endswith(line.currency)
    assert [r.figure for r in rows] == (
        ["0.002105", "0.00008236", "0.1047"]
        if convention == "ticker"
        else ["1 USD = 475.1 KZT", "1 USD = 12,142 UZS", "1 USD = 9.551 TJS"]
    )
    # the change is the currency's against the dollar in both conventions: the
    # same arrow and colour meaning on every row, and words saying it
    assert [(r.arrow, r.change, r.direction) for r in rows] == [
        ("▲", "+0.77%", "up"),
        ("▲", "+0.43%", "up"),
        ("▼", "-0.11%", "down"),
    ]
    assert [r.words for r in rows] == [
        "tenge stronger by 0.77%",
        "sum stronger by 0.43%",
        "somoni weaker by 0.11%",
    ]
    assert [r.note for r in rows] == [1, 2, 1]


def test_words_for_flat_unknown_and_unnamed_currencies():
    assert fmt.words("TMT", D("0.001")) == "manat unchanged"
    assert fmt.words("KZT", None) == ""
    assert fmt.words("XAU", D("-1.5")) == "XAU weaker by 1.50%"
    assert fmt.words("KZT", D("-0.4"), "ru") == "тенге слабее на 0,40\u00a0%"
    rows = fmt.rate_rows(_header(("KZT", "0.002", None, "NBK")))
    assert (rows[0].change, rows[0].arrow, rows[0].words) == ("", "", "")


def test_a_figure_not_of_the_editions_date_says_as_of():
    from dataclasses import replace

    header = _header(("KZT", "0.002105", "0.77", "NBK"), ("UZS", "0.00008236", "0.43", "NBK"))
    header.items[1] = replace(header.items[1], dated=True, rate_date=date(2026, 3, 31))
    rows = fmt.rate_rows(header)
    assert [r.as_of for r in rows] == ["", "as of 31 Mar"]


def test_short_date_does_not_depend_on_the_process_locale():
    assert fmt.short_date(date(2026, 3, 3)) == "3 Mar"
    assert fmt.short_date(date(2026, 12, 31)) == "31 Dec"
