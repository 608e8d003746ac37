"""Batches whose outcome is unknown, settled from provider facts or by an operator.

A batch whose outcome is unknown (its worker died during the provider call, or
the call timed out after the request was written) is never silently re-sent or
dropped:

- with an idempotent backend (the file outbox) it is simply sent again;
- provider events carrying our delivery ids prove it was accepted;
- a batch sent with a provider batch id (SendGrid ``schedule_delay``) is
  cancelled while that is still certain to work, then sent again;
- otherwise it is held as unresolved for ``newsletter send --resolve`` and
  listed by ``newsletter status``. Each later run looks at the events again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from newsletter.delivery.backends import Backend
from newsletter.errors import InputError, PermanentDeliveryError, TransientError
from newsletter.states import DELIVERY_OPEN, BatchStatus, DeliveryStatus, EditionStatus
from newsletter.store import Store
from newsletter.store.base import utcnow
from newsletter.store.deliveries import BatchRecord
from newsletter.store.locks import process_gone, worker_id

logger = logging.getLogger(__name__)


#: the provider batch id of a claim whose id is being asked for: nothing was sent yet
AWAITING_PROVIDER_BATCH = "awaiting"


@dataclass
class ResolveOutcome:
    batch_id: str
    edition_id: int
    digest: str
    period: str
    decision: str
    deliveries: int
    edition_status: str
    #: resend only: deliveries not sent again because provider events prove the batch
    skipped: int = 0


def resolve_unknown(store: Store, backend: Backend, batch: BatchRecord, reason: str) -> str:
    """Settle a batch whose outcome is unknown from provider facts, else hold it.

    Returns "accepted" (events prove it), "cancelled" (cancelled at the provider
    and queued again) or "held" (unresolved, for an operator's decision).
    """
    batch_id = batch.id
    seen, mid = store.batch_event_evidence(batch_id)
    if seen:
        counts = store.finish_batch(
            batch_id,
            message_id=batch.message_id or mid,
            batch_status=BatchStatus.ACCEPTED,
            note=f"outcome was unknown; accepted: {seen} of its deliveries have provider events",
        )
        logger.info("batch %s: accepted, from provider events", batch_id)
        return "accepted" if counts["accepted"] else "held"
    provider_batch = batch.provider_batch_id
    deadline = backend.cancel_deadline(batch.claimed_at) if provider_batch else None
    if deadline is not None and utcnow() < deadline:
        try:
            cancelled = backend.cancel_provider_batch(provider_batch)
        except (TransientError, PermanentDeliveryError) as err:
            logger.warning("batch %s: cannot cancel it now: %s", batch_id, err)
            cancelled = False
        if cancelled:
            store.finish_batch(
                batch_id,
                requeue=store.batch_delivery_ids(batch_id),
                batch_status=BatchStatus.CANCELLED,
                note=f"outcome was unknown ({reason}); cancelled at the provider, sent again",
            )
            logger.info("batch %s: cancelled at the provider; queued again", batch_id)
            return "cancelled"
    if batch.status == BatchStatus.CLAIMED:
        store.mark_batch_unresolved(batch_id, reason)
        logger.warning(
            "batch %s: outcome unknown (%s); held for `newsletter send --resolve`",
            batch_id,
            reason,
        )
    return "held"


def recover_batches(
    store: Store,
    backend: Backend,
    edition_id: int,
    *,
    lease: timedelta = timedelta(minutes=15),
    worker: str | None = None,
) -> dict[str, int]:
    """Deal with batches dead workers left claimed, and look again at held ones.

    Returns deliveries per outcome: requeued, accepted, cancelled, held.
    """
    me = worker or worker_id()
    out = {"requeued": 0, "accepted": 0, "cancelled": 0, "held": 0}
    stale_before = utcnow() - lease
    for batch in store.claimed_batches(edition_id):
        stale = batch.claimed_at < stale_before
        if not stale and not process_gone(batch.worker):
            continue
        if not store.take_over_batch(batch.id, batch.worker, me):
            continue  # another run is recovering it
        size = batch.size
        if batch.provider_batch_id == AWAITING_PROVIDER_BATCH:
            # it died before its provider batch id was stored, so before sending
            store.finish_batch(
                batch.id,
                requeue=store.batch_delivery_ids(batch.id),
                batch_status=BatchStatus.REQUEUED,
                note="worker died before the request: it had no provider batch id yet",
            )
            out["requeued"] += size
            logger.info("batch %s: worker died before sending; queued again", batch.id)
            continue
        if backend.idempotent:
            store.finish_batch(
                batch.id,
                requeue=store.batch_delivery_ids(batch.id),
                batch_status=BatchStatus.REQUEUED,
                note=f"worker died; sent again (the {backend.name} backend is idempotent)",
            )
            out["requeued"] += size
            logger.info("batch %s: worker died; sent again (idempotent backend)", batch.id)
            continue
        why = "its worker died during the provider call" if not stale else "its lease expired"
        outcome = resolve_unknown(store, backend, batch, f"{why}; the outcome is unknown")
        out[outcome] += size
    for batch in store.unresolved_batches(edition_id):
        outcome = resolve_unknown(store, backend, batch, batch.error)
        if outcome != "held":
            out[outcome] += batch.size
    return out


def finalize(store: Store, edition_id: int) -> dict[str, int]:
    """Totals per status; the edition is done once nothing is queued, claimed or held."""
    totals: dict[str, int] = {}
    for counts in store.delivery_counts(edition_id).values():
        for status, n in counts.items():
            totals[status] = totals.get(status, 0) + n
    if not any(totals.get(s) for s in DELIVERY_OPEN):
        failed = totals.get(DeliveryStatus.FAILED)
        status = EditionStatus.PARTIALLY_FAILED if failed else EditionStatus.SENT
        # a cancelled edition stays cancelled when its last batches in flight settle
        store.set_edition_status(edition_id, status, sent=True, unless=(EditionStatus.CANCELLED,))
    return totals


def resolve(store: Store, batch_id: str, decision: str) -> ResolveOutcome:
    """An operator's decision on a held batch: resend, sent or failed."""
    if decision not in ("resend", "sent", "failed"):
        raise InputError(f"decision must be resend, sent or failed, got {decision!r}")
    batch = store.get_batch(batch_id)
    if batch is None:
        raise InputError(
            f"no batch {batch_id}", hint="`newsletter status` lists unresolved batches"
        )
    edition_id = batch.edition_id
    skipped = 0
    if decision == "resend":
        # the webhook may have brought proof since the batch was held: look again
        # now; a batch of a cancelled edition is refused there, in one transaction
        n, skipped, _ = store.resend_held_batch(batch_id)
    else:
        n = store.resolve_batch(batch_id, decision)
    info = store.get_edition(edition_id)
    assert info is not None
    if decision == "resend" and n:
        # the deliveries are queued again; a paused edition stays paused (they go
        # out after `newsletter resume`, like the rest of its queue)
        if info.status not in (EditionStatus.SENDING, EditionStatus.PAUSED):
            store.set_edition_status(edition_id, EditionStatus.SENDING)
    else:
        finalize(store, edition_id)
    info = store.get_edition(edition_id)
    assert info is not None
    return ResolveOutcome(
        batch_id=batch_id,
        edition_id=edition_id,
        digest=info.digest,
        period=info.period,
        decision=decision,
        deliveries=n,
        edition_status=info.status,
        skipped=skipped,
    )
