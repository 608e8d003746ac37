"""What every query class shares: the engine and a clock."""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    String,
    Table,
    any_,
    bindparam,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect

from newsletter.errors import NotFoundError, TransitionError
from newsletter.states import Machine

#: execution option of the connections Store.connect() hands out: they only read
READ_ONLY = "newsletter_read_only"


#: the SQLite engines (pooled: shared by threads) whose write transactions queue
#: on a lock of the process (StoreBase.begin)
_sqlite_writers: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


def queue_sqlite_writers(engine: Engine) -> None:
    """Let the threads' write transactions on ``engine`` wait for each other in
    the process (see StoreBase.begin)."""
    _sqlite_writers[engine] = threading.RLock()


def dialect_insert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can take ON CONFLICT, in ``dialect``'s own SQL."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


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
        writer = _sqlite_writers.get(self.engine) if self.dialect == "sqlite" else None
        if writer is None:
            with self.engine.begin() as conn:
                yield conn
            return
        # SQLite has one writer at a time. The threads of one process (serve's)
        # queue here for it rather than in SQLite's busy handler, which sleeps
        # for up to 100 ms between tries however soon the lock is free; other
        # processes still wait in the busy handler
        with writer, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reading; writes go through :meth:`begin`."""
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            yield conn

    def refresh_statistics(self, *tables: str) -> None:
        """PostgreSQL: ANALYZE ``tables`` now (after a bulk write).

        Until autovacuum gets to it, the planner keeps the statistics of the
        empty table: after importing 1,000,000 subscribers it read the whole
        table for every page of the audience (a page by id became a bitmap scan
        of every active row and a sort), so the compile of the first edition
        grew with the square of the audience. ANALYZE samples: under a second
        at 1,000,000 rows. SQLite plans these queries by their indexes alone.
        """
        if self.dialect != "postgresql" or not tables:
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE " + ", ".join(tables))
            conn.commit()


#: values per IN (...) list on SQLite (its limit on parameters per statement)
IN_CHUNK = 500


def in_parts(
    dialect: str, column: ColumnElement[Any], values: Sequence[Any]
) -> Iterator[ColumnElement[bool]]:
    """``column IN values`` as the WHERE clauses of statements to run one after another.

    PostgreSQL: one ``column = ANY(:array)`` with the whole list as one parameter.
    Its text is the same however long the list, so SQLAlchemy compiles it once and
    psycopg prepares it once; an IN list is a new statement for every length (the
    webhook spent 15 ms per request compiling and parsing those). SQLite: IN lists
    of :data:`IN_CHUNK`. Nothing for an empty list.
    """
    if not values:
        return
    if dialect == "postgresql":
        yield column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
        return
    for i in range(0, len(values), IN_CHUNK):
        yield column.in_(values[i : i + IN_CHUNK])


def chunks(items: Sequence[Any], n: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    """``items`` ``n`` at a time (IN lists that must stay lists on both engines)."""
    for i in range(0, len(items), n):
        yield items[i : i + n]


def update_by_id(conn: Connection, table: Table, rows: list[dict[str, Any]], **same: Any) -> None:
    """Update many rows of ``table`` in one executemany: each of ``rows`` is
    ``{"id": …, column: value, …}`` (the same columns in every row); ``same``
    sets one value on all of them (e.g. ``updated_at``)."""
    if not rows:
        return
    columns = [c for c in rows[0] if c != "id"]
    if conn.dialect.name == "postgresql" and _update_by_id_pg(conn, table, columns, rows, same):
        return
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values({**{c: bindparam(f"b_{c}") for c in columns}, **same})
    )
    conn.execute(stmt, [{f"b_{k}": v for k, v in r.items()} for r in rows])


#: column types update_by_id sends inside one JSON parameter on PostgreSQL -> the type
#: its text is cast to (text, not varchar(n): an explicit cast would truncate silently
#: where the column refuses a value too long)
_PG_JSON_TYPES: dict[type, str] = {String: "text", Integer: "integer", Boolean: "boolean"}


def _update_by_id_pg(
    conn: Connection,
    table: Table,
    columns: list[str],
    rows: list[dict[str, Any]],
    same: dict[str, Any],
) -> bool:
    """update_by_id as one statement, the rows one JSON parameter (an executemany is a
    statement per row to send, parse and plan). False (nothing done) for a column or
    value it does not handle."""
    casts = {}
    for c in ["id", *columns]:
        cast = next(
            (t for base, t in _PG_JSON_TYPES.items() if isinstance(table.c[c].type, base)), None
        )
        if cast is None:
            return False
        casts[c] = cast
    if not all(isinstance(v, str | int | None) for r in rows for v in r.values()):
        return False
    sets = [f"{c} = (v.r->>'{c}')::{casts[c]}" for c in columns]
    params: dict[str, Any] = {"rows": json.dumps(rows)}
    for c, value in same.items():
        sets.append(f"{c} = %(same_{c})s")
        process = bind_processor(table.c[c], conn.dialect)
        params[f"same_{c}"] = process(value) if process else value
    conn.exec_driver_sql(
        f"UPDATE {table.name} SET {', '.join(sets)} "
        "FROM json_array_elements(%(rows)s::json) AS v(r) "
        f"WHERE {table.name}.id = (v.r->>'id')::integer",
        params,
    )
    return True


def can_move(
    table: Table, machine: Machine[Any], target: str, *, stay: bool = False
) -> ColumnElement[bool]:
    """WHERE clause of a status change to ``target``: the row is in one of the statuses
    the machine allows that move from (``stay``: or in ``target`` already). Every
    status UPDATE in the store carries it."""
    # the statuses are our own constants, written into the SQL as literals: the
    # clause also works in executemany (no expanding parameters), and reads as the table
    sources = sources_of(machine, target, stay=stay)
    return table.c.status.in_([literal_column(f"'{s}'") for s in sources])


def sources_of(machine: Machine[Any], target: str, *, stay: bool = False) -> list[str]:
    """The statuses a row may be in for an UPDATE to ``target`` (see :func:`can_move`)."""
    sources = [str(s) for s in machine.sources(target)]
    if stay:
        sources.append(str(machine.states(target)))
    return sources


def move_row(
    conn: Connection,
    table: Table,
    machine: Machine[Any],
    key: ColumnElement[bool],
    target: str,
    *,
    what: str,
    stay: bool = False,
    **values: Any,
) -> bool:
    """Move the one row matching ``key`` to ``target`` (and set ``values``) if the
    machine allows it from where the row is.

    Returns True when it moved, False when it was in ``target`` already (not a
    move: nothing is written, unless ``stay``, which writes ``values`` then and
    returns True). Raises :class:`TransitionError` for a refused move and
    :class:`NotFoundError` when no row matches.
    """
    target = machine.states(target)
    stmt = update(table).where(key & can_move(table, machine, target, stay=stay))
    if conn.execute(stmt.values(status=target, **values)).rowcount:
        return True
    current = conn.execute(select(table.c.status).where(key)).scalar_one_or_none()
    if current is None:
        raise NotFoundError(f"no {what}")
    if current == target:
        return False
    raise TransitionError(what, current, target)


def bind_processor(column: Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """What SQLAlchemy does to a value of ``column`` before the driver sees it.

    The type's dialect form: a TypeDecorator's own ``bind_processor`` applies only
    its ``process_bind_param``, so on SQLite a datetime would reach sqlite3 as an
    object and be stored in sqlite3's format, not SQLAlchemy's.
    """
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def sqlite_executemany(conn: Connection, table: Table, sql: str, rows: list[dict[str, Any]]) -> int:
    """executemany straight to the driver, values converted by the columns' own types.

    The same rows through SQLAlchemy's executemany cost as much again in
    per-row parameter handling; this keeps the webhook above 5,000 events/s.
    ``sql`` has ``{cols}`` and ``{marks}`` for the columns of the first row (or
    ``{sets}`` for ``col = ?, …``); a ``{where}`` key in a row is bound last
    (for UPDATE … WHERE id = ?; a tuple for several). Returns the rows changed.
    """
    cols = [c for c in rows[0] if c != "{where}"]
    procs = [bind_processor(table.c[c], conn.dialect) for c in cols]
    where = "{where}" in rows[0]
    params = []
    for row in rows:
        values = [p(row[c]) if p else row[c] for c, p in zip(cols, procs, strict=True)]
        if where:
            last = row["{where}"]
            values.extend(last if isinstance(last, tuple) else (last,))
        params.append(tuple(values))
    text = sql.format(
        cols=", ".join(cols),
        marks=", ".join("?" * len(cols)),
        sets=", ".join(f"{c} = ?" for c in cols),
    )
    return int(conn.exec_driver_sql(text, params).rowcount)
