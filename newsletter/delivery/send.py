"""The send: a persisted state machine over deliveries and batches.

1. The audience is frozen first: one queued delivery per (edition, subscriber).
2. A batch is claimed, and the claim committed, before the backend is called.
3. The backend's answer turns the batch's deliveries accepted or failed.
4. A batch left claimed by a dead worker has an unknown outcome. With an
   idempotent backend (the file outbox) it is simply sent again; otherwise it
   is held as unresolved for ``newsletter send --resolve``, never silently
   re-sent or dropped.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from newsletter.audience.tokens import make_token
from newsletter.config import Config
from newsletter.delivery.backends import Backend, OutgoingMessage
from newsletter.errors import AuthError, DeliveryError, TransientError
from newsletter.models import Recipient, Rendered
from newsletter.store import Store
from newsletter.store.deliveries import AudienceRow

logger = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _worker_alive(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's worker: only its lease can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class SendReport:
    edition_id: int
    batches: int = 0
    accepted: int = 0
    failed: int = 0
    unresolved: int = 0
    requeued: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def list_id(cfg: Config, digest: str) -> str:
    host = cfg.site.url.split("://", 1)[-1].split("/", 1)[0] or "localhost"
    return f"{digest}.{host}"


def unsubscribe_url(cfg: Config, subscriber_id: int, digest: str) -> str:
    token = make_token(cfg.secrets.secret_key, subscriber_id, list_id(cfg, digest))
    return f"{cfg.site.public_url.rstrip('/')}/unsubscribe/{token}"


def outgoing(
    cfg: Config, digest: str, edition_id: int, rendered: Rendered, *, test: bool = False
) -> OutgoingMessage:
    return OutgoingMessage(
        rendered=rendered,
        from_email=cfg.site.from_email,
        from_name=cfg.site.from_name or cfg.site.name,
        reply_to=cfg.site.reply_to,
        list_id=list_id(cfg, digest),
        digest=digest,
        edition_id=edition_id,
        unsubscribe_mailto=cfg.site.unsubscribe_mailto,
        test=test,
    )


def recover_batches(
    store: Store, backend: Backend, edition_id: int, *, lease_before: datetime | None = None
) -> tuple[int, int]:
    """Deal with batches a dead worker left claimed. Returns (requeued, held)."""
    requeued = held = 0
    for batch in store.claimed_batches(edition_id):
        if _worker_alive(batch["worker"]) and (
            lease_before is None or batch["claimed_at"] >= lease_before
        ):
            continue
        if backend.idempotent:
            store.finish_batch(batch["id"], requeue=store.batch_delivery_ids(batch["id"]))
            requeued += batch["size"]
            logger.info(
                "batch %s: outcome unknown, re-sent (the %s backend is idempotent)",
                batch["id"],
                backend.name,
            )
        else:
            held += store.mark_batch_unresolved(
                batch["id"], "worker died during the provider call; outcome unknown"
            )
            logger.warning(
                "batch %s: outcome unknown; held for `newsletter send --resolve`", batch["id"]
            )
    return requeued, held


def send_edition(
    store: Store,
    cfg: Config,
    edition_id: int,
    renders: dict[str, Rendered],
    backend: Backend,
    *,
    on_batch: Callable[[int, int], None] | None = None,
    now: datetime | None = None,
) -> SendReport:
    """Send every queued delivery of an edition, batch by batch.

    Deliveries whose ``release_at`` (local-time sends) is after ``now`` wait.
    """
    info = store.get_edition(edition_id)
    assert info is not None
    report = SendReport(edition_id=edition_id)
    report.requeued, report.unresolved = recover_batches(store, backend, edition_id)
    me = worker_id()
    limit = min(backend.max_batch, cfg.delivery.batch_size)
    messages = {k: outgoing(cfg, info.digest, edition_id, r) for k, r in renders.items()}
    try:
        while True:
            batch = store.claim_batch(
                edition_id, backend=backend.name, limit=limit, worker=me, now=now
            )
            if batch is None:
                break
            recipients = [
                Recipient(
                    delivery_id=d.id,
                    email=d.email,
                    name=d.name,
                    unsubscribe_url=unsubscribe_url(cfg, d.subscriber_id, info.digest),
                    variant=batch.variant,
                )
                for d in batch.deliveries
            ]
            try:
                result = backend.send_batch(messages[batch.variant], recipients)
            except (TransientError, AuthError) as err:
                # the provider certainly did not take this batch: back to the queue
                store.finish_batch(batch.id, requeue=[d.id for d in batch.deliveries])
                raise err
            except DeliveryError as err:
                store.mark_batch_unresolved(batch.id, str(err))
                report.unresolved += len(batch.deliveries)
                report.errors.append(str(err))
                continue
            store.finish_batch(
                batch.id,
                message_id=result.message_id,
                failed=result.rejected,
                accepted_ids=result.message_ids,
            )
            report.batches += 1
            report.failed += len(result.rejected)
            report.accepted += len(batch.deliveries) - len(result.rejected)
            logger.info(
                "batch %s: %d accepted, %d failed",
                batch.id,
                len(batch.deliveries) - len(result.rejected),
                len(result.rejected),
            )
            if on_batch:
                on_batch(report.accepted + report.failed, len(batch.deliveries))
    finally:
        backend.close()
    counts = store.delivery_counts(edition_id)
    pending = sum(n for v in counts.values() for s, n in v.items() if s in ("queued", "claimed"))
    held = sum(n for v in counts.values() for s, n in v.items() if s in ("failed", "unresolved"))
    if not pending:
        store.set_edition_status(edition_id, "partially_failed" if held else "sent", sent=True)
    return report


def freeze_audience(
    store: Store, edition_id: int, plan_variants: dict[str, list[tuple[int, str]]]
) -> int:
    """Write the queued deliveries: variant -> [(subscriber id, email)]."""
    rows = (
        AudienceRow(subscriber_id=sid, email=email, variant=variant)
        for variant, subs in plan_variants.items()
        for sid, email in subs
    )
    return store.freeze_audience(edition_id, rows)
