"""Unfinished editions always resume, whatever period they belong to.

At the next period's boundary `run` and `send` first finish every unfinished
edition of the digest, oldest first; one older than ``resume_max_age_hours``
(default: one schedule period) is reported and alerted instead, and goes out
only with `send --resume EDITION`.
"""

from __future__ import annotations

import email
import email.policy
import json
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.jobs.run import max_resume_age
from newsletter.store import open_store
from tests.helpers import build_config, unfinished

NEXT_WEEK = "2026-12-07T07:05:00+05:00"


def sent_files(project, eid) -> int:
    return len(list((project / "outbox" / f"edition-{eid}").glob("*.eml")))


def age_by(project, eid, days) -> None:
    store = open_store(build_config(project).database_url)
    with store.begin() as conn:
        conn.execute(
            sa.text("update editions set created_at = :t where id = :i"),
            {"t": datetime.now().astimezone() - timedelta(days=days), "i": eid},
        )
    store.close()


@pytest.mark.parametrize("command", ["run", "send"])
def test_the_next_period_first_finishes_the_unfinished_edition(project, command):
    eid = unfinished(project)
    args = [command, "--at", NEXT_WEEK, "--json"] + (["--no-ingest"] if command == "run" else [])
    out = CliRunner().invoke(cli, args)
    data = json.loads(out.stdout)
    assert f"resuming unfinished edition {eid}" in out.stderr
    first, current = data["digests"]
    assert (first["edition_id"], first["status"], first["period"]) == (
        eid,
        "resumed",
        "2026-11-30T07:00+05:00",
    )
    assert first["send"]["accepted"] == 22
    assert current["period"] == "2026-12-07T07:00+05:00"
    assert sent_files(project, eid) == 22
    store = open_store(build_config(project).database_url)
    assert store.get_edition(eid).status == "sent"
    store.close()


def test_an_edition_older_than_the_limit_is_reported_and_alerted_not_sent(project):
    eid = unfinished(project)
    age_by(project, eid, 8)  # a weekly digest: more than one period
    runner = CliRunner()
    out = runner.invoke(cli, ["run", "--at", NEXT_WEEK, "--no-ingest"])
    assert out.exit_code == 1, out.output
    assert "stale" in out.output
    assert f"`newsletter send --resume {eid}` sends it" in out.output
    assert "22 deliveries not sent" in out.output
    assert sent_files(project, eid) == 0
    (alert,) = (project / "outbox" / "alerts").glob("*.eml")
    body = email.message_from_bytes(alert.read_bytes(), policy=email.policy.default)
    assert f"newsletter send --resume {eid}" in body.get_content()
    # plain `send` does not send it either
    out = runner.invoke(cli, ["send", "--at", NEXT_WEEK])
    assert out.exit_code == 1 and sent_files(project, eid) == 0
    # an explicit decision does
    out = runner.invoke(cli, ["send", "--resume", str(eid), "--at", NEXT_WEEK])
    assert out.exit_code == 0, out.output
    assert sent_files(project, eid) == 22
    # a finished edition, or none, cannot be resumed: one line, exit 2
    again = runner.invoke(cli, ["send", "--resume", str(eid)])
    assert again.exit_code == 2
    assert again.output.strip() == (
        f"Error: edition {eid} is sent, not unfinished; nothing to resume"
    )
    missing = runner.invoke(cli, ["send", "--resume", "999"])
    assert missing.exit_code == 2
    assert missing.output.strip() == "Error: no edition 999 (`newsletter status` lists editions)"
    assert sent_files(project, eid) == 22


def test_the_age_limit_is_one_period_by_default_and_configurable(project):
    eid = unfinished(project)
    cfg = build_config(project)
    store = open_store(cfg.database_url)
    edition = store.get_edition(eid)
    store.close()
    digest = cfg.digest()
    assert max_resume_age(digest, edition) == timedelta(days=7)
    digest.local_time = True
    assert max_resume_age(digest, edition) == timedelta(days=7, hours=26)
    digest.resume_max_age_hours = 3
    assert max_resume_age(digest, edition) == timedelta(hours=3)
    age_by(project, eid, 1)
    toml = project / "newsletter.toml"
    toml.write_text(
        toml.read_text().replace("min_articles = 1", "min_articles = 1\nresume_max_age_hours = 12")
    )
    out = CliRunner().invoke(cli, ["send", "--at", NEXT_WEEK])
    assert out.exit_code == 1 and "stale" in out.output
    bad = toml.read_text().replace("resume_max_age_hours = 12", "resume_max_age_hours = -1")
    toml.write_text(bad)
    out = CliRunner().invoke(cli, ["send", "--at", NEXT_WEEK])
    assert out.exit_code == 2 and "resume_max_age_hours" in out.output


def test_a_stale_edition_once_cancelled_is_no_longer_reported_nor_sent(project):
    eid = unfinished(project)
    age_by(project, eid, 8)
    runner = CliRunner()
    out = runner.invoke(cli, ["run", "--at", NEXT_WEEK, "--no-ingest"])
    assert out.exit_code == 1 and "stale" in out.output
    alerts = project / "outbox" / "alerts"
    assert len(list(alerts.glob("*.eml"))) == 1
    out = runner.invoke(cli, ["cancel", str(eid)])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["run", "--at", NEXT_WEEK, "--no-ingest", "--json"])
    data = json.loads(out.stdout)
    assert [d["status"] for d in data["digests"] if d["edition_id"] == eid] == []
    assert "stale" not in out.output and out.exit_code == 0, out.output
    assert len(list(alerts.glob("*.eml"))) == 1  # no new alert
    assert sent_files(project, eid) == 0
    # and it cannot be sent by hand either: one line, exit 2, nothing sent
    out = runner.invoke(cli, ["send", "--resume", str(eid)])
    assert out.exit_code == 2
    assert out.output.strip() == (
        f"Error: edition {eid} is cancelled, not unfinished; nothing to resume"
    )
    assert sent_files(project, eid) == 0


def test_several_unfinished_editions_are_finished_oldest_first(project):
    """Two earlier periods left unfinished (the sender died twice): the next run
    sends both, the older one first, before anything of its own period."""
    from newsletter.editions.freeze import create_edition
    from newsletter.editions.plan import plan_edition
    from newsletter.schedule import current_period

    toml = project / "newsletter.toml"
    toml.write_text(
        toml.read_text().replace(
            "min_articles = 1", "min_articles = 1\nresume_max_age_hours = 1000"
        )
    )
    runner = CliRunner()
    assert runner.invoke(cli, ["subscribers", "import", "subscribers.csv"]).exit_code == 0
    assert runner.invoke(cli, ["ingest"]).exit_code == 0
    cfg = build_config(project)
    store = open_store(cfg.database_url)
    digest = cfg.digest()
    first = datetime.fromisoformat("2026-11-30T07:05:00+05:00")
    plan = plan_edition(store, cfg, digest, first)
    older, _ = create_edition(store, cfg, plan, first)
    # the same stories again, a week later: each frozen, neither sent
    when = datetime.fromisoformat(NEXT_WEEK)
    plan.period = current_period(digest, when, []).key
    newer, _ = create_edition(store, cfg, plan, when)
    assert older < newer
    assert store.get_edition(older).status == store.get_edition(newer).status == "sending"
    store.close()
    out = runner.invoke(cli, ["send", "--at", "2026-12-14T07:05:00+05:00", "--json"])
    data = json.loads(out.stdout)
    resumed = [(d["edition_id"], d["status"]) for d in data["digests"][:2]]
    assert resumed == [(older, "resumed"), (newer, "resumed")], out.output
    assert data["digests"][2]["period"] == "2026-12-14T07:00+05:00"
    assert out.stderr.index(f"edition {older}") < out.stderr.index(f"edition {newer}")
    assert sent_files(project, older) == sent_files(project, newer) == 22
    # the older one's messages were all written before the newer one's first
    written = {
        eid: [p.stat().st_mtime_ns for p in (project / "outbox" / f"edition-{eid}").iterdir()]
        for eid in (older, newer)
    }
    assert max(written[older]) <= min(written[newer])
