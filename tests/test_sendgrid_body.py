"""The fast mail/send body (pre-serialized fragments) is the plain json.dumps body.

``SendGridBackend.encode_body`` is what goes on the wire; ``build_body`` is the
plain dict. Same recipients, substitutions, headers and custom args: compared
parsed, and byte for byte (the order of a dict is defined).
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from newsletter.audience.tokens import TokenSigner, read_token
from newsletter.delivery.backends.sendgrid import SendGridBackend
from newsletter.delivery.message import UnsubscribeLinks, list_id, outgoing, unsubscribe_url
from newsletter.delivery.mime import list_unsubscribe
from newsletter.models import Recipient, Rendered
from tests.fakes.sendgrid import FakeSendGrid, make_validator
from tests.helpers import SECRET, build_config
from tests.helpers import SENDGRID_KEY as KEY

VALIDATE = make_validator("fast")

NAMES = [
    "Reader One",
    "",
    "Tom & <Jerry>",
    'Say "hi"',
    "Айгерим Садыкова",
    "Oʻlmas Karimov",
    "emoji 📰 reader",
    "back\\slash",
    "  spaced   out  ",
    "=?utf-8?q?evil?=",
    "tab\there",
    "bidi\u202eevil",
    "line\u2028sep",
    "O'Brien",
    "a/b <c@d.example>",
]

PAGE = (
    "<html><body><p>Hello %%name%%,</p>"
    "<a href='%%unsubscribe_url%%'>Unsubscribe</a> <a href='%%preferences_url%%'>Prefs</a>"
    "<p>“Quotes”, тенге, \u2028 and </script></p></body></html>"
)
TEXT = "Hello %%name%%,\n\nUnsubscribe: %%unsubscribe_url%%\nPrefs: %%preferences_url%%\n"


def config(**settings: object):
    return build_config(
        env={"SENDGRID_API_KEY": KEY, "NEWSLETTER_SECRET_KEY": SECRET},
        site={"unsubscribe_mailto": "unsubscribe@steppe-ledger.example"},
        delivery={"sendgrid": settings},
    )


def recipients(cfg, names=NAMES, n=60) -> list[Recipient]:
    links = UnsubscribeLinks(cfg, "weekly")
    out = []
    for i in range(n):
        url = links(1000 + i)
        if i == 7:
            url += "?x=a b&y=<z>"  # header_url must quote it
        out.append(
            Recipient(
                delivery_id=10_000_000 + i,
                email=f"reader{i}@example.com" if i % 9 else f"Ünïcode{i}@bücher.example",
                name=names[i % len(names)],
                unsubscribe_url=url,
                variant="default",
            )
        )
    return out


CASES = {
    "all placeholders": dict(subject="Weekly digest", html=PAGE, text=TEXT),
    "name in the subject": dict(subject="For %%name%%: the week", html=PAGE, text=TEXT),
    "no placeholders": dict(subject="Plain", html="<p>hi</p>", text="hi"),
    "text only name": dict(subject="S", html="<p>hi</p>", text="Hi %%name%%"),
    "empty parts": dict(subject="S", html="", text=""),
    "greeting with a fallback": dict(
        subject="For %%first_name%%",
        html="<p>Hi %%first_name%% (%%name%%),</p><a href='%%unsubscribe_url%%'>x</a>",
        text="Hi %%first_name%%, %%unsubscribe_url%%",
        fallbacks={"%%first_name%%": "there & co", "%%name%%": "reader"},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"sandbox": True, "asm_group_id": 42, "ip_pool": "news"},
        {"schedule_delay": 600},
    ],
    ids=["plain", "sandbox-asm-pool", "provider-batch"],
)
@pytest.mark.parametrize("kind", ["list", "test", "transactional"])
def test_encoded_body_is_the_json_dumps_body(case: str, settings: dict, kind: str) -> None:
    cfg = config(**settings)
    cfg.site.reply_to = "desk@steppe-ledger.example" if kind == "test" else ""
    backend = SendGridBackend(cfg)
    msg = outgoing(cfg, "weekly", 77, Rendered(**CASES[case]), test=kind == "test")
    recs = recipients(cfg)
    if kind == "transactional":
        msg = dataclasses.replace(msg, transactional=True)
        recs = recs[:1]
    batch = "batch-123" if settings.get("schedule_delay") else ""
    fast = backend.encode_body(msg, recs, provider_batch_id=batch, send_at=1_796_000_000)
    plain = backend.build_body(msg, recs, provider_batch_id=batch, send_at=1_796_000_000)
    assert json.loads(fast) == plain
    assert fast == json.dumps(plain).encode()
    VALIDATE(json.loads(fast))


def test_the_plain_body_has_what_each_recipient_needs() -> None:
    """The reference itself, read field by field for a few recipients."""
    cfg = config()
    backend = SendGridBackend(cfg)
    msg = outgoing(cfg, "weekly", 77, Rendered(**CASES["name in the subject"]))
    recs = recipients(cfg)
    body = json.loads(backend.encode_body(msg, recs))
    ps = body["personalizations"]
    assert len(ps) == len(recs)
    for p, rec in zip(ps, recs, strict=True):
        assert p["to"][0]["email"] == rec.email
        assert p["custom_args"] == {
            "newsletter_delivery_id": str(rec.delivery_id),
            "newsletter_edition_id": "77",
        }
        assert p["headers"] == {"List-Unsubscribe": list_unsubscribe(msg, rec)}
        # one URL tag for both links (same value for everyone)
        assert p["substitutions"]["%%unsubscribe_url%%"] == rec.unsubscribe_url.replace(
            "&", "&amp;"
        ).replace("<", "&lt;").replace(">", "&gt;")
        assert "%%preferences_url%%" not in p["substitutions"]
    tom = ps[2]
    assert tom["to"][0]["name"] == "Tom & <Jerry>"
    assert tom["substitutions"]["%%name%%"] == "Tom &amp; &lt;Jerry&gt;"
    assert tom["substitutions"]["%%name_text%%"] == "Tom & <Jerry>"
    assert body["subject"] == "For %%name_text%%: the week"
    assert "name" not in ps[1]["to"][0]  # no name: no display name
    assert ps[8]["to"][0]["name"] == "spaced out"  # neutral_name
    assert ps[9]["to"][0]["name"] == "= ?utf-8?q?evil?="
    assert ps[11]["to"][0]["name"] == "bidi evil"
    assert (
        ps[7]["headers"]["List-Unsubscribe"].startswith("<https://")
        and "%20" in (ps[7]["headers"]["List-Unsubscribe"])
    )
    # the unsubscribe link in the body is a valid token of this list
    token = recs[0].unsubscribe_url.rsplit("/", 1)[1]
    assert read_token(SECRET, token) == (1000, list_id(cfg, "weekly"))
    assert recs[0].unsubscribe_url == unsubscribe_url(cfg, 1000, "weekly")


def test_what_the_fake_receives_is_the_encoded_body() -> None:
    """Over HTTP: the fake SendGrid parses exactly the body build_body describes."""
    cfg = config()
    with FakeSendGrid(api_key=KEY) as sg:
        cfg.delivery.sendgrid.host = sg.url
        backend = SendGridBackend(cfg)
        msg = outgoing(cfg, "weekly", 77, Rendered(**CASES["all placeholders"]))
        recs = recipients(cfg, n=40)
        result = backend.send_batch(msg, recs)
        assert result.message_id and not result.rejected
        (received,) = sg.bodies
    assert received == backend.build_body(msg, recs)


def test_one_signer_makes_make_token_tokens() -> None:
    signer = TokenSigner(SECRET, "weekly.example")
    for sid in (1, 99, 10**9):
        assert read_token(SECRET, signer.token(sid)) == (sid, "weekly.example")


def test_substitutions_are_the_values_each_recipient_would_get_by_mail() -> None:
    """The same values mime.recipient_values gives the outbox and SMTP: first names,
    fallbacks for empty ones, HTML-escaped in the HTML's tags."""
    import html

    from newsletter.delivery.mime import recipient_values

    cfg = config()
    backend = SendGridBackend(cfg)
    rendered = Rendered(**CASES["greeting with a fallback"])
    msg = outgoing(cfg, "weekly", 77, rendered)
    recs = recipients(cfg)
    body = json.loads(backend.encode_body(msg, recs))
    for p, rec in zip(body["personalizations"], recs, strict=True):
        want = recipient_values(rec, rendered.fallbacks)
        subs = p["substitutions"]
        for tag in ("%%first_name%%", "%%name%%", "%%unsubscribe_url%%"):
            assert subs[tag] == html.escape(want[tag], quote=True)
            # the text part's own tag where escaping changed the value
            text_tag = tag[:-2] + "_text%%"
            if text_tag in subs:
                assert subs[text_tag] == want[tag]
    assert body["personalizations"][1]["substitutions"]["%%first_name%%"] == "there &amp; co"
