"""What every query class shares: the engine and a clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, update

#: execution option of the connections Store.connect() hands out: they only read
READ_ONLY = "newsletter_read_only"


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreBase:
    engine: Engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: committed on success, rolled back on any error."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reading; writes go through :meth:`begin`."""
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            yield conn


def update_by_id(conn: Connection, table: Table, rows: list[dict[str, Any]], **same: Any) -> None:
    """Update many rows of ``table`` in one executemany: each of ``rows`` is
    ``{"id": …, column: value, …}`` (the same columns in every row); ``same``
    sets one value on all of them (e.g. ``updated_at``)."""
    if not rows:
        return
    columns = [c for c in rows[0] if c != "id"]
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values({**{c: bindparam(f"b_{c}") for c in columns}, **same})
    )
    conn.execute(stmt, [{f"b_{k}": v for k, v in r.items()} for r in rows])
