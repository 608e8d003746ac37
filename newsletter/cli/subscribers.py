"""subscribers: import, export, add, remove, list."""

from __future__ import annotations

import sys

import click

from newsletter.audience.subscribers import (
    STATUSES,
    export_csv,
    import_csv,
    normalize_email,
    parse_tags,
)
from newsletter.cli.common import App, emit_json, json_option, pass_app
from newsletter.errors import NotFoundError
from newsletter.models import Subscriber


def register(cli: click.Group) -> None:
    @cli.group()
    def subscribers() -> None:
        """Manage subscribers (CSV format: subscribers/README.md)."""

    @subscribers.command("import")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option(
        "--resubscribe",
        is_flag=True,
        help="Reactivate suppressed/unsubscribed addresses in the file.",
    )
    @json_option
    @pass_app
    def import_(app: App, file: str, resubscribe: bool, as_json: bool) -> None:
        """Import or update subscribers from a CSV file. Bad rows are reported and skipped."""
        report = import_csv(app.store, file, resubscribe=resubscribe)
        if as_json:
            emit_json(report.as_dict())
        else:
            click.echo(
                f"{file}: {report.inserted} added, {report.updated} updated, "
                f"{report.unchanged} unchanged, {len(report.errors)} rejected"
            )
            for e in report.errors[:50]:
                click.echo(f"  {file}: {e}", err=True)
            if len(report.errors) > 50:
                click.echo(f"  … and {len(report.errors) - 50} more", err=True)
        if report.errors:
            raise SystemExit(3 if report.inserted + report.updated + report.unchanged else 1)

    @subscribers.command("export")
    @click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
    @pass_app
    def export(app: App, status: str | None) -> None:
        """Write all subscribers as CSV to stdout."""
        export_csv(app.store.iter_subscribers(status=[status] if status else None), sys.stdout)

    @subscribers.command("add")
    @click.argument("email")
    @click.option("--name", default="")
    @click.option("--tags", default="", help="Comma-separated tag slugs.")
    @click.option("--timezone", default="")
    @pass_app
    def add(app: App, email: str, name: str, tags: str, timezone: str) -> None:
        """Add (or update) one subscriber."""
        sub = Subscriber(
            email=normalize_email(email), name=name, tags=parse_tags(tags), timezone=timezone
        )
        _, what = app.store.upsert_subscriber(sub)
        click.echo(f"{sub.email}: {what}")

    @subscribers.command("remove")
    @click.argument("email")
    @pass_app
    def remove(app: App, email: str) -> None:
        """Remove a subscriber (kept as unsubscribed when they have delivery history)."""
        address = normalize_email(email)
        if not app.store.remove_subscriber(address):
            raise NotFoundError("no such subscriber", where=address)
        click.echo(f"{address}: removed")

    @subscribers.command("list")
    @click.option("--status", type=click.Choice(STATUSES))
    @click.option("--tag")
    @json_option
    @pass_app
    def list_(app: App, status: str | None, tag: str | None, as_json: bool) -> None:
        """List subscribers."""
        subs = app.store.iter_subscribers(status=[status] if status else None, tag=tag)
        if as_json:
            emit_json([s.__dict__ for s in subs])
            return
        n = 0
        for s in subs:
            n += 1
            click.echo(f"{s.email:<40} {s.status:<13} {';'.join(s.tags) or '(default)'}")
        click.echo(f"{n} subscribers")
