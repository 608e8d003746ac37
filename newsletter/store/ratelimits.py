"""Rate limits kept in the database, so every ``serve`` process counts the same hits.

A limit is a row per key: how many hits since the window opened, and when it
closes. One statement adds a hit and reads the count (INSERT … ON CONFLICT DO
UPDATE … RETURNING, on SQLite and PostgreSQL alike), so two processes can
never both see the last free slot. A signup's counters are one such statement
with a row per key (:meth:`RateLimitQueries.hits`): the database takes the
rows, and their locks, in the order given.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, TextualSelect, bindparam, case, delete, text
from sqlalchemy.sql.dml import ReturningInsert

from newsletter.store.base import StoreBase, dialect_insert, utcnow
from newsletter.store.schema import rate_limits


@functools.cache
def hit_statement(dialect: str) -> ReturningInsert[Any]:
    """The one statement of :meth:`RateLimitQueries.hit`, built once per dialect
    (building it took more time than running it on SQLite): parameters ``key``,
    ``now`` and ``closes``."""
    now = bindparam("now", type_=rate_limits.c.expires_at.type)
    closes = bindparam("closes", type_=rate_limits.c.expires_at.type)
    stmt = dialect_insert(dialect, rate_limits).values(
        key=bindparam("key"), count=1, expires_at=closes
    )
    expired = rate_limits.c.expires_at <= now
    return stmt.on_conflict_do_update(
        index_elements=[rate_limits.c.key],
        set_={
            "count": case((expired, 1), else_=rate_limits.c.count + 1),
            "expires_at": case((expired, stmt.excluded.expires_at), else_=rate_limits.c.expires_at),
        },
    ).returning(rate_limits.c.count)


@functools.cache
def hits_statement(n: int) -> TextualSelect:
    """:func:`hit_statement` for ``n`` keys at once, one row each in the order given
    (PostgreSQL locks the rows in that order), RETURNING ``key`` and ``count``:
    parameters ``now`` and ``key_i``, ``closes_i`` for i in 0..n-1.

    Written as text, the same on SQLite and PostgreSQL: SQLAlchemy does not cache
    a multi-row ``insert().values([...])``, and compiling it again for every
    signup cost more than the round trips it saves."""
    when = bindparam("now", type_=rate_limits.c.expires_at.type)
    closes = [bindparam(f"closes_{i}", type_=rate_limits.c.expires_at.type) for i in range(n)]
    rows = ", ".join(f"(:key_{i}, 1, :closes_{i})" for i in range(n))
    return (
        text(
            f'INSERT INTO rate_limits ("key", count, expires_at) VALUES {rows} '
            'ON CONFLICT ("key") DO UPDATE SET '
            "count = CASE WHEN rate_limits.expires_at <= :now THEN 1 "
            "ELSE rate_limits.count + 1 END, "
            "expires_at = CASE WHEN rate_limits.expires_at <= :now THEN excluded.expires_at "
            "ELSE rate_limits.expires_at END "
            'RETURNING "key", count'
        )
        .bindparams(when, *closes)
        .columns(rate_limits.c.key, rate_limits.c.count)
    )


class RateLimitQueries(StoreBase):
    def hit(self, key: str, window: float, *, conn: Connection | None = None) -> int:
        """Count one hit on ``key``; returns the hits in its window, this one included.

        A window opens at the first hit and lasts ``window`` seconds. With ``conn``,
        inside that transaction.
        """
        now = utcnow()
        params = {"key": key[:200], "now": now, "closes": now + timedelta(seconds=window)}
        stmt = hit_statement(self.dialect)
        if conn is not None:
            return int(conn.execute(stmt, params).scalar_one())
        with self.begin() as c:
            return int(c.execute(stmt, params).scalar_one())

    def hits(self, conn: Connection, keys: Sequence[tuple[str, float]]) -> list[int]:
        """Inside ``conn``'s transaction: one hit on each ``(key, window)``, in that
        order, in one statement; the counts, as :meth:`hit` returns them, in the same
        order. Keys that repeat are counted one statement each."""
        now = utcnow()
        keys = [(key[:200], window) for key, window in keys]
        if len({key for key, _ in keys}) < len(keys):
            # one statement cannot update a row twice
            return [self.hit(key, window, conn=conn) for key, window in keys]
        if not keys:
            return []
        params: dict[str, Any] = {"now": now}
        for i, (key, window) in enumerate(keys):
            params[f"key_{i}"] = key
            params[f"closes_{i}"] = now + timedelta(seconds=window)
        result = conn.execute(hits_statement(len(keys)), params)
        counts = {key: count for key, count in result}
        return [int(counts[key]) for key, _ in keys]

    def release(self, key: str) -> None:
        """Forget ``key``'s hits (a confirmation that could not be sent)."""
        with self.begin() as conn:
            conn.execute(delete(rate_limits).where(rate_limits.c.key == key[:200]))

    def purge_rate_limits(self) -> int:
        """Drop closed windows; returns how many."""
        with self.begin() as conn:
            return conn.execute(
                delete(rate_limits).where(rate_limits.c.expires_at <= utcnow())
            ).rowcount
