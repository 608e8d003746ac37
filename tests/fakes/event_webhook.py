"""Helpers for the tracking tests: signing keys, a live uvicorn server, a sent edition.

with LiveApp(create_app(cfg, store)) as srv:
    httpx.post(srv.url("/webhooks/sendgrid"), content=body, headers=signer.headers(body))
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.models import Subscriber
from newsletter.store import Store
from newsletter.store.deliveries import AudienceRow
from newsletter.tracking.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER


class Signer:
    """A P-256 key pair made for the test, signing like SendGrid does."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        #: the form SendGrid shows in its settings: base64 DER, no PEM armour
        self.public_b64 = base64.b64encode(der).decode()
        self.public_pem = (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def sign(self, body: bytes, timestamp: str) -> str:
        sig = self.private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(sig).decode()

    def headers(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        return {
            SIGNATURE_HEADER: self.sign(body, ts),
            TIMESTAMP_HEADER: ts,
            "Content-Type": "application/json",
        }


class LiveApp:
    """An ASGI app served by a real uvicorn on 127.0.0.1 (a free port), in a thread."""

    def __init__(self, app: object):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=5
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def __enter__(self) -> LiveApp:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@dataclass(frozen=True)
class Sent:
    delivery_id: int
    subscriber_id: int
    email: str
    variant: str


@dataclass
class SentEdition:
    edition_id: int
    deliveries: list[Sent]
    message_id: str


def sent_edition(
    store: Store,
    emails: list[str],
    *,
    digest: str = "weekly",
    period: str = "2026-11-30T07:00",
    variants: dict[str, str] | None = None,
    message_id: str = "msg-batch-1",
) -> SentEdition:
    """Subscribers, an edition and deliveries the provider accepted (status ``accepted``)."""
    variants = variants or {}
    rows = store.upsert_subscribers([Subscriber(email=e) for e in emails])
    eid, _ = store.create_edition(
        digest=digest,
        period=period,
        subject="Test edition",
        window_start=datetime(2026, 11, 23, tzinfo=UTC),
        window_end=datetime(2026, 11, 30, tzinfo=UTC),
    )
    store.freeze_audience(
        eid,
        [
            AudienceRow(subscriber_id=sid, email=e, variant=variants.get(e, "default"))
            for (sid, _), e in zip(rows, emails, strict=True)
        ],
    )
    while (batch := store.claim_batch(eid, backend="sendgrid", limit=1000)) is not None:
        store.finish_batch(batch.id, message_id=message_id)
    by_email = {d.email: d for d in store.list_deliveries(eid)}
    return SentEdition(
        eid,
        [Sent(by_email[e].id, by_email[e].subscriber_id, e, by_email[e].variant) for e in emails],
        message_id,
    )


_counter = iter(range(1, 10**9))


def sg_event(kind: str, sent: Sent | None = None, edition_id: int | None = None, **extra) -> dict:
    """One SendGrid event as the webhook posts it, with our custom args when ``sent``."""
    ev: dict = {
        "email": sent.email if sent else "someone@example.org",
        "timestamp": 1796000000 + next(_counter),
        "event": kind,
        "sg_event_id": f"evt-{next(_counter)}",
        "sg_message_id": "msg-batch-1.filter0001.16648.5515E0B88.0",
    }
    if sent is not None:
        ev["newsletter_delivery_id"] = str(sent.delivery_id)
        if edition_id is not None:
            ev["newsletter_edition_id"] = str(edition_id)
    ev.update(extra)
    return ev


def body_of(events: list[dict]) -> bytes:
    return json.dumps(events).encode()
