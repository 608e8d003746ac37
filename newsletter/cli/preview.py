"""preview, check and archive: an edition before it goes out, and after.

All three commands are registered here, next to each other, as they all look
at an edition through the renderer rather than send anything.
"""

from __future__ import annotations

import os
import tempfile
import webbrowser
from pathlib import Path

import click

from newsletter.cli.common import App, emit_json, json_option, open_private, parse_when, pass_app
from newsletter.errors import InputError
from newsletter.preview.message import preview_message
from newsletter.preview.preflight import preflight


def _tags(value: str | None) -> list[str]:
    return [t.strip() for t in (value or "").split(",") if t.strip()]


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--digest", help="Digest name (default: the first configured).")
    @click.option("--as", "as_email", metavar="EMAIL", help="Exactly what this subscriber gets.")
    @click.option("--tags", metavar="T,…", help="What a reader of these tag slugs gets.")
    @click.option(
        "--format", "fmt", type=click.Choice(["html", "text"]), default="html", show_default=True
    )
    @click.option(
        "--out", type=click.Path(dir_okay=False), help="Write to this file instead of stdout."
    )
    @click.option("--open", "open_it", is_flag=True, help="Open the result in the web browser.")
    @click.option("--serve", is_flag=True, help="Serve a live preview with a variant picker.")
    @click.option("--port", type=int, default=8026, show_default=True, help="Port for --serve.")
    @click.option(
        "--screenshot",
        type=click.Path(file_okay=False),
        metavar="DIR",
        help="Save PNG screenshots at 375 and 600 px (headless Chromium).",
    )
    @click.option(
        "--placeholder-images",
        is_flag=True,
        help="In screenshots, grey boxes instead of fetching the images.",
    )
    @click.option(
        "--dark", is_flag=True, help="Screenshots in dark mode (prefers-color-scheme: dark)."
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
        open_it: bool,
        serve: bool,
        port: int,
        screenshot: str | None,
        placeholder_images: bool,
        dark: bool,
        at: str | None,
    ) -> None:
        """Render an edition exactly as a subscriber would get it. Sends and records nothing.

        \b
        newsletter preview --as reader@example.com --open
        newsletter preview --tags kazakhstan,energy --format text
        newsletter preview --screenshot shots/
        newsletter preview --serve          (http://127.0.0.1:8026/)
        """
        if as_email and tags is not None:
            raise InputError("give --as or --tags, not both")
        cfg, store = app.config, app.store
        dcfg = cfg.digest(digest)
        if serve:
            from newsletter.preview.server import serve_preview

            click.echo(
                f"preview of {dcfg.name} at http://127.0.0.1:{port}/ (Ctrl-C stops)", err=True
            )
            serve_preview(store, cfg, dcfg, port=port, at=parse_when(at) if at else None)
            return
        result = preview_message(
            store, cfg, dcfg, parse_when(at), as_email=as_email, tags=_tags(tags)
        )
        for w in result.rendered.warnings:
            click.echo(f"warning: {w}", err=True)
        if not result.articles:
            click.echo(
                f"warning: no stories for variant {result.variant} now: it would not be sent",
                err=True,
            )
        if screenshot:
            from newsletter.preview.screenshot import take_screenshots

            paths = take_screenshots(
                result.html,
                Path(screenshot),
                images="placeholder" if placeholder_images else "load",
                dark=dark,
                executable=cfg.render.chromium,
            )
            for p in paths:
                click.echo(str(p))
            return
        body = result.html if fmt == "html" else result.text
        if open_it and not out:
            fd, out = tempfile.mkstemp(prefix="newsletter-preview-", suffix=f".{fmt[:4]}")
            os.close(fd)  # mkstemp's file is 0600
        if out:
            # 0600: with --as the preview holds that reader's own links
            with open_private(out) as fh:
                fh.write(body)
        else:
            click.echo(body, nl=False)
            return
        click.echo(f"wrote {out} ({len(body.encode())} bytes): {result.subject}", err=True)
        if open_it:
            webbrowser.open(Path(out).resolve().as_uri())

    @cli.command()
    @click.option("--digest", help="Digest name (default: the first configured).")
    @click.option("--at", help="Check as if it were this time (ISO 8601).")
    @json_option
    @pass_app
    def check(app: App, digest: str | None, at: str | None, as_json: bool) -> None:
        """Preflight the edition that would go out now; exit 1 on any error.

        Errors: HTML over budget, image without alt text, no unsubscribe link or
        header, no visible link saying unsubscribe, unresolved template variables,
        MRML escapes left in the HTML, empty edition, links that are not absolute
        http(s). Warnings: images without width and height or styled alt text,
        heading outline, table roles, ambiguous link text, text lines over 78,
        subjects over 78 characters, stories moved to "More stories". Each
        finding has a code (--json). Shows the HTML size (the budget) and the
        size on the wire.
        """
        dcfg = app.config.digest(digest)
        report = preflight(app.store, app.config, dcfg, parse_when(at))
        if as_json:
            emit_json(report.as_dict())
        else:
            for key, v in report.variants.items():
                more = f", {v['more_stories']} in More stories" if v["more_stories"] else ""
                stories, readers = v["stories"], v["subscribers"]
                click.echo(
                    f"variant {key}: {stories} stor{'y' if stories == 1 else 'ies'}{more}, "
                    f"{readers} subscriber{'s' * (readers != 1)}; HTML {v['bytes']} bytes "
                    f"(the budget), on the wire "
                    f"{v['wire_bytes_8bitmime']} (8BITMIME) or {v['wire_bytes_7bit']} "
                    f"({v['wire_encoding_7bit']})"
                )
            for f in report.findings:
                click.echo(str(f), err=f.level == "error")
            n_err, n_warn = len(report.errors), len(report.warnings)
            click.echo(
                f"{dcfg.name}: {'FAILED' if n_err else 'ok'} "
                f"({n_err} error{'s' * (n_err != 1)}, {n_warn} warning{'s' * (n_warn != 1)})"
            )
        if not report.ok:
            raise SystemExit(1)

    @cli.command()
    @click.argument("edition_id", type=int, required=False)
    @click.option("--all", "all_sent", is_flag=True, help="Every sent edition, not one.")
    @pass_app
    def archive(app: App, edition_id: int | None, all_sent: bool) -> None:
        """(Re)write the web archive page of a sent edition (default: the latest).

        Runs by itself after each send when [archive] dir is set; use this after
        changing the templates, or to fill the archive of editions sent before.
        """
        from newsletter.editions.archive import publish_sent

        for path in publish_sent(app.store, app.config, edition_id=edition_id, all_sent=all_sent):
            click.echo(path)
