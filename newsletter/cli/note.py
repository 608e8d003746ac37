"""note: the editor's note of an edition (Markdown, one file per edition date)."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime

import click

from newsletter.cli.common import App, pass_app
from newsletter.config import DigestConfig
from newsletter.editions import notes
from newsletter.errors import InputError
from newsletter.schedule import next_runs, zone


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
    @click.option(
        "--digest", "digest_name", metavar="NAME", help="The digest (default: the first)."
    )
    @click.option(
        "--date",
        "day",
        type=click.DateTime(["%Y-%m-%d"]),
        help="The edition's date (default: the digest's next scheduled edition).",
    )
    @click.option("--remove", is_flag=True, help="Remove the note of that edition.")
    @pass_app
    def note(
        app: App, file: str | None, digest_name: str | None, day: datetime | None, remove: bool
    ) -> None:
        """Write, show or remove the editor's note of an edition.

        With FILE (Markdown; - reads stdin) the note is stored for the edition;
        without, it is printed. The note is shown under the greeting in HTML,
        text and preview, and frozen with the edition when it is compiled.
        """
        cfg = app.config
        digest = cfg.digest(digest_name)
        when: date = day.date() if day else next_edition_day(digest)
        if remove:
            if file:
                raise InputError("give a FILE or --remove, not both")
            gone = notes.remove_note(cfg, digest, when)
            click.echo(f"{'removed the' if gone else 'no'} note of {digest.name} {when}")
            return
        if file:
            if file == "-":
                text = sys.stdin.read()
            else:
                try:
                    with open(file, encoding="utf-8") as fh:
                        text = fh.read()
                except (OSError, UnicodeDecodeError) as err:
                    reason = getattr(err, "strerror", None) or "not UTF-8 text"
                    raise InputError(f"cannot read the note: {reason}", where=file) from err
            path = notes.write_note(cfg, digest, when, text)
            click.echo(f"note of {digest.name} {when}: {path} ({len(text.split())} words)")
            return
        text = notes.read_note(cfg, digest, when)
        if not text:
            click.echo(f"no note for {digest.name} {when} ({notes.note_path(cfg, digest, when)})")
            return
        click.echo(text)


def next_edition_day(digest: DigestConfig) -> date:
    """The date of the digest's next scheduled edition, on its own clock."""
    (fire,) = next_runs(digest, datetime.now(UTC), 1)
    return fire.astimezone(zone(digest.timezone)).date()
