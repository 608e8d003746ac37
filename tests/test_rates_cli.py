"""`newsletter rates`, the [rates] config, and an edition with every provider down."""

from __future__ import annotations

import email
import email.policy
import json
import re

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from tests.fakes.http import Reply
from tests.helpers import build_config


def rates_section(banks, extra: str = "", tmt: str = "peg") -> str:
    urls = ", ".join(f'{k} = "{v}"' for k, v in banks.urls().items())
    return f"""
[rates]
providers = ["nbk", "cbu"]
timeout = 2
urls = {{ {urls} }}
{extra}
[rates.pairs.UZS]
providers = ["cbu", "nbk"]
[rates.pairs.TMT]
providers = ["{tmt}"]
"""


@pytest.fixture
def configured(project, banks):
    build_config(project, toml_extra=rates_section(banks))
    return banks


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


LEGEND = "▲ stronger, ▼ weaker against the US dollar since the previous business day\n"
SOURCES = "Rates: [1] Central Bank of Uzbekistan, [2] National Bank of Kazakhstan, [3] fixed peg\n"


def test_rates_prints_the_header_as_the_plaintext_edition_does(configured):
    result = invoke("rates", "--date", "2026-04-02")
    assert result.exit_code == 0, result.output
    # KGS from CBU: NBK's '5.43' KGS has 3 significant digits, CBU's '138.80' has 5
    # each figure names its source by a footnote number; one convention throughout
    assert result.stdout == (
        "KGS/USD[1]     0.01143  = 0.00%\n"
        "KZT/USD[2]    0.002105  ▲ +0.77%\n"
        "TJS/USD[2]      0.1047  ▼ -0.11%\n"
        "UZS/USD[1]  0.00008236  ▲ +0.43%\n"
        "TMT/USD[3]      0.2857  = 0.00%\n" + LEGEND + SOURCES
    )


def test_rates_in_the_banks_convention(project, banks):
    toml = (project / "newsletter.toml").read_text(encoding="utf-8") + rates_section(banks)
    toml = toml.replace("[[digests]]\n", '[[digests]]\nrates_convention = "bank"\n', 1)
    build_config(project, toml=toml)
    result = invoke("rates", "--date", "2026-04-02")
    assert result.exit_code == 0, result.output
    # the label names the figure; the change is still the currency's against the
    # dollar: the sum got stronger (the dollar fell from 12,194 to 12,142 UZS)
    assert result.stdout == (
        "USD/KGS[1]   1 USD = 87.48 KGS  = 0.00%\n"
        "USD/KZT[2]   1 USD = 475.1 KZT  ▲ +0.77%\n"
        "USD/TJS[2]   1 USD = 9.550 TJS  ▼ -0.11%\n"
        "USD/UZS[1]  1 USD = 12,142 UZS  ▲ +0.43%\n"
        "USD/TMT[3]   1 USD = 3.500 TMT  = 0.00%\n" + LEGEND + SOURCES
    )


def test_rates_json(configured):
    result = invoke("rates", "--date", "2026-04-02", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [d["label"] for d in data] == ["KGS/USD", "KZT/USD", "TJS/USD", "UZS/USD", "TMT/USD"]
    uzs = data[3]
    assert uzs["value"].startswith("0.000082358076")  # 1 / 12142.10, as stored
    del uzs["value"], uzs["change_pct"]
    assert uzs == {
        "currency": "UZS",
        "quote": "USD",
        "digits": 4,
        "label": "UZS/USD",
        "figure": "0.00008236",
        "change": "+0.43%",
        "direction": "up",
        "arrow": "▲",
        "words": "sum stronger by 0.43%",
        "source": "Central Bank of Uzbekistan",
        "date": "2026-04-02",
        "dated": False,
        "as_of": "",
        "note": 1,
    }


def test_rates_when_everything_is_down_and_nothing_stored(project, banks):
    build_config(project, toml_extra=rates_section(banks, tmt="nbk"))
    for name in ("nbk", "cbu"):
        banks.fail[name] = Reply(503)
    result = invoke("rates", "--date", "2026-04-02")
    assert result.exit_code == 1  # not one pair: a failure, not "ok"
    assert result.stdout == (
        "no rates available; the next edition would go out without a rates header\n"
    )
    assert "rates: nbk failed" in result.stderr
    assert "rates: no current figure for KGS, KZT, TJS, UZS, TMT (of 5 pairs)" in result.stderr


def test_rates_shows_stale_stored_figures_with_their_date(configured):
    assert invoke("rates", "--date", "2026-04-01").exit_code == 0
    for name in ("nbk", "cbu"):
        configured.fail[name] = Reply(500)
    result = invoke("rates", "--date", "2026-04-09", "--json")
    assert result.exit_code == 3  # shown, but old: some providers failed
    data = json.loads(result.stdout)
    # TMT is the peg: never down, never stale
    assert [d["as_of"] for d in data] == ["as of 1 Apr"] * 4 + [""]
    text = invoke("rates", "--date", "2026-04-09").stdout
    assert "KZT/USD[2]    0.002089  ▲ +0.58%  as of 1 Apr\n" in text
    # KGS stays CBU's five-digit figure, not NBK's three-digit one of the same day
    assert "KGS/USD[1]     0.01143  = 0.00%   as of 1 Apr\n" in text


def test_an_edition_goes_out_without_the_header_when_all_providers_are_down(project, banks, caplog):
    build_config(project, toml_extra=rates_section(banks, tmt="nbk"))
    for name in ("nbk", "cbu"):
        banks.fail[name] = Reply(200, b"<html>garbage</html>")
    assert invoke("subscribers", "add", "reader@example.com").exit_code == 0
    result = invoke("run", "--at", "2026-11-30T07:05:00+05:00", "--json")
    assert result.exit_code == 0, result.output
    (digest,) = json.loads(result.stdout)["digests"]
    assert digest["status"] == "sent"
    eml = next((project / "outbox").rglob("*.eml"))
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "/USD" not in text and "/USD" not in html and "Rates:" not in text
    assert "no rates at all; the edition goes out without a rates header" in result.stderr


@pytest.mark.parametrize(
    "extra, key, message",
    [
        ('providers = ["nbk", "ecb"]', "rates.providers[1]", "unknown rates provider 'ecb'"),
        ("significant_digits = 2", "rates.significant_digits", "from 4 to 15"),
        ('locale = "ru"', "rates.locale", "removed: figures are written the way"),
        ("stale_after_days = -1", "rates.stale_after_days", "0 or more"),
        ('quote = "usd"', "rates.quote", "three-letter"),
        ('currencies = ["KZT", "USD"]', "rates.currencies[1]", "USD/USD is not a pair"),
        ("pegs = { TMT = 0 }", "rates.pegs.TMT", "more than 0"),
        ("invert_below = { UZS = 0.001 }", "rates.invert_below", 'rates_convention = "bank"'),
    ],
)
def test_bad_rates_settings_name_the_key(project, banks, extra, key, message):
    section = rates_section(banks, extra)
    if extra.startswith("providers"):
        section = section.replace('providers = ["nbk", "cbu"]\n', "", 1)
    (project / "newsletter.toml").open("a").write(section)
    result = invoke("rates", "--date", "2026-04-02")
    assert result.exit_code == 2
    assert f"newsletter.toml: {key}: " in result.output and message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "pair, key, message",
    [
        ('[rates.pairs.EUR]\nproviders = ["nbk"]', "rates.pairs.EUR", "not in rates.currencies"),
        ('[rates.pairs.KZT]\nproviders = ["nbk", "nbk"]', "rates.pairs.KZT.providers", "twice"),
        ("[rates.pairs.KZT]\nsignificant_digits = 3", "rates.pairs.KZT.significant_digits", "4"),
        ("[rates.pairs.KZT]\ninvert_below = 0.1", "rates.pairs.KZT.invert_below", "removed"),
        ("[rates.pairs.KZT]\ncolour = 1", "rates.pairs.KZT.colour", "unknown key"),
    ],
)
def test_bad_pair_settings_name_the_key(project, banks, pair, key, message):
    (project / "newsletter.toml").open("a").write(rates_section(banks) + pair + "\n")
    result = invoke("rates")
    assert result.exit_code == 2, result.output
    assert f"{key}: " in result.output and message in result.output


def test_pair_settings_inherit_from_the_rates_table(project, banks):
    extra = "significant_digits = 5"
    kzt_digits = "[rates.pairs.KZT]\nsignificant_digits = 6\n"
    cfg = build_config(project, toml_extra=rates_section(banks, extra) + kzt_digits).rates
    uzs, kzt = cfg.pair("UZS"), cfg.pair("KZT")
    assert (uzs.providers, uzs.significant_digits) == (["cbu", "nbk"], 5)
    assert (kzt.providers, kzt.significant_digits) == (["nbk", "cbu"], 6)
    assert cfg.pair("TMT").providers == ["peg"]


def test_a_relative_snapshot_path_is_relative_to_the_config(project):
    cfg = build_config(project, toml_extra='[rates]\nsnapshot = "data/snap.json"\n')
    assert cfg.rates.snapshot == str(project / "data" / "snap.json")


def test_the_starter_config_asks_each_central_bank_for_its_own_currency(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    assert invoke("init").exit_code == 0
    cfg = build_config(tmp_path).rates
    assert cfg.pair("KGS").providers[0] == "nbkr"
    assert cfg.pair("KZT").providers[0] == "nbk"
    assert cfg.pair("TJS").providers[0] == "nbt"
    assert cfg.pair("UZS").providers[0] == "cbu"
    # TMT is pegged: the official peg first, a market cross only after it
    assert cfg.pair("TMT").providers[0] == "peg"
    assert build_config(tmp_path).digest().rates_convention == "ticker"
    # no pair repeats its own list: every one follows [rates] providers
    assert cfg.pairs == {}
    assert all(sorted(cfg.pair(c).providers) == sorted(cfg.providers) for c in cfg.currencies)


def test_rates_providers_reach_every_pair_of_the_starter_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    assert invoke("init").exit_code == 0
    path = tmp_path / "newsletter.toml"
    text = path.read_text()
    line = next(x for x in text.splitlines() if x.startswith("providers = "))
    cfg = build_config(tmp_path, toml=text.replace(line, 'providers = ["snapshot"]')).rates
    assert {c: cfg.pair(c).providers for c in cfg.currencies} == {
        c: ["snapshot"] for c in ["KGS", "KZT", "TJS", "UZS", "TMT"]
    }
    # a pair that sets its own list keeps it; the others still follow [rates]
    cfg = build_config(tmp_path, toml_extra='\n[rates.pairs.TMT]\nproviders = ["peg"]\n').rates
    assert cfg.pair("TMT").providers == ["peg"] and cfg.pair("KZT").providers == ["snapshot"]
    # issuer_first = false: the list as written
    text = path.read_text().replace('providers = ["snapshot"]', 'providers = ["nbk", "cbu"]')
    text = text.replace("issuer_first = true", "issuer_first = false")
    assert build_config(tmp_path, toml=text).rates.pair("UZS").providers == ["nbk", "cbu"]


def test_docs_rates_md_shows_the_real_output(project):
    """Every `$ newsletter rates …` example in docs/rates.md is what the command
    prints on the bundled snapshot."""
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "rates.md").read_text(encoding="utf-8")
    examples = re.findall(r"\n    \$ newsletter (rates[^\n]*)\n((?:    [^\n]*\n)+)", doc)
    assert len(examples) >= 2
    # a project on the bundled snapshot and nothing else (the default providers)
    assert "[rates]" not in (project / "newsletter.toml").read_text()
    for command, block in examples:
        expected = "".join(line[4:] + "\n" for line in block.splitlines())
        result = invoke(*command.split())
        assert result.exit_code == 0, result.output
        assert result.stdout == expected, command
