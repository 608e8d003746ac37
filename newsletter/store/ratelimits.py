"""Rate limits kept in the database, so every ``serve`` process counts the same hits.

A limit is a row per key: how many hits since the window opened, and when it
closes. One statement adds a hit and reads the count (INSERT … ON CONFLICT DO
UPDATE … RETURNING, on SQLite and PostgreSQL alike), so two processes can
never both see the last free slot.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, case, delete
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
