"""`serve`'s /metrics: the Prometheus text format, read by Prometheus's own parser."""

from __future__ import annotations

import httpx
import sqlalchemy as sa
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from newsletter.cli import cli
from newsletter.store import open_store
from newsletter.tracking.app import create_app
from newsletter.tracking.webhook import ingest_sendgrid
from tests.fakes.event_webhook import LiveApp, body_of, sent_edition, sg_event
from tests.helpers import build_config

KEY = "test-secret-key-0123456789"


def scrape(cfg, store) -> dict[tuple[str, tuple], float]:
    with LiveApp(create_app(cfg, store)) as srv:
        r = httpx.get(srv.url("/metrics"), timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_deliveries_events_held_batches_and_subscribers(store):
    sent = sent_edition(store, [f"r{i}@example.com" for i in range(4)])
    e, d = sent.edition_id, sent.deliveries
    events = [
        sg_event("delivered", d[0], e),
        sg_event("delivered", d[1], e),
        sg_event("open", d[1], e),
        sg_event("bounce", d[2], e, reason="550 no such user"),
    ]
    cfg = build_config(env={"NEWSLETTER_SECRET_KEY": KEY})
    ingest_sendgrid(store, cfg, body_of(events))
    with store.begin() as c:  # one batch whose outcome nobody knows, all settled since
        c.execute(sa.text("UPDATE batches SET status = 'unknown'"))
    # a batch counts as held only while it has deliveries waiting for a decision
    # (as `status` lists it): these are all settled, one by one
    assert scrape(cfg, store)[("newsletter_batches_held", ())] == 0
    with store.begin() as c:
        c.execute(
            sa.text("UPDATE deliveries SET status = 'unresolved' WHERE id = :i"),
            {"i": d[3].delivery_id},
        )
    m = scrape(cfg, store)
    assert m[("newsletter_deliveries", (("digest", "weekly"), ("status", "delivered")))] == 2
    assert m[("newsletter_deliveries", (("digest", "weekly"), ("status", "bounced")))] == 1
    assert m[("newsletter_deliveries", (("digest", "weekly"), ("status", "unresolved")))] == 1
    assert m[("newsletter_webhook_events_total", (("type", "delivered"),))] == 2
    assert m[("newsletter_webhook_events_total", (("type", "opened"),))] == 1
    assert m[("newsletter_webhook_events_total", (("type", "bounced"),))] == 1
    assert m[("newsletter_batches_held", ())] == 1
    assert sum(v for (name, _), v in m.items() if name == "newsletter_subscribers") == 4


def test_last_run_time_exit_code_and_outcome_per_digest(project):
    runner = CliRunner()
    assert runner.invoke(cli, ["run", "--at", "2026-11-30T07:05+05:00"]).exit_code == 0
    cfg = build_config(project)
    store = open_store(cfg.database_url)
    try:
        m = scrape(cfg, store)
        assert m[("newsletter_last_run_exit_code", (("digest", "weekly"),))] == 0
        assert (
            m[("newsletter_last_run_outcome", (("digest", "weekly"), ("status", "no-subscribers")))]
            == 1
        )
        assert m[("newsletter_periods_without_edition", (("digest", "weekly"),))] == 1
        ran = m[("newsletter_last_run_timestamp_seconds", (("digest", "weekly"),))]
        assert ran > 1.7e9
        # subscribers come, the period is sent after all: the figures follow
        runner.invoke(cli, ["subscribers", "import", "subscribers.csv"])
        assert runner.invoke(cli, ["run", "--at", "2026-11-30T07:10+05:00"]).exit_code == 0
        m = scrape(cfg, store)
        assert m[("newsletter_last_run_outcome", (("digest", "weekly"), ("status", "sent")))] == 1
        assert m[("newsletter_periods_without_edition", (("digest", "weekly"),))] == 0
        assert m[("newsletter_deliveries", (("digest", "weekly"), ("status", "accepted")))] == 22
    finally:
        store.close()
