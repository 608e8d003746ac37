"""The scheduled run: ingest → rates → compile → send, once per schedule period.

``run`` is what cron calls, as often as every few minutes. It takes the run
lock, ingests, then asks each digest's schedule (``newsletter.schedule``) which
period is current and compares that with the store:

- no edition for the period yet: compile and send it, also late up to
  ``catch_up_hours``; later than that the period is recorded as skipped;
- an edition still sending (a crash, or local-time deliveries waiting for
  their hour): resume it;
- before any of that, every unfinished edition of an earlier period is resumed,
  oldest first, unless it is older than ``resume_max_age_hours`` (reported and
  alerted instead, for ``newsletter send --resume``);
- an edition sent, partly failed, cancelled or skipped: nothing to do.

The edition of a period is unique in the store, so a period is never sent twice,
whatever runs overlap or crash. Each run ends with one summary log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jinja2 import TemplateNotFound, TemplateSyntaxError

from newsletter import schedule
from newsletter.articles.ingest import ingest
from newsletter.config import Config, DigestConfig
from newsletter.delivery.backends import Backend, make_backend
from newsletter.delivery.send import BatchProgress, send_edition
from newsletter.editions import archive
from newsletter.editions.freeze import create_edition, digest_zones, freeze_audience
from newsletter.editions.frozen import render_frozen
from newsletter.editions.plan import plan_edition
from newsletter.errors import ConfigError, InputError, NewsletterError
from newsletter.jobs import alerts
from newsletter.jobs.outcomes import DigestOutcome, RunReport
from newsletter.models import EditionInfo, Rendered
from newsletter.preview.preflight import preflight
from newsletter.render import personalize
from newsletter.render.env import make_env
from newsletter.schedule import Period
from newsletter.states import (
    DELIVERY_OPEN,
    EDITION_DONE,
    EDITION_HANDLED,
    RUN_HAS_EDITION,
    EditionStatus,
    RunStatus,
)
from newsletter.store import Store
from newsletter.store.base import utcnow
from newsletter.store.locks import worker_id
from newsletter.store.runs import DigestRun

logger = logging.getLogger(__name__)
#: the one line each run ends with; always logged, whatever the verbosity
summary_logger = logging.getLogger("newsletter.summary")

RUN_LOCK = "run"


def write_preview(cfg: Config, edition_id: int, renders: dict[str, Rendered]) -> str:
    """An HTML file of the first variant next to the outbox, for a quick look.

    No recipient's data: the personal links point at a placeholder page."""
    if not renders:
        return ""
    sample = f"{cfg.site.public_url.rstrip('/')}/unsubscribe/PREVIEW"
    key = "default" if "default" in renders else sorted(renders)[0]
    values = personalize.values_for(
        name="", unsubscribe_url=sample, fallbacks=renders[key].fallbacks
    )
    folder = cfg.resolve(cfg.delivery.outbox_dir) / f"edition-{edition_id}"
    path = folder / "preview.html"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        html = personalize.personalize(renders[key].html, values, html_part=True)
        path.write_text(html, encoding="utf-8")
    except OSError as err:  # a convenience only: never worth failing a sent edition over
        logger.warning("could not write the preview %s: %s", path, err.strerror)
        return ""
    return str(path)


def _dry_run_existing(
    store: Store, out: DigestOutcome, edition: EditionInfo, now: datetime
) -> None:
    counts = store.delivery_counts(edition.id)
    queued = sum(v.get("queued", 0) for v in counts.values())
    waiting, first = store.release_state(edition.id, now)
    out.status, out.edition_id, out.waiting = RunStatus.DRY_RUN, edition.id, waiting
    out.next_release = first.isoformat() if first else ""
    out.message = f"would resume edition {edition.id}: {queued - waiting} deliveries to send now"
    if waiting:
        out.message += f", {waiting} waiting for local time"


def send_existing(
    store: Store,
    cfg: Config,
    out: DigestOutcome,
    edition_id: int,
    now: datetime,
    backend: Backend | None,
    on_batch: Callable[[BatchProgress], None] | None = None,
) -> DigestOutcome:
    """Send what is released of a stored edition and fill in ``out``."""
    out.edition_id = edition_id
    renders = render_frozen(store, cfg, edition_id)
    backend = backend or make_backend(cfg)
    out.send = send_edition(store, cfg, edition_id, renders, backend, on_batch=on_batch, now=now)
    archive.publish_after_send(store, cfg, edition_id)  # when [archive] dir is set
    counts = store.delivery_counts(edition_id)
    out.recipients = sum(sum(v.values()) for v in counts.values())
    out.variants = len(renders)
    out.articles = len(
        {a for ids in store.edition_details(edition_id).variants.values() for a in ids}
    )
    out.preview = write_preview(cfg, edition_id, renders)
    if backend.name == "outbox":
        out.outbox = str(Path(cfg.resolve(cfg.delivery.outbox_dir)) / f"edition-{edition_id}")
    info = store.get_edition(edition_id)
    out.waiting, first = store.release_state(edition_id, now)
    out.next_release = first.isoformat() if first else ""
    if info and info.status == EditionStatus.PARTIALLY_FAILED:
        out.status = RunStatus.PARTIAL
    elif info and info.status == EditionStatus.SENDING and out.waiting:
        out.status = RunStatus.SENDING
    out.message = f"edition {edition_id}: {out.send.accepted} accepted, {out.send.failed} failed"
    if out.waiting:
        out.message += f"; {out.waiting} wait for local time, next at {out.next_release}"
    return out


def check_preconditions(
    cfg: Config, digest: DigestConfig, backend: Backend | None = None
) -> Backend:
    """What a send needs, checked before an edition is created or resumed.

    The secret key that signs the unsubscribe links, the backend's credentials
    (building the backend checks them) and the digest's templates (found and
    parsed). Raises ConfigError; returns the backend, ready to use.
    """
    if not cfg.secrets.secret_key:
        raise ConfigError(
            "NEWSLETTER_SECRET_KEY is not set: unsubscribe links cannot be signed",
            hint="export it before sending; nothing was stored",
        )
    folder = str(cfg.resolve(cfg.render.templates)) if cfg.render.templates else ""
    env = make_env(folder)
    for name in (f"{digest.template}.mjml.j2", f"{digest.template}.txt.j2"):
        try:
            env.get_template(name)
        except TemplateNotFound:
            raise ConfigError(
                f"template {name} not found",
                where=f"digest {digest.name}",
                hint="check digests.template and render.templates; nothing was stored",
            ) from None
        except TemplateSyntaxError as err:
            where = f"{err.filename or name}:{err.lineno}"
            raise ConfigError(f"template error: {err.message}", where=where) from None
    return backend or make_backend(cfg)


def _preflight_errors(store: Store, cfg: Config, digest: DigestConfig, now: datetime) -> list[str]:
    """`newsletter check`'s errors for every variant that would go out now."""
    report = preflight(store, cfg, digest, now)
    return [str(f) for f in report.errors]


def _missed_before(store: Store, digest: DigestConfig, period: Period) -> list[str]:
    """Periods between the last one handled and ``period`` that were never sent."""
    last = store.last_edition(digest.name, statuses=EDITION_HANDLED)
    start = schedule.parse_period_key(last.period) if last else None
    if start is None or start >= period.start:
        return []
    return [schedule.period_key(t) for t in schedule.missed_periods(digest, start, period.start)]


def _report_missed(
    store: Store, digest: DigestConfig, period: Period, out: DigestOutcome, dry_run: bool
) -> None:
    out.missed_periods = _missed_before(store, digest, period)
    if out.missed_periods and not dry_run:
        logger.warning(
            "%s: %d earlier period(s) were never sent (machine down?): %s%s",
            digest.name,
            len(out.missed_periods),
            ", ".join(out.missed_periods[:5]),
            " …" if len(out.missed_periods) > 5 else "",
        )


def run_digest(
    store: Store,
    cfg: Config,
    digest: DigestConfig,
    now: datetime,
    *,
    backend: Backend | None = None,
    dry_run: bool = False,
    force: bool = False,
    period: Period | None = None,
    on_batch: Callable[[BatchProgress], None] | None = None,
    skip_check: str = "",
) -> DigestOutcome:
    """Compile and send (or resume) the edition of ``digest``'s current period.

    ``force`` sends even when the period began longer ago than catch_up_hours,
    or was recorded as skipped (``newsletter send``). ``period``: the current
    period, when the caller worked it out already. A new edition is created only
    after the preconditions and the preflight (``newsletter check``) passed; a
    preflight error stops the digest unless ``skip_check`` gives the reason to
    send anyway, which is recorded on the edition.
    """
    if period is None:
        period = schedule.current_period(digest, now, digest_zones(store, digest))
    # FAILED until the run decides: every return below sets the outcome
    out = DigestOutcome(digest=digest.name, period=period.key, status=RunStatus.FAILED)
    existing = store.find_edition(digest.name, period.key)
    if existing is not None and existing.status == EditionStatus.SKIPPED and force:
        if not dry_run:
            store.delete_skipped_edition(existing.id)
        existing = None
    if existing is not None and existing.status == EditionStatus.PAUSED:
        out.status = RunStatus.PAUSED  # the run's outcome, not the edition's status
        out.edition_id = existing.id
        out.message = (
            f"edition {existing.id} is paused; `newsletter resume {existing.id}` sends the rest"
        )
        return out
    if existing is not None and existing.status in EDITION_DONE:
        skipped = existing.status == EditionStatus.SKIPPED and not force
        out.status = RunStatus.SKIPPED if skipped else RunStatus.ALREADY_SENT
        out.edition_id = existing.id
        out.message = (
            f"period {period.key} was skipped (missed); nothing to send"
            if skipped
            else f"edition {existing.id} for {period.key} is {existing.status}; nothing to send"
        )
        return out
    if existing is None:
        decision = schedule.decide(digest, period, now)
        # said only of a period that is sent (or would be, in a dry run): a run that
        # finds no subscribers or too few articles sent nothing, late or not
        late = schedule.describe_delta(decision.late_by) if decision.state == "late" else ""
        if not decision.send and not force:
            _report_missed(store, digest, period, out, dry_run)
            out.status = RunStatus.MISSED
            out.message = (
                f"period {period.key} opened {schedule.describe_delta(decision.late_by)} ago, "
                f"more than catch_up_hours={digest.catch_up_hours}; skipped"
            )
            logger.warning("%s: %s", digest.name, out.message)
            if not dry_run:
                store.record_skipped(digest=digest.name, period=period.key, reason=out.message)
            return out
        plan = plan_edition(store, cfg, digest, now)
        plan.period = period.key  # with local_time the period can run ahead of the home clock
        out.articles, out.recipients, out.variants = (
            plan.article_count,
            plan.recipients,
            len(plan.variants),
        )
        if not plan.variants:
            out.status = RunStatus.TOO_FEW_ARTICLES
            out.message = (
                f"fewer than min_articles={digest.min_articles} new articles for every variant"
            )
            return out
        if plan.recipients == 0:
            out.status = RunStatus.NO_SUBSCRIBERS
            out.message = "no active subscriber gets any variant"
            return out
        # reported once: this run either sends the period or (dry run) only shows it
        _report_missed(store, digest, period, out, dry_run)
        if dry_run:
            out.status = RunStatus.DRY_RUN
            out.message = (
                f"would send {plan.article_count} articles in {len(plan.variants)} variants "
                f"to {plan.recipients} subscribers"
            )
            out.late_by = late
            if late:
                out.message += f", {late} late"
            if digest.local_time and period.closes > now:
                out.message += f"; local time: released until {period.closes.isoformat()}"
            return out
        backend = check_preconditions(cfg, digest, backend)
        extra: dict = {}
        if skip_check:
            extra["skip_check"] = {"reason": skip_check, "at": now.isoformat()}
            logger.warning("%s: preflight skipped: %s", digest.name, skip_check)
        else:
            errors = _preflight_errors(store, cfg, digest, now)
            if errors:
                out.status, out.check_errors = RunStatus.FAILED, errors
                out.message = (
                    f"the preflight found {len(errors)} error(s); nothing was sent or stored "
                    "(`newsletter check` shows them; `newsletter send --skip-check REASON` "
                    "sends anyway): " + "; ".join(errors)
                )
                logger.error("%s: %s", digest.name, out.message)
                return out
        out.late_by = late
        if late:
            logger.warning("%s: sending period %s %s late", digest.name, period.key, late)
        edition_id, created = create_edition(store, cfg, plan, now, extra_info=extra)
        out.status = RunStatus.SENT if created else RunStatus.RESUMED
    else:
        edition_id = existing.id
        out.status = RunStatus.RESUMED
        if dry_run:
            _dry_run_existing(store, out, existing, now)
            return out
        backend = check_preconditions(cfg, digest, backend)
        if existing.status == EditionStatus.COMPILED:
            # a run died while freezing the audience: finish that first
            freeze_audience(store, cfg, edition_id)
    return send_existing(store, cfg, out, edition_id, now, backend, on_batch)


def max_resume_age(digest: DigestConfig, edition: EditionInfo) -> timedelta:
    """How old an unfinished edition may be and still be resumed without a person.

    ``resume_max_age_hours``, or by default one schedule period (the time from
    the edition's period to the next fire time), plus the 26 hours local-time
    releases can span (UTC+14 to UTC-12) for a local-time digest.
    """
    if digest.resume_max_age_hours:
        return timedelta(hours=digest.resume_max_age_hours)
    start = schedule.parse_period_key(edition.period) or edition.created_at
    tz = schedule.zone(digest.timezone)
    nxt = next(iter(schedule.fires_after(digest.schedule, tz, start)), None)
    period = (nxt - start) if nxt is not None else timedelta(days=7)
    return period + (timedelta(hours=26) if digest.local_time else timedelta())


def resume_unfinished(
    store: Store,
    cfg: Config,
    digest: DigestConfig,
    now: datetime,
    *,
    current: str,
    backend: Backend | None = None,
    dry_run: bool = False,
    on_batch: Callable[[BatchProgress], None] | None = None,
) -> list[DigestOutcome]:
    """Resume every unfinished edition of ``digest`` of another period, oldest first.

    Whatever period it belongs to: a crash, or a send stopped by a provider
    outage, must not be abandoned because the next period opened (local-time
    releases also span up to a day). An edition older than
    :func:`max_resume_age` is reported (status ``stale``, which alerts) and not
    sent: `newsletter send --resume EDITION` sends it, `newsletter cancel` drops it.
    Its age runs from its creation to the later of ``now`` and the real time.
    """
    out = []
    clock = max(now, utcnow())
    for edition in store.unfinished_editions(
        digest.name, statuses=(EditionStatus.COMPILED, EditionStatus.SENDING)
    ):
        if edition.period == current:
            continue
        o = DigestOutcome(digest=digest.name, period=edition.period, status=RunStatus.RESUMED)
        o.edition_id = edition.id
        age, limit = clock - edition.created_at, max_resume_age(digest, edition)
        if age > limit:
            counts = store.delivery_counts(edition.id)
            left = sum(v.get(s, 0) for v in counts.values() for s in DELIVERY_OPEN)
            o.status = RunStatus.STALE
            o.message = (
                f"edition {edition.id} ({edition.period}) is unfinished, {left} deliveries "
                f"not sent, and {schedule.describe_delta(age)} old, older than "
                f"{schedule.describe_delta(limit)}: not sent by itself. "
                f"`newsletter send --resume {edition.id}` sends it, "
                f"`newsletter cancel {edition.id}` drops it"
            )
            logger.error("%s: %s", digest.name, o.message)
        elif dry_run:
            _dry_run_existing(store, o, edition, now)
        else:
            logger.warning(
                "%s: resuming unfinished edition %s of period %s",
                digest.name,
                edition.id,
                edition.period,
            )
            backend = check_preconditions(cfg, digest, backend)
            send_existing(store, cfg, o, edition.id, now, backend, on_batch)
        out.append(o)
    return out


def resume_edition(
    store: Store,
    cfg: Config,
    edition_id: int,
    now: datetime,
    *,
    on_batch: Callable[[BatchProgress], None] | None = None,
) -> DigestOutcome:
    """`newsletter send --resume EDITION`: send an unfinished edition, whatever its age."""
    info = store.get_edition(edition_id)
    if info is None:
        raise InputError(f"no edition {edition_id}", hint="`newsletter status` lists editions")
    if info.status == EditionStatus.PAUSED:
        raise InputError(
            f"edition {edition_id} is paused",
            hint=f"`newsletter resume {edition_id}` lets it go on",
        )
    if info.status not in (EditionStatus.COMPILED, EditionStatus.SENDING):
        raise InputError(
            f"edition {edition_id} is {info.status}, not unfinished; nothing to resume"
        )
    digest = cfg.digest(info.digest)
    backend = check_preconditions(cfg, digest)
    out = DigestOutcome(digest=digest.name, period=info.period, status=RunStatus.RESUMED)
    return send_existing(store, cfg, out, edition_id, now, backend, on_batch)


def _failed(digest: DigestConfig, now: datetime, err: Exception) -> DigestOutcome:
    period = "?"
    try:
        period = schedule.period_key(schedule.period_start(digest, now))
    except Exception:  # noqa: BLE001 - the report must not fail on top of the failure
        pass
    return DigestOutcome(
        digest=digest.name, period=period, status=RunStatus.FAILED, message=str(err)
    )


def run(
    store: Store,
    cfg: Config,
    now: datetime,
    *,
    digests: list[str] | None = None,
    dry_run: bool = False,
    do_ingest: bool = True,
    backend: Backend | None = None,
    wait: float = 0.0,
    skip_check: str = "",
) -> RunReport:
    """The cron entry point.

    When another run holds the lock (after ``wait`` seconds), returns at once
    with ``locked_by`` set. A failing digest is reported and the others still
    run. The run ends with a summary log line and, on failure, an alert email.
    """
    started = time.monotonic()
    report = RunReport(now=now, dry_run=dry_run)
    chosen = [cfg.digest(n) for n in digests] if digests else cfg.digests
    lock = None
    if not dry_run:
        lock = store.run_lock(RUN_LOCK, worker_id(), wait=wait)
        if lock is None:
            held = store.lock_holder(RUN_LOCK)
            report.locked_by = (
                f"{held.holder} since {held.acquired_at.isoformat(timespec='seconds')}"
                if held and not held.stale
                else "a run that is just starting or ending"
            )
            return _finish(store, cfg, report, started)
    try:
        if do_ingest and cfg.sources and not dry_run:
            report.ingest = ingest(store, cfg, cfg.sources)
        for digest in chosen:
            if lock is not None:
                lock.check()
            try:
                period = schedule.current_period(digest, now, digest_zones(store, digest))
                report.digests += resume_unfinished(
                    store, cfg, digest, now, current=period.key, backend=backend, dry_run=dry_run
                )
                report.digests.append(
                    run_digest(
                        store,
                        cfg,
                        digest,
                        now,
                        backend=backend,
                        dry_run=dry_run,
                        period=period,
                        skip_check=skip_check,
                    )
                )
            except NewsletterError as err:
                logger.error("%s: %s", digest.name, cfg.secrets.redact(str(err)))
                report.digests.append(_failed(digest, now, err))
            except Exception as err:  # a bug in one digest must not stop the others
                logger.exception("%s: unexpected error", digest.name)
                report.digests.append(_failed(digest, now, err))
    except NewsletterError as err:
        report.error = cfg.secrets.redact(str(err))
        logger.error("run stopped: %s", report.error)
    finally:
        if lock is not None:
            lock.release()
    return _finish(store, cfg, report, started)


def count_idle(store: Store, cfg: Config, report: RunReport) -> dict[str, str]:
    """Count, per digest, the schedule periods in a row that ended without an edition
    (no subscribers, too few articles, every source failing, a missed period), each
    period once however many runs see it; mark a digest stalled at its
    ``alert_idle_periods``. Returns the last period counted, per digest."""
    counted: dict[str, str] = {}
    for d in _last_per_digest(report).values():
        before = store.digest_run(d.digest)
        idle, idle_period = (before.idle_periods, before.idle_period) if before else (0, "")
        if d.status in RUN_HAS_EDITION:
            idle, idle_period = 0, ""
        elif d.period not in ("", "?", idle_period):  # "?": failed before its period was known
            # earlier periods the machine was down for never got an edition either
            idle, idle_period = idle + 1 + len(d.missed_periods), d.period
            d.idle_new = True
        d.idle_periods = idle
        counted[d.digest] = idle_period
        limit = _alert_idle_periods(cfg, d.digest)
        d.stalled = bool(limit) and idle >= limit and d.status not in RUN_HAS_EDITION
        if d.stalled:
            logger.error(
                "%s: no edition for %d schedule periods in a row (now: %s); "
                "alert_idle_periods = %d",
                d.digest,
                idle,
                d.status,
                limit,
            )
    return counted


def _alert_idle_periods(cfg: Config, name: str) -> int:
    for digest in cfg.digests:
        if digest.name == name:
            return digest.alert_idle_periods
    return 0


def _last_per_digest(report: RunReport) -> dict[str, DigestOutcome]:
    last: dict[str, DigestOutcome] = {}
    for d in report.digests:
        last[d.digest] = d  # local time: the current period's outcome comes last
    return last


def record_outcomes(store: Store, report: RunReport, counted: dict[str, str]) -> None:
    """Keep each digest's outcome as its last run (metrics, `editions`, idle alerts)."""
    code = report.exit_code
    for name, d in _last_per_digest(report).items():
        store.record_digest_run(
            DigestRun(
                digest=name,
                ran_at=datetime.now(UTC),
                exit_code=code,
                status=d.status,
                period=d.period,
                edition_id=d.edition_id,
                message=d.message,
                idle_periods=d.idle_periods,
                idle_period=counted.get(name, ""),
            )
        )


def _finish(store: Store, cfg: Config, report: RunReport, started: float) -> RunReport:
    report.seconds = time.monotonic() - started
    if not report.dry_run and not report.locked_by:
        try:
            record_outcomes(store, report, count_idle(store, cfg, report))
        except NewsletterError as err:  # monitoring must not turn a good run into a failure
            logger.error("cannot record the run's outcome: %s", err)
    if report.locked_by:
        logger.warning("another run holds the lock (%s); this one exits", report.locked_by)
    # a stall is emailed once per period it lasts, not by every 5-minute run
    known_stall = [d for d in report.digests if d.stalled and not d.idle_new]
    alert_if_failed(cfg, report, [d for d in report.digests if d not in known_stall])
    summary_logger.info(
        report.summary_text(), extra={"event": "run.summary", "summary": report.summary()}
    )
    return report


def alert_if_failed(
    cfg: Config, report: RunReport, digests: list[DigestOutcome] | None = None
) -> None:
    """The failure alert (also for a partial run, with ``alerts.on_partial``).

    ``digests``: the outcomes that decide it (default: all of the report's)."""
    digests = report.digests if digests is None else digests
    code = report.exit_code_of(digests)
    stale = any(d.status == RunStatus.STALE for d in digests)  # always told, partial or not
    if not report.dry_run and (code == 1 or (code == 3 and (cfg.alerts.on_partial or stale))):
        report.alert = alerts.send_alert(cfg, _alert_subject(cfg, report), _alert_body(report))


def _alert_subject(cfg: Config, report: RunReport) -> str:
    what = "failed" if report.exit_code == 1 else "partly failed"
    return f"[{cfg.site.name}] newsletter run {what} on {alerts.hostname()}"


def _alert_body(report: RunReport) -> str:
    lines = [report.summary_text(), ""]
    if report.error:
        lines.append(f"run: {report.error}")
    if report.ingest:
        lines += [f"source {s.source}: {s.error}" for s in report.ingest.failed]
    for d in report.digests:
        lines.append(
            f"{d.digest} ({d.period}): {d.status}" + (f": {d.message}" if d.message else "")
        )
        if d.stalled:
            lines.append(
                f"{d.digest}: no edition for {d.idle_periods} schedule periods in a row "
                "(alert_idle_periods)"
            )
    lines += ["", f"Run time (as given): {report.now.isoformat()}", "See `newsletter status`."]
    return "\n".join(lines)
