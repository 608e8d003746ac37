"""Named locks in the database, so overlapping runs never send twice.

A lock row carries an expiry; a run killed while holding it leaves a row that
the next run takes over once it has expired.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from newsletter.store.base import StoreBase, utcnow
from newsletter.store.schema import locks


class LockQueries(StoreBase):
    def acquire_lock(self, name: str, holder: str, *, ttl: timedelta) -> bool:
        """Take the lock ``name`` for ``holder``. False when someone else holds it."""
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
                if row.holder != holder and row.expires_at > now:
                    return False
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
