"""`newsletter status`: counts per status, engagement and rates, per variant."""

import json

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.tracking.status import COUNTS, edition_status, summarize
from newsletter.tracking.webhook import ingest_sendgrid
from tests.fakes.event_webhook import body_of, sent_edition, sg_event
from tests.helpers import build_config

EMAILS = [f"r{i}@example.com" for i in range(10)]


def scenario(store):
    """10 recipients in two variants; a known mix of outcomes."""
    variants = {e: ("energy" if i >= 6 else "default") for i, e in enumerate(EMAILS)}
    sent = sent_edition(store, EMAILS, variants=variants)
    d = sent.deliveries
    e = sent.edition_id
    events = [
        sg_event("delivered", d[0], e),
        sg_event("open", d[0], e),
        sg_event("click", d[0], e, url="https://news.example/a"),
        sg_event("delivered", d[1], e),
        sg_event("open", d[1], e),
        sg_event("delivered", d[2], e),
        sg_event("deferred", d[3], e),
        sg_event("bounce", d[4], e, reason="550 no such user"),
        sg_event("delivered", d[6], e),
        sg_event("spamreport", d[6], e),
        sg_event("dropped", d[7], e, reason="Bounced Address"),
        sg_event("delivered", d[8], e),
        sg_event("unsubscribe", d[8], e),
        # d[5], d[9]: accepted, nothing heard yet
    ]
    ingest_sendgrid(store, build_config(env={}), body_of(events))
    return sent


def test_counts_and_rates_overall_and_per_variant(store):
    sent = scenario(store)
    s = edition_status(store, sent.edition_id)
    assert set(s["counts"]) == set(COUNTS)
    c = s["counts"]
    assert (c["delivered"], c["deferred"], c["bounced"], c["dropped"]) == (3, 1, 1, 1)
    assert (c["complained"], c["unsubscribed"], c["accepted"]) == (1, 1, 2)
    assert (c["opened"], c["clicked"], c["queued"], c["failed"], c["unresolved"]) == (2, 1, 0, 0, 0)
    assert (s["recipients"], s["sent"], s["delivered_total"]) == (10, 10, 5)
    r = s["rates"]
    assert r["delivery"] == 0.5
    assert r["open"] == 0.4 and r["click"] == 0.2 and r["click_to_open"] == 0.5
    assert r["bounce"] == 0.1 and r["complaint"] == 0.2 and r["unsubscribe"] == 0.2
    default, energy = s["variants"]["default"], s["variants"]["energy"]
    assert (default["recipients"], energy["recipients"]) == (6, 4)
    assert default["counts"]["delivered"] == 3 and energy["counts"]["complained"] == 1
    assert default["rates"]["open"] == pytest.approx(2 / 3, abs=1e-4)
    assert energy["rates"]["delivery"] == 0.5 and energy["rates"]["open"] == 0.0
    assert s["events"]["delivered"] == 5 and s["unmatched_events"] == 0


def test_rates_are_none_when_nothing_was_sent():
    s = summarize([("queued", False, False, 4), ("failed", False, False, 1)])
    assert s["sent"] == 0 and all(v is None for v in s["rates"].values())
    assert s["counts"]["queued"] == 4


def test_the_cli_prints_counts_and_rates_and_json(project):
    from newsletter.store import open_store

    cfg = build_config(project)
    store = open_store(cfg.database_url)
    sent = scenario(store)
    store.close()
    r = CliRunner().invoke(cli, ["status", str(sent.edition_id)])
    assert r.exit_code == 0, r.output
    assert "recipients 10, sent 10" in r.output
    assert "  delivered            3" in r.output
    assert "  clicked              1" in r.output
    assert "rates: delivery 50.0%, open 40.0%, click 20.0%, click-to-open 50.0%" in r.output
    assert "variant energy (4):" in r.output
    data = json.loads(CliRunner().invoke(cli, ["status", "--json"]).output)
    assert data["id"] == sent.edition_id and data["rates"]["bounce"] == 0.1
    assert data["variants"]["energy"]["counts"]["dropped"] == 1
