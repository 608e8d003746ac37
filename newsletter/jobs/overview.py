"""`newsletter schedule`: each digest's current period, what became of it, its next runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from newsletter import schedule
from newsletter.config import Config
from newsletter.editions.freeze import digest_zones
from newsletter.jobs.run import RUN_LOCK
from newsletter.store import Store
from newsletter.store.locks import LockHolder


@dataclass
class DigestSchedule:
    """One digest's line in ``newsletter schedule``."""

    digest: str
    schedule: str
    timezone: str
    local_time: bool
    catch_up_hours: int
    period: str
    #: what the current period's edition is: none | compiled | sending | sent | …
    state: str
    edition_id: int | None
    #: for a period without an edition: due | late | missed
    decision: str
    next_runs: list[datetime]

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["next_runs"] = [t.isoformat() for t in self.next_runs]
        return d


@dataclass
class ScheduleReport:
    now: datetime
    digests: list[DigestSchedule]
    lock: LockHolder | None = None

    def as_dict(self) -> dict:
        lock = None
        if self.lock:
            lock = {
                "holder": self.lock.holder,
                "since": self.lock.acquired_at.isoformat(timespec="seconds"),
                "stale": self.lock.stale,
            }
        return {
            "now": self.now.isoformat(),
            "lock": lock,
            "digests": [d.as_dict() for d in self.digests],
        }


def schedule_overview(
    store: Store, cfg: Config, now: datetime, *, count: int = 5, digests: list[str] | None = None
) -> ScheduleReport:
    """Each digest's current period, what became of it, and its next ``count`` runs."""
    chosen = [cfg.digest(n) for n in digests] if digests else cfg.digests
    rows = []
    for d in chosen:
        period = schedule.current_period(d, now, digest_zones(store, d))
        edition = store.find_edition(d.name, period.key)
        rows.append(
            DigestSchedule(
                digest=d.name,
                schedule=d.schedule,
                timezone=d.timezone,
                local_time=d.local_time,
                catch_up_hours=d.catch_up_hours,
                period=period.key,
                state=edition.status if edition else "none",
                edition_id=edition.id if edition else None,
                decision="" if edition else schedule.decide(d, period, now).state,
                next_runs=schedule.next_runs(d, now, count),
            )
        )
    return ScheduleReport(now=now, digests=rows, lock=store.lock_holder(RUN_LOCK))
