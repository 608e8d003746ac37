"""Opening the database and applying the migrations."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool, QueuePool

from newsletter.errors import ConfigError, StoreError
from newsletter.store.articles import ArticleQueries
from newsletter.store.audience import AudienceQueries
from newsletter.store.base import READ_ONLY, queue_sqlite_writers
from newsletter.store.control import ControlQueries
from newsletter.store.deliveries import DeliveryQueries
from newsletter.store.editions import EditionQueries
from newsletter.store.events import EventQueries
from newsletter.store.freeze import FreezeQueries
from newsletter.store.locks import LockQueries
from newsletter.store.privacy import PrivacyQueries
from newsletter.store.rates import RateQueries
from newsletter.store.runs import RunQueries
from newsletter.store.subscriptions import SubscriptionQueries

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # SQLAlchemy, not pysqlite, decides when a transaction begins (see "begin" below)
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # a write transaction takes the write lock at once, so two writers queue
    # instead of failing mid-transaction with "database is locked"; a read
    # (Store.connect) begins deferred and, under WAL, never waits for a writer
    read_only = conn.get_execution_options().get(READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _driver(conn: Connection) -> Any:
    """The DB-API connection under ``conn`` (for what must bypass SQLAlchemy's transactions)."""
    return conn.connection.driver_connection


def make_engine(url: str, *, pooled: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout.

    SQLite connections are opened per use unless ``pooled`` (a long-running
    server such as ``serve``, where opening one costs more than the query).
    """
    try:
        if url.startswith("sqlite"):
            if ":memory:" not in url:
                path = url.split("///", 1)[-1]
                if path:
                    folder = Path(path).parent
                    # one missing level (.demo/) is made; a deeper missing path is
                    # more likely a typo that would quietly start an empty database
                    if not folder.parent.is_dir():
                        raise StoreError(f"folder {folder.parent} does not exist", where="database")
                    folder.mkdir(exist_ok=True)
            if pooled and ":memory:" not in url:
                engine = create_engine(
                    url,
                    poolclass=QueuePool,
                    pool_size=8,
                    max_overflow=32,
                    connect_args={"check_same_thread": False},
                )
                queue_sqlite_writers(engine)
            else:
                engine = create_engine(url, poolclass=NullPool)
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as err:
        raise StoreError(f"cannot open database URL: {err}", where="database") from err


class Store(
    ArticleQueries,
    RateQueries,
    AudienceQueries,
    EditionQueries,
    DeliveryQueries,
    FreezeQueries,
    EventQueries,
    LockQueries,
    RunQueries,
    ControlQueries,
    SubscriptionQueries,
    PrivacyQueries,
):
    """All database access of the project."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def migrate(self) -> None:
        """Bring the schema to the newest revision. Safe to call on every start."""
        cfg = _alembic_config()
        try:
            with self.engine.connect() as conn:
                sqlite = conn.dialect.name == "sqlite"
                if sqlite:
                    # SQLite changes a table's constraints by copying it and dropping the
                    # old one; with foreign keys on, that drop would cascade (every
                    # delivery of a recreated edition gone). Off for this connection,
                    # outside any transaction (a PRAGMA inside one is ignored), and
                    # checked before the commit.
                    _driver(conn).execute("PRAGMA foreign_keys=OFF")
                with conn.begin():
                    current = MigrationContext.configure(conn).get_current_revision()
                    head = ScriptDirectory.from_config(cfg).get_current_head()
                    if current == head:
                        return
                    logger.info("migrating database from %s to %s", current, head)
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                    if sqlite:
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                        if broken:
                            raise StoreError(
                                f"migration would break {len(broken)} foreign keys "
                                f"(first: {tuple(broken[0])}); nothing was changed",
                                where=_safe_url(self.engine),
                            )
        except OperationalError as err:
            raise StoreError(
                f"cannot open the database: {err.orig}", where=_safe_url(self.engine)
            ) from err
        except SQLAlchemyError as err:
            raise StoreError(f"migration failed: {err}", where=_safe_url(self.engine)) from err

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def close(self) -> None:
        self.engine.dispose()


def _warn_if_shared(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        logger.warning(
            "%s: the database is readable by other users (mode %04o); "
            "`chmod 600` it (and its -wal and -shm files)",
            path,
            mode,
        )


def _safe_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


#: the database holds addresses and names: its file (and the WAL and SHM files, which
#: SQLite creates with the database file's mode) is readable by its owner only
PRIVATE_FILE_MODE = 0o600


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for other engines and in-memory databases."""
    if not url.startswith("sqlite") or ":memory:" in url or "mode=memory" in url:
        return None
    path = url.split("///", 1)[-1].split("?", 1)[0]
    return Path(path) if path else None


def create_private_file(path: Path, mode: int = PRIVATE_FILE_MODE) -> bool:
    """Create ``path`` empty with ``mode`` whatever the umask; False if it existed."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    except OSError as err:
        raise StoreError(f"cannot create the database: {err.strerror}", where=str(path)) from err
    os.fchmod(fd, mode)  # the umask may have taken bits off; never adds any
    os.close(fd)
    return True


def open_store(
    url: str, *, migrate: bool = True, create: bool = True, pooled: bool = False
) -> Store:
    """Open (and by default migrate) the database at ``url``.

    With ``create=False`` a SQLite file that does not exist is an error (exit code 2)
    instead of a new empty database: a typo in the path, or an environment the
    scheduler did not pass, must not start a newsletter with no subscribers. A new
    SQLite file is created readable by its owner only (0600). ``pooled`` keeps
    connections open (a long-running server, see :func:`make_engine`).
    """
    path = sqlite_path(url)
    if path is not None and not path.exists():
        if not create:
            raise ConfigError(
                f"the database {path} does not exist",
                where="database",
                hint="`newsletter init` creates it; the URL is the config's `database`, "
                "or NEWSLETTER_DATABASE_URL, or --db",
            )
        if path.parent.parent.is_dir():
            path.parent.mkdir(exist_ok=True, mode=0o700)
            create_private_file(path)
    elif path is not None:
        _warn_if_shared(path)
    store = Store(make_engine(url, pooled=pooled))
    if migrate:
        store.migrate()
    return store
