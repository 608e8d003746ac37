"""A backend that records what it was given, in process (non-idempotent, like SendGrid)."""

from __future__ import annotations

from newsletter.config import Config
from newsletter.delivery.backends.base import Backend, BatchResult


class RecordingBackend(Backend):
    """A real backend that keeps what it was given (non-idempotent, like SendGrid)."""

    name = "recording"

    def __init__(self, cfg: Config, *, check=None):
        super().__init__(cfg)
        self.sent: list[int] = []
        self.check = check

    def send_batch(self, message, recipients, *, provider_batch_id=""):
        if self.check:
            self.check(recipients)
        self.sent += [r.delivery_id for r in recipients]
        return BatchResult(message_id=f"rec-{len(self.sent)}")
