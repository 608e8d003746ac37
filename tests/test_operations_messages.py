"""Messages say only what happened: no "late" for a period that sent nothing, no
"delivery 0.0%" from a backend that cannot report deliveries."""

from __future__ import annotations

import json

from click.testing import CliRunner

from newsletter.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_a_late_run_that_sends_nothing_does_not_say_sent_late(project):
    # two hours after the period opened, within catch_up_hours, but nobody subscribed
    result = invoke("run", "--at", "2026-11-30T09:05+05:00")
    assert result.exit_code == 0, result.output
    assert "no-subscribers" in result.output
    assert "late" not in result.output
    data = json.loads(invoke("run", "--at", "2026-11-30T09:06+05:00", "--json").output)
    assert data["digests"][0]["late_by"] == ""
    # with subscribers the same late period is sent, and says so
    invoke("subscribers", "import", "subscribers.csv")
    result = invoke("run", "--at", "2026-11-30T09:10+05:00")
    assert "sent 2h 10m late (catch-up)" in result.output


def test_status_of_a_backend_without_delivery_events_reports_accepted(project):
    invoke("subscribers", "import", "subscribers.csv")
    assert invoke("run", "--at", "2026-11-30T07:05+05:00").exit_code == 0
    result = invoke("status")
    assert result.exit_code == 0
    assert (
        "recipients 22, accepted 22 (outbox: no delivery events; delivered, opened, "
        "clicked and bounced are not known)"
    ) in result.output
    assert "0.0%" not in result.output.replace("unsubscribe 0.0%", "")
    assert "delivery" not in result.output.split("rates:", 1)[1].splitlines()[0]
    data = json.loads(invoke("status", "--json").output)
    assert data["events_reported"] is False and data["backends"] == ["outbox"]
    assert data["rates"]["delivery"] is None and data["rates"]["open"] is None


def test_a_period_sent_within_15_minutes_is_not_called_late(project):
    invoke("subscribers", "import", "subscribers.csv")
    result = invoke("run", "--at", "2026-11-30T07:10+05:00")
    assert result.exit_code == 0, result.output
    assert "weekly@2026-11-30T07:00+05:00: sent;" in result.output
    assert "late" not in result.output
