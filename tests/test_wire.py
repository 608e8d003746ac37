"""Messages as they go on the wire: the bytes the outbox wrote and the raw DATA a
real aiosmtpd server received, read as bytes (never only the email package's
decoded view): headers, folding, encoded-words, transfer encodings, injection."""

from __future__ import annotations

import base64
import email
import email.policy
import itertools
import quopri
import re
from email.header import decode_header, make_header
from pathlib import Path

import pytest

from newsletter.audience.subscribers import to_subscriber
from newsletter.delivery.backends import make_backend
from newsletter.delivery.send import send_edition
from newsletter.models import Rendered
from newsletter.render.compile import render
from newsletter.render.personalize import first_name, personalize
from newsletter.store import Store
from tests.fakes.mail import FaultyMailbox
from tests.helpers import (
    DELIVERY_CONFIG,
    NOW,
    SECRET_ENV,
    add_subscribers,
    build_config,
    freeze_audience,
)
from tests.render_data import russian_content

LONG_PUBLIC = "https://steppe-ledger.example/newsletter" + "/subscriptions-and-preferences" * 3

#: CVE-2024-6923 and variants: an encoded-word in a display name that decodes to CR LF
INJECTIONS = [
    "=?utf-8?q?Evil=0D=0ABcc:_v4@evil.example?=",
    "=?UTF-8?Q?Evil=0D=0ABcc:_v4@evil.example?=",
    "=?utf-8?q?Evil=0ABcc:_v4@evil.example?=",
    "=?utf-8?b?" + base64.b64encode(b"Evil\r\nBcc: v4@evil.example").decode() + "?=",
    "=?iso-8859-1?q?Evil=0D=0ABcc:_v4@evil.example?=",
    "Joe =?utf-8?q?=0D=0ABcc:_v4@evil.example?= Bloggs",
    "=?utf-8*en?q?Evil=0D=0ABcc:_v4@evil.example?=",
    "Evil\r\nBcc: v4@evil.example",
    "Evil\nBcc: v4@evil.example",
    "Evil\u2028Bcc: v4@evil.example",
    "Evil\x85Bcc: v4@evil.example",
    "Ünïcödé \r\nBcc: v4@evil.example",
]

RUSSIAN = Rendered(
    subject="Дайджест недели: нефть, газ и валюты",
    html="<p>Здравствуйте, %%name%%!</p>"
    + "<p>Новости Центральной Азии: курс тенге и сума, энергетика.</p>\n" * 40
    + "<a href='%%unsubscribe_url%%'>Отписаться</a>",
    text="Здравствуйте, %%name%%!\n"
    + "Новости Центральной Азии.\n" * 40
    + "Отписаться:\n%%unsubscribe_url%%\n",
)
ENGLISH = Rendered(
    subject="Weekly digest — 30 November",
    html="<p>Hello %%name%%</p>"
    + "<p>Kazakhstan’s tenge and Uzbekistan’s sum — the week in energy.</p>\n" * 40
    + "<a href='%%unsubscribe_url%%'>Unsubscribe</a>",
    text="Hello %%name%%\n"
    + "The week in energy — tenge and sum.\n" * 40
    + "Unsubscribe:\n%%unsubscribe_url%%\n",
)


def config(folder: Path, **overrides):
    """The delivery config with a long public URL (long unsubscribe links)."""
    toml = DELIVERY_CONFIG.replace(
        'public_url = "https://steppe-ledger.example/newsletter"', f'public_url = "{LONG_PUBLIC}"'
    )
    return build_config(folder, toml=toml, env=SECRET_ENV, **overrides)


_periods = itertools.count(1)


def edition(store: Store, names: dict[str, str]) -> int:
    emails = list(names)
    ids = add_subscribers(store, emails, names=names)
    # a period of its own: a second call must not find (and re-freeze) a sent edition
    eid, _ = store.create_edition(
        digest="weekly", period=f"p{next(_periods)}", subject="s", window_start=NOW, window_end=NOW
    )
    freeze_audience(store, eid, {"default": list(zip(ids, emails, strict=True))})
    return eid


def split(raw: bytes) -> tuple[list[bytes], bytes]:
    """The raw header lines (folded, as written) and the body."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, "no CR LF CR LF between header and body"
    return head.split(b"\r\n"), body


def fields(lines: list[bytes]) -> list[tuple[str, str]]:
    """(name, unfolded raw value) per header field, in order, not decoded."""
    out: list[tuple[str, str]] = []
    for line in lines:
        assert b"\n" not in line and b"\r" not in line, line
        if line[:1] in (b" ", b"\t"):
            name, value = out[-1]
            out[-1] = (name, value + line.decode())
        else:
            name, colon, value = line.decode().partition(":")
            assert colon and re.fullmatch(r"[!-9;-~]+", name), line
            out.append((name, value.lstrip(" ")))
    return out


def assert_wire_headers(raw: bytes, unsubscribe_prefix: str) -> dict[str, str]:
    lines, _ = split(raw)
    found = fields(lines)
    names = [n for n, _ in found]
    assert names.count("To") == 1 and "Bcc" not in names and "Cc" not in names, names
    for line in lines:
        if len(line) > 78:  # allowed only for one unbreakable token: a URL in brackets
            assert re.fullmatch(rb"(List-Unsubscribe: | )<https://[^\s<>]+>,?", line), line
    h = dict(found)
    for name in ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "Message-ID"):
        assert "=?" not in h[name], f"{name} is RFC 2047-encoded: {h[name]}"
    unsub = h["List-Unsubscribe"]
    match = re.fullmatch(r"<(https://[^\s<>]+)>, <(mailto:[^\s<>]+)>", unsub)
    assert match, unsub
    url, mailto = match.groups()
    assert url.startswith(unsubscribe_prefix) and len(url) > 78
    assert mailto == "mailto:unsubscribe@steppe-ledger.example?subject=unsubscribe"
    # folded only at the comma: the https URL whole on one raw line
    assert any(line.endswith(f"<{url}>,".encode()) for line in lines)
    assert h["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert h["List-Id"] == "<weekly.steppe-ledger.example>"
    assert re.fullmatch(r"<[^\s<>@]+@steppe-ledger\.example>", h["Message-ID"])
    return h


def decoded_name(to_value: str) -> str:
    """The display name a mail client shows, decoded from the raw To header."""
    phrase = to_value.rpartition("<")[0].strip()
    return str(make_header(decode_header(phrase)))


def outbox_files(cfg, eid: int) -> list[bytes]:
    folder = cfg.resolve(cfg.delivery.outbox_dir) / f"edition-{eid}"
    return [p.read_bytes() for p in sorted(folder.glob("*.eml"))]


# ----------------------------------------------------------------- outbox


def test_outbox_headers_are_right_on_the_raw_bytes(sqlite_store, tmp_path):
    cfg = config(tmp_path)
    names = {f"r{i}@example.com": n for i, n in enumerate(["Ann Reader", "Zoë Müller", ""])}
    eid = edition(sqlite_store, names)
    send_edition(sqlite_store, cfg, eid, {"default": RUSSIAN}, make_backend(cfg))
    files = outbox_files(cfg, eid)
    assert len(files) == 3
    for raw in files:
        h = assert_wire_headers(raw, LONG_PUBLIC + "/unsubscribe/")
        # RFC 2047 where it is allowed: the Subject, a non-ASCII display name
        assert h["Subject"].startswith("=?utf-8?")
        assert str(make_header(decode_header(h["Subject"]))) == RUSSIAN.subject
        assert all(len(line) <= 78 for line in split(raw)[0] if b"=?" in line)
    to = {h["To"].rpartition("<")[2].rstrip(">"): h["To"] for h in map(header_dict, files)}
    assert to["r0@example.com"] == "Ann Reader <r0@example.com>"
    assert to["r1@example.com"].startswith("=?utf-8?")
    assert decoded_name(to["r1@example.com"]) == "Zoë Müller"
    assert to["r2@example.com"] == "r2@example.com"


def header_dict(raw: bytes) -> dict[str, str]:
    return dict(fields(split(raw)[0]))


@pytest.mark.parametrize("name", INJECTIONS)
def test_injected_display_names_cannot_add_headers(sqlite_store, tmp_path, name):
    """CVE-2024-6923: names stored before import neutralised them are made safe at send."""
    cfg = config(tmp_path)
    eid = edition(sqlite_store, {"victim@example.com": name})
    send_edition(sqlite_store, cfg, eid, {"default": ENGLISH}, make_backend(cfg))
    (raw,) = outbox_files(cfg, eid)
    assert b"\r\nBcc" not in raw and b"\nBcc" not in raw.partition(b"\r\n\r\n")[0]
    h = assert_wire_headers(raw, LONG_PUBLIC + "/unsubscribe/")
    shown = decoded_name(h["To"])
    assert "\r" not in shown and "\n" not in shown and "\u2028" not in shown
    assert "=?" not in shown, "an encoded-word of the input was passed through"
    assert h["To"].endswith("<victim@example.com>")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert [a.addr_spec for a in parsed["To"].addresses] == ["victim@example.com"]
    assert parsed["Bcc"] is None


@pytest.mark.parametrize("name", INJECTIONS[:7])
def test_import_neutralises_encoded_word_look_alikes(name):
    sub = to_subscriber({"email": "victim@example.com", "name": name})
    assert "=?" not in sub.name and "\r" not in sub.name and "\n" not in sub.name


# ----------------------------------------------------------------- transfer encodings


def body_parts(raw: bytes) -> dict[str, tuple[str, bytes]]:
    """subtype -> (Content-Transfer-Encoding, the part's raw body bytes)."""
    _, body = split(raw)
    out = {}
    for chunk in (b"\r\n" + body).split(b"\r\n--")[1:]:
        boundary, _, rest = chunk.partition(b"\r\n")
        if boundary.endswith(b"--"):
            continue
        head, _, content = rest.partition(b"\r\n\r\n")
        h = {k.lower(): v for k, v in fields(head.split(b"\r\n"))}
        sub = h["content-type"].split(";")[0].split("/")[1]
        out[sub] = (h["content-transfer-encoding"], content)
    return out


def test_outbox_writes_8bit_parts(sqlite_store, tmp_path):
    cfg = config(tmp_path)
    eid = edition(sqlite_store, {"r@example.com": "Ann"})
    send_edition(sqlite_store, cfg, eid, {"default": RUSSIAN}, make_backend(cfg))
    (raw,) = outbox_files(cfg, eid)
    parts = body_parts(raw)
    assert parts["html"][0] == "8bit" and parts["plain"][0] == "8bit"
    assert "Новости Центральной Азии".encode() in parts["html"][1]
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_a_line_over_998_octets_is_never_sent_8bit():
    from newsletter.delivery.mime import transfer_encoding

    assert transfer_encoding("Новости. " * 200, eight_bit=True) == "base64"
    assert (
        transfer_encoding("The week in energy and currency markets — " * 50, eight_bit=True)
        == "quoted-printable"
    )
    assert transfer_encoding("Новости.\n" * 200, eight_bit=True) == "8bit"
    assert transfer_encoding("News.\n" * 200, eight_bit=True) == "7bit"


@pytest.fixture
def plain_smtpd(smtp_servers):
    """A real aiosmtpd server; ``eightbit=False`` makes one that does not announce 8BITMIME.
    It does not announce SMTPUTF8 either."""

    def start(*, eightbit: bool) -> FaultyMailbox:
        box = FaultyMailbox()
        box.port = smtp_servers.start(box, eightbit=eightbit)
        return box

    return start


def smtp_cfg(folder: Path, box: FaultyMailbox):
    folder.mkdir(exist_ok=True)
    smtp = {"host": "127.0.0.1", "port": box.port, "starttls": False}
    return config(
        folder, delivery={"backend": "smtp", "smtp": {**smtp, "batch_size": 5, "timeout": 5.0}}
    )


def received(box: FaultyMailbox) -> list[bytes]:
    return [m["raw"] for m in box.messages]


@pytest.fixture(autouse=True)
def _keep_raw_data(monkeypatch):
    """Keep the DATA exactly as the server received it (``original_content``)."""
    original = FaultyMailbox.handle_DATA

    async def handle_DATA(self, server, session, envelope):
        answer = await original(self, server, session, envelope)
        self.messages[-1]["raw"] = envelope.original_content
        self.messages[-1]["mail_options"] = list(envelope.mail_options)
        return answer

    monkeypatch.setattr(FaultyMailbox, "handle_DATA", handle_DATA)


def test_smtp_headers_are_right_in_the_raw_data(sqlite_store, tmp_path, plain_smtpd):
    box = plain_smtpd(eightbit=True)
    cfg = smtp_cfg(tmp_path, box)
    names = {"a@example.com": "Ann Reader", "b@example.com": INJECTIONS[0]}
    eid = edition(sqlite_store, names)
    report = send_edition(sqlite_store, cfg, eid, {"default": RUSSIAN}, make_backend(cfg))
    assert report.accepted == 2
    for raw in received(box):
        h = assert_wire_headers(raw, LONG_PUBLIC + "/unsubscribe/")
        assert "=?" not in decoded_name(h["To"])


def test_8bit_only_to_a_server_that_announces_8bitmime(sqlite_store, tmp_path, plain_smtpd):
    box = plain_smtpd(eightbit=True)
    cfg = smtp_cfg(tmp_path, box)
    eid = edition(sqlite_store, {"r@example.com": "Ann"})
    send_edition(sqlite_store, cfg, eid, {"default": RUSSIAN}, make_backend(cfg))
    (msg,) = box.messages
    assert "BODY=8BITMIME" in msg["mail_options"]
    parts = body_parts(msg["raw"])
    assert parts["html"][0] == "8bit"
    # the outbox writes what SMTP sent: same body bytes
    (tmp_path / "o").mkdir()
    cfg2 = config(tmp_path / "o")
    eid2 = edition(sqlite_store, {"o@example.com": "Ann"})
    send_edition(sqlite_store, cfg2, eid2, {"default": RUSSIAN}, make_backend(cfg2))
    (written,) = outbox_files(cfg2, eid2)
    assert body_parts(written)["html"][0] == "8bit"


@pytest.mark.parametrize(
    ("rendered", "html_cte", "text_cte"),
    [(RUSSIAN, "base64", "base64"), (ENGLISH, "quoted-printable", "quoted-printable")],
)
def test_without_8bitmime_the_smaller_of_qp_and_base64(
    sqlite_store, tmp_path, plain_smtpd, rendered, html_cte, text_cte
):
    box = plain_smtpd(eightbit=False)
    cfg = smtp_cfg(tmp_path, box)
    eid = edition(sqlite_store, {"r@example.com": "Ann"})
    send_edition(sqlite_store, cfg, eid, {"default": rendered}, make_backend(cfg))
    (msg,) = box.messages
    assert "BODY=8BITMIME" not in msg["mail_options"]
    raw = msg["raw"]
    assert raw.isascii() and all(len(line) <= 76 for line in split(raw)[1].split(b"\r\n"))
    parts = body_parts(raw)
    assert parts["html"][0] == html_cte and parts["plain"][0] == text_cte
    html_bytes = parts["html"][1]
    decoded = (
        base64.b64decode(html_bytes) if html_cte == "base64" else quopri.decodestring(html_bytes)
    )
    assert "Отписаться" in decoded.decode() or "Unsubscribe" in decoded.decode()
    # the choice is the smaller one
    qp = quopri.encodestring(decoded)
    b64 = base64.encodebytes(decoded)
    assert len(html_bytes) <= min(len(qp), len(b64)) * 1.03


def test_a_russian_30_story_edition_is_8bit_in_the_outbox_and_base64_without_8bitmime(
    sqlite_store, tmp_path, plain_smtpd
):
    """The issue's figures: 98 KB of HTML was 169 KB in quoted-printable."""
    rendered = render(russian_content(30))
    decoded = len(rendered.html.encode())
    cfg = config(tmp_path)
    eid = edition(sqlite_store, {"r@example.com": "Айгерим Садыкова"})
    send_edition(sqlite_store, cfg, eid, {"default": rendered}, make_backend(cfg))
    (raw,) = outbox_files(cfg, eid)
    cte, body = body_parts(raw)["html"]
    assert cte == "8bit" and all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert len(body) < decoded * 1.02  # CR LF and the real unsubscribe URL
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    html = parsed.get_body(("html",)).get_content()
    assert " ".join(html.split()) == " ".join(
        personalize(rendered.html, dict(recipient_of(parsed)), html_part=True).split()
    )
    box = plain_smtpd(eightbit=False)
    scfg = smtp_cfg(tmp_path / "s", box)
    eid = edition(sqlite_store, {"s@example.com": "Ann"})
    send_edition(sqlite_store, scfg, eid, {"default": rendered}, make_backend(scfg))
    cte7, body7 = body_parts(box.messages[0]["raw"])["html"]
    assert cte7 == "base64"
    qp = quopri.encodestring(base64.b64decode(body7))
    assert len(body7) < len(qp) * 0.8


def recipient_of(parsed) -> dict[str, str]:
    """The placeholder values the message was personalised with (from its headers)."""
    url = re.search(r"<(https://[^>]+)>", str(parsed["List-Unsubscribe"])).group(1)
    name = parsed["To"].addresses[0].display_name
    return {
        "%%unsubscribe_url%%": url,
        "%%preferences_url%%": url,
        "%%name%%": name,
        "%%first_name%%": first_name(name),
    }


def test_an_address_no_header_can_carry_fails_that_recipient_only(sqlite_store, tmp_path):
    """Stored before validation (or by hand): refused for that delivery, the rest go."""
    cfg = config(tmp_path)
    eid = edition(sqlite_store, {"ok@example.com": "Ann", "bad>\r\nBcc: v@evil.example": "Bo"})
    report = send_edition(sqlite_store, cfg, eid, {"default": ENGLISH}, make_backend(cfg))
    assert report.accepted == 1
    (raw,) = outbox_files(cfg, eid)
    assert header_dict(raw)["To"] == "Ann <ok@example.com>"
    rows = {r.email: r for r in sqlite_store.list_deliveries(eid)}
    assert rows["bad>\r\nBcc: v@evil.example"].status == "failed"


@pytest.mark.parametrize("backend", ["outbox", "smtp"])
def test_a_non_ascii_address_fails_that_recipient_only(
    sqlite_store, tmp_path, plain_smtpd, backend
):
    """An address with non-ASCII before the @ (accepted by import: RFC 6531) can go
    in no header without SMTPUTF8, which the outbox does not use and this server
    does not announce (tests/test_smtputf8.py: one that does): that delivery
    fails with a reason; the batch's other messages go (SMTP raised
    UnicodeEncodeError and left the whole batch unresolved; the outbox wrote
    raw UTF-8 into To:)."""
    if backend == "smtp":
        box = plain_smtpd(eightbit=True)
        cfg = smtp_cfg(tmp_path, box)
    else:
        cfg = config(tmp_path)
    eid = edition(sqlite_store, {"ok@example.com": "Ann", "айгерим@example.kz": "Bo"})
    report = send_edition(sqlite_store, cfg, eid, {"default": ENGLISH}, make_backend(cfg))
    assert report.accepted == 1
    rows = {r.email: r for r in sqlite_store.list_deliveries(eid)}
    assert rows["ok@example.com"].status == "accepted"
    assert rows["айгерим@example.kz"].status == "failed"
    raws = received(box) if backend == "smtp" else outbox_files(cfg, eid)
    assert len(raws) == 1 and raws[0].partition(b"\r\n\r\n")[0].isascii()
    assert header_dict(raws[0])["To"] == "Ann <ok@example.com>"


# ----------------------------------------------------------------- the body writer

BODY_SAMPLES = [
    "",
    "Hello\nworld",
    "Hello\r\nworld\r\n\r\n",
    "trailing spaces   \nand\ttabs\t\nlast line without newline",
    "a lone\rcarriage return and = signs ==\n",
    "Новости Центральной Азии = тенге\n" * 30,
    "<p>" + "long line with an URL https://example.com/?a=1&b=2 " * 40 + "</p>\n",
    "emoji 👍🏽 and NBSP\u00a0and line separator\u2028here\n",
    "x" * 1200 + "\n" + "y" * 77 + "\n",
    ".\nFrom the start of a line\n--===============0==\n",
]


@pytest.mark.parametrize("cte", ["7bit", "8bit", "quoted-printable", "base64"])
@pytest.mark.parametrize("sample", range(len(BODY_SAMPLES)))
def test_the_body_is_what_the_email_package_writes(cte, sample):
    """The multipart/alternative written by hand equals, byte for byte, what
    EmailMessage.set_content + BytesGenerator write (the boundary aside)."""
    from email.message import EmailMessage

    from newsletter.delivery.mime import alternative_body

    text = BODY_SAMPLES[sample]
    if cte == "7bit" and not text.isascii():
        text = text.encode("ascii", "replace").decode()
    html = "<p>" + text + "</p>"
    policy = email.policy.SMTP.clone(max_line_length=76)
    ours = alternative_body(text, html, (cte, cte))
    body = EmailMessage(policy=policy)
    body.set_content(text, subtype="plain", cte=cte)
    body.add_alternative(html, subtype="html", cte=cte)
    for part in body.iter_parts():
        del part["MIME-Version"]
    theirs = body.as_bytes(policy=policy)
    boundary = re.compile(rb"={15}\d{19}==(?:\.\d+)?")
    assert len(boundary.findall(ours)) == 4
    assert boundary.sub(b"B", ours) == boundary.sub(b"B", theirs)


# ----------------------------------------------------------------- SendGrid


def test_sendgrid_bodies_carry_neutral_names_and_a_plain_list_unsubscribe(sqlite_store, tmp_path):
    """The JSON the loopback SendGrid received: SendGrid writes the headers from it,
    so every name in it is neutralised as the outbox and SMTP do (the injection
    and its variants), and List-Unsubscribe is the plain bracketed list."""
    from tests.fakes.sendgrid import FakeSendGrid
    from tests.helpers import SENDGRID_KEY, sg_config

    names = {f"v{i}@example.com": name for i, name in enumerate(INJECTIONS)}
    with FakeSendGrid(api_key=SENDGRID_KEY) as fake:
        cfg = sg_config(tmp_path, fake)
        eid = edition(sqlite_store, names)
        report = send_edition(sqlite_store, cfg, eid, {"default": ENGLISH}, make_backend(cfg))
        assert report.accepted == len(INJECTIONS)
        personalizations = [p for body in fake.bodies for p in body["personalizations"]]
    assert len(personalizations) == len(INJECTIONS)
    for p in personalizations:
        (to,) = p["to"]
        shown = [to.get("name", ""), *p.get("substitutions", {}).values()]
        for value in shown:
            assert "=?" not in value, f"an encoded-word of the input was passed: {value!r}"
            assert not any(c in value for c in "\r\n\x85\u2028\u2029"), value
        unsub = p["headers"]["List-Unsubscribe"]
        assert re.fullmatch(r"<https://[^\s<>]+>, <mailto:[^\s<>]+>", unsub), unsub
        assert "=?" not in unsub
