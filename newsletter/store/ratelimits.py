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

from sqlalchemy import Connection, TextualSelect, bindparam, delete, text

from newsletter.store.base import StoreBase, utcnow
from newsletter.store.schema import rate_limits


@functools.cache
def hits_statement(n: int) -> TextualSelect:
    """One hit on each of ``n`` keys, one row each in the order given (PostgreSQL
    locks the rows in that order), RETURNING ``key`` and ``count``: parameters
    ``now`` and ``key_i``, ``closes_i`` for i in 0..n-1. A window opens at a key's
    first hit (``closes_i``) and a hit after it closed opens the next.

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
        if conn is not None:
            return self.hits(conn, [(key, window)])[0]
        with self.begin() as c:
            return self.hits(c, [(key, window)])[0]

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
