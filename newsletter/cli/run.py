"""init and run: getting started, and the cron entry point."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter import jobs
from newsletter.cli.common import App, emit_json, json_option, parse_when, pass_app
from newsletter.config import DEFAULT_CONFIG_NAME
from newsletter.errors import InputError, LockedError

STARTER = Path(__file__).resolve().parent.parent / "samples" / "starter.toml"


def print_run(report: jobs.RunReport) -> None:
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
        elif d.message:
            click.echo(f"        {d.message}")
        if d.outbox:
            click.echo(f"        outbox:  {d.outbox}")
        if d.preview:
            click.echo(f"        preview: {d.preview}")


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option(
        "--path", default=DEFAULT_CONFIG_NAME, show_default=True, help="Where to write it."
    )
    @click.option("--force", is_flag=True, help="Overwrite an existing file.")
    def init(path: str, force: bool) -> None:
        """Write a commented starter config."""
        target = Path(path)
        if target.exists() and not force:
            raise InputError("already exists; use --force to overwrite", where=str(target))
        target.write_text(STARTER.read_text(encoding="utf-8"), encoding="utf-8")
        click.echo(f"wrote {target}; edit it, then run `newsletter run --dry-run`")

    @cli.command("run")
    @click.option(
        "--at", "at", help="Run as if it were this time (ISO 8601), for catch-up and tests."
    )
    @click.option("--digest", "digests", multiple=True, help="Only this digest (repeatable).")
    @click.option(
        "--dry-run", is_flag=True, help="Show what would happen; send and record nothing."
    )
    @click.option("--no-ingest", is_flag=True, help="Skip fetching the sources.")
    @json_option
    @pass_app
    def run_cmd(
        app: App,
        at: str | None,
        digests: tuple[str, ...],
        dry_run: bool,
        no_ingest: bool,
        as_json: bool,
    ) -> None:
        """The scheduled job: ingest, rates, compile and send what is due.

        Idempotent per schedule period: a second run in the same period sends nothing.
        Exit codes: 0 ok or nothing due, 1 failure, 2 usage, 3 partial.
        """
        try:
            report = jobs.run(
                app.store,
                app.config,
                parse_when(at),
                digests=list(digests) or None,
                dry_run=dry_run,
                do_ingest=not no_ingest,
            )
        except LockedError as err:
            click.echo(str(err))
            return
        if as_json:
            emit_json(report.as_dict())
        else:
            print_run(report)
        if report.exit_code:
            raise SystemExit(report.exit_code)
