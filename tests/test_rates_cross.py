"""Cross rates from the real samples, against hand-checked values."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from newsletter.rates.cross import cross_rates, precision, published_change
from newsletter.rates.providers.base import Quote, Quotes
from tests.helpers import fetch

QUOTE = "USD"
ALL = ["KGS", "KZT", "TJS", "UZS", "TMT"]

# Hand-checked: each XXX/USD written out from the sample's own figures as an
# exact fraction, (XXX price / XXX nominal) / (USD price / USD nominal).
F = Fraction
HAND = {
    ("nbk", date(2026, 4, 1)): {
        "KZT": 1 / F("478.77"),
        "KGS": F("5.47") / F("478.77"),
        "TJS": F("50.19") / F("478.77"),
        "UZS": F("3.93") / 100 / F("478.77"),
    },
    ("cbu", date(2026, 4, 1)): {
        "UZS": 1 / F("12194.21"),
        "KZT": F("25.53") / F("12194.21"),
        "KGS": F("139.40") / F("12194.21"),
        "TJS": F("1272.88") / F("12194.21"),
        "TMT": F("4037.68") / F("12194.21"),
    },
    ("nbt", date(2026, 5, 18)): {
        "TJS": 1 / F("9.3450"),
        "KGS": F("1.0686") / 10 / F("9.3450"),
        "KZT": F("0.1971") / 10 / F("9.3450"),
        "UZS": F("0.0780") / 100 / F("9.3450"),
        "TMT": F("2.6700") / F("9.3450"),
    },
    ("nbkr", date(2026, 5, 24)): {
        "KGS": 1 / F("87.4500"),
        "KZT": F("0.1859") / F("87.4500"),
        "TJS": F("9.4148") / F("87.4500"),
        "UZS": F("0.0073") / F("87.4500"),
        "TMT": F("24.9857") / F("87.4500"),
    },
    ("peg", date(2026, 5, 24)): {"TMT": 1 / F("3.5")},
}


@pytest.mark.parametrize("source, day", list(HAND))
def test_cross_rates_within_1e_9_of_hand_checked_values(banks, source, day):
    quotes = fetch(banks, source, day)
    rates = cross_rates(quotes, ALL, QUOTE)
    assert set(rates) == set(HAND[source, day])
    for cur, expected in HAND[source, day].items():
        got = rates[cur]
        assert isinstance(got.value, Decimal)
        assert abs(F(got.value) - expected) / expected < F(1, 10**9), cur
        assert (got.currency, got.quote, got.source, got.rate_date) == (cur, QUOTE, source, day)


def derived() -> dict[tuple[str, str], Decimal]:
    """tests/data/rates/derived_usd_rates.txt: 'NBK 01.04.2026 … -> KZT/USD=0.00208869 …'."""
    out = {}
    source = ""
    for line in (
        (Path(__file__).parent / "data/rates/derived_usd_rates.txt").read_text().splitlines()
    ):
        if not line.startswith(" "):
            source = line.split()[0].lower()
            continue
        for cur, value in re.findall(r"([A-Z]{3})/USD=([0-9.]+)", line):
            out[source, cur] = Decimal(value)
    return out


def test_cross_rates_agree_with_derived_usd_rates_file(banks):
    days = {"nbk": date(2026, 4, 1), "cbu": date(2026, 4, 1)}
    days |= {"nbt": date(2026, 5, 18), "nbkr": date(2026, 5, 24)}
    table = derived()
    checked = 0
    for source, day in days.items():
        rates = cross_rates(fetch(banks, source, day), ALL, QUOTE)
        for cur, rate in rates.items():
            written = table[source, cur]
            # equal to the file's figure to the digits the file prints
            half_ulp = Decimal(1).scaleb(written.as_tuple().exponent) / 2
            assert abs(rate.value - written) <= half_ulp, (source, cur, rate.value, written)
            checked += 1
    assert checked == 4 + 5 + 5 + 5


def test_published_change_matches_the_previous_days_sample(banks):
    """NBK and CBU publish each day's change; applied to the 2 April figures it must
    give back the 1 April cross rates, so the published pair change is exact."""
    for source in ("nbk", "cbu"):
        before = cross_rates(fetch(banks, source, date(2026, 4, 1)), ALL, QUOTE)
        after = cross_rates(fetch(banks, source, date(2026, 4, 2)), ALL, QUOTE)
        for cur, rate in after.items():
            history = (rate.value / before[cur].value - 1) * 100
            assert rate.change_pct is not None
            assert abs(rate.change_pct - history) < Decimal("1e-20"), (source, cur)
    kgs = cross_rates(fetch(banks, "nbk", date(2026, 4, 2)), ["KGS"], QUOTE)["KGS"]
    expected = (F("5.43") / F("475.09")) / (F("5.47") / F("478.77")) * 100 - 100
    assert abs(F(kgs.change_pct) - expected) < F(1, 10**18)


def test_no_published_change_without_both_legs():
    quotes = Quotes(
        "x",
        "KZT",
        date(2026, 1, 1),
        {
            "USD": Quote("USD", Decimal("500"), change=Decimal("1")),
            "KGS": Quote("KGS", Decimal("5.5")),
        },
    )
    assert published_change(quotes, "KGS", "USD") is None
    # the base has no change of its own: KZT/USD went from 1/499 to 1/500
    assert published_change(quotes, "KZT", "USD") == Decimal("-0.2")


def test_precision_is_that_of_the_least_precise_leg(banks):
    nbkr = fetch(banks, "nbkr", date(2026, 5, 24))
    assert precision(nbkr, "UZS", "USD") == 2  # '0,0073'
    assert precision(nbkr, "KGS", "USD") == 6  # '87,4500' alone
    nbk = fetch(banks, "nbk", date(2026, 4, 1))
    assert precision(nbk, "UZS", "USD") == 3  # '3.93' per 100
    cbu = fetch(banks, "cbu", date(2026, 4, 1))
    assert precision(cbu, "UZS", "USD") == 7  # '12194.21'
    peg = fetch(banks, "peg", date(2026, 4, 1))
    assert precision(peg, "TMT", "USD") >= 15


def test_a_provider_without_the_quote_currency_gives_no_pairs():
    quotes = Quotes("x", "KZT", date(2026, 1, 1), {"KGS": Quote("KGS", Decimal("5.5"))})
    assert cross_rates(quotes, ALL, QUOTE) == {}
