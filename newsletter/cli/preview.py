"""preview: an edition as a subscriber would get it, before anything goes out."""

from __future__ import annotations

import click

from newsletter.audience.subscribers import normalize_email
from newsletter.cli.common import App, parse_when, pass_app
from newsletter.delivery.mime import recipient_values
from newsletter.delivery.send import unsubscribe_url
from newsletter.editions import preview as preview_edition
from newsletter.errors import InputError, NotFoundError
from newsletter.models import Recipient
from newsletter.render.personalize import personalize


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--digest", help="Digest name (default: the first configured).")
    @click.option("--as", "as_email", help="Render exactly what this subscriber would get.")
    @click.option("--tags", help="Render for this tag set (comma-separated slugs).")
    @click.option(
        "--format", "fmt", type=click.Choice(["html", "text"]), default="html", show_default=True
    )
    @click.option(
        "--out", type=click.Path(dir_okay=False), help="Write to this file instead of stdout."
    )
    @click.option("--at", help="Preview as if it were this time (ISO 8601).")
    @pass_app
    def preview(
        app: App,
        digest: str | None,
        as_email: str | None,
        tags: str | None,
        fmt: str,
        out: str | None,
        at: str | None,
    ) -> None:
        """Render an edition as a subscriber would get it. Sends and records nothing."""
        if as_email and tags is not None:
            raise InputError("give --as or --tags, not both")
        cfg, store = app.config, app.store
        dcfg = cfg.digest(digest)
        sub = None
        if as_email:
            sub = store.get_subscriber(normalize_email(as_email))
            if sub is None:
                raise NotFoundError("no such subscriber", where=as_email)
        tag_list = [t.strip() for t in (tags or "").split(",") if t.strip()]
        rendered, plan = preview_edition(
            store, cfg, dcfg, parse_when(at), subscriber=sub, tags=tag_list
        )
        unsub = (
            unsubscribe_url(cfg, sub.id, dcfg.name)  # type: ignore[arg-type]
            if sub and cfg.secrets.secret_key
            else f"{cfg.site.public_url.rstrip('/')}/unsubscribe/PREVIEW"
        )
        values = recipient_values(
            Recipient(0, sub.email if sub else "", sub.name if sub else "", unsub, "")
        )
        body = personalize(
            rendered.html if fmt == "html" else rendered.text, values, html_part=fmt == "html"
        )
        if out:
            with open(out, "w", encoding="utf-8") as fh:
                fh.write(body)
            click.echo(f"wrote {out} ({len(body.encode())} bytes): {rendered.subject}", err=True)
        else:
            click.echo(body, nl=False)
        for w in rendered.warnings:
            click.echo(f"warning: {w}", err=True)
