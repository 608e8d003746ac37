"""Locks, so overlapping runs never work on the same thing at once.

The run lock (``run_lock``) is one that a dead process cannot leave behind:

- PostgreSQL: ``pg_try_advisory_lock`` on a connection of its own, held for
  the whole run. It works across machines, and the server drops it the moment
  the holder's connection ends, a ``kill -9`` included.
- SQLite: ``flock`` on a file next to the database. The kernel drops it when
  the holding process dies. (SQLite lives on one machine, so that suffices.)
- Anything else (an in-memory SQLite, a platform without ``fcntl``): the lock
  row with an expiry, taken over once it expired or its holder's process on
  this machine is gone.

Whichever way it is held, the ``locks`` row names the holder and the time it
took the lock, so an operator (and the run that gives way) can see who holds it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from newsletter.errors import StoreError
from newsletter.store.base import StoreBase, utcnow
from newsletter.store.schema import locks

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: how long a plain lock row is trusted without its holder refreshing it
ROW_LOCK_TTL = timedelta(hours=2)


def worker_id() -> str:
    """This process, as lock holders and batch workers are named: "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_gone(holder: str) -> bool:
    """True when ``holder`` ("host:pid") names a process on this machine that has exited.

    Another machine's process (or a name of another form) is never known to be gone:
    only its lease or lock expiry can tell."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock, since when, and whether that holder is known to be gone."""

    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime
    stale: bool


class RunLock:
    """A held run lock. ``release()`` (or leaving the ``with`` block) frees it."""

    def __init__(self, store: LockQueries, name: str, holder: str, how: str) -> None:
        self.store = store
        self.name = name
        self.holder = holder
        #: advisory | flock | row
        self.how = how
        self.acquired_at = utcnow()
        self._conn: Connection | None = None
        self._file: IO[Any] | None = None
        self.released = False

    def check(self) -> None:
        """Raise StoreError if the lock was lost (PostgreSQL: its connection dropped)."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
            except SQLAlchemyError as err:
                raise StoreError(
                    "lost the run lock: its database connection dropped; stopping this run"
                ) from err
        elif self.how == "row":
            self.store.refresh_lock(self.name, self.holder, ttl=ROW_LOCK_TTL)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        try:
            self.store._forget_holder(self.name, self.holder)
        except SQLAlchemyError as err:  # the lock itself is freed below regardless
            logger.warning("could not clear the lock row %s: %s", self.name, err)
        if self._conn is not None:
            try:
                self._conn.execute(
                    text("SELECT pg_advisory_unlock(:k)"),
                    {"k": self.store._advisory_key(self.name)},
                )
            except SQLAlchemyError:
                pass  # closing the connection below frees it as well
            # never hand a connection that may still hold the lock back to the pool
            self._conn.invalidate()
            self._conn.close()
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
        if self.how == "row":
            self.store.release_lock(self.name, self.holder)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LockQueries(StoreBase):
    # ------------------------------------------------------------- plain row locks

    def acquire_lock(self, name: str, holder: str, *, ttl: timedelta) -> bool:
        """Take the row lock ``name`` for ``holder``. False when someone else holds it.

        An expired row, or one whose holder process on this machine is gone, is
        taken over.
        """
        now = utcnow()
        try:
            with self.begin() as conn:
                row = conn.execute(select(locks).where(locks.c.name == name)).first()
                if row is None:
                    conn.execute(
                        insert(locks).values(
                            name=name, holder=holder, acquired_at=now, expires_at=now + ttl
                        )
                    )
                    return True
                if row.holder != holder and row.expires_at > now and not process_gone(row.holder):
                    return False
                if row.holder != holder:
                    logger.warning(
                        "taking over the stale lock %s from %s (taken %s)",
                        name,
                        row.holder,
                        row.acquired_at.isoformat(timespec="seconds"),
                    )
                conn.execute(
                    update(locks)
                    .where((locks.c.name == name) & (locks.c.holder == row.holder))
                    .values(holder=holder, acquired_at=now, expires_at=now + ttl)
                )
                return True
        except IntegrityError:
            return False

    def refresh_lock(self, name: str, holder: str, *, ttl: timedelta) -> bool:
        with self.begin() as conn:
            return bool(
                conn.execute(
                    update(locks)
                    .where((locks.c.name == name) & (locks.c.holder == holder))
                    .values(expires_at=utcnow() + ttl)
                ).rowcount
            )

    def release_lock(self, name: str, holder: str) -> None:
        with self.begin() as conn:
            conn.execute(delete(locks).where((locks.c.name == name) & (locks.c.holder == holder)))

    def lock_holder(self, name: str) -> LockHolder | None:
        """Who holds the lock ``name`` and since when (None: nobody); ``stale`` when that
        holder is known to be gone (a killed run's leftover)."""
        with self.connect() as conn:
            row = conn.execute(select(locks).where(locks.c.name == name)).first()
            if row is None:
                return None
            if self.dialect == "postgresql":
                # the advisory lock itself says whether anyone holds it, on any machine
                key = self._advisory_key(name)
                held = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                        " AND database = (SELECT oid FROM pg_database"
                        " WHERE datname = current_database())"
                        " AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"
                    ),
                    {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF},
                ).scalar_one()
                stale = not held
            else:
                stale = process_gone(row.holder) or row.expires_at <= utcnow()
        return LockHolder(
            name=row.name,
            holder=row.holder,
            acquired_at=row.acquired_at,
            expires_at=row.expires_at,
            stale=bool(stale),
        )

    # ------------------------------------------------------------- the run lock

    def run_lock(
        self, name: str, holder: str, *, wait: float = 0.0, poll: float = 0.5
    ) -> RunLock | None:
        """Take the run lock, waiting up to ``wait`` seconds. None if another run holds it."""
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            lock = self._try_run_lock(name, holder)
            if lock is not None:
                self._record_holder(name, holder, lock.acquired_at)
                return lock
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(poll, max(deadline - time.monotonic(), 0.01)))

    def _try_run_lock(self, name: str, holder: str) -> RunLock | None:
        if self.dialect == "postgresql":
            return self._try_advisory(name, holder)
        path = self._lock_file(name)
        if path is not None and fcntl is not None:
            return self._try_flock(name, holder, path)
        if self.acquire_lock(name, holder, ttl=ROW_LOCK_TTL):
            return RunLock(self, name, holder, "row")
        return None

    def _advisory_key(self, name: str) -> int:
        # one key per database schema and lock name: two newsletters sharing a
        # database in different schemas must not block each other
        digest = hashlib.blake2b(f"newsletter:{self._schema}:{name}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big", signed=True)

    @property
    def _schema(self) -> str:
        cached = getattr(self, "_schema_name", None)
        if cached is None:
            with self.connect() as conn:
                cached = str(
                    conn.execute(
                        text("SELECT current_database() || '.' || current_schema()")
                    ).scalar_one()
                )
            self._schema_name = cached
        return cached

    def _try_advisory(self, name: str, holder: str) -> RunLock | None:
        key = self._advisory_key(name)
        # a connection of its own, outside any transaction, kept for the whole run
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return None
        lock = RunLock(self, name, holder, "advisory")
        lock._conn = conn
        return lock

    def _lock_file(self, name: str) -> Path | None:
        database = self.engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return Path(f"{database}.{name}.lock")

    def _try_flock(self, name: str, holder: str, path: Path) -> RunLock | None:
        try:
            # owner-only like the database beside it (it names the host and pid)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            fh = open(fd, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        except OSError as err:
            raise StoreError(f"cannot open the lock file: {err.strerror}", where=str(path)) from err
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return None
        except BaseException:
            fh.close()
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(f"{holder} {utcnow().isoformat(timespec='seconds')}\n")
        fh.flush()
        lock = RunLock(self, name, holder, "flock")
        lock._file = fh
        return lock

    def _record_holder(self, name: str, holder: str, since: datetime) -> None:
        # the authoritative lock is held already; a row a killed run left is overwritten
        with self.begin() as conn:
            row = conn.execute(select(locks.c.holder).where(locks.c.name == name)).first()
            if row is not None and row.holder == holder:
                return
            if row is not None:
                conn.execute(delete(locks).where(locks.c.name == name))
            conn.execute(
                insert(locks).values(
                    name=name, holder=holder, acquired_at=since, expires_at=since + ROW_LOCK_TTL
                )
            )

    def _forget_holder(self, name: str, holder: str) -> None:
        with self.begin() as conn:
            conn.execute(delete(locks).where((locks.c.name == name) & (locks.c.holder == holder)))
