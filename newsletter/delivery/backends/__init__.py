"""Delivery backends, one module each."""

from __future__ import annotations

from newsletter.config import Config
from newsletter.delivery.backends.base import Backend, BatchResult, OutgoingMessage

#: backends whose provider reports what became of each message (delivered, bounced,
#: opened …) through a webhook; the others (smtp, outbox) only tell that it was accepted
EVENT_BACKENDS = frozenset({"sendgrid"})


def make_backend(cfg: Config, name: str | None = None) -> Backend:
    name = name or cfg.delivery.backend
    if name == "outbox":
        from newsletter.delivery.backends.outbox import OutboxBackend

        return OutboxBackend(cfg)
    if name == "sendgrid":
        from newsletter.delivery.backends.sendgrid import SendGridBackend

        return SendGridBackend(cfg)
    if name == "smtp":
        from newsletter.delivery.backends.smtp import SmtpBackend

        return SmtpBackend(cfg)
    raise ValueError(name)


__all__ = ["EVENT_BACKENDS", "Backend", "BatchResult", "OutgoingMessage", "make_backend"]
