"""send: compile and send the current edition now, or resume or resolve one."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import click

from newsletter import schedule
from newsletter.cli.common import App, emit_json, json_option, parse_when, pass_app
from newsletter.cli.run import print_run, skip_reason
from newsletter.delivery.recovery import resolve
from newsletter.delivery.send import BatchProgress
from newsletter.editions.freeze import digest_zones
from newsletter.errors import InputError
from newsletter.jobs.outcomes import RunReport
from newsletter.jobs.run import alert_if_failed, resume_edition, resume_unfinished, run_digest


class BatchOutput:
    """A progress bar on a terminal; one line per batch on stderr otherwise."""

    def __init__(self, *, tty: bool | None = None, console: Any = None):
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.console = console
        self.progress: Any = None
        self.task: Any = None

    def __call__(self, p: BatchProgress) -> None:
        if self.tty:
            if self.progress is None:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TimeRemainingColumn,
                )

                self.progress = Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=self.console or Console(stderr=True),
                )
                self.progress.start()
                self.task = self.progress.add_task("sending", total=p.total)
            self.progress.update(self.task, completed=p.done)
            return
        rate = p.done / p.seconds if p.seconds > 0 else 0.0
        held = f", {p.unresolved} unresolved" if p.unresolved else ""
        click.echo(
            f"batch {p.batch_id} {p.variant}: {p.accepted} accepted, {p.failed} failed{held} "
            f"({p.done}/{p.total}, {rate:,.0f}/s)",
            err=True,
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--digest", help="Digest name (default: the first configured).")
    @click.option("--at", help="Send as if it were this time (ISO 8601).")
    @click.option(
        "--dry-run", is_flag=True, help="Show what would happen; send and record nothing."
    )
    @click.option(
        "--resolve",
        "resolve_",
        nargs=2,
        metavar="BATCH DECISION",
        help="Decide an unresolved batch: DECISION is resend, sent or failed.",
    )
    @click.option(
        "--test-to",
        "test_to",
        multiple=True,
        metavar="EMAIL",
        help="Send the preview to this editor, [TEST] in the subject; records nothing. Repeatable.",
    )
    @click.option(
        "--resume",
        "resume_id",
        type=int,
        metavar="EDITION",
        help="Send this unfinished edition, however old (one older than "
        "resume_max_age_hours is not resumed by itself).",
    )
    @click.option(
        "--skip-check",
        "skip_check",
        metavar="REASON",
        help="Send even if the preflight (`newsletter check`) finds errors; the reason is "
        "recorded on the edition.",
    )
    @click.option(
        "--workers",
        type=click.IntRange(1, 64),
        help="Sending processes on this machine, sharing the edition "
        "(default: delivery.processes, 1).",
    )
    @json_option
    @pass_app
    def send(
        app: App,
        digest: str | None,
        at: str | None,
        dry_run: bool,
        resolve_: tuple[str, str] | None,
        test_to: tuple[str, ...],
        resume_id: int | None,
        skip_check: str | None,
        workers: int | None,
        as_json: bool,
    ) -> None:
        """Compile and send the current edition of a digest now (or resume it).

        A batch whose outcome is unknown is held; decide it with --resolve.
        Exit codes: 0 ok, 1 failure, 2 usage, 3 partial or held.
        """
        if test_to:
            from newsletter.preview.testsend import send_test

            if dry_run or resolve_:
                raise InputError("--test-to cannot be combined with --dry-run or --resolve")
            dcfg = app.config.digest(digest)
            r = send_test(app.store, app.config, dcfg, parse_when(at), list(test_to))
            if as_json:
                emit_json(r.as_dict())
            else:
                for w in r.warnings:
                    click.echo(f"warning: {w}", err=True)
                click.echo(
                    f"{r.subject!r} sent via {r.backend} to: {', '.join(r.sent) or 'nobody'}"
                )
                for email, reason in r.rejected.items():
                    click.echo(f"refused: {email}: {reason}", err=True)
            if r.rejected:
                raise SystemExit(1)
            return
        if resolve_:
            done = resolve(app.store, *resolve_)
            if as_json:
                emit_json(dataclasses.asdict(done))
            elif done.decision == "resend":
                skipped = (
                    f"; {done.skipped} skipped: SendGrid's events prove it accepted the batch"
                    if done.skipped
                    else ""
                )
                click.echo(
                    f"batch {done.batch_id}: {done.deliveries} deliveries queued again{skipped}"
                    + (
                        f"; `newsletter send --digest {done.digest} --at {done.period}` sends them"
                        if done.deliveries
                        else f"; edition {done.edition_id} is {done.edition_status}"
                    )
                )
            else:
                click.echo(
                    f"batch {done.batch_id}: {done.deliveries} deliveries marked {done.decision}"
                    f"; edition {done.edition_id} is {done.edition_status}"
                )
            return
        if workers is not None:
            app.config.delivery.processes = workers
        now = parse_when(at)
        reason = skip_reason(skip_check)
        output = BatchOutput()
        outcomes = []
        try:
            if resume_id is not None:
                if dry_run or digest:
                    raise InputError(
                        "--resume EDITION cannot be combined with --dry-run or --digest"
                    )
                outcomes.append(
                    resume_edition(
                        app.store, app.config, resume_id, now, on_batch=None if as_json else output
                    )
                )
            else:
                dcfg = app.config.digest(digest)
                period = schedule.current_period(dcfg, now, digest_zones(app.store, dcfg))
                outcomes += resume_unfinished(
                    app.store,
                    app.config,
                    dcfg,
                    now,
                    current=period.key,
                    dry_run=dry_run,
                    on_batch=None if as_json else output,
                )
                outcomes.append(
                    run_digest(
                        app.store,
                        app.config,
                        dcfg,
                        now,
                        dry_run=dry_run,
                        force=True,
                        period=period,
                        on_batch=None if as_json else output,
                        skip_check=reason,
                    )
                )
        finally:
            output.close()
        report = RunReport(now=now, digests=outcomes, dry_run=dry_run)
        alert_if_failed(app.config, report)
        if as_json:
            emit_json(report.as_dict())
        else:
            print_run(report)
            s = outcomes[-1].send
            if s is not None:
                left = ", ".join(f"{n} {k}" for k, n in sorted(s.left_out.items()) if n)
                if left or s.duplicates:
                    dup = f"{s.duplicates} duplicate addresses" if s.duplicates else ""
                    click.echo(f"        left out: {', '.join(x for x in (left, dup) if x)}")
                if s.left:
                    click.echo(
                        f"        {s.left} not sent: they left (unsubscribed, bounced, "
                        "suppressed) before their turn"
                    )
                if s.unresolved:
                    click.echo(
                        f"        {s.unresolved} deliveries held with an unknown outcome: "
                        "`newsletter status` lists the batches"
                    )
        if report.exit_code:
            raise SystemExit(report.exit_code)
