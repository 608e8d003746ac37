"""The scheduled run: ingest → rates → compile → send, once per schedule period.

``run`` is what cron calls. It is idempotent per period: the edition of a
digest's period is unique in the store, so a second run in the same week finds
it sent and sends nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter.articles.ingest import IngestReport, ingest
from newsletter.config import Config, DigestConfig
from newsletter.delivery.backends import Backend, make_backend
from newsletter.delivery.send import (
    BatchProgress,
    SendReport,
    freeze_audience,
    send_edition,
    worker_id,
)
from newsletter.editions import (
    EditionPlan,
    period_key,
    period_start,
    plan_edition,
    render_frozen,
    variant_key,
)
from newsletter.errors import LockedError
from newsletter.models import Rendered
from newsletter.rates.service import build_header, header_to_json
from newsletter.store import Store

logger = logging.getLogger(__name__)

RUN_LOCK = "run"
LOCK_TTL = timedelta(hours=2)


@dataclass
class DigestOutcome:
    digest: str
    period: str
    #: sent | partial | resumed | already-sent | too-few-articles | missed |
    #: no-subscribers | dry-run
    status: str
    message: str = ""
    edition_id: int | None = None
    articles: int = 0
    recipients: int = 0
    variants: int = 0
    send: SendReport | None = None
    preview: str = ""
    outbox: str = ""

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "send"}
        d["send"] = self.send.as_dict() if self.send else None
        return d


@dataclass
class RunReport:
    now: datetime
    ingest: IngestReport | None = None
    digests: list[DigestOutcome] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 ok or nothing due, 1 failure, 3 partial (documented in docs/operations.md)."""
        if any(d.status == "partial" or (d.send and d.send.unresolved) for d in self.digests) or (
            self.ingest and self.ingest.failed
        ):
            return 3
        return 0

    def as_dict(self) -> dict:
        return {
            "now": self.now.isoformat(),
            "ingest": [s.as_dict() for s in self.ingest.sources] if self.ingest else [],
            "digests": [d.as_dict() for d in self.digests],
        }


def create_edition(store: Store, cfg: Config, plan: EditionPlan, now: datetime) -> tuple[int, bool]:
    """Freeze a planned edition: articles per variant, rates, then the audience."""
    header = build_header(store, cfg.rates, now.astimezone(ZoneInfo(plan.digest.timezone)).date())
    edition_id, created = store.create_edition(
        digest=plan.digest.name,
        period=plan.period,
        subject=plan.subject,
        window_start=plan.window_start,
        window_end=plan.window_end,
        rates=header_to_json(header),
        info={"edition_date": plan.edition_date, "skipped_subscribers": plan.skipped_subscribers},
        status="compiled",
        variants={k: [a.id for a in v.articles] for k, v in plan.variants.items()},  # type: ignore[misc]
    )
    if created:
        audience: dict[str, list[tuple[int, str]]] = {k: [] for k in plan.variants}
        for sub in store.iter_subscribers(status=("active",)):
            key = variant_key(sub.tags)
            if key in audience:
                audience[key].append((sub.id, sub.email))  # type: ignore[arg-type]
        freeze_audience(store, edition_id, audience)
        store.set_edition_status(edition_id, "sending")
    return edition_id, created


def write_preview(cfg: Config, edition_id: int, renders: dict[str, Rendered]) -> str:
    """An HTML file of the first variant next to the outbox, for a quick look."""
    if not renders:
        return ""
    folder = cfg.resolve(cfg.delivery.outbox_dir) / f"edition-{edition_id}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "preview.html"
    key = "default" if "default" in renders else sorted(renders)[0]
    path.write_text(renders[key].html, encoding="utf-8")
    return str(path)


def run_digest(
    store: Store,
    cfg: Config,
    digest: DigestConfig,
    now: datetime,
    *,
    backend: Backend | None = None,
    dry_run: bool = False,
    force: bool = False,
    on_batch: Callable[[BatchProgress], None] | None = None,
) -> DigestOutcome:
    """Compile and send (or resume) the edition of ``digest``'s current period.

    ``force`` sends even when the period began longer ago than catch_up_hours.
    """
    start = period_start(digest, now)
    period = period_key(start)
    out = DigestOutcome(digest=digest.name, period=period, status="")
    existing = store.find_edition(digest.name, period)
    if existing is not None and existing.status in ("sent", "partially_failed", "cancelled"):
        out.status, out.edition_id = "already-sent", existing.id
        out.message = f"edition {existing.id} for {period} is {existing.status}; nothing to send"
        return out
    if existing is None and not force and now - start > timedelta(hours=digest.catch_up_hours):
        out.status = "missed"
        out.message = (
            f"period {period} began {now - start} ago, more than catch_up_hours="
            f"{digest.catch_up_hours}; skipped"
        )
        return out
    if existing is None:
        plan = plan_edition(store, cfg, digest, now)
        out.articles, out.recipients, out.variants = (
            plan.article_count,
            plan.recipients,
            len(plan.variants),
        )
        if not plan.variants:
            out.status = "too-few-articles"
            out.message = (
                f"fewer than min_articles={digest.min_articles} new articles for every variant"
            )
            return out
        if plan.recipients == 0:
            out.status = "no-subscribers"
            out.message = "no active subscriber gets any variant"
            return out
        if dry_run:
            out.status = "dry-run"
            out.message = (
                f"would send {plan.article_count} articles in {len(plan.variants)} variants "
                f"to {plan.recipients} subscribers"
            )
            return out
        edition_id, created = create_edition(store, cfg, plan, now)
        out.status = "sent" if created else "resumed"
    else:
        edition_id = existing.id
        out.status = "resumed"
        if dry_run:
            out.status, out.edition_id = "dry-run", edition_id
            out.message = f"would resume edition {edition_id}"
            return out
    out.edition_id = edition_id
    renders = render_frozen(store, cfg, edition_id)
    backend = backend or make_backend(cfg)
    out.send = send_edition(store, cfg, edition_id, renders, backend, on_batch=on_batch)
    counts = store.delivery_counts(edition_id)
    out.recipients = sum(sum(v.values()) for v in counts.values())
    out.variants = len(renders)
    out.articles = len(
        {a for ids in store.edition_details(edition_id)["variants"].values() for a in ids}
    )
    out.preview = write_preview(cfg, edition_id, renders)
    if backend.name == "outbox":
        out.outbox = str(Path(cfg.resolve(cfg.delivery.outbox_dir)) / f"edition-{edition_id}")
    info = store.get_edition(edition_id)
    if info and info.status == "partially_failed":
        out.status = "partial"
    out.message = f"edition {edition_id}: {out.send.accepted} accepted, {out.send.failed} failed"
    return out


def run(
    store: Store,
    cfg: Config,
    now: datetime,
    *,
    digests: list[str] | None = None,
    dry_run: bool = False,
    do_ingest: bool = True,
    backend: Backend | None = None,
) -> RunReport:
    """The cron entry point. Raises LockedError when another run holds the lock."""
    report = RunReport(now=now)
    holder = worker_id()
    if not dry_run and not store.acquire_lock(RUN_LOCK, holder, ttl=LOCK_TTL):
        raise LockedError("another `newsletter run` is in progress; this one exits")
    try:
        if do_ingest and cfg.sources and not dry_run:
            report.ingest = ingest(store, cfg, cfg.sources)
        chosen = [cfg.digest(n) for n in digests] if digests else cfg.digests
        for digest in chosen:
            report.digests.append(
                run_digest(store, cfg, digest, now, backend=backend, dry_run=dry_run)
            )
    finally:
        if not dry_run:
            store.release_lock(RUN_LOCK, holder)
    return report
