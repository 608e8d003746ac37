"""Alerts for what did not happen: a digest with no edition for alert_idle_periods
schedule periods in a row alerts (once per period) and the run exits non-zero."""

from __future__ import annotations

import json

from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.store import open_store
from tests.helpers import build_config

ALERTS = '\n[alerts]\nemail_to = ["editors@steppe-ledger.example"]\nvia = "outbox"\n'


def run(at: str):
    result = CliRunner().invoke(cli, ["run", "--at", at, "--json"])
    data = json.loads(result.stdout)
    (weekly,) = [d for d in data["digests"] if d["digest"] == "weekly"]
    return result.exit_code, weekly


def alert_files(project):
    folder = project / "outbox" / "alerts"
    return sorted(folder.glob("*.eml")) if folder.exists() else []


def test_no_edition_for_two_periods_alerts_once_per_period_and_exits_1(project):
    (project / "newsletter.toml").open("a").write(ALERTS)
    # nobody subscribed: the first period without an edition is counted, no alarm yet
    code, d = run("2026-11-30T07:05+05:00")
    assert (code, d["status"], d["idle_periods"], d["stalled"]) == (0, "no-subscribers", 1, False)
    code, d = run("2026-11-30T08:00+05:00")  # the same period again: counted once
    assert (code, d["idle_periods"]) == (0, 1)
    assert alert_files(project) == []
    # the next period too (no new articles either): the digest has stalled
    code, d = run("2026-12-07T07:05+05:00")
    assert (code, d["idle_periods"], d["stalled"]) == (1, 2, True)
    (alert,) = alert_files(project)
    raw = alert.read_bytes()
    assert b"weekly: no edition for 2 schedule periods in a row" in raw
    # every run of that period exits 1, but the editors hear of it once
    code, d = run("2026-12-07T09:05+05:00")
    assert (code, d["stalled"]) == (1, True)
    assert len(alert_files(project)) == 1
    # a third period: one more email
    code, d = run("2026-12-14T07:05+05:00")
    assert (code, d["idle_periods"]) == (1, 3)
    assert len(alert_files(project)) == 2
    # an edition goes out: the count starts again
    assert CliRunner().invoke(cli, ["subscribers", "import", "subscribers.csv"]).exit_code == 0
    code, d = run("2026-11-30T08:10+05:00")
    assert (code, d["status"], d["idle_periods"], d["stalled"]) == (0, "sent", 0, False)
    store = open_store(build_config(project).database_url)
    try:
        last = store.digest_run("weekly")
        assert (last.status, last.idle_periods, last.exit_code) == ("sent", 0, 0)
    finally:
        store.close()


def test_alert_idle_periods_zero_never_alerts(project):
    toml = project / "newsletter.toml"
    toml.write_text(
        toml.read_text().replace('name = "weekly"', 'name = "weekly"\nalert_idle_periods = 0')
        + ALERTS
    )
    for at in ("2026-11-30T07:05+05:00", "2026-12-07T07:05+05:00", "2026-12-14T07:05+05:00"):
        code, d = run(at)
        assert (code, d["stalled"]) == (0, False)
    assert d["idle_periods"] == 3
    assert alert_files(project) == []


def test_text_summary_names_the_stall(project):
    for at in ("2026-11-30T07:05+05:00", "2026-12-07T07:05+05:00"):
        result = CliRunner().invoke(cli, ["run", "--at", at])
    assert result.exit_code == 1
    assert "too-few-articles (2 periods without an edition); 0 accepted" in result.output


def test_periods_missed_while_the_machine_was_down_count_and_alert(project):
    (project / "newsletter.toml").open("a").write(ALERTS)
    assert CliRunner().invoke(cli, ["subscribers", "import", "subscribers.csv"]).exit_code == 0
    code, d = run("2026-11-30T07:05+05:00")
    assert (code, d["status"], d["idle_periods"]) == (0, "sent", 0)
    # down from then until Wednesday the 16th: the 7th was never run, the 14th is past
    # catch_up_hours. Two periods without an edition: stalled, exit 1, the alert
    code, d = run("2026-12-16T07:05+05:00")
    assert (d["status"], d["missed_periods"]) == ("missed", ["2026-12-07T07:00+05:00"])
    assert (code, d["idle_periods"], d["stalled"]) == (1, 2, True)
    (alert,) = alert_files(project)
    assert b"weekly: no edition for 2 schedule periods in a row" in alert.read_bytes()
    # the skipped period is not counted again by the next runs of it
    code, d = run("2026-12-16T09:05+05:00")
    assert (code, d["status"], d["idle_periods"]) == (1, "skipped", 2)
    assert len(alert_files(project)) == 1
