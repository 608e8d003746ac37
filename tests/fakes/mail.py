"""Reading the mail a signup sends, as raw bytes: the file outbox and a real aiosmtpd."""

from __future__ import annotations

import asyncio
import quopri
import re
import socket
import time
from pathlib import Path

from aiosmtpd.controller import Controller

LINK = re.compile(rb"https?://[^\s\"<>]+")


def links(raw: bytes) -> list[str]:
    """The http(s) links in a raw message (quoted-printable undone, nothing else)."""
    body = raw.split(b"\r\n\r\n", 1)[-1] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[-1]
    return [m.decode() for m in LINK.findall(quopri.decodestring(body))]


def headers(raw: bytes) -> bytes:
    sep = b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n"
    return raw.split(sep, 1)[0]


def outbox_mails(folder: Path) -> list[bytes]:
    box = folder / "transactional"
    return [p.read_bytes() for p in sorted(box.glob("*.eml"))] if box.is_dir() else []


def wait_for(count_fn, n: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while count_fn() < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {n} messages, have {count_fn()}")
        time.sleep(0.05)


class Mailbox:
    """aiosmtpd handler keeping every message's raw bytes."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Ok: queued"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    """A real SMTP server on 127.0.0.1 (no TLS: the backend's TLS is tested elsewhere)."""

    def __init__(self) -> None:
        self.box = Mailbox()
        self.port = free_port()
        self.controller = Controller(self.box, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


class FaultyMailbox:
    """aiosmtpd handler for the delivery tests.

    Keeps what it accepts; refuses, defers or stalls chosen addresses.
    """

    def __init__(self):
        self.messages: list[dict] = []
        self.refuse: set[str] = set()
        self.defer: set[str] = set()
        self.stall: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        if address in self.defer:
            return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if set(envelope.rcpt_tos) & self.stall:
            await asyncio.sleep(1.0)  # longer than the client's timeout
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "content": envelope.content,
                "peer": session.peer,
                "tls": session.ssl is not None,
                "auth": session.authenticated,
            }
        )
        return "250 2.0.0 Ok: queued"


class SmtpServers:
    """Real aiosmtpd servers on 127.0.0.1 for one test (the ``smtp_servers`` fixture
    stops them). ``eightbit=False``: no 8BITMIME; ``utf8``: SMTPUTF8 announced or not
    (aiosmtpd's Controller would announce it by default)."""

    def __init__(self) -> None:
        self.started: list[Controller] = []

    def start(self, handler: object, *, eightbit: bool = True, utf8: bool = False) -> int:
        """Serve ``handler``; returns the port."""
        port = free_port()
        controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=port,
            decode_data=not eightbit,
            enable_SMTPUTF8=utf8,
        )
        controller.start()
        self.started.append(controller)
        return port

    def stop(self) -> None:
        for controller in self.started:
            controller.stop()
