"""The last run's outcome per digest, and the counts `serve`'s /metrics reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import RowMapping, func, insert, select, update

from newsletter.states import BatchStatus, DeliveryStatus, RunStatus
from newsletter.store.base import StoreBase
from newsletter.store.schema import batches, deliveries, digest_runs, editions, events, subscribers


@dataclass(frozen=True)
class DigestRun:
    """What the last run that handled a digest did with it."""

    digest: str
    ran_at: datetime
    exit_code: int
    status: RunStatus
    period: str
    edition_id: int | None
    message: str
    #: consecutive schedule periods that ended without an edition
    idle_periods: int
    #: the last period counted in ``idle_periods``
    idle_period: str


@dataclass(frozen=True)
class Totals:
    """Counts across the whole database, for monitoring."""

    #: (digest, delivery status) -> deliveries
    deliveries: dict[tuple[str, str], int]
    #: normalized event type -> events received
    events: dict[str, int]
    #: batches held for an operator's decision (outcome unknown, deliveries unresolved)
    batches_held: int
    #: subscriber status -> subscribers
    subscribers: dict[str, int]


def _digest_run(row: RowMapping) -> DigestRun:
    return DigestRun(**{**row, "status": RunStatus(row["status"])})


class RunQueries(StoreBase):
    def record_digest_run(self, run: DigestRun) -> None:
        """Keep ``run`` as the digest's last run (one row per digest)."""
        values = run.__dict__.copy()
        with self.begin() as conn:
            done = conn.execute(
                update(digest_runs).where(digest_runs.c.digest == run.digest).values(values)
            ).rowcount
            if not done:
                conn.execute(insert(digest_runs).values(values))

    def digest_run(self, digest: str) -> DigestRun | None:
        with self.connect() as conn:
            row = conn.execute(select(digest_runs).where(digest_runs.c.digest == digest)).first()
        return _digest_run(row._mapping) if row else None

    def digest_runs(self) -> list[DigestRun]:
        with self.connect() as conn:
            rows = conn.execute(select(digest_runs).order_by(digest_runs.c.digest)).all()
        return [_digest_run(r._mapping) for r in rows]

    def edition_backends(self, edition_id: int) -> list[str]:
        """The backends the edition's batches went through (usually one)."""
        with self.connect() as conn:
            rows = conn.execute(
                select(batches.c.backend).where(batches.c.edition_id == edition_id).distinct()
            ).all()
        return sorted(r[0] for r in rows)

    def totals(self) -> Totals:
        with self.connect() as conn:
            d = conn.execute(
                select(editions.c.digest, deliveries.c.status, func.count())
                .select_from(deliveries.join(editions, editions.c.id == deliveries.c.edition_id))
                .group_by(editions.c.digest, deliveries.c.status)
            ).all()
            e = conn.execute(select(events.c.type, func.count()).group_by(events.c.type)).all()
            # as `status` lists them: only while a delivery still waits for a decision
            waiting = (
                select(deliveries.c.id)
                .where(
                    (deliveries.c.batch_id == batches.c.id)
                    & (deliveries.c.status == DeliveryStatus.UNRESOLVED)
                )
                .exists()
            )
            held = conn.execute(
                select(func.count())
                .select_from(batches)
                .where((batches.c.status == BatchStatus.UNKNOWN) & waiting)
            ).scalar_one()
            s = conn.execute(
                select(subscribers.c.status, func.count()).group_by(subscribers.c.status)
            ).all()
        return Totals(
            deliveries={(r[0], r[1]): r[2] for r in d},
            events={r[0]: r[1] for r in e},
            batches_held=int(held),
            subscribers={r[0]: r[1] for r in s},
        )
