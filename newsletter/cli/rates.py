"""rates: the header as the next edition would show it."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import click

from newsletter.cli.common import App, emit_json, json_option, pass_app
from newsletter.rates.service import build_header, header_to_json
from newsletter.render.text import rates_sources, rates_table


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option(
        "--date",
        "day",
        type=click.DateTime(["%Y-%m-%d"]),
        help="The day (default: today in the first digest's time zone).",
    )
    @json_option
    @pass_app
    def rates(app: App, day: datetime | None, as_json: bool) -> None:
        """Print the rates header exactly as the next edition would show it.

        Fetches from the configured providers and stores what they answer, as
        the edition does; when they all fail, shows the last stored rates.
        Exit codes: 0 every pair has a current figure, 3 some pair has none or only
        an old one ("as of"), 1 no pair has any.
        """
        cfg = app.config.rates
        tz = ZoneInfo(app.config.digest().timezone)
        when: date = day.date() if day else datetime.now(UTC).astimezone(tz).date()
        header = build_header(app.store, cfg, when)
        if as_json:
            emit_json(header_to_json(header))
        elif not header:
            click.echo("no rates available; the next edition would go out without a rates header")
        else:
            # the same two parts as the plaintext edition (templates/digest.txt.j2)
            click.echo(rates_table(header))
            click.echo(rates_sources(header))
        shown = {line.pair for line in header.items if not line.as_of}
        missing = [c for c in cfg.currencies if f"{c}/{cfg.quote}" not in shown]
        if missing:
            click.echo(
                f"rates: no current figure for {', '.join(missing)} "
                f"(of {len(cfg.currencies)} pairs)",
                err=True,
            )
            raise SystemExit(1 if not header else 3)
