"""What a run did: one outcome per digest, the run's report, its exit code and summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from newsletter.articles.ingest import IngestReport
from newsletter.delivery.send import SendReport
from newsletter.states import RUN_FAILED, RUN_WORKED, RunStatus


@dataclass
class DigestOutcome:
    digest: str
    period: str
    #: what the run did with the digest (newsletter/states.py says what each one means)
    status: RunStatus
    message: str = ""
    edition_id: int | None = None
    articles: int = 0
    recipients: int = 0
    variants: int = 0
    send: SendReport | None = None
    preview: str = ""
    outbox: str = ""
    #: how long after the period opened this run sent it ("" when on time)
    late_by: str = ""
    #: earlier periods that were never sent (the machine was down)
    missed_periods: list[str] = field(default_factory=list)
    #: local-time deliveries still waiting for their hour, and the next release
    waiting: int = 0
    next_release: str = ""
    #: schedule periods in a row, this one included, that ended without an edition
    idle_periods: int = 0
    #: idle_periods reached the digest's alert_idle_periods: the run alerts, exits 1/3
    stalled: bool = False
    #: this run counted a new idle period (so the alert email goes once per period)
    idle_new: bool = False
    #: the preflight's errors that stopped this digest before anything was stored
    check_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "send"}
        d["send"] = self.send.as_dict() if self.send else None
        return d


@dataclass
class RunReport:
    now: datetime
    ingest: IngestReport | None = None
    digests: list[DigestOutcome] = field(default_factory=list)
    dry_run: bool = False
    #: set when another run held the lock and this one gave way: who holds it
    locked_by: str = ""
    #: a run-level failure (lost lock, database gone) after the lock was taken
    error: str = ""
    seconds: float = 0.0
    #: where the failure alert went ("" for none)
    alert: str = ""

    @property
    def exit_code(self) -> int:
        """0 ok or nothing due, 1 failure, 3 partial (documented in docs/operations.md).

        A stalled digest (no edition for alert_idle_periods periods) counts as failed."""
        return self.exit_code_of(self.digests)

    def exit_code_of(self, digests: list[DigestOutcome]) -> int:
        """The exit code as if the run had had only ``digests``."""
        # stale: an unfinished edition too old to resume by itself waits for a person
        failed = [d for d in digests if d.status in RUN_FAILED or d.stalled]
        worked = [d for d in digests if d.status in RUN_WORKED]
        if self.error or (failed and not worked) or any(d.check_errors for d in digests):
            return 1
        if failed or any(d.status == RunStatus.PARTIAL for d in digests):
            return 3
        if any(d.send and d.send.unresolved for d in digests):
            return 3  # held batches wait for a decision
        if self.ingest and self.ingest.failed:
            return 3
        return 0

    @property
    def outcome(self) -> str:
        if self.locked_by:
            return "locked"
        return {0: "ok", 1: "failed", 3: "partial"}[self.exit_code]

    def summary(self) -> dict:
        sends = [d.send for d in self.digests if d.send]
        return {
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "now": self.now.isoformat(),
            "dry_run": self.dry_run,
            "locked_by": self.locked_by,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "ingest": {
                "sources": len(self.ingest.sources) if self.ingest else 0,
                "failed": len(self.ingest.failed) if self.ingest else 0,
                "new": self.ingest.inserted if self.ingest else 0,
            },
            "digests": {
                f"{d.digest}@{d.period}": d.status
                + (f" ({d.idle_periods} periods without an edition)" if d.stalled else "")
                for d in self.digests
            },
            "accepted": sum(s.accepted for s in sends),
            "failed": sum(s.failed for s in sends),
            "unresolved": sum(s.unresolved for s in sends),
            "waiting": sum(d.waiting for d in self.digests),
        }

    def summary_text(self) -> str:
        s = self.summary()
        if self.locked_by:
            return f"run locked: another run ({self.locked_by}) is in progress; exit 0"
        parts = [f"{k}: {v}" for k, v in s["digests"].items()] or ["no digests"]
        text = (
            f"run {s['outcome']}{' (dry run)' if self.dry_run else ''}: "
            + ", ".join(parts)
            + f"; {s['accepted']} accepted, {s['failed']} failed"
        )
        if s["unresolved"]:
            text += f", {s['unresolved']} unresolved"
        if s["waiting"]:
            text += f", {s['waiting']} waiting for local time"
        if s["ingest"]["failed"]:
            text += f"; {s['ingest']['failed']} source(s) failed"
        if self.error:
            text += f"; {self.error}"
        return text + f"; exit {self.exit_code} in {s['seconds']:.1f}s"

    def as_dict(self) -> dict:
        return {
            "now": self.now.isoformat(),
            "dry_run": self.dry_run,
            "locked_by": self.locked_by,
            "error": self.error,
            "exit_code": self.exit_code,
            "alert": self.alert,
            "ingest": [s.as_dict() for s in self.ingest.sources] if self.ingest else [],
            "digests": [d.as_dict() for d in self.digests],
        }
