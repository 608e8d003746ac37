"""status and report: what happened to an edition's deliveries."""

from __future__ import annotations

import click

from newsletter.cli.common import App, emit_json, json_option, pass_app
from newsletter.tracking.report import write_report
from newsletter.tracking.status import COUNTS, edition_status

RATES = ("delivery", "open", "click", "click_to_open", "bounce", "complaint", "unsubscribe")


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("edition", type=int, required=False)
    @json_option
    @pass_app
    def status(app: App, edition: int | None, as_json: bool) -> None:
        """Delivery status of an edition (default: the latest): counts and rates, per variant."""
        data = edition_status(app.store, edition)
        if as_json:
            emit_json(data)
            return
        click.echo(f"edition {data['id']}  {data['digest']}  {data['period']}  {data['status']}")
        click.echo(f"subject: {data['subject']}")
        if data["events_reported"] or not data["backends"]:
            click.echo(f"recipients {data['recipients']}, sent {data['sent']}")
        else:
            # SMTP and the outbox say only that a message was accepted
            click.echo(
                f"recipients {data['recipients']}, accepted {data['sent']} "
                f"({', '.join(data['backends'])}: no delivery events; delivered, opened, "
                "clicked and bounced are not known)"
            )
        for name in COUNTS:
            click.echo(f"  {name:<13} {data['counts'][name]:>8}")
        mailed, held = data["counts"]["unsubscribed"], data["unsubscribes_held"]
        click.echo(
            f"unsubscribes {data['unsubscribes']} (mailed {mailed}, "
            f"before their turn {data['unsubscribes'] - mailed - held}"
            + (f", while held {held})" if held else ")")
        )
        click.echo(
            "rates: "
            + ", ".join(
                f"{r.replace('_', '-')} {percent(data['rates'][r])}"
                for r in RATES
                if data["events_reported"] or data["rates"][r] is not None
            )
        )
        if data["events_reported"] and not data["events"]:
            click.echo(
                "no provider events for this edition yet: delivered, opened and clicked come "
                "from SendGrid's event webhook (`newsletter serve`)"
            )
        for name, v in data["variants"].items():
            shown = ", ".join(f"{k} {n}" for k, n in v["counts"].items() if n)
            click.echo(f"variant {name} ({v['recipients']}): {shown or 'no deliveries'}")
            shown_rates = [
                r for r in RATES[:5] if data["events_reported"] or v["rates"][r] is not None
            ]
            if shown_rates:
                click.echo(
                    "  rates: "
                    + ", ".join(
                        f"{r.replace('_', '-')} {percent(v['rates'][r])}" for r in shown_rates
                    )
                )
        if data["unmatched_events"]:
            click.echo(f"events matching no delivery (all editions): {data['unmatched_events']}")
        for b in data["unresolved_batches"]:
            click.echo(
                f"  UNRESOLVED batch {b['id']} ({b['size']} recipients): {b['error']}; "
                f"decide with `newsletter send --resolve {b['id']} resend|sent|failed`"
            )

    @cli.command()
    @click.argument("edition", type=int)
    @click.option(
        "--out",
        type=click.Path(dir_okay=False, writable=True),
        default="report.html",
        show_default=True,
        help="Where to write the HTML page.",
    )
    @pass_app
    def report(app: App, edition: int, out: str) -> None:
        """Write one HTML page about an edition: funnel, events over time, links, bounces."""
        cfg = app.config
        folder = str(cfg.resolve(cfg.render.templates)) if cfg.render.templates else ""
        path = write_report(app.store, edition, out, folder)
        click.echo(f"wrote {path}")
