"""uvicorn for the open internet: deadlines and a connection cap of our own.

uvicorn alone keeps a connection open as long as bytes trickle in (every
byte restarts its keep-alive timer), never times out a connection that sends
nothing, and answers 503 for too many requests only once their headers have
arrived. Behind a proxy that is the proxy's job, but ``serve`` must not rely
on one. This protocol adds, per connection:

- a header deadline (``webhook.header_timeout``): the request line and headers
  must be complete within it, from the connection's start or the previous
  response's end; otherwise the connection is closed;
- a cap on the request head (``MAX_HEAD_BYTES``): a longer one is answered 400
  and closed, however quickly it comes, and whether or not its lines end (the
  parser holds a header in memory until it is whole);
- a body deadline (``webhook.body_timeout``): the app answers 408 when a body
  it reads is late (``read_body``); this closes any connection whose body is
  still arriving a little after that, whatever route it asked for;
- a cap on open connections (``webhook.max_connections``): one more is answered
  503 and closed at once, before it can hold a slot.

The protocol is uvicorn's httptools one (llhttp, in C) on uvloop: a request
costs ``serve`` about 50 µs of CPU there against 130 µs on the pure-Python h11
protocol and asyncio's loop (docs/benchmarks.md, "Signup").
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from newsletter.config import Config

logger = logging.getLogger(__name__)

#: largest request head (request line + headers) accepted
MAX_HEAD_BYTES = 16_384
#: after the app's own body timeout, the connection gets this long to be answered
BODY_GRACE = 2.0

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 12\r\nConnection: close\r\nRetry-After: 5\r\n\r\nserver busy\n"
)


class HeadTooLarge(Exception):
    """Raised from a parser callback: httptools turns it into a parser error,
    which uvicorn answers 400 and closes."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and caps above.

    The parser reports where a request is (``_phase``): "idle" between requests,
    "head" once a request has begun and until its headers are complete, "body"
    until its last byte. The deadline follows it: the header deadline while
    idle or in the head (unless the app is still answering the previous
    request), the body deadline in the body, none while the app works.
    """

    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 200

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._armed_for = ""
        self._phase = "idle"
        self._head_bytes = 0
        self._unparsed_head = 0
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            logger.warning("serve: %d connections open; refusing one more", len(self.connections))
            transport.write(_BUSY)
            transport.close()
            return
        self._arm(self.header_timeout, "headers")

    # ---------------------------------------------------------------- deadlines

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._armed_for = what
        self._deadline = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._deadline = None
        self._armed_for = ""

    def _expired(self, what: str) -> None:
        self._deadline = None
        self._armed_for = ""
        if not self.transport.is_closing():
            logger.info("serve: closed a connection whose %s came too slowly", what)
            self.transport.close()

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _follow(self) -> None:
        """Move the deadline along with the request's progress."""
        if self._phase == "body":
            want = "body"
        elif self._phase == "head" or not self._answering():
            want = "headers"  # a header deadline runs on from where it was armed
        else:
            want = ""  # the app is answering; the next head waits for it
        if want == self._armed_for:
            return
        if want == "body":
            self._arm(self.body_timeout + BODY_GRACE, "body")
        elif want == "headers":
            self._arm(self.header_timeout, "headers")
        else:
            self._disarm()

    # ---------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = "head"
        self._head_bytes = 0

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            raise HeadTooLarge

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._phase = "body"
        self._unparsed_head = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = "idle"
        super().on_message_complete()

    # ---------------------------------------------------------------- events

    def data_received(self, data: bytes) -> None:
        if self._phase != "body":
            # httptools hands a header over only once it is whole, and buffers it
            # until then: a head still coming is measured by the bytes received
            self._unparsed_head += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._phase == "head" and self._unparsed_head > MAX_HEAD_BYTES:
            self.send_400_response("Request head too large.")
            return
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._phase != "body":
            # the next request's head has its own deadline (keep-alive's runs too)
            self._arm(self.header_timeout, "headers")
            self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol_for(cfg: Config) -> type[GuardedHttpToolsProtocol]:
    """The protocol class with this config's deadlines and cap."""
    w = cfg.webhook
    return type(
        "ServeProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "header_timeout": w.header_timeout,
            "body_timeout": w.body_timeout,
            "max_connections": w.max_connections,
        },
    )


def event_loop() -> str:
    """uvloop where it is installed (not on Windows), else asyncio's own loop."""
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - a platform without uvloop
        return "asyncio"
    return "uvloop"


def uvicorn_settings(cfg: Config) -> dict[str, Any]:
    """The uvicorn settings of ``serve``."""
    w = cfg.webhook
    return {
        "http": protocol_for(cfg),
        "loop": event_loop(),
        "timeout_keep_alive": w.keep_alive_timeout,
        # requests being answered at once; more are answered 503
        "limit_concurrency": w.max_connections,
        # X-Forwarded-For is read by the app, from webhook.trusted_proxies only
        "proxy_headers": False,
        # access lines would write unsubscribe tokens into the logs
        "access_log": False,
        "log_config": None,
        "server_header": False,
        "timeout_graceful_shutdown": 30,
    }
