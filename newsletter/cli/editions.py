"""editions, cancel, pause, resume: editions as first-class objects."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from newsletter.cli.common import App, emit_json, json_option, pass_app
from newsletter.jobs.editions import control, list_editions, stale_after_resume


def register(cli: click.Group) -> None:
    @cli.command("editions")
    @click.option("--digest", help="Only this digest.")
    @click.option(
        "--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many."
    )
    @json_option
    @pass_app
    def editions_cmd(app: App, digest: str | None, limit: int, as_json: bool) -> None:
        """List editions, newest first: period, status, counts, created, sent, last run."""
        if digest:
            app.config.digest(digest)  # an unknown name is an error, not an empty list
        rows = list_editions(app.store, digest=digest, limit=limit)
        if as_json:
            emit_json(rows)
            return
        if not rows:
            click.echo("no editions yet")
            return
        click.echo(
            f"{'id':>5}  {'digest':<12} {'period':<22} {'status':<17} "
            f"{'recip.':>6} {'accept':>6} {'failed':>6} {'wait':>6}  created           sent"
        )
        for r in rows:
            sent = (r["sent_at"] or "-")[:16]
            click.echo(
                f"{r['id']:>5}  {r['digest']:<12} {r['period']:<22} {r['status']:<17} "
                f"{r['recipients']:>6} {r['accepted']:>6} {r['failed']:>6} {r['waiting']:>6}  "
                f"{r['created_at'][:16]}  {sent}"
            )
            if r["last_run"]:
                lr = r["last_run"]
                click.echo(
                    f"{'':>7}last run {lr['ran_at']}: {lr['status']}, exit {lr['exit_code']}"
                    + (f" ({lr['message']})" if lr["message"] else "")
                )

    @cli.command("cancel")
    @click.argument("edition", type=int)
    @pass_app
    def cancel_cmd(app: App, edition: int) -> None:
        """Cancel an edition: queued deliveries are cancelled, batches in flight settle,
        the edition ends cancelled (its period is not sent again)."""
        click.echo(control(app.store, edition, "cancel").describe())

    @cli.command("pause")
    @click.argument("edition", type=int)
    @pass_app
    def pause_cmd(app: App, edition: int) -> None:
        """Pause an edition's send: no new batch starts until `newsletter resume`."""
        click.echo(control(app.store, edition, "pause").describe())

    @cli.command("resume")
    @click.argument("edition", type=int)
    @pass_app
    def resume_cmd(app: App, edition: int) -> None:
        """Resume a paused edition; the next `newsletter run` (or `send`) sends the rest.

        Not `send --resume EDITION`, which sends an unfinished edition that the runs
        leave alone because it is older than its digest's resume age."""
        click.echo(control(app.store, edition, "resume").describe())
        note = stale_after_resume(app.store, app.config, edition, datetime.now(UTC))
        if note:
            click.echo(note)
