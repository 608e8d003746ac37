"""uvicorn for the open internet: deadlines and a connection cap of our own.

uvicorn alone keeps a connection open as long as bytes trickle in (every
byte restarts its keep-alive timer), never times out a connection that sends
nothing, and answers 503 for too many requests only once their headers have
arrived. Behind a proxy that is the proxy's job, but ``serve`` must not rely
on one. This protocol adds, per connection:

- a header deadline (``webhook.header_timeout``): the request line and headers
  must be complete within it, from the connection's start or the previous
  response's end; otherwise the connection is closed;
- a body deadline (``webhook.body_timeout``): the app answers 408 when a body
  it reads is late (``read_body``); this closes any connection whose body is
  still arriving a little after that, whatever route it asked for;
- a cap on open connections (``webhook.max_connections``): one more is answered
  503 and closed at once, before it can hold a slot.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

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


class GuardedH11Protocol(H11Protocol):
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 200

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            logger.warning("serve: %d connections open; refusing one more", len(self.connections))
            transport.write(_BUSY)
            transport.close()
            return
        self._arm(self.header_timeout, "headers")

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._deadline = None

    def _expired(self, what: str) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            logger.info("serve: closed a connection whose %s came too slowly", what)
            self.transport.close()

    def _follow(self) -> None:
        """Move the deadline along with the request's progress."""
        state = self.conn.their_state
        if state is h11.IDLE:
            return  # still waiting for the head: the header deadline keeps running
        if state is h11.SEND_BODY:
            if getattr(self, "_waiting_for", "") != "body":
                self._waiting_for = "body"
                self._arm(self.body_timeout + BODY_GRACE, "body")
            return
        self._waiting_for = ""
        self._disarm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.transport.is_closing():
            self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            # the next request's head has its own deadline (keep-alive's runs too)
            self._waiting_for = ""
            self._arm(self.header_timeout, "headers")
            self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol_for(cfg: Config) -> type[GuardedH11Protocol]:
    """The protocol class with this config's deadlines and cap."""
    w = cfg.webhook
    return type(
        "ServeProtocol",
        (GuardedH11Protocol,),
        {
            "header_timeout": w.header_timeout,
            "body_timeout": w.body_timeout,
            "max_connections": w.max_connections,
        },
    )


def uvicorn_settings(cfg: Config) -> dict[str, Any]:
    """The uvicorn settings of ``serve``."""
    w = cfg.webhook
    return {
        "http": protocol_for(cfg),
        "timeout_keep_alive": w.keep_alive_timeout,
        # requests being answered at once; more are answered 503
        "limit_concurrency": w.max_connections,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        # X-Forwarded-For is read by the app, from webhook.trusted_proxies only
        "proxy_headers": False,
        # access lines would write unsubscribe tokens into the logs
        "access_log": False,
        "log_config": None,
        "server_header": False,
        "timeout_graceful_shutdown": 30,
    }
