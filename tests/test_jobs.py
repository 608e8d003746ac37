"""The scheduled run against a real store: due and not due, several digests, catch-up,
missed periods, local time, dry runs, exit codes, logs and the failure alert."""

from __future__ import annotations

import email
import email.policy
import json
import shutil
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.jobs.outcomes import DigestOutcome, RunReport
from newsletter.jobs.run import run as run_job
from newsletter.jobs.run import run_digest
from newsletter.models import Article, Subscriber, Tag
from newsletter.store import open_store
from tests.helpers import ROOT, build_config

# Monday 2026-11-30 07:00 in Almaty is 02:00 UTC and 03:00 in Berlin: both digests fire
MONDAY = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)

CONFIG = """
database = "{db}"

[site]
name = "The Steppe Ledger"
url = "https://steppe-ledger.example/"
postal_address = "1 Abai Avenue, Almaty"
from_email = "digest@steppe-ledger.example"
public_url = "https://steppe-ledger.example/newsletter"

[render]
templates = "templates"

[delivery]
backend = "outbox"
outbox_dir = "outbox"

[[digests]]
name = "weekly"
title = "Weekly digest"
subject = "{{site}}: the week"
tags = ["kazakhstan"]
schedule = "0 7 * * MON"
timezone = "Asia/Almaty"
catch_up_hours = 6

[[digests]]
name = "daily"
title = "Morning brief"
subject = "Brief for {{date}}"
tags = ["economy"]
schedule = "0 3 * * *"
timezone = "Europe/Berlin"
template = "brief"
catch_up_hours = 2
"""


def job_config(folder: Path, db_url: str, extra: str = ""):
    """CONFIG in ``folder`` (``extra`` TOML after it), with the daily digest's own template."""
    templates = folder / "templates"
    templates.mkdir(exist_ok=True)
    # the daily digest has a template of its own: the bundled one with a marker
    shutil.copy(ROOT / "templates" / "digest.mjml.j2", templates / "brief.mjml.j2")
    text = (ROOT / "templates" / "digest.txt.j2").read_text(encoding="utf-8")
    (templates / "brief.txt.j2").write_text("DAILY BRIEF TEMPLATE\n" + text, encoding="utf-8")
    return build_config(folder, toml=CONFIG.format(db=db_url), toml_extra=extra)


def story(n: int, published: datetime, *tags: str) -> Article:
    return Article(
        uid=f"story-{n}",
        url=f"https://steppe-ledger.example/{n}/",
        title=f"Story number {n} about {' and '.join(tags)}",
        published_at=published,
        summary_text=f"Summary {n}.",
        tags=[Tag.from_name(t) for t in tags],
    )


@pytest.fixture
def setup(db_url, tmp_path, monkeypatch):
    """A config with two digests, three subscribers and stories for both digests."""
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "test-secret-key-0123456789")
    monkeypatch.chdir(tmp_path)
    cfg = job_config(tmp_path, db_url)
    store = open_store(cfg.database_url)
    for i, tz in enumerate(["Asia/Almaty", "Europe/Berlin", ""]):
        store.upsert_subscriber(Subscriber(email=f"reader{i}@example.com", timezone=tz))
    before = MONDAY - timedelta(hours=12)
    store.upsert_articles(
        [story(1, before, "Kazakhstan"), story(2, before, "Economy"), story(3, before, "Economy")]
    )
    yield cfg, store
    store.close()


def outbox_messages(cfg, edition_id: int) -> list[email.message.EmailMessage]:
    folder = cfg.resolve(cfg.delivery.outbox_dir) / f"edition-{edition_id}"
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(folder.glob("*.eml"))
    ]


def by_digest(report: RunReport) -> dict[str, DigestOutcome]:
    return {d.digest: d for d in report.digests}


def count_rows(store, *tables: str) -> dict[str, int]:
    with store.engine.connect() as c:
        return {t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}


# --------------------------------------------------------------------------- due / not due


def test_each_due_digest_is_sent_once_with_its_own_tags_subject_and_template(setup):
    cfg, store = setup
    report = run_job(store, cfg, MONDAY + timedelta(minutes=5))
    out = by_digest(report)
    assert out["weekly"].status == "sent" and out["daily"].status == "sent"
    assert out["weekly"].period == "2026-11-30T07:00+05:00"
    assert out["daily"].period == "2026-11-30T03:00+01:00"
    assert report.exit_code == 0

    weekly = outbox_messages(cfg, out["weekly"].edition_id)
    daily = outbox_messages(cfg, out["daily"].edition_id)
    assert len(weekly) == len(daily) == 3
    assert {m["Subject"] for m in weekly} == {"The Steppe Ledger: the week"}
    assert {m["Subject"] for m in daily} == {"Brief for 30 November 2026"}
    w_text = weekly[0].get_body(("plain",)).get_content()
    d_text = daily[0].get_body(("plain",)).get_content()
    assert "Story number 1" in w_text and "Story number 2" not in w_text
    assert "Story number 2" in d_text and "Story number 1" not in d_text
    assert "DAILY BRIEF TEMPLATE" in d_text and "DAILY BRIEF TEMPLATE" not in w_text

    # the same period again, later: nothing is sent twice
    again = by_digest(run_job(store, cfg, MONDAY + timedelta(hours=1)))
    assert again["weekly"].status == again["daily"].status == "already-sent"
    assert len(outbox_messages(cfg, out["weekly"].edition_id)) == 3


def test_not_due_until_the_next_fire_time(setup):
    cfg, store = setup
    run_job(store, cfg, MONDAY + timedelta(minutes=1))
    # Tuesday 02:59 Berlin: the daily's period is still Monday's
    store.upsert_articles([story(4, MONDAY + timedelta(hours=20), "Economy")])
    tuesday = datetime(2026, 12, 1, 1, 59, tzinfo=UTC)
    out = by_digest(run_job(store, cfg, tuesday))
    assert out["daily"].status == "already-sent" and out["daily"].period.startswith("2026-11-30")
    out = by_digest(run_job(store, cfg, tuesday + timedelta(minutes=2)))
    assert out["daily"].status == "sent" and out["daily"].period == "2026-12-01T03:00+01:00"
    assert out["weekly"].status == "already-sent"


def test_cli_run_uses_the_real_clock_when_no_time_is_given(setup):
    cfg, store = setup
    runner = CliRunner()
    with time_machine.travel(MONDAY + timedelta(minutes=3), tick=False):
        first = runner.invoke(cli, ["--config", cfg.path, "run", "--no-ingest", "--json"])
    assert first.exit_code == 0, first.output
    statuses = {d["digest"]: d["status"] for d in json.loads(first.stdout)["digests"]}
    assert statuses == {"weekly": "sent", "daily": "sent"}
    with time_machine.travel(MONDAY - timedelta(minutes=3), tick=False):
        # three minutes before the fire time: last week's period, long past catch-up
        early = runner.invoke(cli, ["--config", cfg.path, "run", "--no-ingest", "--json"])
    statuses = {d["digest"]: d["status"] for d in json.loads(early.stdout)["digests"]}
    assert statuses["weekly"] == "missed"


# --------------------------------------------------------------------------- missed periods


def test_a_missed_period_is_sent_late_once_within_catch_up_hours(setup):
    cfg, store = setup
    # the machine was down from 02:00 to 05:00 UTC: 3 hours late
    late = by_digest(run_job(store, cfg, MONDAY + timedelta(hours=3)))
    assert late["weekly"].status == "sent"  # catch_up_hours = 6
    assert late["weekly"].late_by == "3h 0m"
    assert late["daily"].status == "missed"  # catch_up_hours = 2
    assert "catch_up_hours=2" in late["daily"].message
    # recorded, so it is never sent, even by a later run of the same period
    assert store.find_edition("daily", "2026-11-30T03:00+01:00").status == "skipped"
    again = by_digest(run_job(store, cfg, MONDAY + timedelta(hours=4)))
    assert again["daily"].status == "skipped" and again["weekly"].status == "already-sent"
    assert count_rows(store, "deliveries")["deliveries"] == 3  # the weekly's only


def test_periods_missed_while_down_are_reported_and_never_sent(setup, caplog):
    cfg, store = setup
    run_job(store, cfg, MONDAY + timedelta(minutes=5))
    store.upsert_articles([story(9, MONDAY + timedelta(days=2), "Economy")])
    # down from Monday until Thursday 02:05 UTC (03:05 Berlin): Tuesday and Wednesday lost
    caplog.set_level("WARNING")
    thursday = MONDAY + timedelta(days=3, minutes=5)
    out = by_digest(run_job(store, cfg, thursday))
    assert out["daily"].status == "sent" and out["daily"].period == "2026-12-03T03:00+01:00"
    assert out["daily"].missed_periods == ["2026-12-01T03:00+01:00", "2026-12-02T03:00+01:00"]
    assert "2 earlier period(s) were never sent" in caplog.text
    # a run in the next period does not report them again
    later = by_digest(run_job(store, cfg, thursday + timedelta(days=1)))
    assert later["daily"].missed_periods == []
    periods = {e.period for e in store.list_editions("daily")}
    assert "2026-12-01T03:00+01:00" not in periods and "2026-12-02T03:00+01:00" not in periods


def test_send_can_deliberately_send_a_skipped_period(setup):
    cfg, store = setup
    at = MONDAY + timedelta(hours=3)
    assert by_digest(run_job(store, cfg, at))["daily"].status == "missed"
    dry = run_digest(store, cfg, cfg.digest("daily"), at, force=True, dry_run=True)
    assert dry.status == "dry-run" and dry.message.startswith("would send 2 articles")
    assert store.find_edition("daily", dry.period).status == "skipped"
    out = run_digest(store, cfg, cfg.digest("daily"), at, force=True)
    assert out.status == "sent" and len(outbox_messages(cfg, out.edition_id)) == 3
    assert run_digest(store, cfg, cfg.digest("daily"), at, force=True).status == ("already-sent")


# --------------------------------------------------------------------------- dry run


def test_dry_run_on_run_and_send_shows_what_would_happen_and_records_nothing(setup, tmp_path):
    cfg, store = setup
    feed = tmp_path / "feed.xml"
    shutil.copy(ROOT / "newsletter" / "samples" / "feed.xml", feed)
    path = Path(cfg.path)
    path.write_text(
        path.read_text(encoding="utf-8") + '\n[[sources]]\nname = "s"\nurl = "feed.xml"\n',
        encoding="utf-8",
    )
    tables = ("editions", "edition_articles", "deliveries", "batches", "rates", "articles", "locks")
    before = count_rows(store, *tables)
    runner = CliRunner()
    at = (MONDAY + timedelta(minutes=5)).isoformat()
    run = runner.invoke(cli, ["--config", cfg.path, "run", "--dry-run", "--at", at])
    assert run.exit_code == 0, run.output
    assert "dry run: nothing is sent or recorded" in run.stdout
    assert "would send 1 articles in 1 variants to 3 subscribers" in run.stdout
    send = runner.invoke(
        cli, ["--config", cfg.path, "send", "--digest", "daily", "--dry-run", "--at", at]
    )
    assert send.exit_code == 0, send.output
    assert "would send 2 articles in 1 variants to 3 subscribers" in send.stdout
    # a period that would be skipped is not recorded as skipped either
    late = (MONDAY + timedelta(hours=3)).isoformat()
    missed = runner.invoke(cli, ["--config", cfg.path, "run", "--dry-run", "--at", late])
    assert "daily (2026-11-30T03:00+01:00): missed" in missed.stdout
    assert count_rows(store, *tables) == before
    assert not (tmp_path / "outbox").exists()


def test_dry_run_of_an_edition_being_sent_changes_nothing(setup):
    cfg, store = setup
    daily = cfg.digest("daily")
    daily.local_time = True  # the Almaty reader is released first, the rest wait
    store.upsert_subscriber(Subscriber(email="tokyo@example.com", timezone="Asia/Tokyo"))
    at = datetime(2026, 11, 30, 3, 5, tzinfo=__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
    first = run_digest(store, cfg, daily, at)
    assert first.status == "sending"
    before = count_rows(store, "deliveries", "batches")
    counts = store.delivery_counts(first.edition_id)
    dry = run_digest(store, cfg, daily, at + timedelta(hours=8), dry_run=True)
    assert dry.status == "dry-run" and dry.message.startswith("would resume edition")
    assert count_rows(store, "deliveries", "batches") == before
    assert store.delivery_counts(first.edition_id) == counts


# --------------------------------------------------------------------------- local time


def test_local_time_releases_deliveries_zone_by_zone(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "test-secret-key-0123456789")
    extra = """
[[digests]]
name = "timewarp"
tags = ["kazakhstan"]
schedule = "0 7 * * MON"
timezone = "Asia/Almaty"
local_time = true
catch_up_hours = 24
"""
    cfg = job_config(tmp_path, db_url, extra)
    store = open_store(cfg.database_url)
    zones = {
        "tokyo@example.com": "Asia/Tokyo",
        "almaty@example.com": "Asia/Almaty",
        "nozone@example.com": "",
        "typo@example.com": "Asia/Nowhere",
        "london@example.com": "Europe/London",
    }
    for addr, tz in zones.items():
        store.upsert_subscriber(Subscriber(email=addr, timezone=tz))
    store.upsert_articles([story(1, MONDAY - timedelta(days=1), "Kazakhstan")])

    def run(at: datetime) -> DigestOutcome:
        (out,) = run_job(store, cfg, at, digests=["timewarp"]).digests
        return out

    # Monday 07:05 in Tokyo (Sunday 22:05 UTC): the period opens; only Tokyo is released
    first = run(datetime(2026, 11, 29, 22, 5, tzinfo=UTC))
    assert first.status == "sending" and first.period == "2026-11-30T07:00+05:00"
    assert (first.send.accepted, first.waiting) == (1, 4)
    assert store.get_edition(first.edition_id).status == "sending"
    rows = {d.email: d for d in store.list_deliveries(first.edition_id)}
    assert rows["london@example.com"].release_at == datetime(2026, 11, 30, 7, tzinfo=UTC)
    assert rows["tokyo@example.com"].release_at == datetime(2026, 11, 29, 22, tzinfo=UTC)
    # no zone or an unknown one: the digest's own zone
    for addr in ("almaty@example.com", "nozone@example.com", "typo@example.com"):
        assert rows[addr].release_at == datetime(2026, 11, 30, 2, tzinfo=UTC)

    # Almaty's 07:05: the same period resumes (not "already-sent"), three more go
    second = run(datetime(2026, 11, 30, 2, 5, tzinfo=UTC))
    assert second.status == "sending" and second.edition_id == first.edition_id
    assert (second.send.accepted, second.waiting) == (3, 1)
    assert second.next_release == "2026-11-30T07:00:00+00:00"
    # before London's 07:00 nothing more goes
    assert run(datetime(2026, 11, 30, 6, 55, tzinfo=UTC)).send.accepted == 0
    last = run(datetime(2026, 11, 30, 7, 5, tzinfo=UTC))
    assert last.status == "resumed" and (last.send.accepted, last.waiting) == (1, 0)
    assert store.get_edition(first.edition_id).status == "sent"
    assert run(datetime(2026, 11, 30, 9, 0, tzinfo=UTC)).status == "already-sent"
    assert len(outbox_messages(cfg, first.edition_id)) == 5
    store.close()


def test_local_time_periods_that_overlap_across_the_date_line(db_url, tmp_path, monkeypatch):
    # Kiritimati (UTC+14) reaches Tuesday 07:00 before Pago Pago (UTC-11) reaches Monday's
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "test-secret-key-0123456789")
    extra = """
[[digests]]
name = "dateline"
tags = ["kazakhstan"]
schedule = "0 7 * * *"
timezone = "UTC"
local_time = true
"""
    cfg = job_config(tmp_path, db_url, extra)
    store = open_store(cfg.database_url)
    store.upsert_subscriber(Subscriber(email="east@example.com", timezone="Pacific/Kiritimati"))
    store.upsert_subscriber(Subscriber(email="west@example.com", timezone="Pacific/Pago_Pago"))
    store.upsert_articles([story(1, datetime(2026, 11, 29, tzinfo=UTC), "Kazakhstan")])
    r1 = run_job(store, cfg, datetime(2026, 11, 29, 17, 5, tzinfo=UTC), digests=["dateline"])
    (monday,) = r1.digests
    assert monday.period == "2026-11-30T07:00+00:00" and monday.send.accepted == 1
    store.upsert_articles([story(2, datetime(2026, 11, 30, 12, tzinfo=UTC), "Kazakhstan")])
    # Monday 17:05 UTC: Tuesday opened in Kiritimati; Monday still waits for Pago Pago
    r2 = run_job(store, cfg, datetime(2026, 11, 30, 17, 5, tzinfo=UTC), digests=["dateline"])
    assert [(d.period, d.status) for d in r2.digests] == [
        ("2026-11-30T07:00+00:00", "sending"),
        ("2026-12-01T07:00+00:00", "sending"),
    ]
    r3 = run_job(store, cfg, datetime(2026, 11, 30, 18, 5, tzinfo=UTC), digests=["dateline"])
    resumed = {d.period: d for d in r3.digests}
    assert resumed["2026-11-30T07:00+00:00"].send.accepted == 1
    assert store.find_edition("dateline", "2026-11-30T07:00+00:00").status == "sent"
    assert store.find_edition("dateline", "2026-12-01T07:00+00:00").status == "sending"
    store.close()


# --------------------------------------------------------------------------- exit codes


def test_exit_codes_ok_partial_failure_and_usage(setup):
    cfg, store = setup
    runner = CliRunner()
    at = (MONDAY + timedelta(minutes=5)).isoformat()
    bad = runner.invoke(cli, ["--config", cfg.path, "run", "--at", "next tuesday"])
    assert bad.exit_code == 2 and "ISO 8601" in bad.output
    # the daily's template is gone: that digest fails, the weekly is still sent
    (Path(cfg.path).parent / "templates" / "brief.txt.j2").unlink()
    partial = runner.invoke(cli, ["--config", cfg.path, "run", "--no-ingest", "--at", at])
    assert partial.exit_code == 3, partial.output
    assert "daily (2026-11-30T03:00+01:00): failed" in partial.stdout
    assert "weekly (2026-11-30T07:00+05:00): sent" in partial.stdout
    # only the failing digest: failure
    only = runner.invoke(
        cli, ["--config", cfg.path, "run", "--no-ingest", "--digest", "daily", "--at", at]
    )
    assert only.exit_code == 1, only.output
    ok = runner.invoke(
        cli, ["--config", cfg.path, "run", "--no-ingest", "--digest", "weekly", "--at", at]
    )
    assert ok.exit_code == 0 and "already-sent" in ok.stdout


def test_a_failing_source_makes_the_run_partial(setup):
    cfg, store = setup
    path = Path(cfg.path)
    path.write_text(
        path.read_text(encoding="utf-8") + '\n[[sources]]\nname = "gone"\nurl = "missing.xml"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli, ["--config", cfg.path, "run", "--at", (MONDAY + timedelta(minutes=5)).isoformat()]
    )
    assert result.exit_code == 3, result.output
    assert "ingest  missing.xml: FAILED" in result.stdout or "FAILED" in result.stdout


# --------------------------------------------------------------------------- logs and alerts


def test_json_logs_end_each_run_with_a_summary_line(setup, monkeypatch):
    cfg, store = setup
    secret = "test-secret-key-0123456789"
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            cfg.path,
            "--log-format",
            "json",
            "run",
            "--at",
            (MONDAY + timedelta(hours=3)).isoformat(),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines, "no log lines"
    assert any(x["level"] == "warning" and "catch_up_hours=2" in x["message"] for x in lines)
    summary = lines[-1]
    assert summary["event"] == "run.summary" and summary["logger"] == "newsletter.summary"
    assert summary["summary"]["exit_code"] == 0
    assert summary["summary"]["digests"] == {
        "weekly@2026-11-30T07:00+05:00": "sent",
        "daily@2026-11-30T03:00+01:00": "missed",
    }
    assert summary["summary"]["accepted"] == 3
    assert secret not in result.output


def test_text_mode_prints_the_summary_last_on_stdout(setup):
    cfg, store = setup
    result = CliRunner().invoke(
        cli, ["--config", cfg.path, "run", "--at", (MONDAY + timedelta(minutes=5)).isoformat()]
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("run ok: weekly@2026-11-30T07:00+05:00: sent")
    assert "6 accepted, 0 failed; exit 0" in last


class _Inbox:
    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failed_run_emails_the_editors_over_smtp(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "test-secret-key-0123456789")
    inbox = _Inbox()
    port = _free_port()
    extra = f"""
[alerts]
email_to = ["editors@steppe-ledger.example", "chief@steppe-ledger.example"]
via = "smtp"

[delivery.smtp]
host = "127.0.0.1"
port = {port}
starttls = false
"""
    job_config(tmp_path, db_url)
    toml = CONFIG.format(db=db_url).replace("[delivery]", extra + "\n[delivery]", 1)
    (tmp_path / "templates" / "brief.txt.j2").unlink()
    cfg = build_config(tmp_path, toml=toml)
    store = open_store(cfg.database_url)
    store.upsert_subscriber(Subscriber(email="reader@example.com"))
    store.upsert_articles([story(2, MONDAY - timedelta(hours=3), "Economy")])
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        report = run_job(store, cfg, MONDAY + timedelta(minutes=5), digests=["daily"])
        assert report.exit_code == 1
        assert report.alert == f"smtp://127.0.0.1:{port}"
        ok = run_job(store, cfg, MONDAY + timedelta(minutes=5), digests=["weekly"])
        assert ok.exit_code == 0 and ok.alert == ""
    finally:
        controller.stop()
    (msg,) = inbox.messages
    assert msg["To"] == "editors@steppe-ledger.example, chief@steppe-ledger.example"
    assert msg["Subject"].startswith("[The Steppe Ledger] newsletter run failed on ")
    body = msg.get_content()
    assert "daily (2026-11-30T03:00+01:00): failed" in body and "brief.txt.j2" in body
    store.close()


def test_alerts_go_to_the_outbox_with_the_outbox_backend_and_never_break_the_run(setup):
    cfg, store = setup
    cfg.alerts.email_to = ["editors@steppe-ledger.example"]
    (Path(cfg.path).parent / "templates" / "brief.txt.j2").unlink()
    report = run_job(store, cfg, MONDAY + timedelta(minutes=5))
    assert report.exit_code == 3
    (alert,) = (cfg.resolve(cfg.delivery.outbox_dir) / "alerts").glob("*.eml")
    msg = email.message_from_bytes(alert.read_bytes(), policy=email.policy.default)
    assert "partly failed" in msg["Subject"]
    # an unreachable SMTP server: logged, and the run's outcome stays what it was
    cfg.alerts.via = "smtp"
    cfg.delivery.smtp.host, cfg.delivery.smtp.port = "127.0.0.1", _free_port()
    cfg.delivery.smtp.timeout = 2
    again = run_job(store, cfg, MONDAY + timedelta(minutes=10))
    assert again.exit_code == 1 and again.alert == ""  # the daily alone failed this time


# --------------------------------------------------------------------------- newsletter schedule


def test_schedule_lists_next_runs_and_the_state_of_the_current_period(setup):
    cfg, store = setup
    runner = CliRunner()
    at = (MONDAY + timedelta(minutes=5)).isoformat()
    before = json.loads(
        runner.invoke(cli, ["--config", cfg.path, "schedule", "--at", at, "--json"]).stdout
    )
    weekly, daily = before["digests"]
    assert (weekly["state"], weekly["decision"]) == ("none", "due")
    assert weekly["next_runs"][:2] == ["2026-12-07T07:00:00+05:00", "2026-12-14T07:00:00+05:00"]
    assert len(daily["next_runs"]) == 5 and daily["next_runs"][0] == "2026-12-01T03:00:00+01:00"
    run_job(store, cfg, MONDAY + timedelta(minutes=5))
    text = runner.invoke(cli, ["--config", cfg.path, "schedule", "--at", at, "--count", "2"])
    assert text.exit_code == 0, text.output
    assert "weekly: '0 7 * * MON' in Asia/Almaty" in text.stdout
    assert "current period 2026-11-30T07:00+05:00: sent (edition" in text.stdout
    assert "Mon 2026-12-07 07:00 +0500  (2026-12-07 02:00 UTC)" in text.stdout
    assert "Tue 2026-12-01 03:00 +0100  (2026-12-01 02:00 UTC)" in text.stdout
    assert "Mon 2026-12-14" in text.stdout and "Mon 2026-12-21" not in text.stdout  # --count 2


def test_a_run_gives_way_to_a_run_holding_the_lock(setup):
    cfg, store = setup
    lock = store.run_lock("run", "other-host:4321")
    try:
        at = (MONDAY + timedelta(minutes=5)).isoformat()
        result = CliRunner().invoke(cli, ["--config", cfg.path, "run", "--at", at])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("run locked: another run (other-host:4321 since ")
        assert store.list_editions() == []
        # a dry run needs no lock: it changes nothing
        dry = CliRunner().invoke(cli, ["--config", cfg.path, "run", "--dry-run", "--at", at])
        assert "weekly (2026-11-30T07:00+05:00): dry-run" in dry.stdout
    finally:
        lock.release()
    assert by_digest(run_job(store, cfg, MONDAY + timedelta(minutes=6)))["weekly"].status == (
        "sent"
    )
