"""The rates header: providers pair by pair, fallback, history, staleness.

Every provider is the real module talking HTTP to the loopback central banks of
tests/fakes/banks.py; the store is SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from newsletter.config import RatePairConfig
from newsletter.models import Rate
from newsletter.rates import format as fmt
from newsletter.rates.service import build_header, header_from_json, header_to_json
from newsletter.render.text import rates_table
from tests.fakes import banks as fake_banks
from tests.fakes.http import Reply

APR1, APR2 = date(2026, 4, 1), date(2026, 4, 2)
LABELS = {
    "nbk": "National Bank of Kazakhstan",
    "nbt": "National Bank of Tajikistan",
    "nbkr": "National Bank of the Kyrgyz Republic",
    "cbu": "Central Bank of Uzbekistan",
    "peg": "fixed peg",
}

#: the starter config's choice: each currency from its own central bank first
HOME_FIRST = {
    "KGS": RatePairConfig(providers=["nbkr", "nbt", "nbk", "cbu"]),
    "KZT": RatePairConfig(providers=["nbk", "nbt", "nbkr", "cbu"]),
    "TJS": RatePairConfig(providers=["nbt", "nbk", "nbkr", "cbu"]),
    "UZS": RatePairConfig(providers=["cbu", "nbk", "nbt", "nbkr"]),
    "TMT": RatePairConfig(providers=["peg", "nbt", "nbkr"]),
}


@pytest.fixture
def replay(banks):
    """NBKR replayed as published on the afternoon of 1 April for 2 April."""
    banks.nbkr_day = APR2
    banks.nbkr_weekly_day = date(2026, 3, 28)
    return banks


@dataclass
class Shown:
    """A header line with its printed row: what the tests look at."""

    source: str
    rate_date: date
    text: str
    change: str
    direction: str
    as_of: str
    words: str


def shown(header, convention="ticker", locale="en") -> list[Shown]:
    rows = fmt.rate_rows(header, convention, locale)
    return [
        Shown(line.source, line.rate_date, r.figure, r.change, r.direction, r.as_of, r.words)
        for line, r in zip(header.items, rows, strict=True)
    ]


def lines(header, convention="ticker", locale="en"):
    return {
        line.currency: row
        for line, row in zip(header.items, shown(header, convention, locale), strict=True)
    }


def text_table(header) -> str:
    return rates_table(fmt.rate_rows(header))


def pct(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)


def test_each_pair_from_its_first_provider_each_provider_asked_once(store, replay):
    cfg = replay.config(providers=["nbk"], pairs=HOME_FIRST)
    header = build_header(store, cfg, APR2)
    got = lines(header)
    assert [line.pair for line in header.items] == [
        "KGS/USD",
        "KZT/USD",
        "TJS/USD",
        "UZS/USD",
        "TMT/USD",
    ]
    assert {cur: line.source for cur, line in got.items()} == {
        "KGS": LABELS["nbkr"],
        "KZT": LABELS["nbk"],
        "TJS": LABELS["nbt"],
        "UZS": LABELS["cbu"],
        "TMT": LABELS["peg"],
    }
    assert got["KGS"].text == "0.01144"  # 1 / 87.45
    assert got["KZT"].text == "0.002105"  # 1 / 475.09
    assert got["UZS"].text == "0.00008236"
    assert got["TMT"].text == "0.2857"
    assert all(line.rate_date == APR2 and not line.as_of for line in shown(header))
    assert header.as_of is None
    # each bank once for the day (NBT and NBKR have no published change: NBT is
    # asked for the day before too; NBKR has no archive to ask)
    asked = [
        (r.path.split("/")[1], r.query.get("date", r.query.get("fdate"))) for r in replay.requests
    ]
    assert sorted(asked) == sorted(
        [
            ("nbkr", None),
            ("nbkr", None),
            ("nbt", ["2026-04-02"]),
            ("nbt", ["2026-04-01"]),
            ("nbk", ["02.04.2026"]),
            ("cbu", None),
        ]
    )


def test_providers_are_fetched_only_when_a_pair_needs_them(store, replay):
    cfg = replay.config(providers=["cbu", "nbk", "nbt"])
    header = build_header(store, cfg, APR2)
    assert {line.source for line in header.items} == {LABELS["cbu"]}
    assert {r.path.split("/")[1] for r in replay.requests} == {"cbu"}


FAILURES = {
    "5xx": Reply(503, b"<html>Service Unavailable</html>"),
    "timeout": Reply(200, b"", delay=3.0),
    "garbage": Reply(200, b"<html><body>We are updating the site</body></html>"),
    "dropped": Reply(drop=True),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failing_provider_falls_back_to_the_next(store, replay, caplog, failure):
    replay.fail["nbk"] = FAILURES[failure]
    tmt = RatePairConfig(providers=["nbk", "nbt", "peg"])
    # 1 s: short enough for the timeout case, long enough that a loaded machine
    # never times out the healthy providers
    cfg = replay.config(providers=["nbk", "cbu"], pairs={"TMT": tmt}, timeout=1.0)
    with caplog.at_level(logging.WARNING):
        header = build_header(store, cfg, APR2)
    got = lines(header)
    assert {cur: line.source for cur, line in got.items()} == {
        "KGS": LABELS["cbu"],
        "KZT": LABELS["cbu"],
        "TJS": LABELS["cbu"],
        "UZS": LABELS["cbu"],
        "TMT": LABELS["nbt"],
    }
    assert got["KZT"].text == "0.002104"  # 25.55 / 12142.10, not NBK's 1 / 475.09
    assert "rates: nbk failed" in caplog.text
    assert len(replay.asked("nbk")) == 1  # asked once, not once per pair


def test_an_older_answer_within_the_stale_age_is_kept_under_its_own_date(store, replay):
    # asked for 2 April, NBK answers with its 1 April document (a Friday figure on a
    # Monday looks the same): within stale_after_days, so used, dated 1 April
    replay.edit["nbk"] = lambda body, day: fake_banks.sample(fake_banks.NBK[APR1])
    cfg = replay.config(providers=["nbk", "cbu"], currencies=["KZT"])
    (line,) = shown(build_header(store, cfg, APR2))
    # not the edition's date: marked, even though not yet stale
    assert (line.source, line.rate_date, line.as_of) == (LABELS["nbk"], APR1, "as of 1 Apr")
    assert line.text == "0.002089"  # 1 / 478.77
    assert store.latest_rate("KZT", "USD", APR2, sources=["nbk"]).rate_date == APR1
    assert not replay.asked("cbu")


def test_an_answer_from_the_future_or_too_old_is_refused(store, replay, caplog):
    cfg = replay.config(providers=["nbk", "cbu"], currencies=["KZT"], stale_after_days=3)
    # NBK answers for 2 April when asked for 1 April: a wrong date
    replay.edit["nbk"] = lambda body, day: fake_banks.sample(fake_banks.NBK[APR2])
    header = build_header(store, cfg, APR1)
    assert header.items[0].source == LABELS["cbu"]
    assert "answered for 2026-04-02, asked for 2026-04-01" in caplog.text
    # asked for 10 April, NBK answers with the figures of 2 April: 8 days old
    caplog.clear()
    replay.fail["cbu"] = Reply(404)
    header = build_header(store, cfg, date(2026, 4, 10))
    assert "older than stale_after_days (3)" in caplog.text
    # nothing live: the stored CBU figure of 1 April, marked
    assert header.items[0].source == LABELS["cbu"]
    assert shown(header)[0].as_of == "as of 1 Apr"


def test_nbkr_may_answer_for_the_next_day_but_not_for_a_past_one(store, replay, caplog):
    cfg = replay.config(providers=["nbkr"], currencies=["KGS"])
    header = build_header(store, cfg, APR1)  # NBKR's daily.xml is dated 2 April
    assert header.items[0].rate_date == APR2 and header.items[0].source == LABELS["nbkr"]
    caplog.clear()
    replay.fail.clear()
    header = build_header(store, cfg, date(2026, 3, 20))  # no archive: wrong date
    assert "answered for 2026-04-02, asked for 2026-03-20" in caplog.text
    assert not header  # the stored 2 April figure is after 20 March


def test_all_down_uses_the_last_stored_rates_marked_with_their_date(store, replay, caplog):
    cfg = replay.config(providers=["nbk"], pairs={"TMT": RatePairConfig(providers=["peg"])})
    fresh = build_header(store, cfg, APR2)
    assert fresh.as_of is None and "as of" not in text_table(fresh)
    for name in ("nbk", "nbt", "nbkr", "cbu"):
        replay.fail[name] = Reply(502, b"Bad Gateway")
    cfg.pegs = {}  # the peg has nothing either

    # a day later, within stale_after_days: the same figures, each saying its date
    caplog.clear()
    next_day = build_header(store, cfg, APR2 + timedelta(days=1))
    assert [r.text for r in shown(next_day)] == [r.text for r in shown(fresh)]
    assert [r.change for r in shown(next_day)] == [r.change for r in shown(fresh)]
    assert all(r.as_of == "as of 2 Apr" for r in shown(next_day))
    assert next_day.as_of == APR2
    assert "showing the stored figure of 2026-04-02 from nbk" in caplog.text

    later = build_header(store, cfg, date(2026, 4, 6))  # 4 days > stale_after_days = 3
    assert [r.text for r in shown(later)] == [r.text for r in shown(fresh)]
    assert all(r.as_of == "as of 2 Apr" for r in shown(later))
    assert {line.source for line in later.items} == {LABELS["nbk"], LABELS["peg"]}
    assert text_table(later).count("as of 2 Apr") == len(later.items)


def test_stored_fallback_keeps_to_the_pairs_providers_in_order(store, replay):
    # CBU's TMT (a market cross) is stored, but TMT is configured from the peg only
    build_header(store, replay.config(providers=["cbu"]), APR2)
    build_header(store, replay.config(providers=["peg"], currencies=["TMT"]), APR2)
    for name in ("nbk", "nbt", "nbkr", "cbu"):
        replay.fail[name] = Reply(500)
    cfg = replay.config(providers=["cbu"], pairs={"TMT": RatePairConfig(providers=["peg"])})
    cfg.pegs = {}
    got = lines(build_header(store, cfg, APR2))
    assert got["TMT"].source == LABELS["peg"] and got["TMT"].text == "0.2857"
    assert got["KZT"].source == LABELS["cbu"]
    # both stored on the same day: the one listed first wins
    cfg = replay.config(providers=["peg", "cbu"], currencies=["TMT"])
    cfg.pegs = {}
    assert build_header(store, cfg, APR2).items[0].source == LABELS["peg"]
    cfg = replay.config(providers=["cbu", "peg"], currencies=["TMT"])
    cfg.pegs = {}
    assert build_header(store, cfg, APR2).items[0].source == LABELS["cbu"]


def test_all_down_and_nothing_stored_leaves_the_header_out(store, banks, caplog):
    for name in ("nbk", "nbt", "nbkr", "cbu"):
        banks.fail[name] = Reply(500)
    cfg = banks.config(providers=["nbk", "nbt", "nbkr", "cbu"])
    with caplog.at_level(logging.WARNING):
        header = build_header(store, cfg, APR2)
    assert not header and header.items == []
    assert "no rates at all; the edition goes out without a rates header" in caplog.text
    assert header_to_json(header) == []


def test_rates_are_stored_per_date_currency_and_source(store, replay):
    cfg = replay.config(providers=["nbk", "cbu"], currencies=["KZT", "UZS"])
    build_header(store, cfg, APR1)
    build_header(store, replay.config(providers=["cbu"], currencies=["KZT", "UZS"]), APR2)
    for cur in ("KZT", "UZS"):
        assert store.latest_rate(cur, "USD", APR1, sources=["nbk"]).rate_date == APR1
        assert store.latest_rate(cur, "USD", APR2, sources=["nbk"]).rate_date == APR1
        assert store.latest_rate(cur, "USD", APR2, sources=["cbu"]).rate_date == APR2
        assert store.latest_rate(cur, "USD", APR1, sources=["cbu"]).rate_date == APR1
    kzt = store.latest_rate("KZT", "USD", APR2, sources=["cbu"])
    assert kzt.value == Decimal("25.55") / Decimal("12142.10")
    # the provider's published change is kept with the figure
    assert (
        kzt.change_pct
        == ((Decimal("25.55") / Decimal("12142.10")) / (Decimal("25.53") / Decimal("12194.21")) - 1)
        * 100
    )


def test_the_published_change_is_used_and_agrees_with_history(store, replay, caplog):
    cfg = replay.config(providers=["nbk"], currencies=["KGS", "KZT", "TJS", "UZS"])
    build_header(store, cfg, APR1)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        header = build_header(store, cfg, APR2)
    kgs = (Fraction("5.43") / Fraction("475.09")) / (Fraction("5.47") / Fraction("478.77"))
    expected = fmt.percent(pct(kgs * 100 - 100))
    assert expected == "+0.04%"
    assert lines(header)["KGS"].change == expected and lines(header)["KGS"].direction == "up"
    kzt = fmt.percent(pct(Fraction("478.77") / Fraction("475.09") * 100 - 100))
    assert lines(header)["KZT"].change == kzt == "+0.77%"
    assert "disagrees" not in caplog.text


def test_a_published_change_that_disagrees_with_history_is_logged(store, replay, caplog):
    cfg = replay.config(providers=["nbk"], currencies=["KZT"])
    # a stored 1 April figure 1% off what NBK's change implies
    store.save_rates(
        [Rate("KZT", "USD", Decimal(1) / Decimal("478.77") * Decimal("1.01"), APR1, "nbk")]
    )
    with caplog.at_level(logging.WARNING):
        header = build_header(store, cfg, APR2)
    assert shown(header)[0].change == "+0.77%"  # the published one is shown
    assert re.search(
        r"KZT/USD from nbk on 2026-04-02: published change \+0\.77% disagrees with "
        r"-0\.22% against the stored figure of 2026-04-01",
        caplog.text,
    ), caplog.text


def test_the_change_from_stored_history_of_the_same_source(store, replay):
    cfg = replay.config(providers=["nbt"], currencies=["KZT"])
    before = Decimal("0.1971") / 10 / Decimal("9.3450") * Decimal("0.99")
    store.save_rates([Rate("KZT", "USD", before, APR1, "nbt")])
    # another source's figure of the same day must not be used
    store.save_rates([Rate("KZT", "USD", before * 2, APR1, "cbu")])
    header = build_header(store, cfg, APR2)
    assert shown(header)[0].change == "+1.01%"  # 1/0.99 - 1
    assert not any(r.query.get("date") == ["2026-04-01"] for r in replay.asked("nbt"))


def test_a_hole_in_history_is_filled_from_the_provider_not_bridged(store, replay):
    """A weekly job stores a figure a week apart: a week's move is not a day's change."""
    cfg = replay.config(providers=["nbt"], currencies=["KZT"])
    week_ago = Decimal("0.1971") / 10 / Decimal("9.3450") * Decimal("0.95")
    store.save_rates([Rate("KZT", "USD", week_ago, APR2 - timedelta(days=7), "nbt")])

    def usd_up_on_apr1(body, day):  # NBT's USD was 9.3000 the day before
        return (
            body.replace(b"<Value>9.3450</Value>", b"<Value>9.3000</Value>")
            if day == APR1
            else body
        )

    replay.edit["nbt"] = usd_up_on_apr1
    header = build_header(store, cfg, APR2)
    asked = [r.query["date"][0] for r in replay.asked("nbt")]
    assert asked == ["2026-04-02", "2026-04-01"]
    expected = fmt.percent(pct(Fraction("9.3000") / Fraction("9.3450") * 100 - 100))
    assert shown(header)[0].change == expected == "-0.48%"
    assert store.latest_rate("KZT", "USD", APR1, sources=["nbt"]).rate_date == APR1


def test_no_change_known_is_shown_as_no_change_at_all(store, replay):
    cfg = replay.config(providers=["nbkr"], currencies=["KGS"])
    (line,) = shown(build_header(store, cfg, APR2))
    assert line.change == "" and line.direction == "flat" and line.words == ""


def test_a_precise_provider_is_preferred_to_a_rough_one(store, replay, caplog):
    cfg = replay.config(providers=["nbkr", "cbu"], currencies=["UZS"])
    with caplog.at_level(logging.INFO):
        (line,) = shown(build_header(store, cfg, APR2))
    assert line.source == LABELS["cbu"]
    assert "nbkr gives UZS/USD to only 2 significant digits" in caplog.text


def test_a_rough_figure_shows_only_the_digits_it_has(store, replay):
    # with nothing better (nothing precise stored either), the rough figure still
    # beats no figure, printed to the 2 digits NBKR's '0,0073' KGS carry
    header = build_header(store, replay.config(providers=["nbkr"], currencies=["UZS"]), APR2)
    (line,) = shown(header)
    assert line.source == LABELS["nbkr"]
    assert line.text == "0.000083"
    assert header.items[0].digits == 2


def test_a_fallback_never_shows_fewer_digits_than_a_stored_figure_has(store, replay, caplog):
    """Banks down, a rough source up: yesterday's precise figure, dated, beats it."""
    cfg = replay.config(providers=["cbu", "nbkr"], currencies=["UZS"])
    build_header(store, cfg, APR1)  # CBU's 1 April figure is stored, 5 digits
    assert store.latest_rate("UZS", "USD", APR1, sources=["cbu"]).digits >= 4
    replay.fail["cbu"] = Reply(503)
    with caplog.at_level(logging.INFO):
        header = build_header(store, cfg, APR2)
    (line,) = shown(header)
    assert (line.source, line.rate_date) == (LABELS["cbu"], APR1)
    assert line.text == "0.00008201"  # 1 / 12194.21, four digits, not NBKR's two
    assert line.as_of == "as of 1 Apr"
    assert "showing the stored figure of 2026-04-01 from cbu instead" in caplog.text
    # a precise stored figure older than stale_after_days does not beat a live one
    cfg.stale_after_days = 0
    (line,) = shown(build_header(store, cfg, APR2))
    assert (line.source, line.text, line.as_of) == (LABELS["nbkr"], "0.000083", "")


def test_the_bank_convention_shows_the_currencys_change_not_the_printed_figures(store, replay):
    cfg = replay.config(providers=["cbu"], currencies=["UZS"])
    header = build_header(store, cfg, APR2)
    (bank,) = shown(header, "bank")
    assert bank.text == "1 USD = 12,142 UZS"
    # the dollar fell from 12194.21 to 12142.10 UZS: the sum got stronger, and the
    # arrow says so in both conventions
    assert (bank.change, bank.direction, bank.words) == ("+0.43%", "up", "sum stronger by 0.43%")
    (ticker,) = shown(header)
    assert ticker.text == "0.00008236"
    assert (ticker.change, ticker.direction) == ("+0.43%", "up")


def test_per_pair_digits_and_locale(store, replay):
    pairs = {
        "UZS": RatePairConfig(significant_digits=7),
        "KZT": RatePairConfig(significant_digits=6),
    }
    cfg = replay.config(providers=["cbu"], currencies=["UZS", "KZT"], pairs=pairs)
    header = build_header(store, cfg, APR2)
    assert lines(header, "bank", "ru")["UZS"].text == "1 USD = 12\u00a0142,10 UZS"
    got = lines(header, "ticker", "ru")
    # CBU's KZT is '25.55' UZS: four digits are all it has, so six are not invented
    assert got["KZT"].text == "0,002104" and header.items[1].digits == 4
    assert got["KZT"].change == "+0,51\u00a0%"  # (25.55/12142.10) / (25.53/12194.21)


def test_the_peg_is_flat(store):
    from newsletter.config import RatesConfig

    cfg = RatesConfig(providers=["peg"], currencies=["TMT"])
    (line,) = shown(build_header(store, cfg, APR2))
    assert (line.text, line.change, line.direction, line.source) == (
        "0.2857",
        "0.00%",
        "flat",
        "fixed peg",
    )


def test_a_preview_stores_nothing(store, replay):
    cfg = replay.config(providers=["nbt"], currencies=["KZT"])
    header = build_header(store, cfg, APR2, save=False)
    assert shown(header)[0].change == "0.00%"  # the day before, fetched, kept in memory
    assert store.latest_rate("KZT", "USD", APR2) is None


def test_the_header_survives_the_editions_json(store, replay):
    for name in ("nbk", "cbu"):
        replay.fail[name] = Reply(500)
    store.save_rates([Rate("KZT", "USD", Decimal("0.0021"), APR1, "nbk")])
    header = build_header(
        store, replay.config(providers=["nbk"], currencies=["KZT"]), APR2 + timedelta(days=5)
    )
    again = header_from_json(header_to_json(header))
    assert again == header and again.as_of == APR1
    assert shown(again) == shown(header)


def test_an_edition_frozen_with_formatted_text_prints_as_it_was():
    old = [
        {
            "pair": "UZS/USD",
            "text": "1 USD = 12,142 UZS",
            "change": "-0.43%",
            "direction": "down",
            "source": "Central Bank of Uzbekistan",
            "date": "2026-04-02",
            "as_of": "as of 2 Apr",
        }
    ]
    header = header_from_json(old)
    (row,) = fmt.rate_rows(header, "ticker")
    assert (row.label, row.figure, row.arrow, row.change, row.as_of) == (
        "UZS/USD",
        "1 USD = 12,142 UZS",
        "▼",
        "-0.43%",
        "as of 2 Apr",
    )
    assert header.as_of == APR2 and header_to_json(header) == old


def test_a_stored_figure_of_unknown_precision_never_counts_as_precise(store):
    """Rows stored before migration 0005 have no digits: usable, never "precise"."""
    store.save_rates([Rate("KZT", "USD", Decimal("0.0021"), APR1, "nbk")])
    assert store.latest_rate("KZT", "USD", APR2, sources=["nbk"]).digits is None
    assert store.latest_rate("KZT", "USD", APR2, sources=["nbk"], min_digits=4) is None
    store.save_rates([Rate("KZT", "USD", Decimal("0.002105"), APR1, "cbu", digits=5)])
    assert store.latest_rate("KZT", "USD", APR2, min_digits=4).source == "cbu"
