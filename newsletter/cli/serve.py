"""serve: the webhook receiver and the unsubscribe pages."""

from __future__ import annotations

import click

from newsletter.cli.common import App, pass_app
from newsletter.tracking.app import serve as run_server


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--host", help="Address to bind (default: webhook.host, 127.0.0.1).")
    @click.option("--port", type=int, help="Port (default: webhook.port, 8025).")
    @pass_app
    def serve(app: App, host: str | None, port: int | None) -> None:
        """Receive SendGrid's signed event webhook and serve the unsubscribe pages.

        POST /webhooks/sendgrid, GET and POST /unsubscribe/<token>, GET /healthz.
        Put it behind your HTTPS reverse proxy at site.public_url.
        """
        run_server(
            app.config,
            app.store,
            host=host,
            port=port,
            announce=lambda url: click.echo(f"listening on {url} (Ctrl+C to stop)", err=True),
        )
