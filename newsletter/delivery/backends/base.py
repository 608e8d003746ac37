"""The contract of a delivery backend (after django-anymail's base backend).

``send_batch`` takes one rendered variant and up to ``max_batch`` recipients
and says what the provider did with them. It raises:

- :class:`~newsletter.errors.TransientError` when nothing is known to have been
  taken and a retry may work (429, 5xx, connection refused) and the backend's
  own retries are spent;
- :class:`~newsletter.errors.AuthError` when the credentials are refused;
- :class:`~newsletter.errors.PermanentDeliveryError` when the provider refused
  the request as a whole (nothing was taken; sending more would fail the same way);
- :class:`~newsletter.errors.DeliveryError` when the outcome is unknown (the
  request may have reached the provider), so the batch must be resolved.

An exception may carry what is already known in ``err.partial`` (a
:class:`BatchResult`), e.g. addresses refused by a first attempt.

Per-recipient outcomes come back in the :class:`BatchResult`: recipients not
named in it were accepted.

Backends are called from several worker threads at once (``concurrency``) and
must keep per-thread state (connections) themselves.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from datetime import datetime

from newsletter.config import Config
from newsletter.delivery.pacing import Pacer
from newsletter.errors import DeliveryError
from newsletter.models import Recipient, Rendered

#: an address as servers quote it in answers ("451 <a@b.example>: greylisted")
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")


def without_addresses(reason: str) -> str:
    """A provider's answer fit for a log line or an error that speaks for many
    deliveries: the addresses in it replaced (a delivery's own stored reason
    keeps them)."""
    return _ADDRESS.sub("(address)", reason)


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
    #: one message to one reader who asked for it (a signup's confirmation, a
    #: welcome): no list headers, no delivery row, not in any unsubscribe group
    transactional: bool = False


@dataclass
class BatchResult:
    #: the provider's id for the whole batch (SendGrid's X-Message-Id)
    message_id: str = ""
    #: delivery id -> reason, for recipients the provider refused for good
    rejected: dict[int, str] = field(default_factory=dict)
    #: delivery id -> message id, where the provider gives one per message
    message_ids: dict[int, str] = field(default_factory=dict)
    #: delivery id -> reason: certainly not taken, worth sending again later
    retry: dict[int, str] = field(default_factory=dict)
    #: delivery id -> reason: may or may not have been taken (must be resolved)
    unknown: dict[int, str] = field(default_factory=dict)


def partial_of(err: BaseException) -> BatchResult:
    """What a failed ``send_batch`` already knew (empty when nothing)."""
    found = getattr(err, "partial", None)
    return found if isinstance(found, BatchResult) else BatchResult()


def with_partial(err: DeliveryError, result: BatchResult) -> DeliveryError:
    err.partial = result  # type: ignore[attr-defined]
    return err


class Backend(abc.ABC):
    name: str = ""
    #: most recipients one call may carry
    max_batch: int = 1000
    #: re-sending a batch whose outcome is unknown cannot reach anyone twice
    idempotent: bool = False
    #: worker threads the send may use with this backend
    concurrency: int = 1

    def __init__(self, cfg: Config):
        self.cfg = cfg
        #: shared by every worker of a send: the message rate and provider pauses
        self.pacer = Pacer(0.0)

    @abc.abstractmethod
    def send_batch(
        self,
        message: OutgoingMessage,
        recipients: list[Recipient],
        *,
        provider_batch_id: str = "",
    ) -> BatchResult:
        """Hand one batch to the provider."""

    @property
    def provider_batches(self) -> bool:
        """Whether every batch gets a provider-side handle (:meth:`new_provider_batch`)."""
        return False

    def new_provider_batch(self) -> str:
        """A provider-side handle for a batch just claimed ("" when unsupported).

        It is stored with the claim, before the provider is called, so a batch
        whose outcome is unknown can later be cancelled by it.
        """
        return ""

    def cancel_deadline(self, claimed_at: datetime) -> datetime | None:
        """Until when a batch claimed at ``claimed_at`` can surely be cancelled."""
        return None

    def cancel_provider_batch(self, provider_batch_id: str) -> bool:
        """Cancel everything sent under ``provider_batch_id``; True when it is cancelled."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
