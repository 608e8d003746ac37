"""preview, send and status: editions from the editor's chair."""

from __future__ import annotations

import click

from newsletter import jobs
from newsletter.audience.subscribers import normalize_email
from newsletter.cli.common import App, emit_json, json_option, parse_when, pass_app
from newsletter.cli.run import print_run
from newsletter.delivery.mime import recipient_values
from newsletter.delivery.send import unsubscribe_url
from newsletter.editions import preview as preview_edition
from newsletter.errors import InputError, NotFoundError
from newsletter.models import Recipient
from newsletter.render.personalize import personalize
from newsletter.status import edition_status


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

    @cli.command()
    @click.option("--digest", help="Digest name (default: the first configured).")
    @click.option("--at", help="Send as if it were this time (ISO 8601).")
    @click.option(
        "--dry-run", is_flag=True, help="Show what would happen; send and record nothing."
    )
    @click.option(
        "--resolve",
        "resolve",
        nargs=2,
        metavar="BATCH DECISION",
        help="Decide an unresolved batch: DECISION is resend, sent or failed.",
    )
    @json_option
    @pass_app
    def send(
        app: App,
        digest: str | None,
        at: str | None,
        dry_run: bool,
        resolve: tuple[str, str] | None,
        as_json: bool,
    ) -> None:
        """Compile and send the current edition of a digest now (or resume it)."""
        if resolve:
            batch, decision = resolve
            if decision not in ("resend", "sent", "failed"):
                raise InputError(f"decision must be resend, sent or failed, got {decision!r}")
            n = app.store.resolve_batch(batch, decision)
            click.echo(f"batch {batch}: {n} deliveries marked {decision}")
            return
        dcfg = app.config.digest(digest)
        outcome = jobs.run_digest(
            app.store, app.config, dcfg, parse_when(at), dry_run=dry_run, force=True
        )
        report = jobs.RunReport(now=parse_when(at), digests=[outcome])
        if as_json:
            emit_json(report.as_dict())
        else:
            print_run(report)
        if report.exit_code:
            raise SystemExit(report.exit_code)

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
