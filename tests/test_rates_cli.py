"""`newsletter rates`, the [rates] config, and an edition with every provider down."""

from __future__ import annotations

import email
import email.policy
import json

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import load_config
from tests import test_rates_providers as fake_banks
from tests.fakes.http import Reply

bank_server = fake_banks.bank_server
banks = fake_banks.banks


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
invert_below = 0.001
[rates.pairs.TMT]
providers = ["{tmt}"]
"""


@pytest.fixture
def configured(project, banks):
    with (project / "newsletter.toml").open("a", encoding="utf-8") as f:
        f.write(rates_section(banks))
    return banks


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_rates_prints_the_header_as_the_plaintext_edition_does(configured):
    result = invoke("rates", "--date", "2026-04-02")
    assert result.exit_code == 0, result.output
    # KGS from CBU: NBK's '5.43' KGS has 3 significant digits, CBU's '138.80' has 5
    # each figure names its source by a footnote number
    assert result.stdout == (
        "KGS/USD[1]             0.01143  = 0.00%\n"
        "KZT/USD[2]            0.002105  ▲ +0.77%\n"
        "TJS/USD[2]              0.1047  ▼ -0.11%\n"
        "UZS/USD[1]  1 USD = 12,142 UZS  ▼ -0.43%\n"
        "TMT/USD[3]              0.2857  = 0.00%\n"
        "Rates: [1] Central Bank of Uzbekistan, [2] National Bank of Kazakhstan, [3] fixed peg\n"
    )


def test_rates_json(configured):
    result = invoke("rates", "--date", "2026-04-02", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [d["pair"] for d in data] == ["KGS/USD", "KZT/USD", "TJS/USD", "UZS/USD", "TMT/USD"]
    assert data[3] == {
        "pair": "UZS/USD",
        "text": "1 USD = 12,142 UZS",
        "change": "-0.43%",
        "direction": "down",
        "source": "Central Bank of Uzbekistan",
        "date": "2026-04-02",
        "as_of": "",
    }


def test_rates_when_everything_is_down_and_nothing_stored(project, banks):
    (project / "newsletter.toml").open("a").write(rates_section(banks, tmt="nbk"))
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
    assert "KZT/USD[1]            0.002089  ▲ +0.58%  as of 1 Apr\n" in text


def test_an_edition_goes_out_without_the_header_when_all_providers_are_down(project, banks, caplog):
    with (project / "newsletter.toml").open("a", encoding="utf-8") as f:
        f.write(rates_section(banks, tmt="nbk"))
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
        ('locale = "xx"', "rates.locale", "unknown locale 'xx'"),
        ("stale_after_days = -1", "rates.stale_after_days", "0 or more"),
        ('quote = "usd"', "rates.quote", "three-letter"),
        ('currencies = ["KZT", "USD"]', "rates.currencies[1]", "USD/USD is not a pair"),
        ("pegs = { TMT = 0 }", "rates.pegs.TMT", "more than 0"),
        ("invert_below = { UZS = -1 }", "rates.invert_below.UZS", "0 or more"),
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
        ('[rates.pairs.KZT]\ninvert_below = "low"', "rates.pairs.KZT.invert_below", "number"),
        ("[rates.pairs.KZT]\ncolour = 1", "rates.pairs.KZT.colour", "unknown key"),
    ],
)
def test_bad_pair_settings_name_the_key(project, banks, pair, key, message):
    (project / "newsletter.toml").open("a").write(rates_section(banks) + pair + "\n")
    result = invoke("rates")
    assert result.exit_code == 2, result.output
    assert f"{key}: " in result.output and message in result.output


def test_pair_settings_inherit_from_the_rates_table(project, banks):
    extra = "significant_digits = 5\ninvert_below = { KZT = 0.01 }"
    (project / "newsletter.toml").open("a").write(rates_section(banks, extra))
    cfg = load_config(project / "newsletter.toml").rates
    uzs, kzt, kgs = cfg.pair("UZS"), cfg.pair("KZT"), cfg.pair("KGS")
    assert (uzs.providers, uzs.invert_below, uzs.significant_digits) == (["cbu", "nbk"], 0.001, 5)
    assert (kzt.providers, kzt.invert_below, kzt.significant_digits) == (["nbk", "cbu"], 0.01, 5)
    assert (kgs.invert_below, cfg.pair("TMT").providers) == (0.0, ["peg"])


def test_a_relative_snapshot_path_is_relative_to_the_config(project):
    (project / "newsletter.toml").open("a").write('[rates]\nsnapshot = "data/snap.json"\n')
    cfg = load_config(project / "newsletter.toml")
    assert cfg.rates.snapshot == str(project / "data" / "snap.json")


def test_the_starter_config_asks_each_central_bank_for_its_own_currency(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    assert invoke("init").exit_code == 0
    cfg = load_config(tmp_path / "newsletter.toml").rates
    assert cfg.pair("KGS").providers[0] == "nbkr"
    assert cfg.pair("KZT").providers[0] == "nbk"
    assert cfg.pair("TJS").providers[0] == "nbt"
    assert cfg.pair("UZS").providers[0] == "cbu"
    # TMT is pegged: the official peg first, a market cross only after it
    assert cfg.pair("TMT").providers[0] == "peg"
    assert cfg.pair("UZS").invert_below == 0.001
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
    path.write_text(text.replace(line, 'providers = ["snapshot"]'))
    cfg = load_config(path).rates
    assert {c: cfg.pair(c).providers for c in cfg.currencies} == {
        c: ["snapshot"] for c in ["KGS", "KZT", "TJS", "UZS", "TMT"]
    }
    # a pair that sets its own list keeps it; the others still follow [rates]
    path.write_text(path.read_text() + '\n[rates.pairs.TMT]\nproviders = ["peg"]\n')
    cfg = load_config(path).rates
    assert cfg.pair("TMT").providers == ["peg"] and cfg.pair("KZT").providers == ["snapshot"]
    # issuer_first = false: the list as written
    text = path.read_text().replace('providers = ["snapshot"]', 'providers = ["nbk", "cbu"]')
    path.write_text(text.replace("issuer_first = true", "issuer_first = false"))
    assert load_config(path).rates.pair("UZS").providers == ["nbk", "cbu"]
