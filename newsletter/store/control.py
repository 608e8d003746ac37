"""An operator's hand on an edition: cancel, pause, resume.

Each is one conditional UPDATE whose ``WHERE status IN (…)`` comes from the
``EDITION`` table of :mod:`newsletter.states`, so it cannot race a run:
whatever state the edition is in when the statement runs decides. A batch
already claimed ("in flight") is never touched: its worker finishes it and
records what the provider said. Claims check the edition's status
(:meth:`DeliveryQueries.claim_batch`), so no new batch starts once an edition
is paused or cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from newsletter.states import EDITION, EditionStatus
from newsletter.store.base import StoreBase, utcnow
from newsletter.store.deliveries import cancel_queued, count_in_flight
from newsletter.store.editions import move_edition_if
from newsletter.store.schema import deliveries, editions

E = EditionStatus

#: operation -> the status it leaves (resume: sending, or compiled before the freeze);
#: which statuses it acts on is the EDITION table of newsletter/states.py
OPERATIONS: dict[str, EditionStatus] = {
    "cancel": E.CANCELLED,
    "pause": E.PAUSED,
    "resume": E.SENDING,
}


def acts_on(operation: str) -> tuple[EditionStatus, ...]:
    """The edition statuses ``operation`` applies to (from the EDITION table)."""
    if operation == "resume":
        return (E.PAUSED,)
    return EDITION.sources(OPERATIONS[operation])


@dataclass(frozen=True)
class ControlResult:
    #: the status the edition had; "" when there is no such edition
    before: str
    #: whether the operation applied (False: the edition was not in a state it acts on)
    changed: bool
    #: deliveries the operation moved (queued -> cancelled)
    deliveries: int = 0
    #: deliveries of batches in flight, left to settle
    in_flight: int = 0


class ControlQueries(StoreBase):
    def control_edition(self, edition_id: int, operation: str) -> ControlResult:
        """Apply ``operation`` (cancel, pause, resume) to an edition, if its status allows."""
        after = OPERATIONS[operation]
        with self.begin() as conn:
            before = conn.execute(
                select(editions.c.status).where(editions.c.id == edition_id)
            ).scalar_one_or_none()
            if before is None:
                return ControlResult("", False)
            only_from = None
            if operation == "resume":
                # an edition paused before its audience was frozen goes back to compiled
                frozen = conn.execute(
                    select(func.count()).where(deliveries.c.edition_id == edition_id)
                ).scalar_one()
                after = E.SENDING if frozen else E.COMPILED
                # resume moves only a paused edition (sending and compiled have other sources)
                only_from = E.PAUSED
            if not move_edition_if(conn, edition_id, after, only_from=only_from):
                return ControlResult(before, False)
            moved = cancel_queued(conn, edition_id, utcnow()) if operation == "cancel" else 0
            in_flight = count_in_flight(conn, edition_id)
        return ControlResult(before, True, deliveries=moved, in_flight=in_flight)
