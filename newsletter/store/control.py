"""An operator's hand on an edition: cancel, pause, resume.

Each is one conditional UPDATE (``WHERE status IN (…)``), so it cannot race a
run: whatever state the edition is in when the statement runs decides. A batch
already claimed ("in flight") is never touched: its worker finishes it and
records what the provider said. Claims check the edition's status
(:meth:`DeliveryQueries.claim_batch`), so no new batch starts once an edition
is paused or cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update

from newsletter.store.base import StoreBase, utcnow
from newsletter.store.deliveries import check_transition
from newsletter.store.schema import deliveries, editions

#: operation -> (the statuses it acts on, the status it leaves)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "cancel": (("compiled", "sending", "paused"), "cancelled"),
    "pause": (("compiled", "sending"), "paused"),
    "resume": (("paused",), "sending"),
}


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
        allowed, after = TRANSITIONS[operation]
        with self.begin() as conn:
            before = conn.execute(
                select(editions.c.status).where(editions.c.id == edition_id)
            ).scalar_one_or_none()
            if before is None:
                return ControlResult("", False)
            if operation == "resume":
                # an edition paused before its audience was frozen goes back to compiled
                frozen = conn.execute(
                    select(func.count()).where(deliveries.c.edition_id == edition_id)
                ).scalar_one()
                after = "sending" if frozen else "compiled"
            changed = conn.execute(
                update(editions)
                .where((editions.c.id == edition_id) & editions.c.status.in_(allowed))
                .values(status=after)
            ).rowcount
            if not changed:
                return ControlResult(before, False)
            moved = 0
            if operation == "cancel":
                check_transition("queued", "cancelled")
                moved = conn.execute(
                    update(deliveries)
                    .where(
                        (deliveries.c.edition_id == edition_id) & (deliveries.c.status == "queued")
                    )
                    .values(status="cancelled", updated_at=utcnow())
                ).rowcount
            in_flight = conn.execute(
                select(func.count()).where(
                    (deliveries.c.edition_id == edition_id) & (deliveries.c.status == "claimed")
                )
            ).scalar_one()
        return ControlResult(before, True, deliveries=moved, in_flight=int(in_flight))
