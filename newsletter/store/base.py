"""What every query class shares: the engine and a clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine

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
