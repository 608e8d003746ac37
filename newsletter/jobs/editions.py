"""Editions as first-class objects: list them, cancel, pause and resume one.

The state changes themselves are conditional updates in the store
(``newsletter/store/control.py``); this module turns "not allowed from this
state" into a clear error and says what happened to the deliveries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from newsletter import schedule
from newsletter.config import Config
from newsletter.editions.freeze import digest_zones
from newsletter.errors import InputError, NotFoundError
from newsletter.states import DELIVERY_OPEN, RANK, DeliveryStatus, EditionStatus
from newsletter.store import Store
from newsletter.store.base import utcnow
from newsletter.store.control import acts_on

logger = logging.getLogger(__name__)

#: delivery statuses still waiting to go out
WAITING = DELIVERY_OPEN
#: delivery statuses the provider took
ACCEPTED = tuple(s for s in DeliveryStatus if RANK[s] > 0)


@dataclass(frozen=True)
class Controlled:
    edition_id: int
    operation: str
    before: str
    after: str
    #: queued deliveries cancelled
    cancelled: int
    #: deliveries of batches in flight, left to settle
    in_flight: int

    def describe(self) -> str:
        text = f"edition {self.edition_id}: {self.before} -> {self.after}"
        if self.operation == "cancel":
            text += f"; {self.cancelled} queued deliveries cancelled"
        if self.in_flight:
            text += (
                f"; {self.in_flight} in batches already in flight settle as the provider answers"
            )
        return text


def control(store: Store, edition_id: int, operation: str) -> Controlled:
    """cancel, pause or resume an edition; InputError when its status does not allow it."""
    result = store.control_edition(edition_id, operation)
    if not result.before:
        raise NotFoundError(f"no edition {edition_id}")
    allowed = acts_on(operation)
    if not result.changed:
        hint = None
        if operation == "resume" and result.before in (
            EditionStatus.COMPILED,
            EditionStatus.SENDING,
        ):
            # not paused but unfinished: most likely one the runs left alone as too old
            hint = (
                f"`newsletter send --resume {edition_id}` sends an unfinished edition "
                "that the runs leave alone as too old"
            )
        raise InputError(
            f"edition {edition_id} is {result.before}: only an edition that is "
            f"{' or '.join(allowed)} can be {_PAST[operation]}",
            hint=hint,
        )
    info = store.get_edition(edition_id)
    assert info is not None
    done = Controlled(
        edition_id=edition_id,
        operation=operation,
        before=result.before,
        after=info.status,
        cancelled=result.deliveries,
        in_flight=result.in_flight,
    )
    logger.warning("%s", done.describe())
    return done


_PAST = {"cancel": "cancelled", "pause": "paused", "resume": "resumed"}


def stale_after_resume(store: Store, cfg: Config, edition_id: int, now: datetime) -> str:
    """What to tell about an edition `newsletter resume` just let go on, when the runs
    still will not send it: one of an earlier period older than its digest's resume age
    (:func:`newsletter.jobs.run.max_resume_age`). "" when the runs will send it."""
    from newsletter.jobs.run import max_resume_age

    info = store.get_edition(edition_id)
    if info is None or info.status not in (EditionStatus.COMPILED, EditionStatus.SENDING):
        return ""
    digest = next((d for d in cfg.digests if d.name == info.digest), None)
    if digest is None:
        return ""
    current = schedule.current_period(digest, now, digest_zones(store, digest))
    age, limit = max(now, utcnow()) - info.created_at, max_resume_age(digest, info)
    if info.period == current.key or age <= limit:
        return ""
    return (
        f"edition {edition_id} is {schedule.describe_delta(age)} old, older than "
        f"{schedule.describe_delta(limit)}: the runs report it stale and do not send it; "
        f"`newsletter send --resume {edition_id}` sends it"
    )


def list_editions(store: Store, digest: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The latest editions, newest first: period, status, counts, times, the last run."""
    runs = {r.digest: r for r in store.digest_runs()}
    out = []
    for e in store.list_editions(digest=digest, limit=limit):
        totals: dict[str, int] = {}
        for counts in store.delivery_counts(e.id).values():
            for status, n in counts.items():
                totals[status] = totals.get(status, 0) + n
        run = runs.get(e.digest)
        last_run = None
        if run is not None and run.period == e.period:
            last_run = {
                "status": run.status,
                "exit_code": run.exit_code,
                "ran_at": run.ran_at.isoformat(timespec="seconds"),
                "message": run.message,
            }
        out.append(
            {
                "id": e.id,
                "digest": e.digest,
                "period": e.period,
                "status": e.status,
                "recipients": sum(totals.values()),
                "accepted": sum(totals.get(s, 0) for s in ACCEPTED),
                "failed": totals.get(DeliveryStatus.FAILED, 0),
                "waiting": sum(totals.get(s, 0) for s in WAITING),
                "cancelled": totals.get(DeliveryStatus.CANCELLED, 0),
                "created_at": e.created_at.isoformat(timespec="seconds"),
                "sent_at": e.sent_at.isoformat(timespec="seconds") if e.sent_at else None,
                "last_run": last_run,
            }
        )
    return out
