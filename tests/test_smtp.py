"""The SMTP backend against a real aiosmtpd server on loopback: STARTTLS, AUTH, reuse."""

from __future__ import annotations

import email
import email.policy
import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from newsletter.delivery.backends import make_backend
from newsletter.delivery.send import send_edition
from newsletter.errors import AuthError, PermanentDeliveryError, TransientError
from tests.fakes.mail import FaultyMailbox, free_port
from tests.helpers import (
    DELIVERY_CONFIG,
    RENDER,
    SECRET_ENV,
    build_config,
    make_edition,
    self_signed,
    statuses,
)

USER, PASSWORD = "mailer", "s3cret-smtp-password"


@pytest.fixture
def smtpd(tmp_path):
    cert, key = self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == USER.encode()
            and auth_data.password == PASSWORD.encode()
        )
        return AuthResult(success=ok, handled=False)

    box = FaultyMailbox()
    port = free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        tls_context=ctx,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    controller.start()
    box.port, box.cert = port, cert
    yield box
    controller.stop()


def smtp_config(folder, box, *, password=PASSWORD, batch_size=2, **extra):
    settings = {
        "host": "127.0.0.1",
        "port": box.port,
        "username": USER,
        "ca_file": str(box.cert),
        "batch_size": batch_size,
        "timeout": 5.0,
        **extra,
    }
    return build_config(
        folder,
        toml=DELIVERY_CONFIG,
        env={**SECRET_ENV, "NEWSLETTER_SMTP_PASSWORD": password},
        delivery={"backend": "smtp", "smtp": settings},
    )


def test_sends_over_starttls_with_auth_reusing_one_connection(sqlite_store, smtpd, tmp_path):
    cfg = smtp_config(tmp_path, smtpd)
    eid = make_edition(sqlite_store, 5)
    report = send_edition(sqlite_store, cfg, eid, {"default": RENDER}, make_backend(cfg))
    assert report.accepted == 5 and report.batches == 3
    assert sorted(m["to"][0] for m in smtpd.messages) == [
        f"reader{i}@example.com" for i in range(5)
    ]
    assert all(m["tls"] and m["auth"] for m in smtpd.messages)
    assert len({m["peer"] for m in smtpd.messages}) == 1, "a new connection per batch"
    msg = email.message_from_bytes(smtpd.messages[0]["content"], policy=email.policy.default)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Id"] == "<weekly.steppe-ledger.example>"
    unsub = msg["List-Unsubscribe"]
    assert "<https://steppe-ledger.example/newsletter/unsubscribe/" in unsub
    assert "<mailto:unsubscribe@steppe-ledger.example?subject=unsubscribe>" in unsub
    body = msg.get_body(("plain",)).get_content()
    assert "%%" not in body and unsub.split("<")[1].split(">")[0] in body
    rows = sqlite_store.list_deliveries(eid)
    assert all(r.message_id.startswith("<") for r in rows)
    assert statuses(sqlite_store, eid) == {"accepted": 5}


def test_a_wrong_password_stops_the_send_and_sends_nothing(sqlite_store, smtpd, tmp_path):
    cfg = smtp_config(tmp_path, smtpd, password="wrong-password")
    eid = make_edition(sqlite_store, 3)
    with pytest.raises(AuthError, match="refused the login") as err:
        send_edition(sqlite_store, cfg, eid, {"default": RENDER}, make_backend(cfg))
    assert "wrong-password" not in str(err.value)
    assert smtpd.messages == []
    assert statuses(sqlite_store, eid) == {"queued": 3}


def test_refused_recipients_fail_and_deferred_ones_wait_for_the_next_run(
    sqlite_store, smtpd, tmp_path
):
    cfg = smtp_config(tmp_path, smtpd, batch_size=10)
    eid = make_edition(sqlite_store, 4)
    smtpd.refuse = {"reader1@example.com"}
    smtpd.defer = {"reader2@example.com"}
    with pytest.raises(TransientError, match="deferred: temporary failure at rcpt: 451"):
        send_edition(sqlite_store, cfg, eid, {"default": RENDER}, make_backend(cfg))
    assert statuses(sqlite_store, eid) == {"accepted": 2, "failed": 1, "queued": 1}
    (failed,) = sqlite_store.list_deliveries(eid, status="failed")
    assert failed.email == "reader1@example.com" and "550" in failed.error
    smtpd.defer = set()
    report = send_edition(sqlite_store, cfg, eid, {"default": RENDER}, make_backend(cfg))
    assert report.accepted == 1
    assert sorted(m["to"][0] for m in smtpd.messages) == [
        "reader0@example.com",
        "reader2@example.com",
        "reader3@example.com",
    ]


def test_no_answer_to_data_is_an_unknown_outcome(sqlite_store, smtpd, tmp_path):
    cfg = smtp_config(tmp_path, smtpd, batch_size=10, timeout=0.5)
    eid = make_edition(sqlite_store, 3)
    smtpd.stall = {"reader1@example.com"}
    report = send_edition(sqlite_store, cfg, eid, {"default": RENDER}, make_backend(cfg))
    assert report.unresolved == 1 and report.accepted == 2
    (held,) = sqlite_store.list_deliveries(eid, status="unresolved")
    assert held.email == "reader1@example.com"
    assert "during DATA" in held.error
    assert sqlite_store.unresolved_batches(eid)


def test_a_server_without_starttls_is_refused(sqlite_store, tmp_path):
    box = FaultyMailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        cfg = build_config(
            tmp_path,
            toml=DELIVERY_CONFIG,
            env=SECRET_ENV,
            delivery={
                "backend": "smtp",
                "smtp": {"host": "127.0.0.1", "port": port, "timeout": 5.0},
            },
        )
        eid = make_edition(sqlite_store, 1)
        with pytest.raises(PermanentDeliveryError, match="offers no STARTTLS"):
            send_edition(sqlite_store, cfg, eid, {"default": RENDER}, make_backend(cfg))
        assert box.messages == [] and statuses(sqlite_store, eid) == {"queued": 1}
    finally:
        controller.stop()


def test_an_untrusted_certificate_is_refused(sqlite_store, smtpd, tmp_path):
    cfg = smtp_config(tmp_path, smtpd)
    cfg.delivery.smtp.ca_file = ""
    eid = make_edition(sqlite_store, 1)
    with pytest.raises(PermanentDeliveryError, match="TLS failed"):
        send_edition(sqlite_store, cfg, eid, {"default": RENDER}, make_backend(cfg))
    assert smtpd.messages == []


def test_status_of_an_smtp_edition_reports_accepted_not_a_delivery_rate(
    sqlite_store, smtpd, tmp_path
):
    """SMTP reports no delivery events: `status` says accepted, never "delivery 0.0%"."""
    from newsletter.tracking.status import edition_status

    cfg = smtp_config(tmp_path, smtpd)
    eid = make_edition(sqlite_store, 3)
    send_edition(sqlite_store, cfg, eid, {"default": RENDER}, make_backend(cfg))
    data = edition_status(sqlite_store, eid)
    assert (data["backends"], data["events_reported"]) == (["smtp"], False)
    assert data["sent"] == 3
    assert {r: data["rates"][r] for r in ("delivery", "open", "click", "bounce")} == dict.fromkeys(
        ("delivery", "open", "click", "bounce")
    )
