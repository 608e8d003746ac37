"""Editions as first-class objects: `editions`, `cancel`, `pause`, `resume`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import time_machine
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.delivery.recovery import finalize
from newsletter.editions.freeze import create_edition
from newsletter.editions.plan import plan_edition
from newsletter.errors import InputError
from newsletter.jobs.editions import control
from newsletter.store import open_store
from tests.fakes.event_webhook import sent_edition
from tests.helpers import build_config

AT = "2026-11-30T07:05+05:00"
NEXT_WEEK = "2026-12-07T07:05+05:00"


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def frozen(project):
    """The period's edition frozen (every delivery queued), nothing sent yet."""
    assert invoke("subscribers", "import", "subscribers.csv").exit_code == 0
    assert invoke("ingest").exit_code == 0
    cfg = build_config(project)
    store = open_store(cfg.database_url)
    now = datetime.fromisoformat(AT)
    eid, created = create_edition(store, cfg, plan_edition(store, cfg, cfg.digest(), now), now)
    assert created
    yield store, eid
    store.close()


def counts(store, eid):
    out: dict[str, int] = {}
    for c in store.delivery_counts(eid).values():
        for k, n in c.items():
            out[k] = out.get(k, 0) + n
    return out


def test_editions_lists_period_status_counts_times_and_last_run(project):
    invoke("subscribers", "import", "subscribers.csv")
    assert invoke("run", "--at", AT).exit_code == 0
    (row,) = json.loads(invoke("editions", "--json").output)
    assert (row["digest"], row["period"], row["status"]) == (
        "weekly",
        "2026-11-30T07:00+05:00",
        "sent",
    )
    assert (row["recipients"], row["accepted"], row["failed"], row["waiting"]) == (22, 22, 0, 0)
    assert row["created_at"] and row["sent_at"]
    assert row["last_run"]["status"] == "sent" and row["last_run"]["exit_code"] == 0
    text = invoke("editions").output
    assert "weekly" in text and "sent" in text and "last run" in text
    assert json.loads(invoke("editions", "--digest", "weekly", "--json").output) == [row]
    bad = invoke("editions", "--digest", "nope")
    assert bad.exit_code == 2 and "no digest named 'nope'" in bad.output


def test_cancel_cancels_the_queued_and_the_period_is_never_sent(project, frozen):
    store, eid = frozen
    result = invoke("cancel", str(eid))
    assert result.exit_code == 0, result.output
    assert f"edition {eid}: sending -> cancelled; 22 queued deliveries cancelled" in result.output
    assert counts(store, eid) == {"cancelled": 22}
    # the run finds the period's edition cancelled: nothing goes out
    run = invoke("run", "--at", AT, "--json")
    (d,) = json.loads(run.output)["digests"]
    assert d["status"] == "already-sent" and "cancelled" in d["message"]
    assert not (project / "outbox" / f"edition-{eid}").exists()
    again = invoke("cancel", str(eid))
    assert again.exit_code == 2
    assert f"edition {eid} is cancelled: only an edition that is" in again.output
    assert invoke("cancel", "999").exit_code == 1


def test_a_batch_in_flight_settles_and_the_edition_stays_cancelled(frozen):
    store, eid = frozen
    batch = store.claim_batch(eid, backend="outbox", limit=5, worker="w1")
    n = len(batch.deliveries)  # a batch is of one variant
    assert 0 < n <= 5
    done = control(store, eid, "cancel")
    assert (done.cancelled, done.in_flight) == (22 - n, n)
    # the worker's provider call returns: what it sent is recorded as sent
    store.finish_batch(batch.id, message_id="m-1")
    finalize(store, eid)
    assert counts(store, eid) == {"accepted": n, "cancelled": 22 - n}
    assert store.get_edition(eid).status == "cancelled"


def test_pause_stops_new_batches_and_resume_sends_the_rest(project, frozen):
    store, eid = frozen
    first = store.claim_batch(eid, backend="outbox", limit=2, worker="w1")
    store.finish_batch(first.id, message_id="m-1")
    assert "sending -> paused" in invoke("pause", str(eid)).output
    # no worker can claim from a paused edition, and the run sends nothing
    assert store.claim_batch(eid, backend="outbox", limit=5, worker="w2") is None
    (d,) = json.loads(invoke("run", "--at", AT, "--json").output)["digests"]
    assert d["status"] == "paused" and f"newsletter resume {eid}" in d["message"]
    assert counts(store, eid) == {"accepted": 2, "queued": 20}
    assert invoke("pause", str(eid)).exit_code == 2  # already paused
    assert "paused -> sending" in invoke("resume", str(eid)).output
    (d,) = json.loads(invoke("run", "--at", "2026-11-30T07:10+05:00", "--json").output)["digests"]
    assert d["status"] == "resumed"
    assert counts(store, eid) == {"accepted": 22}
    assert store.get_edition(eid).status == "sent"
    with pytest.raises(InputError, match="is sent: only an edition that is paused"):
        control(store, eid, "resume")


def test_claims_respect_pause_and_cancel_on_both_engines(store):
    sent = sent_edition(store, ["a@example.com"])
    eid = sent.edition_id
    store.set_edition_status(eid, "sending")
    assert store.control_edition(eid, "pause").changed
    assert store.claim_batch(eid, backend="outbox", limit=5) is None
    assert store.control_edition(eid, "resume").changed
    assert store.get_edition(eid).status == "sending"
    assert store.control_edition(eid, "cancel").changed
    assert not store.control_edition(eid, "pause").changed
    assert store.get_edition(eid).status == "cancelled"


def test_resume_of_an_old_paused_edition_still_does_not_send_it_by_itself(project):
    """`newsletter resume` lets a paused edition go on; the resume-age rule still holds:
    one older than its digest's resume age is reported stale by the runs, and goes out
    only with `newsletter send --resume`. The two commands point at each other."""
    import sqlalchemy as sa

    from tests.helpers import unfinished

    eid = unfinished(project)
    assert invoke("pause", str(eid)).exit_code == 0
    store = open_store(build_config(project).database_url)
    with store.begin() as conn:  # eight days later (a weekly digest: more than a period)
        conn.execute(
            sa.text("update editions set created_at = :t where id = :i"),
            {"t": datetime.fromisoformat(NEXT_WEEK) - timedelta(days=8), "i": eid},
        )
    # `resume`, in the next week, says the runs will not send it, and what will
    with time_machine.travel(datetime.fromisoformat(NEXT_WEEK), tick=True):
        out = invoke("resume", str(eid))
    assert out.exit_code == 0, out.output
    assert f"edition {eid}: paused -> sending" in out.output
    assert "runs report it stale and do not send it" in out.output
    assert f"`newsletter send --resume {eid}` sends it" in out.output
    run = invoke("run", "--at", NEXT_WEEK, "--no-ingest", "--json")
    first = json.loads(run.stdout)["digests"][0]
    assert (first["edition_id"], first["status"]) == (eid, "stale")
    assert counts(store, eid) == {"queued": 22}
    # `resume` of an edition that is not paused names the command that sends it
    again = invoke("resume", str(eid))
    assert again.exit_code == 2
    assert f"`newsletter send --resume {eid}` sends an unfinished edition" in again.output
    assert invoke("send", "--resume", str(eid), "--at", NEXT_WEEK).exit_code == 0
    assert counts(store, eid) == {"accepted": 22}
    store.close()
