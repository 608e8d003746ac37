"""Unsubscribe tokens: HMAC-signed, bound to subscriber and list, unforgeable."""

import base64
import hashlib
import hmac

import pytest

from newsletter.audience.tokens import TokenSigner, make_token, read_token
from newsletter.errors import ConfigError, InputError

KEY = "test-secret-key-0123456789"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_round_trips_and_binds_subscriber_and_list():
    token = make_token(KEY, 42, "weekly.example.com")
    assert read_token(KEY, token) == (42, "weekly.example.com")
    assert make_token(KEY, 43, "weekly.example.com") != token
    assert make_token(KEY, 42, "daily.example.com") != token
    assert "@" not in token and "42" not in token.split(".")[1]


def test_tokens_are_url_safe_and_carry_128_bits_of_signature():
    token = make_token(KEY, 7, "weekly.example.com")
    payload, sig = token.split(".")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert len(base64.urlsafe_b64decode(sig + "==")) == 16


def forged_tokens():
    good = make_token(KEY, 42, "weekly.example.com")
    payload, sig = good.split(".")
    other_sig = make_token(KEY, 43, "weekly.example.com").split(".")[1]
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    return {
        "other-subscriber": f"{b64(b'43:weekly.example.com')}.{sig}",
        "other-list": f"{b64(b'42:daily.example.com')}.{sig}",
        "swapped-signature": f"{payload}.{other_sig}",
        "flipped-bit": f"{payload}.{flipped}",
        "truncated-signature": f"{payload}.{sig[:10]}",
        # same bytes when decoded leniently: the last character's spare bits changed
        "last-character": f"{payload}.{sig[:-1]}{chr(ord(sig[-1]) ^ 1)}",
        "padded": f"{payload}.{sig}==",
        "no-signature": payload,
        "empty-signature": f"{payload}.",
        "wrong-key": make_token("another-key-0123456789", 42, "weekly.example.com"),
        "extra-dot": f"{good}.x",
        "empty": "",
        "dot": ".",
        "non-ascii": "é.ü",
        "garbage": "!!!!.????",
        "huge": "A" * 10_000 + "." + "B" * 10_000,
        "not-a-number": f"{b64(b'x:weekly.example.com')}.{sig}",
    }


@pytest.mark.parametrize("name", list(forged_tokens()))
def test_forged_or_altered_tokens_are_refused(name):
    with pytest.raises(InputError, match="invalid or expired link"):
        read_token(KEY, forged_tokens()[name])


def test_a_token_with_a_valid_signature_but_odd_payload_is_refused():
    import hashlib
    import hmac

    for raw in (b"no-colon", b"\xff\xfe:x", b"abc:list"):
        payload = b64(raw)
        sig = b64(hmac.new(KEY.encode(), payload.encode(), hashlib.sha256).digest()[:16])
        with pytest.raises(InputError):
            read_token(KEY, f"{payload}.{sig}")


def test_no_secret_key_is_a_config_error():
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY"):
        make_token("", 1, "weekly.example.com")


def reference_token(secret: str, subscriber_id: int, list_id: str) -> str:
    """The token format as documented, from the standard library's hmac and base64."""
    payload = base64.urlsafe_b64encode(f"{subscriber_id}:{list_id}".encode()).rstrip(b"=")
    sig = hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:16]
    return (payload + b"." + base64.urlsafe_b64encode(sig).rstrip(b"=")).decode()


@pytest.mark.parametrize(
    "secret",
    ["k", "x" * 63, "y" * 64, "z" * 65, "a much longer secret " * 20, "ключ-секрет"],
)
def test_the_fast_signer_makes_the_documented_tokens(secret: str) -> None:
    """Links already sent keep working: same bytes as plain HMAC-SHA256 + base64url,
    for keys shorter than, as long as and longer than SHA-256's block."""
    signer = TokenSigner(secret, "weekly.example.com")
    for sid in [0, 1, 9, 62, 63, 64, 255, 999_999, 10**12, *range(1000, 1100)]:
        token = signer.token(sid)
        assert token == reference_token(secret, sid, "weekly.example.com")
        assert token == make_token(secret, sid, "weekly.example.com")
        assert read_token(secret, token) == (sid, "weekly.example.com")
