"""ingest and articles."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

from newsletter.articles.ingest import ingest as run_ingest
from newsletter.articles.ingest import sources_for
from newsletter.cli.common import App, emit_json, json_option, pass_app
from newsletter.errors import InputError


def parse_since(value: str | None) -> datetime | None:
    """'7d', '12h', '30m' or an ISO date/time."""
    if not value:
        return None
    m = re.fullmatch(r"(\d+)([dhm])", value.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        delta = {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}[unit]
        return datetime.now(UTC) - delta
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--since {value!r}: use 7d, 12h, 30m or an ISO date") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("targets", nargs=-1, metavar="[PATH_OR_URL]...")
    @json_option
    @pass_app
    def ingest(app: App, targets: tuple[str, ...], as_json: bool) -> None:
        """Fetch the configured sources (or the feeds given) and store new articles.

        Running it again changes nothing. Exits 1 when any source failed, after
        ingesting the rest.
        """
        sources = sources_for(app.config, list(targets))
        if not sources:
            raise InputError("no sources configured and none given", where=app.config.path)
        report = run_ingest(app.store, app.config, sources)
        if as_json:
            emit_json([s.as_dict() for s in report.sources])
        else:
            for s in report.sources:
                if s.error:
                    click.echo(f"{s.source}: FAILED: {s.error}")
                    continue
                if s.not_modified:
                    click.echo(f"{s.source}: not modified")
                    continue
                click.echo(
                    f"{s.source}: {s.fetched} items: {s.stored.inserted} new, "
                    f"{s.stored.updated} updated, {s.stored.unchanged} unchanged"
                )
                for p in s.problems:
                    click.echo(f"  skipped: {p}")
        if report.failed:
            raise SystemExit(1)

    @cli.command()
    @click.option(
        "--tag", "tags", multiple=True, help="Only articles with this tag slug (repeatable)."
    )
    @click.option(
        "--exclude-tag", "exclude", multiple=True, help="Leave out articles with this tag."
    )
    @click.option("--since", help="Published since: 7d, 12h, 30m or an ISO date.")
    @click.option("--limit", type=int, default=50, show_default=True)
    @json_option
    @pass_app
    def articles(
        app: App,
        tags: tuple[str, ...],
        exclude: tuple[str, ...],
        since: str | None,
        limit: int,
        as_json: bool,
    ) -> None:
        """List stored articles, pinned first, then newest."""
        found = app.store.find_articles(
            tags=tags, exclude_tags=exclude, since=parse_since(since), limit=limit
        )
        if as_json:
            emit_json(
                [
                    {
                        "id": a.id,
                        "uid": a.uid,
                        "url": a.url,
                        "title": a.title,
                        "author": a.author,
                        "published_at": a.published_at.isoformat(),
                        "tags": [t.slug for t in a.tags],
                        "pinned": a.pinned,
                        "summary": a.summary_text,
                    }
                    for a in found
                ]
            )
            return
        for a in found:
            flag = "*" if a.pinned else " "
            click.echo(f"{flag}{a.published_at:%Y-%m-%d %H:%M}  {a.title}")
            click.echo(f"   {', '.join(t.slug for t in a.tags)}  {a.url}")
        click.echo(f"{len(found)} articles")
