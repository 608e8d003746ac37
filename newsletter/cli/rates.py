"""rates: the header as the next edition would show it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import click

from newsletter.cli.common import App, emit_json, json_option, pass_app
from newsletter.rates.service import build_header, header_to_json
from newsletter.render.text import rates_table


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option(
        "--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="The day (default: today)."
    )
    @json_option
    @pass_app
    def rates(app: App, day: datetime | None, as_json: bool) -> None:
        """Print the rates header exactly as the next edition would show it."""
        when: date = day.date() if day else datetime.now(UTC).date()
        header = build_header(app.store, app.config.rates, when)
        if as_json:
            emit_json(header_to_json(header))
            return
        if not header:
            click.echo("no rates available; the next edition would go out without a rates header")
            return
        click.echo(rates_table(header))
        click.echo(f"sources: {', '.join(sorted({r.source for r in header.items}))}")
