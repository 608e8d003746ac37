"""The signed event webhook: genuine requests in, everything else refused, nothing crashes."""

import base64
import time

import httpx
import pytest

from newsletter.config import load_config
from newsletter.errors import ConfigError, WebhookError
from newsletter.store import open_store
from newsletter.tracking.app import create_app
from newsletter.tracking.signature import (
    SIGNATURE_HEADER,
    load_public_key,
    verify,
)
from tests.fakes.event_webhook import LiveApp, Signer, body_of, sent_edition, sg_event
from tests.helpers import build_config

BODY = b'[{"event":"delivered","email":"a@example.com","sg_event_id":"x1"}]'


@pytest.fixture(scope="module")
def signer():
    return Signer()


def test_a_genuine_signature_verifies(signer):
    key = load_public_key(signer.public_b64)
    ts = str(int(time.time()))
    verify(key, BODY, signer.sign(BODY, ts), ts)


def test_a_pem_key_works_as_well(signer):
    key = load_public_key(signer.public_pem)
    ts = str(int(time.time()))
    verify(key, BODY, signer.sign(BODY, ts), ts)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda body, sig, ts: (body + b" ", sig, ts), id="body-changed"),
        pytest.param(lambda body, sig, ts: (body.replace(b"a@", b"b@"), sig, ts), id="body-edit"),
        pytest.param(lambda body, sig, ts: (body, sig, str(int(ts) - 1)), id="timestamp-changed"),
    ],
)
def test_tampering_with_body_or_timestamp_is_refused(signer, mutate):
    key = load_public_key(signer.public_b64)
    ts = str(int(time.time()))
    body, sig, ts2 = mutate(BODY, signer.sign(BODY, ts), ts)
    with pytest.raises(WebhookError, match="does not match"):
        verify(key, body, sig, ts2)


def test_a_signature_from_another_key_is_refused(signer):
    key = load_public_key(signer.public_b64)
    other = Signer()
    ts = str(int(time.time()))
    with pytest.raises(WebhookError, match="does not match"):
        verify(key, BODY, other.sign(BODY, ts), ts)


@pytest.mark.parametrize(
    "sig, ts, message",
    [
        (None, "1700000000", "missing"),
        ("", "1700000000", "missing"),
        ("abc", None, "missing"),
        ("not base64 at all!!", "NOW", "malformed signature"),
        ("YWJj", "NOW", "does not match"),  # valid base64, not DER
        ("////", "NOW", "does not match"),
        ("é€", "NOW", "malformed signature"),
        ("MEUCIQ", "NOW", "malformed signature"),  # bad padding
        ("abc", "12ab", "malformed timestamp"),
        ("abc", "-5", "malformed timestamp"),
        ("abc", "9" * 40, "malformed timestamp"),
        ("abc", "١٢٣", "malformed timestamp"),  # non-ASCII digits
    ],
)
def test_malformed_headers_are_refused_not_crashed(signer, sig, ts, message):
    key = load_public_key(signer.public_b64)
    if ts == "NOW":
        ts = str(int(time.time()))
    with pytest.raises(WebhookError, match=message):
        verify(key, BODY, sig, ts)


def test_old_and_future_timestamps_are_refused_unless_the_check_is_off(signer):
    key = load_public_key(signer.public_b64)
    now = 1_800_000_000
    old = str(now - 601)
    with pytest.raises(WebhookError, match="outside the 600 s tolerance"):
        verify(key, BODY, signer.sign(BODY, old), old, max_age=600, now=now)
    future = str(now + 601)
    with pytest.raises(WebhookError, match="tolerance"):
        verify(key, BODY, signer.sign(BODY, future), future, max_age=600, now=now)
    fresh = str(now - 599)
    verify(key, BODY, signer.sign(BODY, fresh), fresh, max_age=600, now=now)
    verify(key, BODY, signer.sign(BODY, old), old, max_age=0, now=now)


@pytest.mark.parametrize(
    "text",
    ["", "not a key", base64.b64encode(b"garbage").decode(), "-----BEGIN PUBLIC KEY-----\nxx"],
)
def test_a_bad_public_key_is_a_config_error_naming_where(text):
    with pytest.raises(ConfigError, match="SOMEWHERE: not a valid public key"):
        load_public_key(text, where="SOMEWHERE")


def test_a_key_on_another_curve_is_refused():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    der = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ConfigError, match="P-256"):
        load_public_key(base64.b64encode(der).decode())


# ----------------------------------------------------------------- through the real server


@pytest.fixture
def live(tmp_path, signer):
    def make(**webhook):
        env = {
            "NEWSLETTER_SECRET_KEY": "test-secret-key-0123456789",
            "NEWSLETTER_SENDGRID_WEBHOOK_KEY": signer.public_b64,
        }
        toml = "[webhook]\n" + "".join(f"{k} = {v}\n" for k, v in webhook.items())
        cfg = build_config(tmp_path, toml=toml, env=env, database=f"sqlite:///{tmp_path / 'wh.db'}")
        store = open_store(cfg.database_url)
        return store, LiveApp(create_app(cfg, store))

    return make


def _count(store):
    import sqlalchemy as sa

    with store.engine.connect() as c:
        return c.execute(sa.text("select count(*) from events")).scalar_one()


def test_server_refuses_bad_requests_and_stores_nothing(live, signer):
    store, app = live()
    body = body_of([sg_event("delivered")])
    good = signer.headers(body)
    with app as srv, httpx.Client() as http:
        url = srv.url("/webhooks/sendgrid")
        assert http.post(url, content=body).status_code == 403
        bad = {**good, SIGNATURE_HEADER: "%%%not-base64"}
        r = http.post(url, content=body, headers=bad)
        assert r.status_code == 403 and "malformed" in r.json()["error"]
        tampered = body.replace(b"delivered", b"bounce")
        assert http.post(url, content=tampered, headers=good).status_code == 403
        old = signer.headers(body, timestamp=int(time.time()) - 3600)
        assert http.post(url, content=body, headers=old).status_code == 403
        assert _count(store) == 0
        # the server is still fine after all that
        assert http.post(url, content=body, headers=good).status_code == 200
        assert _count(store) == 1
    store.close()


def test_a_replayed_request_stores_nothing_twice(live, signer):
    store, app = live()
    body = body_of([sg_event("delivered"), sg_event("open")])
    headers = signer.headers(body)
    with app as srv, httpx.Client() as http:
        url = srv.url("/webhooks/sendgrid")
        first = http.post(url, content=body, headers=headers)
        again = http.post(url, content=body, headers=headers)
    assert first.json()["stored"] == 2
    assert again.status_code == 200
    assert again.json()["stored"] == 0 and again.json()["duplicates"] == 2
    assert _count(store) == 2
    store.close()


def test_a_replay_outside_the_tolerance_is_refused_and_zero_turns_the_check_off(live, signer):
    body = body_of([sg_event("delivered")])
    stale = signer.headers(body, timestamp=int(time.time()) - 11 * 60)
    store, app = live()
    with app as srv:
        assert (
            httpx.post(srv.url("/webhooks/sendgrid"), content=body, headers=stale).status_code
            == 403
        )
    store.close()
    store, app = live(max_age=0)
    with app as srv:
        assert (
            httpx.post(srv.url("/webhooks/sendgrid"), content=body, headers=stale).status_code
            == 200
        )
    store.close()


def test_oversized_bodies_are_refused_with_413(live, signer):
    store, app = live(max_body_bytes=2000)
    big = body_of([sg_event("delivered", reason="x" * 3000)])
    with app as srv, httpx.Client() as http:
        url = srv.url("/webhooks/sendgrid")
        assert http.post(url, content=big, headers=signer.headers(big)).status_code == 413

        def chunks():  # no Content-Length: the limit holds while streaming
            for i in range(0, len(big), 500):
                yield big[i : i + 500]

        r = http.post(url, content=chunks(), headers=signer.headers(big))
        assert r.status_code == 413
    assert _count(store) == 0
    store.close()


@pytest.mark.parametrize("body", [b"{not json", b'{"event": "open"}', b'"text"', b"\xff\xfe"])
def test_a_signed_body_that_is_not_an_event_array_is_a_400(live, signer, body):
    store, app = live()
    with app as srv:
        r = httpx.post(srv.url("/webhooks/sendgrid"), content=body, headers=signer.headers(body))
    assert r.status_code == 400
    store.close()


def test_without_a_configured_key_every_request_is_refused(tmp_path, signer):
    cfg = build_config(
        env={"NEWSLETTER_SECRET_KEY": "k" * 20}, database=f"sqlite:///{tmp_path / 'a.db'}"
    )
    store = open_store(cfg.database_url)
    body = body_of([sg_event("delivered")])
    with LiveApp(create_app(cfg, store)) as srv:
        r = httpx.post(srv.url("/webhooks/sendgrid"), content=body, headers=signer.headers(body))
    assert r.status_code == 403
    assert _count(store) == 0
    store.close()


def test_a_key_in_the_config_file_is_used_and_a_bad_one_stops_the_app(tmp_path, signer):
    env = {"NEWSLETTER_SECRET_KEY": "k" * 20}
    db = f"sqlite:///{tmp_path / 'a.db'}"
    key = f'[delivery.sendgrid]\nwebhook_public_key = "{signer.public_b64}"\n'
    cfg = build_config(tmp_path, toml=key, env=env, database=db)
    store = open_store(cfg.database_url)
    sent = sent_edition(store, ["reader@example.com"])
    body = body_of([sg_event("delivered", sent.deliveries[0], sent.edition_id)])
    with LiveApp(create_app(cfg, store)) as srv:
        r = httpx.post(srv.url("/webhooks/sendgrid"), content=body, headers=signer.headers(body))
    assert r.status_code == 200 and r.json()["stored"] == 1
    bad = '[delivery.sendgrid]\nwebhook_public_key = "bm90IGEga2V5"\n'
    cfg = build_config(tmp_path, toml=bad, env=env, database=db)
    with pytest.raises(ConfigError, match="webhook_public_key: not a valid public key"):
        create_app(cfg, store)
    store.close()


@pytest.mark.parametrize(
    "table, message",
    [
        ("max_age = -1", "webhook.max_age: must be 0"),
        ("port = 70000", "webhook.port: must be between 1 and 65535"),
        ("max_body_bytes = 10", "webhook.max_body_bytes: must be at least 1000"),
        ("soft_bounce_limit = -2", "webhook.soft_bounce_limit: must be 0"),
    ],
)
def test_webhook_settings_are_validated_naming_file_and_key(tmp_path, table, message):
    toml = tmp_path / "newsletter.toml"
    toml.write_text(f"[webhook]\n{table}\n")
    with pytest.raises(ConfigError, match=message) as err:
        load_config(toml, env={})
    assert str(toml) in str(err.value)


def test_newsletter_serve_runs_as_a_process_and_stops_cleanly(tmp_path, signer):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "NEWSLETTER_SECRET_KEY": "k" * 20,
        "NEWSLETTER_SENDGRID_WEBHOOK_KEY": signer.public_b64,
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
    }
    env.pop("NEWSLETTER_CONFIG", None)
    (tmp_path / "newsletter.toml").write_text("", encoding="utf-8")  # the defaults
    open_store(env["NEWSLETTER_DATABASE_URL"]).close()  # as `newsletter init` would
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(100):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert r.status_code == 200 and r.text == "ok"
        body = body_of([sg_event("delivered")])
        r = httpx.post(
            f"http://127.0.0.1:{port}/webhooks/sendgrid",
            content=body,
            headers=signer.headers(body),
        )
        assert r.status_code == 200 and r.json()["unmatched"] == 1
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert f"listening on http://127.0.0.1:{port}" in err
    assert "Traceback" not in err


def test_newsletter_serve_without_the_secret_key_is_one_line(tmp_path):
    from click.testing import CliRunner

    from newsletter.cli import cli

    (tmp_path / "newsletter.toml").write_text("", encoding="utf-8")
    open_store(f"sqlite:///{tmp_path / 'x.db'}").close()
    r = CliRunner(env={"NEWSLETTER_SECRET_KEY": ""}).invoke(
        cli,
        ["--config", str(tmp_path / "newsletter.toml"), "--db", f"sqlite:///{tmp_path / 'x.db'}"]
        + ["serve"],
    )
    assert r.exit_code == 2
    assert "NEWSLETTER_SECRET_KEY is not set" in r.output and "Traceback" not in r.output
