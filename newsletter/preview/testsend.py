"""`newsletter send --test-to EMAIL…`: the preview, sent to editors before the real send.

The edition a subscriber without topic preferences would get now (the default
variant), through the configured backend, with "[TEST]" before the subject.
Nothing is recorded: no edition, no deliveries, no events, so the real send
afterwards is unaffected. The unsubscribe link in a test message unsubscribes
nobody (``…/unsubscribe/TEST``), so an editor who is also a subscriber can click
everything safely.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from newsletter.audience.subscribers import normalize_email
from newsletter.config import Config, DigestConfig
from newsletter.delivery.backends import Backend, make_backend
from newsletter.delivery.message import outgoing
from newsletter.errors import InputError, PreflightError
from newsletter.models import Recipient
from newsletter.preview.message import preview
from newsletter.store import Store

logger = logging.getLogger(__name__)


@dataclass
class TestSendReport:
    backend: str
    subject: str
    sent: list[str] = field(default_factory=list)
    #: address -> the provider's reason
    rejected: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def send_test(
    store: Store,
    cfg: Config,
    digest: DigestConfig,
    now: datetime,
    emails: list[str],
    *,
    backend: Backend | None = None,
) -> TestSendReport:
    """Send the current preview of ``digest`` to ``emails``, marked [TEST]."""
    addresses = list(dict.fromkeys(normalize_email(e) for e in emails))
    if not addresses:
        raise InputError("--test-to needs at least one address")
    rendered, plan = preview(store, cfg, digest, now)
    if not plan.variants:
        raise PreflightError(
            f"nothing to send: fewer than min_articles={digest.min_articles} new stories"
        )
    unsubscribe = f"{cfg.site.public_url.rstrip('/')}/unsubscribe/TEST"
    # negative delivery ids: no delivery row has one, so a provider event about a
    # test message (an open, a bounce) can never be booked against a real delivery
    recipients = [
        Recipient(delivery_id=-i, email=a, name="", unsubscribe_url=unsubscribe, variant="test")
        for i, a in enumerate(addresses, start=1)
    ]
    backend = backend or make_backend(cfg)
    message = outgoing(cfg, digest.name, 0, rendered, test=True)
    report = TestSendReport(
        backend=backend.name, subject=f"[TEST] {rendered.subject}", warnings=rendered.warnings
    )
    try:
        for start in range(0, len(recipients), backend.max_batch):
            batch = recipients[start : start + backend.max_batch]
            result = backend.send_batch(message, batch)
            for r in batch:
                if r.delivery_id in result.rejected:
                    report.rejected[r.email] = result.rejected[r.delivery_id]
                else:
                    report.sent.append(r.email)
    finally:
        backend.close()
    logger.info(
        "test send of %s to %d address(es) via %s", digest.name, len(report.sent), backend.name
    )
    return report
