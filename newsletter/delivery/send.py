"""The send: a persisted state machine over deliveries and batches.

1. The audience is frozen first (``editions.freeze``), in one transaction: one
   queued delivery per (edition, subscriber).
2. A batch is claimed, and the claim committed, before the backend is called.
3. The backend's answer turns the batch's deliveries accepted or failed (or
   queued again when the provider certainly did not take them).
4. A batch whose outcome is unknown is resolved, never silently re-sent or
   dropped (``delivery.recovery``).

Several workers (threads here, processes on other machines) share one send:
the store hands each batch to one of them only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from newsletter.config import Config
from newsletter.delivery.backends import Backend, OutgoingMessage
from newsletter.delivery.backends.base import partial_of, without_addresses
from newsletter.delivery.message import UnsubscribeLinks, outgoing
from newsletter.delivery.recovery import (
    AWAITING_PROVIDER_BATCH,
    finalize,
    recover_batches,
    resolve_unknown,
)
from newsletter.editions.freeze import freeze_audience
from newsletter.errors import (
    AuthError,
    DeliveryError,
    InputError,
    NewsletterError,
    NotFoundError,
    PermanentDeliveryError,
    TransientError,
)
from newsletter.models import Recipient, Rendered
from newsletter.states import BatchStatus, EditionStatus
from newsletter.store import Store
from newsletter.store.deliveries import Batch
from newsletter.store.locks import worker_id

logger = logging.getLogger(__name__)

#: stop after this many batches in a row end with an unknown outcome
MAX_UNKNOWN_IN_A_ROW = 3


@dataclass
class SendReport:
    edition_id: int
    batches: int = 0
    accepted: int = 0
    failed: int = 0
    #: deliveries of the edition held with an unknown outcome when the run ended
    unresolved: int = 0
    #: deliveries of dead workers' batches put back in the queue (idempotent backend)
    requeued: int = 0
    #: deliveries of unknown batches cancelled at the provider and sent again
    cancelled: int = 0
    #: deliveries of unknown batches found accepted from provider events
    resolved: int = 0
    #: subscribers not sent to, by status (frozen with the audience)
    left_out: dict[str, int] = field(default_factory=dict)
    #: addresses that repeat another one, recorded failed instead of sent twice
    duplicates: int = 0
    #: deliveries still queued (e.g. released later in local time)
    pending: int = 0
    #: deliveries not sent because their subscriber left (unsubscribed, suppressed…)
    #: after the freeze: found at claim time, status ``left``
    left: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class BatchProgress:
    """Handed to ``on_batch`` after every batch (from the worker's thread)."""

    batch_id: str
    variant: str
    size: int
    accepted: int
    failed: int
    unresolved: int
    #: deliveries handled so far in this run, and how many were queued at its start
    done: int
    total: int
    seconds: float


class _Run:
    """One send of one edition by this process: its workers and its tallies."""

    def __init__(
        self,
        store: Store,
        cfg: Config,
        edition_id: int,
        digest: str,
        messages: dict[str, OutgoingMessage],
        backend: Backend,
        report: SendReport,
        total: int,
        on_batch: Callable[[BatchProgress], None] | None,
        now: datetime | None = None,
    ):
        self.store, self.cfg, self.edition_id, self.digest = store, cfg, edition_id, digest
        #: the run's clock: deliveries released after it (local-time sends) wait
        self.now = now
        self.messages, self.backend, self.report = messages, backend, report
        self.total, self.on_batch = total, on_batch
        self.limit = min(backend.max_batch, cfg.delivery.batch_size)
        self.links = UnsubscribeLinks(cfg, digest)
        self.me = worker_id()
        self.lock = threading.Lock()
        # SQLite has one writer at a time, and a writer that finds the lock taken
        # sleeps in SQLite's busy handler (up to 100 ms a try); the workers of one
        # process take turns on a Python lock instead, which wakes them at once
        self.db: Any = threading.Lock() if store.dialect == "sqlite" else nullcontext()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.done = 0
        self.unknown_in_a_row = 0
        self.started = time.monotonic()

    def work(self) -> None:
        try:
            while not self.stop.is_set() and self.one_batch():
                pass
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            with self.lock:
                self.errors.append(err)
            self.stop.set()

    def one_batch(self) -> bool:
        backend, store = self.backend, self.store
        # the rate is paid before the claim, so no claimed batch waits on it
        backend.pacer.acquire(self.limit)
        with self.db:
            batch = store.claim_batch(
                self.edition_id,
                backend=backend.name,
                limit=self.limit,
                worker=self.me,
                # a provider batch id is asked for only once there is a batch
                provider_batch_id=AWAITING_PROVIDER_BATCH if backend.provider_batches else "",
                release_before=self.now,
            )
        if batch is None:
            backend.pacer.refund(self.limit)
            return False
        backend.pacer.refund(self.limit - len(batch.deliveries))
        if backend.provider_batches:
            with_id = self.with_provider_batch(batch)
            if with_id is None:
                return True  # taken over while it waited for its id: not ours to send
            batch = with_id
        message = self.messages.get(batch.variant)
        if message is None:
            store.finish_batch(batch.id, requeue=[d.id for d in batch.deliveries])
            raise InputError(
                f"edition {self.edition_id} has deliveries for variant {batch.variant!r} "
                "but no such variant was rendered"
            )
        recipients = [
            Recipient(
                delivery_id=d.id,
                email=d.email,
                name=d.name,
                unsubscribe_url=self.links(d.subscriber_id),
                variant=batch.variant,
            )
            for d in batch.deliveries
        ]
        self.send(batch, message, recipients)
        return True

    def with_provider_batch(self, batch: Batch) -> Batch | None:
        """Get the batch its provider batch id, and store it, before anything is sent.

        Until the id is stored the claim says ``AWAITING_PROVIDER_BATCH``: a worker
        that dies before then sent nothing, and recovery queues the batch again.
        None when that happened to this worker's batch while it waited for the id
        (its lease ran out): the batch is no longer its own, and is not sent.
        """
        try:
            provider_batch = self.backend.new_provider_batch()
        except BaseException as err:
            with self.db:
                self.store.finish_batch(
                    batch.id,
                    requeue=[d.id for d in batch.deliveries],
                    batch_status="requeued",
                    note=f"no provider batch id; nothing was sent: {err}",
                )
            raise
        with self.db:
            stored = self.store.set_provider_batch(batch.id, provider_batch, worker=self.me)
        if not stored:
            logger.warning(
                "batch %s: taken over by another run while its provider batch id was "
                "asked for (lease over); not sent by this worker",
                batch.id,
            )
            return None
        return replace(batch, provider_batch_id=provider_batch)

    def send(self, batch: Batch, message: OutgoingMessage, recipients: list[Recipient]) -> None:
        store, backend = self.store, self.backend
        ids = [r.delivery_id for r in recipients]
        try:
            result = backend.send_batch(
                message, recipients, provider_batch_id=batch.provider_batch_id
            )
        except (AuthError, TransientError, PermanentDeliveryError) as err:
            # the provider certainly took none of it: back to the queue, and stop
            known = partial_of(err)
            with self.db:
                counts = store.finish_batch(
                    batch.id,
                    failed=known.rejected,
                    requeue=ids,
                    batch_status=BatchStatus.REQUEUED,
                    note=str(err),
                )
            self.tally(batch, counts)
            raise
        except DeliveryError as err:
            known = partial_of(err)
            counts = store.finish_batch(
                batch.id,
                failed=known.rejected,
                unresolved={i: str(err) for i in ids if i not in known.rejected},
            )
            self.settle_unknown(batch, str(err), counts)
            return
        except Exception as err:
            # a bug, not the provider: we cannot tell whether the request went out
            store.mark_batch_unresolved(batch.id, f"internal error: {err!r}")
            raise
        with self.db:
            counts = store.finish_batch(
                batch.id,
                message_id=result.message_id,
                failed=result.rejected,
                requeue=list(result.retry),
                unresolved=result.unknown,
                accepted_ids=result.message_ids,
            )
        if result.unknown:
            self.settle_unknown(batch, next(iter(result.unknown.values())), counts)
        else:
            with self.lock:
                self.unknown_in_a_row = 0
            self.tally(batch, counts)
        if result.retry:
            raise TransientError(
                f"{len(result.retry)} messages deferred: "
                + without_addresses(next(iter(result.retry.values())))
            )

    def settle_unknown(self, batch: Batch, reason: str, counts: dict[str, int]) -> None:
        row = self.store.get_batch(batch.id)
        if row is None:  # claimed by this worker a moment ago
            raise NotFoundError(f"batch {batch.id} is gone from the database")
        outcome = resolve_unknown(self.store, self.backend, row, reason)
        n = counts["unresolved"]
        counts = dict(counts)
        if outcome == "accepted":
            counts["accepted"] += n
            counts["unresolved"] = 0
        elif outcome == "cancelled":
            counts["queued"] += n
            counts["unresolved"] = 0
            with self.lock:
                self.report.cancelled += n
        self.tally(batch, counts)
        with self.lock:
            self.report.errors.append(f"batch {batch.id}: {reason}")
            self.unknown_in_a_row += 1
            if self.unknown_in_a_row >= MAX_UNKNOWN_IN_A_ROW:
                raise DeliveryError(
                    f"{self.unknown_in_a_row} batches in a row ended with an unknown outcome; "
                    "the send stops. `newsletter status` lists what is held"
                )

    def tally(self, batch: Batch, counts: dict[str, int]) -> None:
        with self.lock:
            r = self.report
            r.batches += 1
            r.accepted += counts["accepted"]
            r.failed += counts["failed"]
            handled = counts["accepted"] + counts["failed"] + counts["unresolved"]
            self.done += handled
            progress = BatchProgress(
                batch_id=batch.id,
                variant=batch.variant,
                size=len(batch.deliveries),
                accepted=counts["accepted"],
                failed=counts["failed"],
                unresolved=counts["unresolved"],
                done=self.done,
                total=self.total,
                seconds=time.monotonic() - self.started,
            )
            logger.info(
                "batch %s (%s): %d accepted, %d failed, %d unresolved, %d queued again",
                batch.id,
                batch.variant,
                counts["accepted"],
                counts["failed"],
                counts["unresolved"],
                counts["queued"],
            )
            if self.on_batch is not None:
                self.on_batch(progress)

    def run(self) -> None:
        workers = max(1, self.backend.concurrency)
        if workers == 1:
            self.work()
            return
        threads = [
            threading.Thread(target=self.work, name=f"send-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            # let every worker finish the batch it holds, so none is left unknown
            self.stop.set()
            for t in threads:
                t.join()
            raise


def _prepare_and_run(
    store: Store,
    cfg: Config,
    edition_id: int,
    digest: str,
    renders: dict[str, Rendered],
    backend: Backend,
    report: SendReport,
    on_batch: Callable[[BatchProgress], None] | None,
    now: datetime | None = None,
) -> _Run:
    recovered = recover_batches(
        store, backend, edition_id, lease=timedelta(seconds=cfg.delivery.lease_seconds)
    )
    report.requeued = recovered["requeued"]
    report.cancelled = recovered["cancelled"]
    report.resolved = recovered["accepted"]
    total = sum(c.get("queued", 0) for c in store.delivery_counts(edition_id).values())
    messages = {k: outgoing(cfg, digest, edition_id, r) for k, r in renders.items()}
    run = _Run(store, cfg, edition_id, digest, messages, backend, report, total, on_batch, now)
    run.run()
    return run


def _helper(
    cfg: Config,
    edition_id: int,
    digest: str,
    renders: dict[str, Rendered],
    now: datetime | None,
) -> tuple[dict, tuple[str, str] | None]:
    """One more sending process (``delivery.processes``): the same loop, its own store
    connection, backend and worker id. Returns its tallies and its error, if any."""
    from newsletter.delivery.backends import make_backend
    from newsletter.store import open_store

    store = open_store(cfg.database_url)
    report = SendReport(edition_id=edition_id)
    try:
        backend = make_backend(cfg)
        try:
            with store.sending():
                run = _prepare_and_run(
                    store, cfg, edition_id, digest, renders, backend, report, None, now
                )
        finally:
            backend.close()
        err = run.errors[0] if run.errors else None
    except BaseException as caught:  # noqa: BLE001 - reported to the parent
        err = caught
    finally:
        store.close()
    kind = None
    if err is not None:
        kind = (type(err).__name__, getattr(err, "message", None) or str(err))
    return report.as_dict(), kind


def _start_helpers(
    cfg: Config,
    edition_id: int,
    digest: str,
    renders: dict[str, Rendered],
    now: datetime | None,
) -> list[Any]:
    """Start ``delivery.processes - 1`` helper processes on the edition (spawned, so
    nothing of this process's threads or connections is inherited)."""
    extra = cfg.delivery.processes - 1
    if extra < 1:
        return []
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(extra, mp_context=multiprocessing.get_context("spawn"))
    futures = [pool.submit(_helper, cfg, edition_id, digest, renders, now) for _ in range(extra)]
    pool.shutdown(wait=False)
    return futures


def _join_helpers(helpers: list[Any], report: SendReport) -> list[BaseException]:
    """Wait for the helpers; add their tallies to ``report``; return their errors."""
    errors: list[BaseException] = []
    for future in helpers:
        try:
            tallies, err = future.result()
        except Exception as crashed:  # noqa: BLE001 - a helper that died (killed, OOM)
            errors.append(DeliveryError(f"a sending process died: {crashed!r}"))
            continue
        for key in ("batches", "accepted", "failed", "requeued", "cancelled", "resolved"):
            setattr(report, key, getattr(report, key) + tallies[key])
        report.errors += tallies["errors"]
        if err is not None:
            errors.append(_rebuilt(*err))
    return errors


def _rebuilt(kind: str, message: str) -> BaseException:
    """A helper's error in this process, with its class when it is one of ours."""
    import newsletter.errors as known

    cls = getattr(known, kind, None)
    if isinstance(cls, type) and issubclass(cls, NewsletterError):
        return cls(message)
    return DeliveryError(f"a sending process failed: {kind}: {message}")


def send_edition(
    store: Store,
    cfg: Config,
    edition_id: int,
    renders: dict[str, Rendered],
    backend: Backend,
    *,
    on_batch: Callable[[BatchProgress], None] | None = None,
    now: datetime | None = None,
) -> SendReport:
    """Send every queued delivery of an edition, batch by batch, with the backend's workers.

    Deliveries whose ``release_at`` (local-time sends) is after ``now`` wait.
    With ``delivery.processes`` N > 1, N - 1 more processes (each with the backend's
    ``concurrency`` threads and a backend made from ``cfg``) send the same edition:
    the store's claims give each batch to one of them only.
    Raises the first :class:`AuthError`, :class:`TransientError` or
    :class:`PermanentDeliveryError` a worker met, after every worker has stopped;
    what was sent until then is recorded, and a rerun resumes.
    """
    info = store.get_edition(edition_id)
    if info is None:
        raise NotFoundError(f"no edition {edition_id}")
    started = time.monotonic()
    if info.status == EditionStatus.COMPILED:
        freeze_audience(store, cfg, edition_id)
    report = SendReport(edition_id=edition_id)
    audience = store.edition_details(edition_id).info.get("audience") or {}
    report.left_out = dict(audience.get("left_out") or {})
    report.duplicates = int(audience.get("duplicates") or 0)
    helpers = _start_helpers(cfg, edition_id, info.digest, renders, now)
    helper_errors: list[BaseException] = []
    try:
        with store.sending():
            run = _prepare_and_run(
                store, cfg, edition_id, info.digest, renders, backend, report, on_batch, now
            )
    finally:
        backend.close()
        # finalize (below) counts what every process did: wait for the helpers first
        helper_errors = _join_helpers(helpers, report)
    if store.event_type_counts(edition_id):
        # webhook events that came in while their delivery was still claimed (the
        # provider reported before it answered us) changed nothing then; now they do
        store.apply_stored_events(edition_id=edition_id)
    totals = finalize(store, edition_id)
    report.unresolved = totals.get("unresolved", 0)
    report.left = totals.get("left", 0)
    report.pending = totals.get("queued", 0) + totals.get("claimed", 0)
    report.seconds = round(time.monotonic() - started, 3)
    errors = run.errors + helper_errors
    if errors:
        first = errors[0]
        if isinstance(first, NewsletterError):
            logger.error("send of edition %s stopped: %s", edition_id, first)
        raise first
    return report
