"""ingest and articles."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

from newsletter.articles.ingest import ingest as run_ingest
from newsletter.articles.ingest import sources_for
from newsletter.cli.common import App, emit_json, json_option, parse_when, pass_app
from newsletter.editions.plan import selection
from newsletter.editions.variants import tag_slugs
from newsletter.errors import InputError
from newsletter.models import Article


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """'7d', '12h', '30m' (before ``now``) or an ISO date/time (UTC when no offset)."""
    if not value:
        return None
    m = re.fullmatch(r"(\d+)\s*([dhm])", value.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        delta = {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}[unit]
        return (now or datetime.now(UTC)) - delta
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--since {value!r}: use 7d, 12h, 30m or an ISO date") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def article_dict(a: Article) -> dict:
    return {
        "id": a.id,
        "uid": a.uid,
        "url": a.url,
        "title": a.title,
        "author": a.author,
        "published_at": a.published_at.isoformat(),
        "updated_at": a.updated_at.isoformat() if a.updated_at else None,
        "tags": [t.slug for t in a.tags],
        "tag_names": [t.name for t in a.tags],
        "pinned": a.pinned,
        "summary": a.summary_text,
        "summary_html": a.summary_html,
        "image_url": a.image_url,
        "image_alt": a.image_alt,
        "source": a.source,
    }


def print_articles(found: list[Article]) -> None:
    for a in found:
        flag = "*" if a.pinned else " "
        click.echo(f"{flag}{a.published_at:%Y-%m-%d %H:%M}  {a.title}")
        click.echo(f"   {', '.join(t.slug for t in a.tags)}  {a.url}")
    click.echo(f"{len(found)} article{'' if len(found) == 1 else 's'}")


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("targets", nargs=-1, metavar="[PATH_OR_URL]...")
    @json_option
    @pass_app
    def ingest(app: App, targets: tuple[str, ...], as_json: bool) -> None:
        """Fetch the configured sources (or the feeds given) and store new articles.

        A target ending in .json is read as a JSON source, one containing
        /wp-json as the WordPress REST API, anything else as an RSS/Atom feed.
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
                if s.not_modified:
                    click.echo(f"{s.source}: not modified")
                elif s.fetched or not s.error:
                    click.echo(
                        f"{s.source}: {s.fetched} items: {s.stored.inserted} new, "
                        f"{s.stored.updated} updated, {s.stored.unchanged} unchanged"
                        + (f", {len(s.problems)} problems" if s.problems else "")
                    )
                for p in s.problems:
                    click.echo(f"  {p}")
                if s.error:
                    click.echo(f"{s.source}: FAILED: {s.error}")
        if report.failed:
            names = ", ".join(s.source for s in report.failed)
            click.echo(f"Error: {len(report.failed)} source(s) failed: {names}", err=True)
            raise SystemExit(1)

    @cli.command()
    @click.option(
        "--tag", "tags", multiple=True, help="Only articles with this tag (repeatable: any of)."
    )
    @click.option(
        "--exclude-tag", "exclude", multiple=True, help="Leave out articles with this tag."
    )
    @click.option("--since", help="Published since: 7d, 12h, 30m or an ISO date.")
    @click.option(
        "--digest",
        help="Show exactly what this digest's next edition would select: its window, "
        "exclude list, never-repeat rule, order and limits (--tag picks the variant).",
    )
    @click.option("--at", help="With --digest: select as if it were this time (ISO 8601).")
    @click.option(
        "--limit",
        type=int,
        default=50,
        show_default=True,
        help="At most this many (not with --digest).",
    )
    @json_option
    @pass_app
    def articles(
        app: App,
        tags: tuple[str, ...],
        exclude: tuple[str, ...],
        since: str | None,
        digest: str | None,
        at: str | None,
        limit: int,
        as_json: bool,
    ) -> None:
        """List stored articles, pinned first, then newest.

        With --digest, list exactly what the next edition would carry for
        subscribers of the given tags (default: the digest's tags), and say
        why it would be skipped when there are too few.
        """
        if digest is None:
            if at:
                raise InputError("--at needs --digest")
            found = app.store.find_articles(
                tags=tag_slugs(list(tags)),
                exclude_tags=tag_slugs(list(exclude)),
                since=parse_since(since),
                limit=limit,
            )
            if as_json:
                emit_json([article_dict(a) for a in found])
            else:
                print_articles(found)
            return
        if exclude:
            raise InputError("--exclude-tag cannot be used with --digest (it has its own)")
        now = parse_when(at)
        chosen = selection(
            app.store,
            app.config.digest(digest),
            now,
            tags=list(tags),
            since=parse_since(since, now),
        )
        if as_json:
            emit_json(chosen.as_dict() | {"articles": [article_dict(a) for a in chosen.articles]})
            return
        click.echo(
            f"{chosen.digest}, variant {chosen.variant}: window "
            f"{chosen.window_start.astimezone(UTC):%Y-%m-%d %H:%M} to "
            f"{chosen.window_end.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        )
        print_articles(chosen.articles)
        if chosen.skip_reason:
            click.echo(f"would be skipped: {chosen.skip_reason}")
