"""status: what happened to an edition's deliveries."""

from __future__ import annotations

import click

from newsletter.cli.common import App, emit_json, json_option, pass_app
from newsletter.status import edition_status


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("edition", type=int, required=False)
    @json_option
    @pass_app
    def status(app: App, edition: int | None, as_json: bool) -> None:
        """Delivery status of an edition (default: the latest), per variant."""
        data = edition_status(app.store, edition)
        if as_json:
            emit_json(data)
            return
        click.echo(f"edition {data['id']}  {data['digest']}  {data['period']}  {data['status']}")
        click.echo(f"subject: {data['subject']}")
        for name, counts in [("all", data["counts"])] + sorted(data["variants"].items()):
            shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
            click.echo(f"  {name}: {shown or 'no deliveries'}")
        for b in data["unresolved_batches"]:
            click.echo(
                f"  UNRESOLVED batch {b['id']} ({b['size']} recipients): {b['error']}; "
                f"decide with `newsletter send --resolve {b['id']} resend|sent|failed`"
            )
