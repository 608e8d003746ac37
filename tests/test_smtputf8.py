"""Addresses with non-ASCII before the @ (RFC 6531/6532) over SMTP, against real
aiosmtpd servers on loopback, one announcing SMTPUTF8 and one not: the raw
command options, the RCPT and the DATA as the server received them."""

from __future__ import annotations

import base64
import email
import email.policy
from pathlib import Path

import pytest

from newsletter.delivery.backends import make_backend
from newsletter.delivery.send import send_edition
from newsletter.models import Rendered
from tests.test_wire import ENGLISH, config, edition, fields, split

UTF8 = "айгерим@example.kz"
#: an all-ASCII edition: both parts 7bit
PLAIN = Rendered(
    subject="Weekly digest",
    html="<p>Hello</p>\n<a href='%%unsubscribe_url%%'>Unsubscribe</a>",
    text="Hello\nUnsubscribe:\n%%unsubscribe_url%%\n",
)


class Recorder:
    """Keeps, per message, what the server got: MAIL options, RCPTs and raw DATA."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        self.messages.append(
            {
                "mail_options": list(envelope.mail_options),
                "smtp_utf8": envelope.smtp_utf8,
                "rcpt_tos": list(envelope.rcpt_tos),
                "raw": envelope.original_content,
            }
        )
        return "250 2.0.0 Ok: queued"


@pytest.fixture
def smtpd(smtp_servers):
    """``smtpd(utf8=True)``: a server announcing SMTPUTF8 (and 8BITMIME); without, no
    SMTPUTF8 but 8BITMIME still."""

    def start(*, utf8: bool) -> Recorder:
        box = Recorder()
        box.port = smtp_servers.start(box, utf8=utf8)  # type: ignore[attr-defined]
        return box

    return start


def smtp_cfg(folder: Path, box: Recorder):
    smtp = {"host": "127.0.0.1", "port": box.port, "starttls": False}  # type: ignore[attr-defined]
    return config(
        folder, delivery={"backend": "smtp", "smtp": {**smtp, "batch_size": 5, "timeout": 5.0}}
    )


def by_rcpt(box: Recorder) -> dict[str, dict]:
    assert all(len(m["rcpt_tos"]) == 1 for m in box.messages)
    return {m["rcpt_tos"][0]: m for m in box.messages}


def test_a_non_ascii_address_goes_with_smtputf8(sqlite_store, tmp_path, smtpd):
    """To a server announcing SMTPUTF8: MAIL FROM … SMTPUTF8 BODY=8BITMIME, the RCPT
    and To: carry the address as raw UTF-8 (IDNA domain), the display name is our
    encoded-word, every other header is ASCII; the ASCII recipient's transaction
    has no SMTPUTF8 and its message is all ASCII in the header."""
    box = smtpd(utf8=True)
    cfg = smtp_cfg(tmp_path, box)
    idn = "ерлан@пример.kz"
    eid = edition(
        sqlite_store, {"ok@example.com": "Ann", UTF8: "Айгерим", idn: "", "b@пример.kz": "Bo"}
    )
    report = send_edition(sqlite_store, cfg, eid, {"default": ENGLISH}, make_backend(cfg))
    assert report.accepted == 4
    rows = {r.email: r for r in sqlite_store.list_deliveries(eid)}
    assert {r.status for r in rows.values()} == {"accepted"}
    got = by_rcpt(box)
    assert set(got) == {"ok@example.com", UTF8, "ерлан@xn--e1afmkfd.kz", "b@xn--e1afmkfd.kz"}

    ascii_msg = got["ok@example.com"]
    assert ascii_msg["mail_options"] == ["BODY=8BITMIME"] and not ascii_msg["smtp_utf8"]
    assert split(ascii_msg["raw"])[0] and b"\r\n".join(split(ascii_msg["raw"])[0]).isascii()
    # an ASCII local part before an IDN domain: ASCII too, domain as IDNA
    other = got["b@xn--e1afmkfd.kz"]
    assert other["mail_options"] == ["BODY=8BITMIME"] and not other["smtp_utf8"]
    assert dict(fields(split(other["raw"])[0]))["To"] == "Bo <b@xn--e1afmkfd.kz>"

    msg = got[UTF8]
    assert sorted(msg["mail_options"]) == ["BODY=8BITMIME", "SMTPUTF8"] and msg["smtp_utf8"]
    lines, _ = split(msg["raw"])
    to_lines = [line for line in lines if line.startswith(b"To:")]
    name_word = b"=?utf-8?b?" + base64.b64encode("Айгерим".encode()) + b"?="
    assert to_lines == [b"To: " + name_word + b" <" + UTF8.encode() + b">"]
    assert all(line.isascii() for line in lines if not line.startswith(b"To:"))
    assert [n for n, _ in fields(lines)] == [n for n, _ in fields(split(ascii_msg["raw"])[0])]
    # (message_from_bytes would read the UTF-8 header as surrogates)
    parsed = email.message_from_string(msg["raw"].decode("utf-8"), policy=email.policy.SMTPUTF8)
    (addr,) = parsed["To"].addresses
    assert (addr.display_name, addr.addr_spec) == ("Айгерим", UTF8)
    assert parsed["Bcc"] is None

    bare = got["ерлан@xn--e1afmkfd.kz"]
    assert "SMTPUTF8" in bare["mail_options"]
    assert [line for line in split(bare["raw"])[0] if line.startswith(b"To:")] == [
        "To: ерлан@xn--e1afmkfd.kz".encode()
    ]


def test_without_smtputf8_only_the_non_ascii_address_fails(sqlite_store, tmp_path, smtpd):
    """A mixed batch to a server that does not announce SMTPUTF8: the ASCII ones are
    delivered as before, the other fails alone, its reason naming the extension.
    An ASCII local part at an IDN domain needs no SMTPUTF8: its RCPT has the IDNA
    domain (the stored Unicode one made smtplib raise UnicodeEncodeError)."""
    box = smtpd(utf8=False)
    cfg = smtp_cfg(tmp_path, box)
    names = {"a@example.com": "Ann", UTF8: "Айгерим", "c@example.com": "", "b@пример.kz": ""}
    eid = edition(sqlite_store, names)
    report = send_edition(sqlite_store, cfg, eid, {"default": ENGLISH}, make_backend(cfg))
    assert report.accepted == 3
    rows = {r.email: r for r in sqlite_store.list_deliveries(eid)}
    assert rows["a@example.com"].status == rows["c@example.com"].status == "accepted"
    assert rows["b@пример.kz"].status == "accepted"
    assert rows[UTF8].status == "failed"
    assert "SMTPUTF8" in rows[UTF8].error and "does not announce" in rows[UTF8].error
    got = by_rcpt(box)
    assert set(got) == {"a@example.com", "c@example.com", "b@xn--e1afmkfd.kz"}
    for m in got.values():
        assert m["mail_options"] == ["BODY=8BITMIME"]
        assert b"\r\n".join(split(m["raw"])[0]).isascii()


def test_a_utf8_header_goes_as_8bitmime_even_with_7bit_parts(sqlite_store, tmp_path, smtpd):
    """RFC 6531 3.4: the UTF-8 header makes the message 8bit, so BODY=8BITMIME goes
    with SMTPUTF8 even when both parts are 7bit; an ASCII address's 7bit message
    goes without either, as before."""
    box = smtpd(utf8=True)
    cfg = smtp_cfg(tmp_path, box)
    eid = edition(sqlite_store, {"ok@example.com": "Ann", UTF8: "Aigerim"})
    report = send_edition(sqlite_store, cfg, eid, {"default": PLAIN}, make_backend(cfg))
    assert report.accepted == 2
    got = by_rcpt(box)
    assert got["ok@example.com"]["mail_options"] == []
    assert got["ok@example.com"]["raw"].isascii()
    assert sorted(got[UTF8]["mail_options"]) == ["BODY=8BITMIME", "SMTPUTF8"]
    assert split(got[UTF8]["raw"])[1].isascii()  # the 8bit is the header's alone
    assert f"To: Aigerim <{UTF8}>".encode() in split(got[UTF8]["raw"])[0]


@pytest.mark.parametrize(
    "bad",
    [
        "айгерим\u2028bcc@example.kz",  # a line separator
        "айгерим\u202e@example.kz",  # a bidi override
        "айгерим\u00a0x@example.kz",  # a no-break space
        "айгерим>@example.kz",
    ],
)
def test_a_utf8_address_no_header_can_carry_fails_alone(sqlite_store, tmp_path, smtpd, bad):
    """Raw UTF-8 in To: is no way around the header checks: such an address
    (stored before validation, or by hand) fails alone even with SMTPUTF8."""
    box = smtpd(utf8=True)
    cfg = smtp_cfg(tmp_path, box)
    eid = edition(sqlite_store, {"ok@example.com": "Ann", bad: "Bo"})
    report = send_edition(sqlite_store, cfg, eid, {"default": ENGLISH}, make_backend(cfg))
    assert report.accepted == 1
    rows = {r.email: r for r in sqlite_store.list_deliveries(eid)}
    assert rows[bad].status == "failed" and "cannot write the address" in rows[bad].error
    assert set(by_rcpt(box)) == {"ok@example.com"}
