"""What every command shares: the app context, error handling, output helpers."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import click

from newsletter.config import Config, Secrets, find_config_path, load_config, no_config_error
from newsletter.errors import InputError, NewsletterError
from newsletter.store import Store, open_store

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

logger = logging.getLogger("newsletter")


class App:
    """Lazily loaded config and store, shared by the commands of one invocation."""

    def __init__(
        self,
        config_path: str | None = None,
        database: str | None = None,
        log_format: str = "text",
    ):
        self.config_path = config_path
        self.database = database
        #: with "json", stderr carries JSON lines only and `run` prints no text report
        self.log_format = log_format
        self._config: Config | None = None
        self._store: Store | None = None

    def require_config(self) -> None:
        """Exit 2 naming where it looked when there is no config file at all.

        Every command but `init` (and help) needs one: running on built-in defaults
        would quietly start an empty newsletter in whatever folder cron started in.
        """
        if find_config_path(self.config_path, os.environ) is None:
            raise no_config_error()

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path, database=self.database)
        return self._config

    @property
    def store(self) -> Store:
        """The database; a SQLite file that does not exist is an error, not created
        (only `newsletter init` creates one)."""
        if self._store is None:
            self._store = open_store(self.config.database_url, create=False)
        return self._store

    def create_store(self) -> tuple[Store, bool]:
        """Open the database, creating (and migrating) it if need be: `init` only.
        Returns the store and whether the SQLite file was new."""
        from newsletter.store.db import sqlite_path

        path = sqlite_path(self.config.database_url)
        new = path is not None and not path.exists()
        self._store = open_store(self.config.database_url, create=True)
        return self._store, new

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


#: ctx.meta key: the words after the program's options ask for help (-h anywhere)
HELP_ASKED = "newsletter.help_asked"


class NewsletterGroup(click.Group):
    """Turns library errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        # click parses a subcommand's -h only after the group's callback has run; the
        # callback must know it is help, which needs no config
        words = [*getattr(ctx, "_protected_args", []), *ctx.args]
        ctx.meta.setdefault(HELP_ASKED, bool({"-h", "--help"} & set(words)))
        try:
            return super().invoke(ctx)
        except NewsletterError as err:
            app = ctx.obj if isinstance(ctx.obj, App) else None
            text = str(err)
            if app is not None and app._config is not None:
                text = app._config.secrets.redact(text)
            if app is not None and app.log_format == "json":
                # JSON logs are JSON lines only: the error is one of them
                logger.error(text, extra={"event": "error", "exit_code": err.exit_code})
            else:
                click.echo(f"Error: {text}", err=True)
            ctx.exit(err.exit_code)
        except click.ClickException as err:
            app = ctx.obj if isinstance(ctx.obj, App) else None
            # an unknown command fails before the group's callback: no App yet, but
            # the group's own options are parsed
            fmt = app.log_format if app is not None else ctx.params.get("log_format")
            if fmt != "json":
                raise
            if app is None:
                setup_logging("json", 0)
            # a bad option or value: one JSON line too, so the log stays JSON lines only
            text = err.format_message()
            if isinstance(err, click.UsageError) and err.ctx is not None:
                text = f"{err.ctx.command_path}: {text}"
            logger.error(text, extra={"event": "error", "exit_code": err.exit_code})
            ctx.exit(err.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception:
            app = ctx.obj if isinstance(ctx.obj, App) else None
            if app is None or app.log_format != "json":
                raise
            # a bug: its traceback goes in the JSON line's "exception" field
            logger.exception("unexpected error", extra={"event": "error", "exit_code": 1})
            ctx.exit(1)


pass_app = click.make_pass_decorator(App)


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")(f)


def open_private(path: str, *, newline: str | None = None) -> TextIO:
    """``path`` opened for writing as text, mode 0600 whatever the umask: what the
    CLI writes to a file a user named may hold addresses or a reader's own links."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror}", where=path) from err
    return open(fd, "w", encoding="utf-8", newline=newline)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def parse_when(value: str | None) -> datetime:
    """--at: an ISO 8601 time (UTC when no offset is given); now when empty."""
    if not value:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time like 2026-11-30T07:00+05:00",
            param_hint="'--at'",
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("event", "summary", "exit_code"):
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:
            data["exception"] = _redact(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False, default=str)


def _redact(text: str) -> str:
    return Secrets.from_env(os.environ).redact(text)


class _TextFormatter(logging.Formatter):
    """The filter redacts the message; a logged exception's trace is formatted later."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return _redact(super().formatException(ei))


class _RedactFilter(logging.Filter):
    """Secrets never reach a log line."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets = Secrets.from_env(os.environ)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets.hidden:
            record.msg, record.args = self.secrets.redact(record.getMessage()), ()
        return True


def setup_logging(fmt: str, verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RedactFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # warnings.warn() of any library becomes a log line (logger py.warnings), so
    # JSON mode writes JSON lines only, and text mode one format
    logging.captureWarnings(True)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    for noisy in ("alembic", "CSSUTILS", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose < 2 else logging.INFO)
    # JSON logs feed a log system: every run's closing summary goes there, whatever
    # the verbosity. Text mode prints the summary on stdout instead (and logs it with -v).
    summary = logging.getLogger("newsletter.summary")
    summary.setLevel(logging.INFO if fmt == "json" else logging.NOTSET)
