"""rates: the header as the next edition would show it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import click

from newsletter.cli.common import App, emit_json, json_option, pass_app
from newsletter.config import CONVENTIONS
from newsletter.rates.format import rate_rows
from newsletter.rates.service import build_header
from newsletter.render.text import rates_text


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option(
        "--date",
        "day",
        type=click.DateTime(["%Y-%m-%d"]),
        help="The day (default: today in the first digest's time zone).",
    )
    @click.option(
        "--digest",
        "digest_name",
        metavar="NAME",
        help="Print in this digest's convention (default: the first digest).",
    )
    @click.option(
        "--convention",
        type=click.Choice(CONVENTIONS),
        help="Print as the site's ticker (KZT/USD 0.001966) or as banks do "
        "(1 USD = 508.6 KZT); default: the digest's rates_convention.",
    )
    @json_option
    @pass_app
    def rates(
        app: App,
        day: datetime | None,
        digest_name: str | None,
        convention: str | None,
        as_json: bool,
    ) -> None:
        """Print the rates header exactly as the next edition would show it.

        Fetches from the configured providers and stores what they answer, as
        the edition does; when they all fail, shows the last stored rates.
        Exit codes: 0 every pair has a current figure, 3 some pair has none or only
        an old one ("as of"), 1 no pair has any.
        """
        digest = app.config.digest(digest_name)
        cfg = app.config.rates
        tz = ZoneInfo(digest.timezone)
        when: date = day.date() if day else datetime.now(UTC).astimezone(tz).date()
        header = build_header(app.store, cfg, when)
        convention = convention or digest.rates_convention
        if as_json:
            rows = rate_rows(header, convention, digest.language or app.config.site.language)
            emit_json(
                [
                    {**line.as_dict(), **dataclasses.asdict(row)}
                    for line, row in zip(header.items, rows, strict=True)
                ]
            )
        elif not header:
            click.echo("no rates available; the next edition would go out without a rates header")
        else:
            # the same block as the plaintext edition (templates/digest.txt.j2)
            click.echo(rates_text(header, convention, digest.language or app.config.site.language))
        # current: not older than stale_after_days (a Friday figure on a Monday is
        # printed "as of" but still current)
        stale_before = when - timedelta(days=cfg.stale_after_days)
        shown = {line.pair for line in header.items if line.rate_date >= stale_before}
        missing = [c for c in cfg.currencies if f"{c}/{cfg.quote}" not in shown]
        if missing:
            click.echo(
                f"rates: no current figure for {', '.join(missing)} "
                f"(of {len(cfg.currencies)} pairs)",
                err=True,
            )
            raise SystemExit(1 if not header else 3)
