"""init and run: getting started, and the cron entry point."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import click

from newsletter.cli.common import App, emit_json, json_option, parse_when, pass_app
from newsletter.config import DEFAULT_CONFIG_NAME
from newsletter.errors import InputError
from newsletter.jobs.outcomes import RunReport
from newsletter.jobs.overview import ScheduleReport, schedule_overview
from newsletter.jobs.run import run as run_job
from newsletter.states import RunStatus

STARTER = Path(__file__).resolve().parent.parent / "samples" / "starter.toml"


def _safe(url: str) -> str:
    """A database URL fit to print: no password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return url.split("@", 1)[-1]


def print_run(report: RunReport) -> None:
    if report.locked_by:
        click.echo(report.summary_text())
        return
    if report.dry_run:
        click.echo("dry run: nothing is sent or recorded; sources are not fetched")
    if report.ingest:
        for s in report.ingest.sources:
            if s.error:
                click.echo(f"ingest  {s.source}: FAILED: {s.error}")
            elif s.not_modified:
                click.echo(f"ingest  {s.source}: not modified")
            else:
                click.echo(
                    f"ingest  {s.source}: {s.fetched} items, {s.stored.inserted} new, "
                    f"{s.stored.updated} updated"
                    + (f", {len(s.problems)} skipped" if s.problems else "")
                )
    for d in report.digests:
        click.echo(f"digest  {d.digest} ({d.period}): {d.status}")
        if d.edition_id is not None and d.send is not None:
            click.echo(
                f"        edition {d.edition_id}: {d.articles} articles, {d.variants} variants, "
                f"{d.recipients} recipients; {d.send.accepted} accepted now, {d.send.failed} failed"
                + (f", {d.send.unresolved} unresolved" if d.send.unresolved else "")
            )
        elif d.check_errors:
            click.echo(
                f"        preflight: {len(d.check_errors)} error(s); nothing was sent or stored"
            )
            for e in d.check_errors:
                click.echo(f"        {e}")
            click.echo(
                "        fix them (`newsletter check`), or send anyway with --skip-check REASON"
            )
        elif d.message:
            click.echo(f"        {d.message}")
        if d.late_by and d.send is not None and d.send.accepted:
            click.echo(f"        sent {d.late_by} late (catch-up)")
        elif d.late_by and d.status == RunStatus.DRY_RUN:
            click.echo(f"        would be sent {d.late_by} late (catch-up)")
        if d.missed_periods:
            shown = ", ".join(d.missed_periods[:3]) + (" …" if len(d.missed_periods) > 3 else "")
            click.echo(f"        {len(d.missed_periods)} earlier period(s) never sent: {shown}")
        if d.waiting and d.send is not None:
            click.echo(f"        {d.waiting} wait for local time; next release {d.next_release}")
        if d.outbox:
            click.echo(f"        outbox:  {d.outbox}")
        if d.preview:
            click.echo(f"        preview: {d.preview}")
    if report.error:
        click.echo(f"run     FAILED: {report.error}")
    click.echo(report.summary_text())


def skip_reason(skip_check: str | None) -> str:
    if skip_check is None:
        return ""
    if not skip_check.strip():
        raise InputError("--skip-check needs a reason, e.g. --skip-check 'alt text fixed upstream'")
    return skip_check.strip()[:500]


def print_schedule(report: ScheduleReport) -> None:
    click.echo(f"now {report.now.isoformat(timespec='minutes')}")
    if report.lock:
        since = report.lock.acquired_at.isoformat(timespec="seconds")
        state = "left by a run that is gone" if report.lock.stale else "held"
        click.echo(f"run lock: {state}: {report.lock.holder} since {since}")
    for d in report.digests:
        local = ", local time" if d.local_time else ""
        click.echo(f"{d.digest}: {d.schedule!r} in {d.timezone}{local}")
        state = d.state if d.edition_id is None else f"{d.state} (edition {d.edition_id})"
        if d.edition_id is None:
            state = {
                "due": "due now",
                "late": "due, late (catch-up)",
                "missed": f"missed (older than catch_up_hours={d.catch_up_hours})",
            }.get(d.decision, d.decision)
        click.echo(f"  current period {d.period}: {state}")
        for i, t in enumerate(d.next_runs):
            label = "  next runs      " if i == 0 else "                 "
            utc = t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
            click.echo(f"{label}{t.strftime('%a %Y-%m-%d %H:%M %z')}  ({utc})")


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option(
        "--path",
        default=None,
        help=f"Where to write the config (default: --config, NEWSLETTER_CONFIG or "
        f"./{DEFAULT_CONFIG_NAME}).",
    )
    @click.option("--force", is_flag=True, help="Overwrite an existing config file.")
    @pass_app
    def init(app: App, path: str | None, force: bool) -> None:
        """Write a commented starter config, and create the database it names.

        An existing config is kept (--force overwrites it with the starter); then the
        database the config names (or --db) is created and migrated. This is the one
        command that creates a SQLite database; every other one refuses to start
        without it.
        """
        target = Path(path or app.config_path or DEFAULT_CONFIG_NAME)
        if target.exists() and not force:
            click.echo(f"{target}: exists, kept (--force overwrites it with the starter)")
        else:
            try:
                target.write_text(STARTER.read_text(encoding="utf-8"), encoding="utf-8")
            except OSError as err:
                raise InputError(f"cannot write: {err.strerror}", where=str(target)) from err
            click.echo(f"wrote {target}; edit it, then run `newsletter run --dry-run`")
        app.config_path = str(target)
        _store, new = app.create_store()
        url = app.config.database_url
        click.echo(f"{'created' if new else 'database ready:'} {_safe(url)}")

    @cli.command("run")
    @click.option(
        "--at", "at", help="Run as if it were this time (ISO 8601), for catch-up and tests."
    )
    @click.option("--digest", "digests", multiple=True, help="Only this digest (repeatable).")
    @click.option(
        "--dry-run", is_flag=True, help="Show what would happen; send and record nothing."
    )
    @click.option("--no-ingest", is_flag=True, help="Skip fetching the sources.")
    @click.option(
        "--wait",
        type=click.FloatRange(min=0),
        default=0,
        metavar="SECONDS",
        help="If another run holds the lock, wait this long for it (default: exit at once).",
    )
    @click.option(
        "--skip-check",
        "skip_check",
        metavar="REASON",
        help="Send a new edition even if the preflight (`newsletter check`) finds errors; "
        "the reason is recorded on the edition.",
    )
    @json_option
    @pass_app
    def run_cmd(
        app: App,
        at: str | None,
        digests: tuple[str, ...],
        dry_run: bool,
        no_ingest: bool,
        wait: float,
        skip_check: str | None,
        as_json: bool,
    ) -> None:
        """The scheduled job: ingest, rates, compile and send what is due.

        Idempotent per schedule period: a second run in the same period sends nothing.
        Exit codes: 0 ok or nothing due (or another run is busy), 1 failure, 2 usage,
        3 partial.
        """
        report = run_job(
            app.store,
            app.config,
            parse_when(at),
            digests=list(digests) or None,
            dry_run=dry_run,
            do_ingest=not no_ingest,
            wait=wait,
            skip_check=skip_reason(skip_check),
        )
        if as_json:
            emit_json(report.as_dict())
        elif app.log_format != "json":
            # with JSON logs the run.summary log line is the report: a log file that
            # collects stdout and stderr (the crontab's) stays JSON lines only
            print_run(report)
        if report.exit_code:
            raise SystemExit(report.exit_code)

    @cli.command("schedule")
    @click.option("--at", "at", help="List as if it were this time (ISO 8601).")
    @click.option("--digest", "digests", multiple=True, help="Only this digest (repeatable).")
    @click.option(
        "--count", type=click.IntRange(1, 100), default=5, show_default=True, help="Runs to list."
    )
    @json_option
    @pass_app
    def schedule_cmd(
        app: App, at: str | None, digests: tuple[str, ...], count: int, as_json: bool
    ) -> None:
        """List each digest's current period and its next runs."""
        report = schedule_overview(
            app.store, app.config, parse_when(at), count=count, digests=list(digests) or None
        )
        if as_json:
            emit_json(report.as_dict())
        else:
            print_schedule(report)
