"""subscribers: import, export, add, remove, list, show, forget."""

from __future__ import annotations

import json
import sys

import click

from newsletter.audience.privacy import forget, person_record
from newsletter.audience.subscribers import (
    STATUSES,
    add_subscriber,
    export_csv,
    import_csv,
    remove_subscriber,
)
from newsletter.cli.common import App, json_option, open_private, pass_app
from newsletter.states import SubscriberStatus

#: rejected rows printed before "… and N more"
SHOWN_ERRORS = 50


def register(cli: click.Group) -> None:
    @cli.group()
    def subscribers() -> None:
        """Manage subscribers (CSV format: subscribers/README.md)."""

    @subscribers.command("import")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option(
        "--resubscribe",
        is_flag=True,
        help="Reactivate suppressed/unsubscribed addresses the file lists as active.",
    )
    @click.option(
        "--check-deliverability",
        is_flag=True,
        help="Also look up each address's domain in DNS (slow; off by default).",
    )
    @json_option
    @pass_app
    def import_(
        app: App, file: str, resubscribe: bool, check_deliverability: bool, as_json: bool
    ) -> None:
        """Import or update subscribers from a CSV file. Bad rows are reported and skipped.

        Re-importing a file updates rows and never duplicates them, so an
        interrupted import is finished by running it again. Exit code 3 when
        some rows were rejected, 1 when all were.
        """
        report = import_csv(
            app.store,
            file,
            resubscribe=resubscribe,
            check_deliverability=check_deliverability,
            secret=app.config.secrets.secret_key,
        )
        if as_json:
            click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
        else:
            click.echo(
                f"{file}: {report.inserted} added, {report.updated} updated, "
                f"{report.unchanged} unchanged, {report.rejected} rejected"
                + (f" ({report.forgotten} erased on request)" if report.forgotten else "")
            )
            for e in report.errors[:SHOWN_ERRORS]:
                click.echo(f"  {file}: {e}", err=True)
            if report.rejected > SHOWN_ERRORS:
                click.echo(f"  … and {report.rejected - SHOWN_ERRORS} more", err=True)
        if report.rejected:
            raise SystemExit(3 if report.inserted + report.updated + report.unchanged else 1)

    @subscribers.command("export")
    @click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
    @click.option("--tag", help="Only subscribers with this tag slug.")
    @click.option(
        "--out",
        type=click.Path(dir_okay=False),
        help="Write to this file (created readable by you only) instead of stdout.",
    )
    @pass_app
    def export(app: App, status: str | None, tag: str | None, out: str | None) -> None:
        """Write subscribers as CSV (the import format) to stdout or --out FILE."""
        rows = app.store.iter_subscribers(status=[status] if status else None, tag=tag)
        if not out:
            export_csv(rows, sys.stdout)
            return
        with open_private(out, newline="") as fh:  # addresses and names
            export_csv(rows, fh)

    @subscribers.command("add")
    @click.argument("email")
    @click.option("--name", default="")
    @click.option("--tags", default="", help="Comma-separated tag slugs (none: the defaults).")
    @click.option("--timezone", default="", help="IANA time zone, e.g. Asia/Almaty.")
    @click.option("--resubscribe", is_flag=True, help="Reactivate a suppressed address.")
    @pass_app
    def add(app: App, email: str, name: str, tags: str, timezone: str, resubscribe: bool) -> None:
        """Add (or update) one subscriber."""
        sub, what = add_subscriber(
            app.store,
            email,
            name=name,
            tags=tags,
            timezone=timezone,
            resubscribe=resubscribe,
            secret=app.config.secrets.secret_key,
        )
        note = (
            ""
            if sub.status == SubscriberStatus.ACTIVE
            else f" (still {sub.status}; --resubscribe to change)"
        )
        click.echo(f"{sub.email}: {what}{note}")

    @subscribers.command("remove")
    @click.argument("email")
    @pass_app
    def remove(app: App, email: str) -> None:
        """Remove a subscriber (kept as unsubscribed when they have delivery history)."""
        click.echo(f"{remove_subscriber(app.store, email)}: removed")

    @subscribers.command("list")
    @click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
    @click.option("--tag", help="Only subscribers with this tag slug.")
    @json_option
    @pass_app
    def list_(app: App, status: str | None, tag: str | None, as_json: bool) -> None:
        """List subscribers."""
        subs = app.store.iter_subscribers(status=[status] if status else None, tag=tag)
        if as_json:
            # streamed item by item: a million subscribers never sit in memory at once
            click.echo("[", nl=False)
            for i, s in enumerate(subs):
                click.echo(("," if i else "") + "\n  ", nl=False)
                click.echo(json.dumps(s.__dict__, ensure_ascii=False), nl=False)
            click.echo("\n]")
            return
        n = 0
        for s in subs:
            n += 1
            click.echo(f"{s.email:<40} {s.status:<13} {';'.join(s.tags) or '(default)'}")
        click.echo(f"{n} subscribers")

    @subscribers.command("show")
    @click.argument("email")
    @json_option
    @pass_app
    def show(app: App, email: str, as_json: bool) -> None:
        """Everything stored about one person: subscriber, subscriptions with their
        consent, deliveries and provider events (an access request)."""
        record = person_record(app.store, email)
        if as_json:
            click.echo(json.dumps(record.as_dict(), indent=2, ensure_ascii=False, default=str))
            return
        sub = record.subscriber
        click.echo(
            f"{sub['email']}  {sub['status']}"
            + (f" ({sub['status_reason']})" if sub["status_reason"] else "")
        )
        for key in ("name", "timezone", "created_at", "updated_at", "soft_bounces"):
            click.echo(f"  {key}: {sub[key]}")
        click.echo(f"  tags: {', '.join(record.tags) or '(none)'}")
        click.echo(f"subscriptions ({len(record.subscriptions)}):")
        for s in record.subscriptions:
            digest = "every digest" if s["digest"] == "*" else s["digest"]
            topics = "subscriber tags" if s["topics"] is None else (", ".join(s["topics"]) or "all")
            click.echo(
                f"  {digest}: {s['status']}; topics: {topics}; consent: {s['consent_source']} "
                f"at {s['consent_at']}"
                + (f" from {s['consent_ip']}" if s["consent_ip"] else "")
                + (f", text {s['consent_text']}" if s["consent_text"] else "")
                + (f"; confirmed {s['confirmed_at']}" if s["confirmed_at"] else "")
                + (f"; left {s['unsubscribed_at']}" if s["unsubscribed_at"] else "")
            )
        click.echo(f"deliveries ({len(record.deliveries)}):")
        for d in record.deliveries:
            click.echo(f"  {d['digest']} {d['period']}: {d['status']} (to {d['email']})")
        click.echo(f"events ({len(record.events)}):")
        for e in record.events:
            click.echo(f"  {e['occurred_at']} {e['provider']} {e['raw_type']} -> {e['type']}")

    @subscribers.command("forget")
    @click.argument("email")
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    @pass_app
    def forget_(app: App, email: str, yes: bool) -> None:
        """Erase one person's personal data (an erasure request); keep only a keyed
        hash so imports do not add the address again unknowingly."""
        if not yes:
            click.confirm(f"Erase everything stored about {email}?", abort=True)
        address = forget(app.store, app.config.secrets.secret_key, email)
        click.echo(f"{address}: erased")
