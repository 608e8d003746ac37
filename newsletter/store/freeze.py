"""The frozen audience: one delivery row per recipient, written in one transaction.

Two ways in, one set of rules:

- :meth:`FreezeQueries.freeze_digest_audience` (what ``editions.freeze`` uses):
  the digest's audience is copied inside the database, ``INSERT INTO deliveries
  … SELECT … FROM subscribers`` joined to their subscriptions, so no recipient
  passes through Python and memory does not grow with the audience. The
  variant of each subscriber comes from a small temporary table, topic set →
  variant, filled by the caller's ``variant_of`` for every distinct topic set;
  the local-time release from another, time zone → instant.
- :meth:`FreezeQueries.freeze_audience`: an explicit list of rows (tests and
  benchmarks that freeze a made-up audience).

Both keep subscribers already frozen as they are (a second freeze adds only
newcomers), write an address that differs from one already frozen only by case
(``strip().casefold()``) ``failed`` as a duplicate, naming the subscriber frozen
first, and make the edition ``sending`` with its audience counts in the same
transaction: a freeze that fails leaves nothing, and two freezes take turns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from newsletter.errors import StoreError
from newsletter.states import DeliveryStatus
from newsletter.store.base import StoreBase, bind_processor, chunks, utcnow
from newsletter.store.deliveries import AudienceRow
from newsletter.store.editions import mark_frozen
from newsletter.store.schema import (
    TZ,
    deliveries,
    editions,
    subscribers,
)
from newsletter.store.subscriptions import Audience, topic_sets

logger = logging.getLogger(__name__)

D = DeliveryStatus

#: how many times a PostgreSQL freeze starts again after a serialization failure
#: (another freeze of the same edition committed first; the next try adds nothing)
_RETRIES = 5

#: ASCII whitespace ``str.strip`` removes (any other is non-ASCII, found as such)
_ASCII_SPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"

# the temporary tables of a freeze: its own MetaData, so migrations never see them
_temporary = MetaData()
variant_map = Table(
    "freeze_variant_map",
    _temporary,
    # "t" + the subscription's topics as stored (JSON), or "s" + the subscriber's
    # own tag slugs as a JSON array (see Audience.keyed)
    Column("topics", Text, primary_key=True),
    # NULL: not one of the edition's variants; such subscribers get nothing
    Column("variant", String(500)),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
zone_map = Table(
    "freeze_zone_map",
    _temporary,
    Column("timezone", String(64), primary_key=True),
    Column("release_at", TZ),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
duplicate_map = Table(
    "freeze_duplicates",
    _temporary,
    Column("subscriber_id", Integer, primary_key=True),
    Column("error", Text, nullable=False),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


#: a freeze that writes at least this many deliveries refreshes PostgreSQL's
#: statistics of the table (``StoreBase.refresh_statistics``)
STATISTICS_AFTER = 1000


def address_key(email: str) -> str:
    """Two addresses with the same key are one mailbox, sent to once."""
    return email.strip().casefold()


def duplicate_error(first: int) -> str:
    return (
        f"duplicate address: subscriber {first} has the same address "
        "(ignoring case); sent once, not twice"
    )


def find_duplicates(
    frozen: Iterable[tuple[int, str]], new: Iterable[tuple[int, str]]
) -> dict[int, int]:
    """Of the ``new`` (subscriber id, address) pairs, in the order they are frozen,
    those whose address has the key of one frozen before (``frozen`` first, in
    order, then the earlier new ones): {subscriber id: subscriber id frozen first}."""
    seen: dict[str, int] = {}
    for sid, mail in frozen:
        seen.setdefault(address_key(mail), sid)
    dups: dict[int, int] = {}
    for sid, mail in new:
        first = seen.setdefault(address_key(mail), sid)
        if first != sid:
            dups[sid] = first
    return dups


def _plain(email: str) -> bool:
    """ASCII that ``address_key`` leaves as it is: it can only match itself."""
    return email.isascii() and address_key(email) == email


class FreezeQueries(StoreBase):
    # ------------------------------------------------------------------ explicit rows

    def freeze_audience(
        self,
        edition_id: int,
        rows: Iterable[AudienceRow],
        *,
        left_out: dict[str, int] | None = None,
        chunk: int = 5000,
    ) -> int:
        """Write one queued delivery per row, in one transaction. Returns how many.

        Rows already there are kept as they are, so a second call adds nothing;
        duplicates and the edition as in the module's docstring.
        """
        now = utcnow()
        # read the rows first: they may come from a query, and on SQLite every
        # transaction takes the write lock, so none may be opened inside this one
        rows = list(rows)
        with self.begin() as conn:
            info = self._lock_edition(conn, edition_id)
            frozen = conn.execute(
                select(deliveries.c.subscriber_id, deliveries.c.email)
                .where(deliveries.c.edition_id == edition_id)
                .order_by(deliveries.c.id)
            ).all()
            have = {sid for sid, _ in frozen}
            new: list[AudienceRow] = []
            for r in rows:
                if r.subscriber_id not in have:
                    have.add(r.subscriber_id)
                    new.append(r)
            dups = find_duplicates(
                ((sid, mail) for sid, mail in frozen),
                ((r.subscriber_id, r.email) for r in new),
            )
            self._insert_rows(conn, edition_id, new, dups, now, chunk=chunk)
            added = len(new) - len(dups)
            self._record(conn, edition_id, info, added, len(dups), left_out)
        return added

    # ------------------------------------------------------------------ in the database

    def freeze_digest_audience(
        self,
        edition_id: int,
        digest: str,
        *,
        variant_of: Callable[[list[str]], str | None],
        release_of: Callable[[str], datetime] | None = None,
        left_out: dict[str, int] | None = None,
    ) -> int:
        """Write one delivery per member of ``digest``'s audience (``Audience``) not
        frozen yet, inside the database, in one transaction. Returns how many queued.

        ``variant_of(tags)`` is the variant of a subscriber with those topics (sorted;
        the subscription's topics, or the subscriber's own tag slugs where it has
        none), None to leave them out. ``release_of(timezone)`` is the local-time
        release instant of a subscriber with that ``timezone`` (None: no
        local-time release). Both are called once per distinct value, not per
        subscriber. On PostgreSQL the freeze reads one snapshot (REPEATABLE READ),
        so the topic sets and zones it maps are exactly those it copies.
        """
        for attempt in range(1, _RETRIES + 1):
            try:
                with self._snapshot() as conn:
                    added = self._freeze_digest(
                        conn, edition_id, digest, variant_of, release_of, left_out
                    )
                if added >= STATISTICS_AFTER:
                    # the claims, the webhook's lookups and the status counts that
                    # follow are planned for the table as it now is
                    self.refresh_statistics("deliveries")
                return added
            except DBAPIError as err:
                if getattr(err.orig, "sqlstate", None) != "40001" or attempt == _RETRIES:
                    raise
                logger.info("edition %s: frozen by another process meanwhile; again", edition_id)
        raise AssertionError("unreachable")

    def _freeze_digest(
        self,
        conn: Connection,
        edition_id: int,
        digest: str,
        variant_of: Callable[[list[str]], str | None],
        release_of: Callable[[str], datetime] | None,
        left_out: dict[str, int] | None,
    ) -> int:
        now = utcnow()
        info = self._lock_edition(conn, edition_id)
        mark = conn.execute(
            select(func.max(deliveries.c.id)).where(deliveries.c.edition_id == edition_id)
        ).scalar()
        who = Audience(digest)
        source, topic_key = who.keyed(self.dialect)
        # every distinct topic set, read from the tables themselves (scans without
        # a join: a superset of the audience's), mapped to its variant or to NULL
        variant_map.create(conn)
        sets = [
            {"topics": k, "variant": variant_of(t)}
            for k, t in topic_sets(conn, digest, self.dialect)
        ]
        if sets:
            conn.execute(insert(variant_map), sets)
        source = source.outerjoin(variant_map, variant_map.c.topics == topic_key)
        # a member not frozen yet, whose topic set has one of the edition's variants;
        # a set missing from the map (it cannot be: the same snapshot) gives a NULL
        # variant, which the NOT NULL column refuses: the freeze fails, nothing half-done
        chosen = [
            who.members,
            variant_map.c.topics.is_(None) | variant_map.c.variant.is_not(None),
        ]
        if mark is not None:
            chosen.append(
                ~exists().where(
                    (deliveries.c.edition_id == edition_id)
                    & (deliveries.c.subscriber_id == subscribers.c.id)
                )
            )
        release: ColumnElement[Any] = literal(None, TZ)
        if release_of is not None:
            # every zone of the subscribers (the same snapshot): none is missing
            zone_map.create(conn)
            zones = conn.execute(select(subscribers.c.timezone).distinct()).scalars().all()
            if zones:
                conn.execute(
                    insert(zone_map), [{"timezone": z, "release_at": release_of(z)} for z in zones]
                )
            source = source.outerjoin(zone_map, zone_map.c.timezone == subscribers.c.timezone)
            release = zone_map.c.release_at
        dups = self._digest_duplicates(conn, edition_id, source, and_(*chosen), mark)
        status: ColumnElement[Any] = literal(str(D.QUEUED))
        error: ColumnElement[Any] = literal("")
        if dups:
            duplicate_map.create(conn)
            conn.execute(
                insert(duplicate_map),
                [{"subscriber_id": s, "error": duplicate_error(f)} for s, f in dups.items()],
            )
            found = (
                select(duplicate_map.c.error)
                .where(duplicate_map.c.subscriber_id == subscribers.c.id)
                .scalar_subquery()
            )
            # born failed: a duplicate is never queued, not even inside this transaction
            status = case((found.is_(None), str(D.QUEUED)), else_=str(D.FAILED))
            error = func.coalesce(found, "")
        copy = (
            select(
                literal(edition_id),
                subscribers.c.id,
                subscribers.c.email,
                variant_map.c.variant,
                status,
                error,
                literal(""),
                literal(False),
                literal(False),
                release,
                literal(now, TZ),
            )
            .select_from(source)
            .where(*chosen)
            .order_by(subscribers.c.id)
        )
        try:
            inserted = conn.execute(
                insert(deliveries).from_select(_COLUMNS, copy),
                execution_options={"preserve_rowcount": True},
            ).rowcount
        except IntegrityError as err:
            raise StoreError(
                f"edition {edition_id}: a subscriber's topic set was missing from the "
                f"freeze's map ({err.orig}); nothing was frozen",
                where="deliveries",
            ) from err
        for table in (variant_map, zone_map, duplicate_map):
            table.drop(conn, checkfirst=True)
        added = int(inserted) - len(dups)
        self._record(conn, edition_id, info, added, len(dups), left_out)
        return added

    def _digest_duplicates(
        self,
        conn: Connection,
        edition_id: int,
        source: Any,
        chosen: ColumnElement[bool],
        mark: int | None,
    ) -> dict[int, int]:
        """Which of the subscribers about to be frozen are duplicates (find_duplicates).

        Only addresses that ``address_key`` changes can match another one (two
        that it leaves alone match only when equal, and subscribers' addresses
        are unique): those, plus, when some are frozen already, new addresses
        equal to a frozen one, are read with every address of their keys; the
        rest of the audience is never read.
        """
        email = subscribers.c.email
        chosen_rows = select(subscribers.c.id, email).select_from(source).where(chosen)

        def chosen_among(which: ColumnElement[bool]) -> dict[int, str]:
            # the subscribers alone first (a scan without the audience's joins),
            # then which of those few are about to be frozen
            ids = conn.execute(select(subscribers.c.id).where(which)).scalars().all()
            out: dict[int, str] = {}
            for part in chunks(ids):
                out.update(conn.execute(chosen_rows.where(subscribers.c.id.in_(part))).all())
            return out

        frozen_rows = select(deliveries.c.id, deliveries.c.subscriber_id, deliveries.c.email).where(
            deliveries.c.edition_id == edition_id
        )
        new = chosen_among(self._changed_by_key(email))
        frozen: dict[int, tuple[int, str]] = {}
        if mark is not None:
            for did, sid, mail in conn.execute(
                frozen_rows.where(self._changed_by_key(deliveries.c.email))
            ):
                frozen[did] = (sid, mail)
            same = select(deliveries.c.email).where(deliveries.c.edition_id == edition_id)
            new.update(chosen_among(email.in_(same)))
        keys = sorted(
            {address_key(m) for m in new.values()} | {address_key(m) for _, m in frozen.values()}
        )
        for part in chunks([k for k in keys if _plain(k)]):
            new.update(chosen_among(email.in_(part)))
            if mark is not None:
                for did, sid, mail in conn.execute(frozen_rows.where(deliveries.c.email.in_(part))):
                    frozen[did] = (sid, mail)
        if not new:
            return {}
        return find_duplicates(
            (frozen[d] for d in sorted(frozen)), ((sid, new[sid]) for sid in sorted(new))
        )

    def _changed_by_key(self, email: Any) -> ColumnElement[bool]:
        """A superset of the addresses ``address_key`` changes: upper-case ASCII,
        ASCII space at either end, anything not ASCII."""
        if self.dialect == "postgresql":
            wide = func.octet_length(email) != func.length(email)
            trimmed = func.btrim(email, _ASCII_SPACE)
        else:
            wide = func.length(cast(email, LargeBinary)) != func.length(email)
            trimmed = func.trim(email, _ASCII_SPACE)
        return or_(email != func.lower(email), wide, email != trimmed)

    # ------------------------------------------------------------------ shared

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """A write transaction that reads one snapshot: SQLite's (BEGIN IMMEDIATE
        holds the write lock), PostgreSQL's REPEATABLE READ."""
        if self.dialect != "postgresql":
            with self.begin() as conn:
                yield conn
            return
        with self.engine.connect() as raw:
            conn = raw.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def _lock_edition(self, conn: Connection, edition_id: int) -> dict[str, Any]:
        """The edition's info, its row locked: two freezes of one edition take turns
        (SQLite: the write lock every transaction here takes)."""
        lock = select(editions.c.info).where(editions.c.id == edition_id)
        if self.dialect == "postgresql":
            lock = lock.with_for_update()
        return dict(conn.execute(lock).scalar_one() or {})

    @staticmethod
    def _record(
        conn: Connection,
        edition_id: int,
        info: dict[str, Any],
        added: int,
        duplicates: int,
        left_out: dict[str, int] | None,
    ) -> None:
        audience = dict(info.get("audience") or {})
        audience["queued"] = int(audience.get("queued", 0)) + added
        audience["duplicates"] = int(audience.get("duplicates", 0)) + duplicates
        if left_out is not None:
            audience["left_out"] = dict(left_out)
        info["audience"] = audience
        mark_frozen(conn, edition_id, info)

    @staticmethod
    def _insert_rows(
        conn: Connection,
        edition_id: int,
        rows: list[AudienceRow],
        dups: dict[int, int],
        now: datetime,
        *,
        chunk: int,
    ) -> None:
        """Bulk insert ``rows``, those in ``dups`` failed as duplicates.

        Straight to the driver's executemany (or COPY on psycopg 3): SQLAlchemy's
        per-row parameter processing costs more than the inserts themselves at
        100,000 rows. Values go through the columns' own bind processors, so they
        are stored exactly as SQLAlchemy would store them.
        """
        if not rows:
            return
        dialect = conn.dialect
        stamp = bind_processor(deliveries.c.updated_at, dialect)
        flag = bind_processor(deliveries.c.opened, dialect)
        at = stamp(now) if stamp else now
        no = flag(False) if flag else False
        cols = ", ".join(_COLUMNS)
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        sql = f"INSERT INTO deliveries ({cols}) VALUES ({', '.join([mark] * len(_COLUMNS))})"
        params = []
        for r in rows:
            first = dups.get(r.subscriber_id)
            status, error = (D.QUEUED, "") if first is None else (D.FAILED, duplicate_error(first))
            release = r.release_at
            params.append(
                (
                    edition_id,
                    r.subscriber_id,
                    r.email,
                    r.variant,
                    str(status),
                    error,
                    "",
                    no,
                    no,
                    stamp(release) if (stamp and release is not None) else release,
                    at,
                )
            )
        raw: Any = conn.connection.driver_connection
        if (
            dialect.name == "postgresql"
            and hasattr(raw, "cursor")
            and hasattr(raw.cursor(), "copy")
        ):
            # psycopg 3: COPY is an order of magnitude faster than INSERTs
            with raw.cursor() as cur, cur.copy(f"COPY deliveries ({cols}) FROM STDIN") as copy:
                for row in params:
                    copy.write_row(row)
            return
        for start in range(0, len(params), chunk):
            conn.exec_driver_sql(sql, params[start : start + chunk])


#: the columns a freeze writes, in this order
_COLUMNS = [
    "edition_id",
    "subscriber_id",
    "email",
    "variant",
    "status",
    "error",
    "message_id",
    "opened",
    "clicked",
    "release_at",
    "updated_at",
]
