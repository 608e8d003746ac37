"""send: compile and send the current edition now, or resume or resolve one."""

from __future__ import annotations

import click

from newsletter import jobs
from newsletter.cli.common import App, emit_json, json_option, parse_when, pass_app
from newsletter.cli.run import print_run
from newsletter.errors import InputError


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--digest", help="Digest name (default: the first configured).")
    @click.option("--at", help="Send as if it were this time (ISO 8601).")
    @click.option(
        "--dry-run", is_flag=True, help="Show what would happen; send and record nothing."
    )
    @click.option(
        "--resolve",
        "resolve",
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
    @json_option
    @pass_app
    def send(
        app: App,
        digest: str | None,
        at: str | None,
        dry_run: bool,
        resolve: tuple[str, str] | None,
        test_to: tuple[str, ...],
        as_json: bool,
    ) -> None:
        """Compile and send the current edition of a digest now (or resume it)."""
        if test_to:
            from newsletter.testsend import send_test

            if dry_run or resolve:
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
        if resolve:
            batch, decision = resolve
            if decision not in ("resend", "sent", "failed"):
                raise InputError(f"decision must be resend, sent or failed, got {decision!r}")
            n = app.store.resolve_batch(batch, decision)
            click.echo(f"batch {batch}: {n} deliveries marked {decision}")
            return
        dcfg = app.config.digest(digest)
        outcome = jobs.run_digest(
            app.store, app.config, dcfg, parse_when(at), dry_run=dry_run, force=True
        )
        report = jobs.RunReport(now=parse_when(at), digests=[outcome])
        if as_json:
            emit_json(report.as_dict())
        else:
            print_run(report)
        if report.exit_code:
            raise SystemExit(report.exit_code)
