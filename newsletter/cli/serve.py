"""serve: the webhook receiver, the signup form and the unsubscribe pages."""

from __future__ import annotations

import click

from newsletter.cli.common import App, pass_app
from newsletter.store import open_store
from newsletter.tracking.app import serve as run_server


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--host", help="Address to bind (default: webhook.host, 127.0.0.1).")
    @click.option("--port", type=int, help="Port (default: webhook.port, 8025).")
    @click.option(
        "--workers",
        type=click.IntRange(1, 64),
        default=1,
        show_default=True,
        help="Processes answering on the one port (they share the rate limits "
        "through the database).",
    )
    @pass_app
    def serve(app: App, host: str | None, port: int | None, workers: int) -> None:
        """Receive SendGrid's signed event webhook; serve the signup and unsubscribe pages.

        POST /webhooks/sendgrid, GET and POST /subscribe (signup with double opt-in),
        /unsubscribe/<token>, /preferences/<token>, GET /healthz and /readyz.
        Put it behind your HTTPS reverse proxy at site.public_url.
        """
        # a long-running server keeps its database connections (SQLite too)
        store = open_store(app.config.database_url, create=False, pooled=True)
        run_server(
            app.config,
            store,
            host=host,
            port=port,
            workers=workers,
            announce=lambda url: click.echo(f"listening on {url} (Ctrl+C to stop)", err=True),
        )
