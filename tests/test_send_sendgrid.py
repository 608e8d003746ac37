"""The SendGrid backend against a fake SendGrid on loopback (real HTTP, schema-checked)."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.delivery.backends import make_backend
from newsletter.delivery.backends.sendgrid import REGION_HOSTS, SendGridBackend
from newsletter.delivery.message import outgoing
from newsletter.delivery.mime import list_unsubscribe
from newsletter.delivery.pacing import Pacer, backoff_delay
from newsletter.errors import AuthError, ConfigError, PermanentDeliveryError, TransientError
from newsletter.models import Recipient, Rendered
from tests.fakes.sendgrid import FakeSendGrid, SchemaError, make_validator
from tests.helpers import (
    DELIVERY_CONFIG,
    RENDER,
    SECRET,
    SECRET_ENV,
    SENDGRID_KEY,
    build_config,
    dead_worker,
    make_edition,
    send,
    sg_config,
    statuses,
)

#: the environment of a config with no file that sends through SendGrid
UNIT_ENV = {"SENDGRID_API_KEY": SENDGRID_KEY, "NEWSLETTER_SECRET_KEY": SECRET}


# --------------------------------------------------------------------------- the request


def test_one_request_per_batch_with_one_personalization_per_recipient(store, sg, tmp_path):
    cfg = sg_config(tmp_path, sg, concurrency=1)
    eid = make_edition(store, 2300)
    report = send(store, cfg, eid)
    assert report.accepted == 2300 and report.batches == 3
    sizes = sorted(len(b["personalizations"]) for b in sg.bodies)
    assert sizes == [300, 1000, 1000]
    assert sg.delivered() == {f"reader{i}@example.com": 1 for i in range(2300)}
    # the X-Message-Id of each 202 is stored per batch and on its deliveries
    batches = {b.id: b for b in store.list_batches(eid)}
    assert {b.message_id for b in batches.values()} == {t.message_id for t in sg.accepted}
    by_id = {t.delivery_id: t for t in sg.accepted}
    for d in store.list_deliveries(eid):
        assert d.status == "accepted"
        assert d.message_id == by_id[str(d.id)].message_id
        assert batches[d.batch_id].message_id == d.message_id


def test_the_body_carries_the_variant_once_and_only_ids_in_custom_args(sqlite_store, sg, tmp_path):
    store = sqlite_store
    cfg = sg_config(tmp_path, sg, asm_group_id=4242, ip_pool="newsletters")
    eid = make_edition(store, 3, emails=["a@example.com", "b@example.com", "c@example.com"])
    send(store, cfg, eid)
    (body,) = sg.bodies
    assert body["content"] == [
        {"type": "text/plain", "value": RENDER.text},
        {
            "type": "text/html",
            "value": RENDER.html.replace("%%preferences_url%%", "%%unsubscribe_url%%"),
        },
    ]
    assert body["subject"] == RENDER.subject
    assert body["from"] == {"email": "digest@steppe-ledger.example", "name": "The Steppe Ledger"}
    assert body["categories"] == ["weekly", f"edition-{eid}"]
    assert body["asm"] == {"group_id": 4242}
    assert body["ip_pool_name"] == "newsletters"
    assert body["headers"] == {
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": "<weekly.steppe-ledger.example>",
    }
    assert "mail_settings" not in body and "send_at" not in body
    rows = {d.email: d for d in store.list_deliveries(eid)}
    for p in body["personalizations"]:
        (to,) = p["to"]
        row = rows[to["email"]]
        assert p["custom_args"] == {
            "newsletter_delivery_id": str(row.id),
            "newsletter_edition_id": str(eid),
        }
        url = p["substitutions"]["%%unsubscribe_url%%"]
        assert url.startswith("https://steppe-ledger.example/newsletter/unsubscribe/")
        assert p["headers"]["List-Unsubscribe"] == (
            f"<{url}>, <mailto:unsubscribe@steppe-ledger.example?subject=unsubscribe>"
        )
        assert p["substitutions"]["%%name%%"] == to["name"]


def test_html_and_text_get_their_own_escaping_of_a_name(sqlite_store, sg, tmp_path):
    store = sqlite_store
    cfg = sg_config(tmp_path, sg)
    eid = make_edition(store, emails=["tom@example.com", "ann@example.com"])
    store.upsert_subscriber(
        __import__("newsletter.models", fromlist=["Subscriber"]).Subscriber(
            email="tom@example.com", name="Tom & <Jerry>"
        )
    )
    send(store, cfg, eid)
    (body,) = sg.bodies
    text, page = body["content"][0]["value"], body["content"][1]["value"]
    assert "%%name_text%%" in text and "%%name%%" in page
    assert body["subject"] == "Weekly digest for %%name_text%%"
    tom = next(p for p in body["personalizations"] if p["to"][0]["email"] == "tom@example.com")
    assert tom["substitutions"]["%%name%%"] == "Tom &amp; &lt;Jerry&gt;"
    assert tom["substitutions"]["%%name_text%%"] == "Tom & <Jerry>"


def test_list_unsubscribe_matches_the_mime_builder():
    cfg = build_config(env=UNIT_ENV)
    msg = outgoing(cfg, "weekly", 9, RENDER)
    rec = Recipient(1, "a@example.com", "A", "https://x.example/u/tok", "default")
    body = SendGridBackend(cfg).build_body(msg, [rec])
    assert body["personalizations"][0]["headers"]["List-Unsubscribe"] == list_unsubscribe(msg, rec)


def test_region_and_host_override():
    cfg = build_config(env=UNIT_ENV)
    assert SendGridBackend(cfg).host == "https://api.sendgrid.com"
    cfg.delivery.sendgrid.region = "eu"
    assert SendGridBackend(cfg).host == REGION_HOSTS["eu"] == "https://api.eu.sendgrid.com"
    cfg = build_config(env={**UNIT_ENV, "NEWSLETTER_SENDGRID_HOST": "http://127.0.0.1:9/"})
    cfg.delivery.sendgrid.region = "eu"
    assert SendGridBackend(cfg).host == "http://127.0.0.1:9"


def test_a_missing_api_key_is_a_config_error():
    cfg = build_config(env=SECRET_ENV)
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY is not set"):
        SendGridBackend(cfg)


def test_sandbox_mode_answers_200_and_sends_nothing(sqlite_store, sg, tmp_path):
    cfg = sg_config(tmp_path, sg, sandbox=True)
    eid = make_edition(sqlite_store, 3)
    report = send(sqlite_store, cfg, eid)
    assert report.accepted == 3
    assert sg.bodies[0]["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert sg.log[-1][2] == 200
    assert sg.delivered() == {}
    assert {d.message_id for d in sqlite_store.list_deliveries(eid)} == {"sandbox"}


# --------------------------------------------------------------------------- refusals


def test_a_duplicate_address_in_a_batch_is_failed_not_sent(sqlite_store, sg, tmp_path):
    store = sqlite_store
    cfg = sg_config(tmp_path, sg)
    eid = make_edition(store, 2)
    # two deliveries for one mailbox (a frozen address of another case)
    with store.begin() as conn:
        from sqlalchemy import update

        from newsletter.store.schema import deliveries

        conn.execute(
            update(deliveries)
            .where(deliveries.c.email == "reader1@example.com")
            .values(email="READER0@example.com")
        )
    report = send(store, cfg, eid)
    assert report.accepted == 1 and report.failed == 1
    assert len(sg.bodies[0]["personalizations"]) == 1
    (failed,) = store.list_deliveries(eid, status="failed")
    assert "duplicate address" in failed.error


def test_a_400_naming_addresses_fails_those_and_sends_the_rest(store, sg, tmp_path):
    cfg = sg_config(tmp_path, sg, concurrency=1)
    eid = make_edition(store, 10)
    sg.bad_addresses = {"reader3@example.com", "reader7@example.com"}
    report = send(store, cfg, eid)
    assert (report.accepted, report.failed) == (8, 2)
    assert [s for _, p, s in sg.log if p == "/v3/mail/send"] == [400, 202]
    failed = {d.email: d.error for d in store.list_deliveries(eid, status="failed")}
    assert set(failed) == sg.bad_addresses
    assert all("Does not contain a valid address" in e for e in failed.values())
    assert set(sg.delivered()) == {f"reader{i}@example.com" for i in range(10)} - sg.bad_addresses
    assert store.get_edition(eid).status == "partially_failed"


def test_a_400_that_names_no_recipient_stops_the_send(sqlite_store, sg, tmp_path):
    cfg = sg_config(tmp_path, sg)
    cfg.site.from_email = "not an address"
    eid = make_edition(sqlite_store, 3)
    with pytest.raises(PermanentDeliveryError, match=r"from\.email"):
        send(sqlite_store, cfg, eid)
    assert statuses(sqlite_store, eid) == {"queued": 3}
    assert sg.delivered() == {}


def test_401_stops_the_whole_send_and_marks_nothing_sent(store, sg, tmp_path):
    cfg = sg_config(tmp_path, sg, concurrency=3, batch_size=5)
    eid = make_edition(store, 30)
    sg.fail_next("401", 100)
    with pytest.raises(AuthError, match="SendGrid refused the API key") as err:
        send(
            store,
            cfg,
            eid,
        )
    assert SENDGRID_KEY not in str(err.value)
    assert statuses(store, eid) == {"queued": 30}
    assert store.get_edition(eid).status == "sending"


def test_401_from_the_cli_is_one_clear_line_without_the_key(project, sg, monkeypatch):
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.wrong-key-123456")
    monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", sg.url)
    toml = project / "newsletter.toml"
    toml.write_text(toml.read_text().replace('backend = "outbox"', 'backend = "sendgrid"'))
    runner = CliRunner()
    assert runner.invoke(cli, ["subscribers", "import", "subscribers.csv"]).exit_code == 0
    assert runner.invoke(cli, ["ingest"]).exit_code == 0
    out = runner.invoke(cli, ["send", "--at", "2026-11-30T07:05:00+05:00"])
    assert out.exit_code == 1, out.output
    lines = out.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and "SendGrid refused the API key (401" in lines[-1]
    assert "Traceback" not in out.output and "SG.wrong-key-123456" not in out.output
    status = json.loads(runner.invoke(cli, ["status", "--json"]).output)
    assert status["counts"]["accepted"] == 0 and status["counts"]["queued"] == 22


# --------------------------------------------------------------------------- retries


def test_429_waits_for_x_ratelimit_reset_then_sends(sqlite_store, sg, tmp_path):
    cfg = sg_config(tmp_path, sg, backoff=0.01)
    eid = make_edition(sqlite_store, 4)
    sg.fail_next("429", reset_in=1.0)
    t0 = time.time()
    report = send(sqlite_store, cfg, eid)
    assert report.accepted == 4
    first, second = sg.arrivals
    reset = int(first + 1.0)
    assert second >= reset, "the retry came before X-RateLimit-Reset"
    assert time.time() - t0 < 5
    assert sg.delivered() == {f"reader{i}@example.com": 1 for i in range(4)}


def test_a_rate_limit_resetting_too_late_stops_the_send(sqlite_store, sg, tmp_path):
    cfg = sg_config(tmp_path, sg, retry_max_wait=2.0)
    eid = make_edition(sqlite_store, 2)
    sg.fail_next("429", reset_in=3600)
    with pytest.raises(TransientError, match="rate limit resets at"):
        send(sqlite_store, cfg, eid)
    assert statuses(sqlite_store, eid) == {"queued": 2}


@pytest.mark.parametrize("fault", ["500", "503"])
def test_server_errors_are_retried_and_each_address_is_sent_once(sqlite_store, sg, tmp_path, fault):
    cfg = sg_config(tmp_path, sg)
    eid = make_edition(sqlite_store, 3)
    sg.fail_next(fault, 2)
    report = send(sqlite_store, cfg, eid)
    assert report.accepted == 3
    assert sg.sent_requests == 3
    assert sg.delivered() == {f"reader{i}@example.com": 1 for i in range(3)}


def test_a_request_cut_off_while_it_is_written_is_retried(sqlite_store, sg, tmp_path):
    """The connection is reset before the body is read: the client cannot finish
    writing (urllib raises URLError), SendGrid cannot have acted on it: retry."""
    cfg = sg_config(tmp_path, sg)
    eid = make_edition(sqlite_store, 3)
    big = Rendered(subject="s", html="<p>" + "x" * 8_000_000 + "</p>", text="t")
    sg.fail_next("reset-early", 2)
    report = send(sqlite_store, cfg, eid, {"default": big})
    assert report.accepted == 3 and report.unresolved == 0
    assert sg.sent_requests == 3
    assert sg.delivered() == {f"reader{i}@example.com": 1 for i in range(3)}


def test_an_unreachable_host_is_retried_then_the_batch_is_queued_again(sqlite_store, make_config):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = make_config(
        toml=DELIVERY_CONFIG,
        env={
            **SECRET_ENV,
            "SENDGRID_API_KEY": SENDGRID_KEY,
            "NEWSLETTER_SENDGRID_HOST": f"http://127.0.0.1:{port}",
        },
        delivery={"backend": "sendgrid", "sendgrid": {"backoff": 0.01, "max_retries": 2}},
    )
    eid = make_edition(sqlite_store, 2)
    with pytest.raises(TransientError, match="cannot reach SendGrid.*gave up after 3 attempts"):
        send(sqlite_store, cfg, eid)
    assert statuses(sqlite_store, eid) == {"queued": 2}


def test_retries_give_up_and_queue_the_batch_again(sqlite_store, sg, tmp_path):
    cfg = sg_config(tmp_path, sg, max_retries=2)
    eid = make_edition(sqlite_store, 3)
    sg.fail_next("503", 3)
    with pytest.raises(TransientError, match="gave up after 3 attempts"):
        send(sqlite_store, cfg, eid)
    assert sg.sent_requests == 3
    assert statuses(sqlite_store, eid) == {"queued": 3}
    # the next run sends them
    report = send(sqlite_store, cfg, eid)
    assert report.accepted == 3 and sg.delivered() == {
        f"reader{i}@example.com": 1 for i in range(3)
    }


def test_backoff_grows_exponentially_with_jitter():
    waits = [backoff_delay(n, 0.5, 60, rand=lambda: 1.0) for n in range(8)]
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0] and waits[-1] == 60
    assert backoff_delay(3, 0.5, 60, rand=lambda: 0.0) == 2.0  # half, at the least


# --------------------------------------------------------------------------- unknown outcomes


@pytest.mark.parametrize("fault", ["timeout", "timeout-lost", "reset", "504"])
def test_no_answer_after_the_request_was_written_is_held_not_resent(store, sg, tmp_path, fault):
    cfg = sg_config(tmp_path, sg, timeout=0.5, batch_size=3, concurrency=1)
    sg.hang = 1.0
    eid = make_edition(store, 6)
    sg.fail_next(fault)
    report = send(store, cfg, eid)
    assert report.unresolved == 3 and report.accepted == 3
    assert sg.sent_requests == 2, "a batch with an unknown outcome was sent again"
    (held,) = store.unresolved_batches(eid)
    assert "outcome is unknown" in held.error
    taken = fault in ("timeout", "reset", "504") and fault != "504"
    assert len(sg.delivered()) == 3 + (3 if taken else 0)


def test_scheduled_batches_with_unknown_outcome_are_cancelled_and_sent_again(store, sg, tmp_path):
    cfg = sg_config(tmp_path, sg, timeout=0.5, batch_size=3, schedule_delay=120, cancel_margin=30)
    sg.hang = 1.0
    eid = make_edition(store, 6)
    sg.fail_next("timeout")
    report = send(store, cfg, eid)
    assert report.unresolved == 0 and report.cancelled == 3 and report.accepted == 6
    # SendGrid took the first attempt, which was then cancelled: each address once
    assert sg.delivered() == {f"reader{i}@example.com": 1 for i in range(6)}
    assert list(sg.scheduled.values()) == ["cancel"]
    for body in sg.bodies:
        assert body["batch_id"] in sg.batch_ids
        assert time.time() + 100 < body["send_at"] <= time.time() + 121
    assert {b.status for b in store.list_batches(eid)} == {"cancelled", "accepted"}
    assert store.get_edition(eid).status == "sent"


def test_a_dead_workers_scheduled_batch_is_cancelled_on_the_next_run(sqlite_store, sg, tmp_path):
    store = sqlite_store
    cfg = sg_config(tmp_path, sg, batch_size=2, schedule_delay=120, cancel_margin=30)
    eid = make_edition(store, 4)
    backend = make_backend(cfg)
    pbid = backend.new_provider_batch()
    batch = store.claim_batch(
        eid, backend="sendgrid", limit=2, worker=dead_worker(), provider_batch_id=pbid
    )
    # the dead worker's request did reach SendGrid
    msg = outgoing(cfg, "weekly", eid, RENDER)
    from newsletter.delivery.message import UnsubscribeLinks

    links = UnsubscribeLinks(cfg, "weekly")
    recs = [
        Recipient(d.id, d.email, d.name, links(d.subscriber_id), "default")
        for d in batch.deliveries
    ]
    backend.send_batch(msg, recs, provider_batch_id=pbid)
    report = send(store, cfg, eid)
    assert report.cancelled == 2 and report.unresolved == 0
    assert sg.scheduled == {pbid: "cancel"}
    assert sg.delivered() == {f"reader{i}@example.com": 1 for i in range(4)}


def test_past_the_cancel_deadline_a_scheduled_batch_is_held(sqlite_store, sg, tmp_path):
    from datetime import UTC, datetime, timedelta

    store = sqlite_store
    cfg = sg_config(tmp_path, sg, batch_size=2, schedule_delay=120, cancel_margin=30)
    eid = make_edition(store, 2)
    backend = make_backend(cfg)
    store.claim_batch(
        eid,
        backend="sendgrid",
        limit=2,
        worker=dead_worker(),
        provider_batch_id=backend.new_provider_batch(),
        now=datetime.now(UTC) - timedelta(seconds=100),
    )
    report = send(store, cfg, eid)
    assert report.unresolved == 2 and sg.scheduled == {}


# --------------------------------------------------------------------------- pace


def test_send_rate_is_honoured_across_workers(sqlite_store, sg, tmp_path):
    cfg = sg_config(tmp_path, sg, rate=400.0, concurrency=3, batch_size=100)
    eid = make_edition(sqlite_store, 500)
    t0 = time.monotonic()
    report = send(sqlite_store, cfg, eid)
    took = time.monotonic() - t0
    assert report.accepted == 500
    # 5 batches of 100 at 400/s: the last may start 1.0 s after the first
    assert sg.arrivals[-1] - sg.arrivals[0] >= 0.85
    assert took < 5


def test_concurrency_puts_several_requests_in_flight(sqlite_store, tmp_path):
    with FakeSendGrid(api_key=SENDGRID_KEY, latency=0.3) as fake:
        cfg = sg_config(tmp_path, fake, concurrency=4, batch_size=50)
        eid = make_edition(sqlite_store, 400)
        t0 = time.monotonic()
        report = send(sqlite_store, cfg, eid)
        took = time.monotonic() - t0
    assert report.accepted == 400 and report.batches == 8
    assert took < 8 * 0.3 * 0.75, "batches did not overlap"


def test_pacer_books_messages_against_the_rate():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    p = Pacer(100.0, clock=lambda: now[0], sleep=sleep)
    assert p.acquire(100) == 0
    assert p.acquire(50) == pytest.approx(1.0)
    p.refund(50)
    assert p.acquire(10) == pytest.approx(0.0)
    p.pause(3.0)
    p.wait_pause()
    assert slept[-1] == pytest.approx(3.0)
    assert Pacer(0).acquire(10**6) == 0


# --------------------------------------------------------------------------- the fake


def raw_post(fake, body, key=SENDGRID_KEY):
    req = urllib.request.Request(
        fake.url + "/v3/mail/send",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, dict(resp.headers), b""
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def minimal(n=1, **extra):
    return {
        "personalizations": [{"to": [{"email": f"p{i}@example.com"}]} for i in range(n)],
        "from": {"email": "from@example.com"},
        "subject": "s",
        "content": [{"type": "text/plain", "value": "x"}],
        **extra,
    }


def test_the_fake_enforces_sendgrids_rules(sg):
    status, headers, _ = raw_post(sg, minimal())
    assert status == 202 and headers["X-Message-Id"]
    assert raw_post(sg, minimal(), key="SG.other")[0] == 401
    status, _, body = raw_post(sg, minimal(1001))
    assert status == 400 and b"personalizations" in body
    dup = minimal(2)
    dup["personalizations"][1]["to"][0]["email"] = "P0@Example.com"
    status, _, body = raw_post(sg, dup)
    assert status == 400
    assert json.loads(body)["errors"][0]["field"] == "personalizations.1.to"
    status, _, body = raw_post(sg, minimal(custom_args="not an object"))
    assert status == 400 and json.loads(body)["errors"][0]["field"] == "custom_args"
    status, _, _ = raw_post(sg, minimal(categories=[f"c{i}" for i in range(11)]))
    assert status == 400
    big = minimal()
    big["personalizations"][0]["custom_args"] = {"k": "x" * 10_001}
    assert raw_post(sg, big)[0] == 400
    assert raw_post(sg, minimal(send_at=int(time.time()) + 73 * 3600))[0] == 400
    assert raw_post(sg, minimal(batch_id="never-created"))[0] == 400
    assert len(sg.accepted) == 1


@pytest.mark.parametrize(
    "body",
    [
        minimal(),
        minimal(custom_args={"a": "b"}),
        minimal(custom_args="x"),
        minimal(categories=["a", "a"]),
        minimal(ip_pool_name="x"),
        {"from": {"email": "a@b.example"}},
        minimal(personalizations=[{"to": [{"email": "no-at-sign"}]}]),
        minimal(personalizations=[{"to": [{"email": "a@b.example"}], "substitutions": {"k": 1}}]),
    ],
)
def test_the_fast_validator_agrees_with_jsonschema(body):
    outcomes = []
    for kind in ("jsonschema", "fast"):
        try:
            make_validator(kind)(body)
            outcomes.append(None)
        except SchemaError as err:
            outcomes.append(err.field.split(".")[0])
    assert outcomes[0] == outcomes[1]
