"""The contract of a delivery backend (after django-anymail's base backend).

``send_batch`` takes one rendered variant and up to ``max_batch`` recipients
and says what the provider did with them. It raises:

- :class:`~newsletter.errors.TransientError` when nothing is known to have been
  taken and a retry may work (429, 5xx, connection refused);
- :class:`~newsletter.errors.AuthError` when the credentials are refused;
- :class:`~newsletter.errors.DeliveryError` when the outcome is unknown (the
  request may have reached the provider), so the batch must be resolved.

Per-recipient refusals come back in ``BatchResult.rejected``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from newsletter.config import Config
from newsletter.models import Recipient, Rendered


@dataclass(frozen=True)
class OutgoingMessage:
    """A rendered variant plus the parts every recipient shares."""

    rendered: Rendered
    from_email: str
    from_name: str
    reply_to: str
    list_id: str
    digest: str
    edition_id: int
    #: mailto: part of List-Unsubscribe ("" for none)
    unsubscribe_mailto: str = ""
    #: marks a test send: "[TEST]" subject, no deliveries recorded
    test: bool = False


@dataclass
class BatchResult:
    #: the provider's id for the whole batch (SendGrid's X-Message-Id)
    message_id: str = ""
    #: delivery id -> reason, for recipients the provider refused
    rejected: dict[int, str] = field(default_factory=dict)
    #: delivery id -> message id, where the provider gives one per message
    message_ids: dict[int, str] = field(default_factory=dict)


class Backend(abc.ABC):
    name: str = ""
    #: most recipients one call may carry
    max_batch: int = 1000
    #: re-sending a batch whose outcome is unknown cannot reach anyone twice
    idempotent: bool = False

    def __init__(self, cfg: Config):
        self.cfg = cfg

    @abc.abstractmethod
    def send_batch(self, message: OutgoingMessage, recipients: list[Recipient]) -> BatchResult:
        """Hand one batch to the provider."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
