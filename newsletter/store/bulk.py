"""The subscriber upsert's reads and writes, a statement per table per chunk.

``AudienceQueries.upsert_subscribers`` decides what changes; this module
writes it. A chunk of thousands of rows goes to the driver as it is, with the
values every row shares (the time, the consent source) converted once:
through SQLAlchemy's executemany the per-row parameter handling (the UTC
datetime conversion of four columns, for one) cost more than the database.

SQLite takes executemany (a loop in C inside one transaction) and a JSON
array for "these addresses"; PostgreSQL takes one array per column, unnested
on the server: one round trip per table, whatever the chunk's size.

The values are stored as SQLAlchemy stores them (datetimes through the
column's own type), so rows written here and rows written elsewhere read back
the same. The new subscribers' subscriptions are written the same way, a
statement per chunk, by their own domain (``subscriptions.subscribe_every_digest``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Column, Connection

from newsletter.errors import StoreError
from newsletter.models import Subscriber
from newsletter.states import SubscriberStatus
from newsletter.store.base import bind_processor
from newsletter.store.schema import subscribers


class StoredSubscriber(NamedTuple):
    """The columns of a subscriber the upsert compares."""

    id: int
    name: str
    timezone: str
    status: str
    status_reason: str
    soft_bounces: int


_COMPARED = "id, name, timezone, status, status_reason, soft_bounces"


def _bind(conn: Connection, column: Column[Any], value: Any) -> Any:
    """``value`` as SQLAlchemy would send it to the driver for ``column``."""
    process = bind_processor(column, conn.dialect)
    return process(value) if process else value


class SubscriberRows:
    """Bulk reads and writes of subscribers and their tags (the "*" subscriptions of
    the new ones: ``subscriptions.subscribe_every_digest``)."""

    def __init__(self, conn: Connection, now: datetime):
        self.conn = conn
        self.now = _bind(conn, subscribers.c.created_at, now)

    #: SQL for the values of one JSON array parameter, as text and as integers:
    #: one parameter for any number of values
    LIST_TEXT = ""
    LIST_INT = ""

    def _among(self, sql: str, values: Iterable[Any]) -> Sequence[Any]:
        return self.conn.exec_driver_sql(sql, (json.dumps(list(values)),)).all()

    def existing(self, emails: Sequence[str]) -> dict[str, StoredSubscriber]:
        rows = self._among(
            f"SELECT email, {_COMPARED} FROM subscribers WHERE email IN ({self.LIST_TEXT})",
            emails,
        )
        return {r[0]: StoredSubscriber(*r[1:]) for r in rows}

    def tags(self, ids: Sequence[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {i: [] for i in ids}
        if ids:
            for sid, slug in self._among(
                "SELECT subscriber_id, tag_slug FROM subscriber_tags "
                f"WHERE subscriber_id IN ({self.LIST_INT})",
                ids,
            ):
                found[sid].append(slug)
        return found

    def insert(self, subs: Sequence[Subscriber]) -> dict[str, int]:
        """Insert new subscribers; their ids by address."""
        raise NotImplementedError

    def update(self, rows: Sequence[StoredSubscriber]) -> None:
        raise NotImplementedError

    def untag(self, ids: Sequence[int]) -> None:
        raise NotImplementedError

    def tag(self, rows: Sequence[tuple[int, str]]) -> None:
        raise NotImplementedError


def _reason(s: Subscriber) -> str:
    return "" if s.status == SubscriberStatus.ACTIVE else "imported"


def _status(s: Subscriber) -> str:
    # a plain str: a StrEnum member is not a value the drivers take as its text
    return str(s.status)


def _item(i: int) -> str:
    # json_extract, not ->> (SQLite 3.38): the JSON functions are older than that
    return f"json_extract(value, '$[{i}]')"


def _items(n: int) -> str:
    return ", ".join(_item(i) for i in range(n))


class SqliteRows(SubscriberRows):
    """Rows go in as one JSON array per table and chunk, through ``json_each``:
    half the time of an executemany, which binds every value of every row."""

    LIST_TEXT = LIST_INT = "SELECT value FROM json_each(?)"

    def insert(self, subs: Sequence[Subscriber]) -> dict[str, int]:
        if not subs:
            return {}
        before = self.conn.exec_driver_sql(
            "SELECT coalesce(max(id), 0) FROM subscribers"
        ).scalar_one()
        self.conn.exec_driver_sql(
            "INSERT INTO subscribers (email, name, timezone, status, status_reason, "
            "soft_bounces, created_at, updated_at) "
            f"SELECT {_items(5)}, 0, ?, ? FROM json_each(?)",
            (
                self.now,
                self.now,
                json.dumps([(s.email, s.name, s.timezone, _status(s), _reason(s)) for s in subs]),
            ),
        )
        # The transaction holds the write lock (BEGIN IMMEDIATE) and SQLite gives a new
        # row the largest id + 1, so the new rows are the ones after ``before`` (unless
        # the largest possible id was reached, when it picks free ones at random: then
        # they are looked up by address)
        ids: dict[str, int] = dict(
            self.conn.exec_driver_sql(
                "SELECT email, id FROM subscribers WHERE id > ?", (before,)
            ).all()
        )
        if len(ids) == len(subs):
            return ids
        return dict(
            self._among(
                "SELECT email, id FROM subscribers WHERE email IN (SELECT value FROM json_each(?))",
                (s.email for s in subs),
            )
        )

    def update(self, rows: Sequence[StoredSubscriber]) -> None:
        if not rows:
            return
        now = self.now
        self.conn.exec_driver_sql(
            "UPDATE subscribers SET name = ?, timezone = ?, status = ?, status_reason = ?, "
            "soft_bounces = ?, updated_at = ? WHERE id = ?",
            [
                (r.name, r.timezone, str(r.status), r.status_reason, r.soft_bounces, now, r.id)
                for r in rows
            ],
        )

    def untag(self, ids: Sequence[int]) -> None:
        if ids:
            self.conn.exec_driver_sql(
                "DELETE FROM subscriber_tags WHERE subscriber_id IN "
                "(SELECT value FROM json_each(?))",
                (json.dumps(list(ids)),),
            )

    def tag(self, rows: Sequence[tuple[int, str]]) -> None:
        if rows:
            self.conn.exec_driver_sql(
                "INSERT INTO subscriber_tags (subscriber_id, tag_slug) "
                f"SELECT {_items(2)} FROM json_each(?)",
                (json.dumps(rows),),
            )


class PostgresRows(SubscriberRows):
    """New rows go in by COPY, their ids drawn from the table's sequence first;
    lists of values go to the server as one JSON parameter (psycopg would quote
    every element of an array parameter in Python)."""

    def __init__(self, conn: Connection, now: datetime):
        super().__init__(conn, now)
        # COPY's text form of the time: formatted once, not once per value
        self.now_text = self.now.isoformat()

    LIST_TEXT = "SELECT json_array_elements_text(%s::json)"
    LIST_INT = "SELECT json_array_elements_text(%s::json)::int"

    def _run(self, sql: str, *params: Any) -> Any:
        return self.conn.exec_driver_sql(sql, params)

    def _copy(self, table: str, columns: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
            with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    def insert(self, subs: Sequence[Subscriber]) -> dict[str, int]:
        if not subs:
            return {}
        # the ids the rows would get from the column's default, taken now
        ids = [
            i
            for (i,) in self._run(
                "SELECT nextval(pg_get_serial_sequence('subscribers', 'id')) "
                "FROM generate_series(1, %s)",
                len(subs),
            )
        ]
        now = self.now_text
        self._copy(
            "subscribers",
            "id, email, name, timezone, status, status_reason, soft_bounces, "
            "created_at, updated_at",
            (
                (i, s.email, s.name, s.timezone, _status(s), _reason(s), 0, now, now)
                for i, s in zip(ids, subs, strict=True)
            ),
        )
        return {s.email: i for i, s in zip(ids, subs, strict=True)}

    def update(self, rows: Sequence[StoredSubscriber]) -> None:
        if not rows:
            return
        self._run(
            "UPDATE subscribers SET name = u.n, timezone = u.tz, status = u.st, "
            "status_reason = u.r, soft_bounces = u.sb, updated_at = %s "
            "FROM json_to_recordset(%s::json) "
            "AS u(id int, n text, tz text, st text, r text, sb int) WHERE subscribers.id = u.id",
            self.now,
            json.dumps(
                [
                    {
                        "id": r.id,
                        "n": r.name,
                        "tz": r.timezone,
                        "st": str(r.status),
                        "r": r.status_reason,
                        "sb": r.soft_bounces,
                    }
                    for r in rows
                ]
            ),
        )

    def untag(self, ids: Sequence[int]) -> None:
        if ids:
            self._run(
                "DELETE FROM subscriber_tags WHERE subscriber_id IN "
                "(SELECT json_array_elements_text(%s::json)::int)",
                json.dumps(list(ids)),
            )

    def tag(self, rows: Sequence[tuple[int, str]]) -> None:
        if rows:
            self._copy("subscriber_tags", "subscriber_id, tag_slug", rows)


def subscriber_rows(conn: Connection, now: datetime) -> SubscriberRows:
    """The bulk reader and writer for ``conn``'s database."""
    name = conn.dialect.name
    if name == "sqlite":
        return SqliteRows(conn, now)
    if name == "postgresql":
        return PostgresRows(conn, now)
    raise StoreError(f"no bulk subscriber writes for the {name} database")
