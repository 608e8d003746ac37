"""Verifying SendGrid's Signed Event Webhook.

SendGrid signs ``timestamp + raw body`` with ECDSA P-256 / SHA-256 and sends
the base64 DER signature in X-Twilio-Email-Event-Webhook-Signature and the
Unix timestamp in X-Twilio-Email-Event-Webhook-Timestamp. The public key is
shown in SendGrid's Mail Settings as base64 DER; a PEM block works too.

The bytes of the body are verified as they arrived (the sendgrid helper
decodes and re-encodes them as text first). Anything malformed in the headers
is a refusal, never an exception that escapes.
"""

from __future__ import annotations

import base64
import binascii
import time

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from newsletter.errors import ConfigError, WebhookError

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


def load_public_key(
    text: str, *, where: str = "NEWSLETTER_SENDGRID_WEBHOOK_KEY"
) -> ec.EllipticCurvePublicKey:
    """The verification key from its base64 DER (or PEM) text; ConfigError if it is not one."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode())
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm, TypeError):
        raise ConfigError(
            "not a valid public key",
            where=where,
            hint="paste the Verification Key from SendGrid's Event Webhook settings",
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ConfigError("the webhook key must be an ECDSA P-256 public key", where=where)
    return key


def verify(
    key: ec.EllipticCurvePublicKey,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    max_age: int = 600,
    now: float | None = None,
) -> None:
    """Return if the request is genuine and fresh; raise WebhookError otherwise.

    ``max_age`` is in seconds; 0 turns the age check off. A timestamp further
    in the future than ``max_age`` is refused as well (a clock that far off
    is not one to trust).
    """
    if not signature or not timestamp:
        raise WebhookError("missing signature or timestamp header")
    ts = timestamp.strip()
    if not ts.isascii() or not ts.isdigit() or len(ts) > 12:
        raise WebhookError("malformed timestamp header")
    if max_age:
        age = (time.time() if now is None else now) - int(ts)
        if abs(age) > max_age:
            raise WebhookError(f"timestamp is {int(age)} s old, outside the {max_age} s tolerance")
    try:
        raw_sig = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookError("malformed signature header") from None
    try:
        key.verify(raw_sig, ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise WebhookError("signature does not match") from None
