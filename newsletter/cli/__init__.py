"""The command line: a thin layer over the library.

Each command parses its options, calls one library function and formats the
result. Library errors (``NewsletterError``) become one clear line on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import click

from newsletter import __version__
from newsletter.cli import (
    articles,
    editions,
    note,
    preview,
    rates,
    run,
    send,
    serve,
    settings,
    status,
    subscribers,
)
from newsletter.cli.common import (
    CONTEXT_SETTINGS,
    HELP_ASKED,
    App,
    NewsletterGroup,
    setup_logging,
)


@click.group(cls=NewsletterGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--config",
    "config_path",
    envvar="NEWSLETTER_CONFIG",
    type=click.Path(dir_okay=False),
    help="Config file (default: ./newsletter.toml). Env: NEWSLETTER_CONFIG.",
)
@click.option(
    "--db",
    "database",
    envvar="NEWSLETTER_DATABASE_URL",
    help="Database URL (sqlite:///news.db, postgresql://host/db). Env: NEWSLETTER_DATABASE_URL.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text or as JSON objects.",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(__version__, "-V", "--version")
@click.pass_context
def cli(
    ctx: click.Context, config_path: str | None, database: str | None, log_format: str, verbose: int
) -> None:
    """Compile a news site's digest by tag and deliver it by email.

    Quick start: `newsletter init`, edit newsletter.toml, then `newsletter run`.
    """
    setup_logging(log_format, verbose)
    ctx.obj = App(config_path=config_path, database=database, log_format=log_format)
    ctx.call_on_close(ctx.obj.close)
    # every command needs a config file except `init` and help
    if ctx.invoked_subcommand != "init" and not ctx.meta.get(HELP_ASKED):
        ctx.obj.require_config()


for module in (
    run,
    articles,
    rates,
    note,
    subscribers,
    preview,
    send,
    status,
    editions,
    serve,
    settings,
):
    module.register(cli)


def main() -> None:
    cli(prog_name="newsletter")


if __name__ == "__main__":  # pragma: no cover
    main()
