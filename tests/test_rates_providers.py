"""Every rates provider against a real HTTP server on 127.0.0.1 replaying the
real central-bank responses in tests/data/rates (provenance: docs/rates.md)."""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal

import pytest

from newsletter.config import RatesConfig
from newsletter.errors import RatesError
from newsletter.rates.providers import PROVIDERS
from newsletter.rates.providers.snapshot import BUNDLED
from tests.fakes.banks import CBU, NBK, NBKR_DAILY, NBKR_WEEKLY, NBT, sample
from tests.fakes.http import Reply
from tests.helpers import fetch

# ---------------------------------------------------------------- NBK


@pytest.mark.parametrize("day", sorted(NBK))
def test_nbk_parses_every_item_of_the_real_sample(banks, day):
    body = sample(NBK[day]).decode()
    quotes = fetch(banks, "nbk", day)
    (req,) = banks.asked("nbk")
    assert req.path == "/nbk/rss/get_rates.cfm"
    assert req.query == {"fdate": [f"{day:%d.%m.%Y}"]}
    assert quotes.source == "nbk" and quotes.base == "KZT" and quotes.day == day
    titles = re.findall(r"<title>([A-Z]{3})</title>", body)
    assert len(titles) == 39 and sorted(quotes.quotes) == sorted(titles)
    assert "TMT" not in quotes.quotes
    for item in re.findall(r"<item>(.*?)</item>", body, re.S):
        code = re.search(r"<title>(\w+)</title>", item).group(1)
        q = quotes.quotes[code]
        assert q.value == Decimal(re.search(r"<description>(.*?)</description>", item).group(1))
        assert q.nominal == Decimal(re.search(r"<quant>(.*?)</quant>", item).group(1))
        assert q.change == Decimal(re.search(r"<change>(.*?)</change>", item).group(1))


def test_nbk_quant_and_change(banks):
    quotes = fetch(banks, "nbk", date(2026, 4, 1))
    uzs = quotes.quotes["UZS"]
    assert (uzs.value, uzs.nominal, uzs.change) == (Decimal("3.93"), 100, Decimal("-0.02"))
    assert quotes.quotes["USD"].change == Decimal("-2.77")
    assert quotes.quotes["HUF"].change == Decimal("0.02")  # written "+0.02"


# ---------------------------------------------------------------- NBT


def test_nbt_parses_every_valute_of_the_real_sample(banks):
    day = date(2026, 5, 18)
    quotes = fetch(banks, "nbt", day)
    (req,) = banks.asked("nbt")
    assert req.query == {"date": ["2026-05-18"], "export": ["xmlout"]}
    assert quotes.base == "TJS" and quotes.day == day
    body = sample(NBT).decode()
    codes = re.findall(r"<CharCode>(\w+)</CharCode>", body)
    assert len(codes) == 36 and sorted(quotes.quotes) == sorted(codes)
    assert {"USD", "KGS", "KZT", "UZS", "TMT"} <= set(quotes.quotes)
    assert quotes.quotes["KGS"].value == Decimal("1.0686")
    assert quotes.quotes["KGS"].nominal == 10
    assert quotes.quotes["UZS"].nominal == 100
    assert quotes.quotes["TMT"].value == Decimal("2.6700")
    assert all(q.change is None for q in quotes.quotes.values())


# ---------------------------------------------------------------- NBKR


def test_nbkr_merges_daily_and_weekly_in_windows_1251_with_comma_decimals(banks):
    quotes = fetch(banks, "nbkr", date(2026, 5, 24))
    assert sorted(r.path for r in banks.asked("nbkr")) == [
        "/nbkr/XML/daily.xml",
        "/nbkr/XML/weekly.xml",
    ]
    assert quotes.base == "KGS"
    assert quotes.day == date(2026, 5, 24)  # the daily file's date
    daily = re.findall(rb'ISOCode="(\w+)"', sample(NBKR_DAILY))
    weekly = re.findall(rb'ISOCode="(\w+)"', sample(NBKR_WEEKLY))
    assert len(daily) == 5 and len(weekly) == 40
    assert sorted(quotes.quotes) == sorted({c.decode() for c in daily + weekly})
    assert quotes.quotes["USD"].value == Decimal("87.4500")
    assert quotes.quotes["KZT"].value == Decimal("0.1859")
    assert quotes.quotes["TJS"].value == Decimal("9.4148")
    assert quotes.quotes["UZS"].value == Decimal("0.0073")
    assert quotes.quotes["TMT"].value == Decimal("24.9857")


def test_nbkr_decodes_cyrillic_windows_1251(banks):
    name = "Ежедневные курсы".encode("cp1251")
    banks.edit["nbkr"] = lambda body, _: body.replace(b"Daily Exchange Rates", name)
    with pytest.raises(UnicodeDecodeError):
        name.decode("utf-8")  # so a parser reading UTF-8 would choke on it
    quotes = fetch(banks, "nbkr", date(2026, 5, 24))
    assert quotes.quotes["USD"].value == Decimal("87.4500")


def test_nbkr_without_weekly_still_gives_the_daily_currencies(banks, caplog):
    orig = banks.recorded

    def answer(name, req):
        if req.path.endswith("weekly.xml"):
            return b"<html>502 Bad Gateway</html>", "text/html", None
        return orig(name, req)

    banks.answer = answer  # type: ignore[method-assign]
    quotes = fetch(banks, "nbkr", date(2026, 5, 24))
    assert sorted(quotes.quotes) == ["CNY", "EUR", "KZT", "RUB", "USD"]
    assert "weekly rates unavailable" in caplog.text


def test_nbkr_leaves_out_weekly_figures_no_longer_valid(banks, caplog):
    banks.nbkr_weekly_day = date(2026, 5, 16)  # valid 16–22 May; the daily is for the 24th
    quotes = fetch(banks, "nbkr", date(2026, 5, 24))
    assert "TJS" not in quotes.quotes and "USD" in quotes.quotes
    assert "not valid on 2026-05-24" in caplog.text


# ---------------------------------------------------------------- CBU


@pytest.mark.parametrize("day", sorted(CBU))
def test_cbu_parses_every_entry_of_the_real_sample(banks, day):
    quotes = fetch(banks, "cbu", day)
    (req,) = banks.asked("cbu")
    assert req.path == f"/cbu/en/arkhiv-kursov-valyut/json/all/{day:%Y-%m-%d}/"
    assert quotes.base == "UZS" and quotes.day == day
    entries = json.loads(sample(CBU[day]))
    assert len(entries) == 75
    assert sorted(quotes.quotes) == sorted(e["Ccy"] for e in entries)
    for e in entries:
        q = quotes.quotes[e["Ccy"]]
        assert (q.value, q.nominal, q.change) == (
            Decimal(e["Rate"]),
            Decimal(e["Nominal"]),
            Decimal(e["Diff"]),
        )


# ---------------------------------------------------------------- peg and snapshot


def test_peg_is_exact_and_does_not_move():
    quotes = PROVIDERS["peg"](RatesConfig()).fetch(date(2026, 5, 24))
    assert quotes.base == "USD" and quotes.day == date(2026, 5, 24)
    tmt = quotes.quotes["TMT"]
    assert tmt.per_unit * Decimal("3.5") == 1
    assert tmt.change == 0


def test_peg_rates_come_from_the_config():
    quotes = PROVIDERS["peg"](RatesConfig(pegs={"TMT": 3.5, "AED": 3.6725})).fetch(date(2026, 1, 1))
    assert quotes.quotes["AED"].nominal == Decimal("3.6725")


def test_snapshot_serves_the_newest_day_on_or_before(tmp_path):
    data = json.loads(BUNDLED.read_text())
    quotes = PROVIDERS["snapshot"](RatesConfig()).fetch(date(2026, 11, 30))
    newest = max(data["days"])
    assert quotes.day == date.fromisoformat(newest)
    assert quotes.quotes["UZS"].nominal == Decimal(data["days"][newest]["UZS"])
    with pytest.raises(RatesError, match="no snapshot rates on or before"):
        PROVIDERS["snapshot"](RatesConfig()).fetch(date(2020, 1, 1))
    bad = tmp_path / "snap.json"
    bad.write_text('{"days": {"2026-01-01": ["not", "a", "table"]}}')
    with pytest.raises(RatesError, match="not a valid"):
        PROVIDERS["snapshot"](RatesConfig(snapshot=str(bad))).fetch(date(2026, 1, 2))


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize("name", ["nbk", "nbt", "nbkr", "cbu"])
@pytest.mark.parametrize(
    "reply, message",
    [
        (Reply(503, b"<html>Service Unavailable</html>"), "HTTP 503"),
        (Reply(500, b""), "HTTP 500"),
        (Reply(200, b"<html><body>Maintenance</body></html>"), "not a valid|not well-formed"),
        (Reply(200, b"   "), "empty response"),
        (Reply(200, b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x/>"), "DTD|not a valid"),
        (Reply(200, b"[1, 2, 3]"), "not a valid|not well-formed"),
        (Reply(drop=True), "connection|cannot connect|Remote end"),
    ],
)
def test_failures_are_rates_errors_naming_the_url(banks, name, reply, message):
    banks.fail[name] = reply
    with pytest.raises(RatesError, match=message) as err:
        fetch(banks, name, date(2026, 4, 1))
    assert err.value.where and err.value.where.startswith(banks.server.base)


@pytest.mark.parametrize("name", ["nbk", "cbu"])
def test_a_timeout_is_a_rates_error(banks, name):
    banks.fail[name] = Reply(200, b"", delay=1.0)
    with pytest.raises(RatesError, match="timed out"):
        fetch(banks, name, date(2026, 4, 1), timeout=0.3)


def test_one_garbled_item_is_skipped_not_the_whole_answer(banks, caplog):
    banks.edit["nbk"] = lambda body, _: body.replace(
        b"<description>5.47</description>", b"<description>n/a</description>"
    )
    quotes = fetch(banks, "nbk", date(2026, 4, 1))
    assert "KGS" not in quotes.quotes and "USD" in quotes.quotes
    assert "KGS <description>: not a number" in caplog.text


def test_a_zero_rate_is_refused(banks, caplog):
    banks.edit["cbu"] = lambda body, _: body.replace(b'"Rate":"25.53"', b'"Rate":"0"')
    quotes = fetch(banks, "cbu", date(2026, 4, 1))
    assert "KZT" not in quotes.quotes
    assert "must be more than 0" in caplog.text
