"""Subscriptions: one per subscriber and digest, with the consent that started it.

A subscriber from before migration 0003 has one subscription to ``"*"``
(:data:`ALL_DIGESTS`): every digest that has no row of its own, which is
exactly what they got before. Leaving one digest writes that digest's own row
(unsubscribed), so the others keep coming.

The audience of a digest is every *active* subscriber whose effective
subscription to it is *active*; the subscriber's status stays the gate for the
whole address (bounced, complained, suppressed, pending, forgotten never get
mail).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.exc import IntegrityError

from newsletter.models import Subscriber, Subscription
from newsletter.states import SUBSCRIBER_BLOCKED, SUBSCRIPTION
from newsletter.states import SubscriberStatus as Sub
from newsletter.states import SubscriptionStatus as Subn
from newsletter.store.audience import (
    REOPENED_BY_CONFIRMING,
    activate_confirmed,
    delete_pending_subscriber,
    insert_new_subscriber,
    new_subscriber_statement,
    upsert_subscriber_rows,
)
from newsletter.store.base import bind_processor, can_move, move_row, utcnow
from newsletter.store.ratelimits import RateLimitQueries
from newsletter.store.schema import ALL_DIGESTS, subscriber_tags, subscribers, subscriptions

#: subscriber statuses that block the whole address: no mail of any kind
BLOCKED = SUBSCRIBER_BLOCKED


@dataclass
class SignupRequest:
    """What a reader asked for on the signup form."""

    email: str
    digests: list[str]
    topics: list[str]
    name: str = ""
    ip: str = ""
    consent_text: str = ""
    source: str = "form"


@dataclass
class SignupOutcome:
    subscriber_id: int | None
    #: digests now waiting for the reader's confirmation
    pending: list[str] = field(default_factory=list)
    #: why no confirmation is due (not shown to the reader: no oracle)
    quiet_reason: str = ""
    #: a rate limit was over: nothing but the hits was stored
    limited: bool = False
    #: a confirmation is to be sent (pending, and the resend limit allows it)
    confirm_due: bool = False


class _Limited(Exception):
    """Over a rate limit: rolls back the signup's transaction."""


@dataclass(frozen=True)
class Limit:
    """At most ``limit`` hits on ``key`` per ``window`` seconds."""

    key: str
    limit: int
    window: float


def _over(counts: Sequence[int], limits: Sequence[Limit]) -> bool:
    """True when any of ``counts`` (one per limit) is over its limit."""
    return any(n > lim.limit for n, lim in zip(counts, limits, strict=True))


def _row_to_subscription(r: Any) -> Subscription:
    return Subscription(
        digest=r.digest,
        status=r.status,
        topics=list(r.topics) if r.topics is not None else None,
        created_at=r.created_at,
        updated_at=r.updated_at,
        confirmed_at=r.confirmed_at,
        unsubscribed_at=r.unsubscribed_at,
        consent_source=r.consent_source,
        consent_at=r.consent_at,
        consent_ip=r.consent_ip,
        consent_text=r.consent_text,
    )


@functools.cache
def new_signup_statement() -> Select[Any]:
    """PostgreSQL: a new address's signup in one statement. The pending subscriber
    (:func:`new_subscriber_statement`: nothing if the address is known) and, for
    it, a pending subscription per digest, in the order asked; RETURNING the new
    id, no row for a known address (which then wrote nothing). Built once;
    parameters: ``email``, ``name``, ``now``, ``digests`` (a list), ``topics``,
    ``source``, ``ip``, ``consent_text``."""
    new = new_subscriber_statement("postgresql").cte("new_subscriber")
    asked = (
        func.unnest(bindparam("digests", type_=ARRAY(String)))
        .table_valued("digest", with_ordinality="n")
        .render_derived()
        .alias("asked")
    )
    now = bindparam("now", type_=subscriptions.c.created_at.type)
    rows = (
        select(
            new.c.id,
            asked.c.digest,
            literal(Subn.PENDING, String),
            bindparam("topics", type_=subscriptions.c.topics.type),
            now,
            now,
            bindparam("source", type_=String),
            now,
            bindparam("ip", type_=String),
            bindparam("consent_text", type_=String),
        )
        .select_from(new)
        .join(asked, true())
        .order_by(asked.c.n)
    )
    columns = [
        "subscriber_id",
        "digest",
        "status",
        "topics",
        "created_at",
        "updated_at",
        "consent_source",
        "consent_at",
        "consent_ip",
        "consent_text",
    ]
    written = insert(subscriptions).from_select(columns, rows).cte("new_subscriptions")
    return select(new.c.id).add_cte(written)


def _own(subscriber_id: int, digest: str) -> ColumnElement[bool]:
    return (subscriptions.c.subscriber_id == subscriber_id) & (subscriptions.c.digest == digest)


def move_subscription(
    conn: Connection,
    subscriber_id: int,
    digest: str,
    status: str,
    *,
    stay: bool = False,
    **values: Any,
) -> bool:
    """Move the subscriber's own row for ``digest`` to ``status`` (and set ``values``)
    inside the caller's transaction, if ``SUBSCRIPTION`` allows it from where the row
    is: every change of a subscription's status goes through here (or, for a
    confirmation's rows, the same table's WHERE). See
    :func:`newsletter.store.base.move_row` for what it returns and raises."""
    return move_row(
        conn,
        subscriptions,
        SUBSCRIPTION,
        _own(subscriber_id, digest),
        status,
        what=f"subscription of subscriber {subscriber_id} to {digest}",
        stay=stay,
        **values,
    )


def subscribe_every_digest(
    conn: Connection, rows: Sequence[tuple[int, str]], consent_source: str, now: datetime
) -> None:
    """A subscription to every digest ("*") for each new (subscriber id, subscriber
    status) of an import, inside its transaction: unsubscribed for an address
    imported as unsubscribed, else active, confirmed now, its consent
    ``consent_source``.

    One statement per chunk, whatever its size, as the subscribers' own rows
    (store/bulk.py): a JSON array through ``json_each`` on SQLite, COPY on
    PostgreSQL. The values are stored as SQLAlchemy stores them (the time through
    the column's type, ``topics`` as JSON ``null``).
    """
    if not rows:
        return
    statuses = [
        (sid, Subn.UNSUBSCRIBED if status == Sub.UNSUBSCRIBED else Subn.ACTIVE)
        for sid, status in rows
    ]
    for status in {status for _, status in statuses}:
        SUBSCRIPTION.check_initial(status)
    process = bind_processor(subscriptions.c.created_at, conn.dialect)
    at = process(now) if process else now
    if conn.dialect.name == "postgresql":
        text = at.isoformat()  # COPY's text form, formatted once
        driver = conn.connection.driver_connection
        with driver.cursor() as cur:  # type: ignore[union-attr]
            with cur.copy(
                "COPY subscriptions (subscriber_id, digest, status, topics, created_at, "
                "updated_at, confirmed_at, consent_source, consent_at, consent_ip, "
                "consent_text) FROM STDIN"
            ) as copy:
                for sid, status in statuses:
                    copy.write_row(
                        (sid, ALL_DIGESTS, str(status), "null", text, text, text)
                        + (consent_source, text, "", "")
                    )
        return
    conn.exec_driver_sql(
        "INSERT INTO subscriptions (subscriber_id, digest, status, topics, created_at, "
        "updated_at, confirmed_at, consent_source, consent_at, consent_ip, consent_text) "
        f"SELECT json_extract(value, '$[0]'), '{ALL_DIGESTS}', json_extract(value, '$[1]'), "
        "'null', ?1, ?1, ?1, ?2, ?1, '', '' FROM json_each(?3)",
        (at, consent_source, json.dumps([(sid, str(status)) for sid, status in statuses])),
    )


def effective(subs: Sequence[Subscription], digest: str) -> Subscription | None:
    """The subscription that decides ``digest``: its own row, else the "*" row."""
    own = next((s for s in subs if s.digest == digest), None)
    return own or next((s for s in subs if s.digest == ALL_DIGESTS), None)


class Audience:
    """Who gets a digest, as SQL: the one definition the compile, the freeze and
    ``iter_audience`` share.

    ``source`` is subscribers joined to their own subscription to the digest
    (``own``) and to their "*" one (``every``); ``members`` keeps the active
    subscribers whose effective subscription (their own, else "*") is active;
    ``topics`` is that subscription's topics (JSON; SQL NULL or JSON null: the
    subscriber's own tags).
    """

    def __init__(self, digest: str) -> None:
        self.own = own = subscriptions.alias("own")
        self.every = every = subscriptions.alias("every")
        self.source = subscribers.outerjoin(
            own, and_(own.c.subscriber_id == subscribers.c.id, own.c.digest == digest)
        ).outerjoin(
            every, and_(every.c.subscriber_id == subscribers.c.id, every.c.digest == ALL_DIGESTS)
        )
        self.members = and_(
            subscribers.c.status == Sub.ACTIVE,
            or_(
                own.c.status == Subn.ACTIVE,
                and_(own.c.id.is_(None), every.c.status == Subn.ACTIVE),
            ),
        )
        self.topics = case((own.c.id.is_not(None), own.c.topics), else_=every.c.topics)

    def keyed(self, dialect: str) -> tuple[Any, ColumnElement[str]]:
        """``source`` (joined to what the key needs) and each member's topic-set key:
        "t" + the subscription's topics as stored, or, where it has none (SQL NULL
        or JSON null), "s" + the subscriber's own tag slugs as a JSON array in slug
        order (``tag_sets``). :func:`tags_of_key` reads a key back."""
        raw = func.coalesce(cast(self.topics, Text), "null")
        source: Any = self.source
        tags: ColumnElement[Any]
        if dialect == "postgresql":
            # one pass over subscriber_tags, joined (a correlated aggregate per
            # subscriber was evaluated twice per row by a hash join on the key)
            own_tags = tag_sets(dialect).subquery("own_tags")
            source = source.outerjoin(own_tags, own_tags.c.subscriber_id == subscribers.c.id)
            tags = func.coalesce(own_tags.c.tags, "[]")
        else:
            # SQLite: one index lookup per subscriber, in slug order
            ordered = (
                select(subscriber_tags.c.tag_slug)
                .where(subscriber_tags.c.subscriber_id == subscribers.c.id)
                .order_by(subscriber_tags.c.tag_slug)
                .correlate(subscribers)
                .subquery("slugs")
            )
            tags = select(func.json_group_array(ordered.c.tag_slug)).scalar_subquery()
        return source, case((raw == "null", literal("s") + tags), else_=literal("t") + raw)


def tag_sets(dialect: str) -> Select[Any]:
    """(subscriber_id, tags): each subscriber's tag slugs as a JSON array, in slug order
    (subscribers without tags have no row)."""
    if dialect == "postgresql":
        slug = subscriber_tags.c.tag_slug
        agg = cast(func.json_agg(aggregate_order_by(slug, slug)), Text)
        return select(subscriber_tags.c.subscriber_id, agg.label("tags")).group_by(
            subscriber_tags.c.subscriber_id
        )
    ordered = (
        select(subscriber_tags.c.subscriber_id, subscriber_tags.c.tag_slug)
        .order_by(subscriber_tags.c.subscriber_id, subscriber_tags.c.tag_slug)
        .subquery("ordered")
    )
    return select(
        ordered.c.subscriber_id, func.json_group_array(ordered.c.tag_slug).label("tags")
    ).group_by(ordered.c.subscriber_id)


def tags_of_key(key: str) -> list[str]:
    """The tags (sorted) of a topic-set key of :meth:`Audience.keyed`."""
    return sorted(json.loads(key[1:]) or [])


def topic_sets(conn: Connection, digest: str, dialect: str) -> list[tuple[str, list[str]]]:
    """Every topic-set key a member of ``digest``'s audience can have, with its tags:
    read from the tables alone (cheap scans, no join), a superset of the audience's."""
    keys = {"s[]"}
    for raw in conn.execute(
        select(cast(subscriptions.c.topics, Text))
        .where(subscriptions.c.digest.in_([digest, ALL_DIGESTS]))
        .distinct()
    ).scalars():
        if raw is not None and raw != "null":
            keys.add("t" + raw)
    sets = tag_sets(dialect).subquery("sets")
    keys.update("s" + t for t in conn.execute(select(sets.c.tags).distinct()).scalars())
    return [(k, tags_of_key(k)) for k in sorted(keys)]


class SubscriptionQueries(RateLimitQueries):
    # ------------------------------------------------------------------ reading

    def subscriptions_of(self, subscriber_id: int) -> list[Subscription]:
        with self.connect() as conn:
            return self._subscriptions(conn, subscriber_id)

    @staticmethod
    def _subscriptions(conn: Connection, subscriber_id: int) -> list[Subscription]:
        rows = conn.execute(
            select(subscriptions)
            .where(subscriptions.c.subscriber_id == subscriber_id)
            .order_by(subscriptions.c.digest)
        ).all()
        return [_row_to_subscription(r) for r in rows]

    def audience_topic_counts(self, digest: str) -> list[tuple[list[str], int]]:
        """How many of ``digest``'s audience have each topic set: (tags, count),
        counted in the database (what the compile needs, at any audience size)."""
        who = Audience(digest)
        source, key = who.keyed(self.dialect)
        with self.connect() as conn:
            rows = conn.execute(
                select(key.label("topic_key"), func.count())
                .select_from(source)
                .where(who.members)
                .group_by("topic_key")
            ).all()
        return [(tags_of_key(k), int(n)) for k, n in rows]

    def iter_audience(self, digest: str, *, page: int = 1000) -> Iterator[Subscriber]:
        """Who gets ``digest`` now, by id, a page at a time; ``tags`` are the topics
        of that subscription (or the subscriber's own tags where it has none)."""
        who = Audience(digest)
        last = 0
        while True:
            q = (
                select(
                    # only what a Subscriber here carries: the time stamps' UTC
                    # conversion was a tenth of reading a million
                    subscribers.c.id,
                    subscribers.c.email,
                    subscribers.c.name,
                    subscribers.c.timezone,
                    subscribers.c.status,
                    who.own.c.id.label("own_id"),
                    who.own.c.topics.label("own_topics"),
                    who.every.c.topics.label("every_topics"),
                )
                .select_from(who.source)
                .where(who.members)
                .where(subscribers.c.id > last)
                .order_by(subscribers.c.id)
                .limit(page)
            )
            with self.connect() as conn:
                rows = conn.execute(q).all()
                if not rows:
                    return
                need_tags = [
                    r.id
                    for r in rows
                    if (r.own_topics if r.own_id is not None else r.every_topics) is None
                ]
                tags: dict[int, list[str]] = {i: [] for i in need_tags}
                for start in range(0, len(need_tags), 500):
                    for sid, slug in conn.execute(
                        select(subscriber_tags.c.subscriber_id, subscriber_tags.c.tag_slug)
                        .where(subscriber_tags.c.subscriber_id.in_(need_tags[start : start + 500]))
                        .order_by(subscriber_tags.c.tag_slug)
                    ):
                        tags[sid].append(slug)
            for r in rows:
                topics = r.own_topics if r.own_id is not None else r.every_topics
                yield Subscriber(
                    id=r.id,
                    email=r.email,
                    name=r.name,
                    timezone=r.timezone,
                    status=r.status,
                    tags=sorted(topics) if topics is not None else tags[r.id],
                )
            last = rows[-1].id

    # ------------------------------------------------------------------ importing

    def upsert_subscriber(
        self,
        sub: Subscriber,
        *,
        resubscribe: bool = False,
        consent_source: str = "import",
        conn: Connection | None = None,
    ) -> tuple[int, str]:
        """Insert or update by email. Returns (id, "inserted" | "updated" | "unchanged").

        A suppressed or unsubscribed address keeps its status unless ``resubscribe``.
        """
        ((sid, what),) = self.upsert_subscribers(
            [sub], resubscribe=resubscribe, consent_source=consent_source, conn=conn
        )
        return sid, what

    def upsert_batches(
        self,
        batches: Iterable[Sequence[Subscriber]],
        *,
        resubscribe: bool = False,
        consent_source: str = "import",
    ) -> Iterator[list[tuple[int, str]]]:
        """:meth:`upsert_subscribers` for each batch, as ``batches`` yields them.

        One connection serves them all, a transaction per batch, committed before
        its outcomes are yielded: when the caller stops (a crash, an error in the
        file), every batch before is kept, and none is held open while the next
        is read. (Opening a SQLite connection per batch and checkpointing it when
        it closed cost an import about a tenth of its time.)
        """
        with self.engine.connect() as conn:
            for batch in batches:
                with conn.begin():
                    outcomes = self.upsert_subscribers(
                        batch, resubscribe=resubscribe, consent_source=consent_source, conn=conn
                    )
                yield outcomes

    def upsert_subscribers(
        self,
        subs: Sequence[Subscriber],
        *,
        resubscribe: bool = False,
        consent_source: str = "import",
        conn: Connection | None = None,
    ) -> list[tuple[int, str]]:
        """Insert or update many by email, in one transaction and a few statements.

        Returns (id, outcome) per subscriber, in order. The addresses must be
        distinct and normalized. A non-active address stays as it is when the
        row says active, unless ``resubscribe``; a row that says unsubscribed,
        bounced … suppresses the address. A new subscriber gets every digest (one
        subscription to "*"), its consent recorded as ``consent_source``: the
        subscribers' rows are audience.py's, the subscriptions this module's.
        """
        if conn is None:
            with self.begin() as c:
                return self.upsert_subscribers(
                    subs, resubscribe=resubscribe, consent_source=consent_source, conn=c
                )
        now = utcnow()
        outcomes, new = upsert_subscriber_rows(conn, subs, resubscribe=resubscribe, now=now)
        subscribe_every_digest(conn, new, consent_source, now)
        return outcomes

    # ------------------------------------------------------------------ changing

    def move_subscription(
        self, subscriber_id: int, digest: str, status: str, **values: Any
    ) -> bool:
        """Move the subscriber's own subscription to ``digest`` to ``status`` (and set
        ``values``) if ``SUBSCRIPTION`` allows it. True when it moved, False when it
        was there already; :class:`TransitionError` when the move is refused,
        :class:`NotFoundError` when the subscriber has no row of its own for ``digest``.
        """
        with self.begin() as conn:
            return move_subscription(
                conn, subscriber_id, digest, status, updated_at=utcnow(), **values
            )

    @staticmethod
    def _upsert(
        conn: Connection,
        subscriber_id: int,
        digest: str,
        current: Sequence[Subscription],
        now: datetime,
        **values: Any,
    ) -> None:
        """Write ``digest``'s own row; a new row starts from the "*" row's consent and topics.

        A change of status is a move of ``SUBSCRIPTION``: of the own row, or, for a
        new row, of the "*" row's status it starts from."""
        own = next((s for s in current if s.digest == digest), None)
        if own is not None:
            if "status" in values:
                # stay: the other values are written even when the status is unchanged
                status = values.pop("status")
                move_subscription(
                    conn, subscriber_id, digest, status, stay=True, updated_at=now, **values
                )
                return
            conn.execute(
                update(subscriptions)
                .where(_own(subscriber_id, digest))
                .values(updated_at=now, **values)
            )
            return
        base = effective(current, digest)
        row: dict[str, Any] = {
            "subscriber_id": subscriber_id,
            "digest": digest,
            "status": base.status if base else Subn.PENDING,
            "topics": base.topics if base else None,
            "created_at": now,
            "updated_at": now,
            "confirmed_at": base.confirmed_at if base else None,
            "consent_source": base.consent_source if base else "",
            "consent_at": base.consent_at if base else None,
            "consent_ip": base.consent_ip if base else "",
            "consent_text": base.consent_text if base else "",
        }
        row.update(values)
        what = f"subscription of subscriber {subscriber_id} to {digest}"
        SUBSCRIPTION.check_initial(row["status"], what=what)
        if base is not None:
            SUBSCRIPTION.check(base.status, row["status"], what=what)
        conn.execute(insert(subscriptions), [row])

    def leave(self, subscriber_id: int, digests: Iterable[str]) -> list[str]:
        """Unsubscribe from ``digests``; returns those that were active (the undo list)."""
        now = utcnow()
        left: list[str] = []
        with self.begin() as conn:
            current = self._subscriptions(conn, subscriber_id)
            for d in dict.fromkeys(digests):
                sub = effective(current, d)
                if sub is None or sub.status == Subn.UNSUBSCRIBED:
                    continue
                if sub.status == Subn.ACTIVE:
                    left.append(d)
                self._upsert(
                    conn,
                    subscriber_id,
                    d,
                    current,
                    now,
                    status=Subn.UNSUBSCRIBED,
                    unsubscribed_at=now,
                )
                current = self._subscriptions(conn, subscriber_id)
        return left

    def rejoin(self, subscriber_id: int, digests: Iterable[str], *, how: str = "link") -> list[str]:
        """Subscribe again to ``digests`` (an undo, the preferences page, a provider's
        resubscribe): the holder of a signed link proved the address is theirs."""
        now = utcnow()
        joined: list[str] = []
        with self.begin() as conn:
            current = self._subscriptions(conn, subscriber_id)
            for d in dict.fromkeys(digests):
                sub = effective(current, d)
                if sub is not None and sub.status == Subn.ACTIVE:
                    continue
                values: dict[str, Any] = {"status": Subn.ACTIVE, "unsubscribed_at": None}
                if sub is None or sub.confirmed_at is None:
                    values.update(confirmed_at=now, consent_source=how[:20], consent_at=now)
                self._upsert(conn, subscriber_id, d, current, now, **values)
                current = self._subscriptions(conn, subscriber_id)
                joined.append(d)
        return joined

    def set_topics(self, subscriber_id: int, digests: Iterable[str], topics: list[str]) -> None:
        """The same chosen topics on each of ``digests`` (their own rows)."""
        now = utcnow()
        chosen = sorted(set(topics))
        with self.begin() as conn:
            current = self._subscriptions(conn, subscriber_id)
            for d in dict.fromkeys(digests):
                self._upsert(conn, subscriber_id, d, current, now, topics=chosen)
                current = self._subscriptions(conn, subscriber_id)

    # ------------------------------------------------------------------ double opt-in

    def request_signup(
        self, req: SignupRequest, *, conn: Connection | None = None
    ) -> SignupOutcome:
        """Record a signup: the subscriber (``pending`` if new) and a pending subscription
        per requested digest not already active. The caller sends the confirmation when
        ``pending`` is not empty (and its own resend limit allows). With ``conn``,
        inside that transaction."""
        if conn is None:
            with self.begin() as c:
                return self.request_signup(req, conn=c)
        now = utcnow()
        digests = list(dict.fromkeys(req.digests))
        # a new address (the usual signup): inserted by the one statement that also
        # finds out it is new; the row of a known one is read after
        SUBSCRIPTION.check_initial(Subn.PENDING)
        if self.dialect == "postgresql":
            # the subscriber and its subscriptions in one round trip
            sid = conn.execute(
                new_signup_statement(),
                {
                    "email": req.email,
                    "name": req.name,
                    "now": now,
                    "digests": digests,
                    "topics": sorted(set(req.topics)),
                    "source": req.source,
                    "ip": req.ip[:64],
                    "consent_text": req.consent_text[:100],
                },
            ).scalar()
            if sid is not None:
                return SignupOutcome(int(sid), pending=digests)
        else:
            sid = insert_new_subscriber(conn, self.dialect, req.email, req.name, now)
        if sid is not None:
            conn.execute(
                insert(subscriptions),
                [
                    {
                        "subscriber_id": sid,
                        "digest": d,
                        "status": Subn.PENDING,
                        "topics": sorted(set(req.topics)),
                        "created_at": now,
                        "updated_at": now,
                        "consent_source": req.source,
                        "consent_at": now,
                        "consent_ip": req.ip[:64],
                        "consent_text": req.consent_text[:100],
                    }
                    for d in digests
                ],
            )
            return SignupOutcome(sid, pending=digests)
        row = conn.execute(
            select(subscribers.c.id, subscribers.c.status).where(subscribers.c.email == req.email)
        ).first()
        if row is None:
            # deleted between the two statements ("No thanks" on PostgreSQL):
            # record_signup's second try inserts it
            raise IntegrityError("request_signup", None, Exception("subscriber gone"))
        sid, status = row.id, row.status
        if status in BLOCKED:
            return SignupOutcome(sid, quiet_reason=f"address is {status}")
        current = self._subscriptions(conn, sid)
        pending: list[str] = []
        for d in dict.fromkeys(req.digests):
            sub = effective(current, d)
            if status == Sub.ACTIVE and sub is not None and sub.status == Subn.ACTIVE:
                continue  # subscribed already: nothing to confirm
            own = next((s for s in current if s.digest == d), None)
            if own is None or own.status != Subn.PENDING:
                # a pending row keeps its first request, so the link already
                # mailed for it still confirms it
                self._upsert(
                    conn,
                    sid,
                    d,
                    current,
                    now,
                    status=Subn.PENDING,
                    confirmed_at=None,
                    topics=sorted(set(req.topics)),
                    consent_source=req.source,
                    consent_at=now,
                    consent_ip=req.ip[:64],
                    consent_text=req.consent_text[:100],
                )
                current = self._subscriptions(conn, sid)
            pending.append(d)
        return SignupOutcome(sid, pending=pending, quiet_reason="" if pending else "active")

    def record_signup(
        self, req: SignupRequest, *, limits: Sequence[Limit], resend: Limit | None
    ) -> SignupOutcome:
        """Count a signup against ``limits`` and record it, in one transaction; a
        confirmation is due when digests are pending and ``resend`` allows one.

        Every attempt counts against every limit. Over any of them, nothing but
        the hits is stored: the transaction that wrote the signup is rolled back
        and the hits are counted again on their own. The resend claim and the
        limits are counted last, by one statement, in that order, just before the
        commit: PostgreSQL holds a counter's row lock until then, and every signup
        through one client address (a proxy, a NAT) updates that one row, so the
        most shared counter goes last.
        """
        for attempt in (1, 2):
            try:
                with self.begin() as conn:
                    outcome = self.request_signup(req, conn=conn)
                    # the resend claim (when a confirmation could go) and the limits, in
                    # one statement that takes their rows in this order
                    claim = [resend] if resend is not None and outcome.pending else []
                    counts = self.hits(
                        conn, [(lim.key, lim.window) for lim in claim + list(limits)]
                    )
                    if outcome.pending:
                        outcome.confirm_due = not claim or counts[0] <= claim[0].limit
                        if not outcome.confirm_due:
                            outcome.quiet_reason = "a confirmation went out recently"
                    if _over(counts[len(claim) :], limits):
                        raise _Limited
                    return outcome
            except _Limited:
                with self.begin() as conn:
                    _over(self.hits(conn, [(lim.key, lim.window) for lim in limits]), limits)
                return SignupOutcome(None, limited=True, quiet_reason="rate limited")
            except IntegrityError:
                # the address's row went away between the insert that found it
                # known and the read of it (or another constraint tripped over a
                # concurrent request): the second try starts afresh
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def decline_signup(self, subscriber_id: int, requested_until: datetime) -> list[str]:
        """ "No thanks": drop the pending subscriptions asked for up to ``requested_until``;
        an address that was only pending is deleted with them. Returns the digests."""
        with self.begin() as conn:
            due = _pending_asked(conn, subscriber_id, requested_until)
            if not due:
                return []
            conn.execute(
                delete(subscriptions)
                .where(subscriptions.c.subscriber_id == subscriber_id)
                .where(subscriptions.c.digest.in_(due))
            )
            left = conn.execute(
                select(subscriptions.c.id).where(subscriptions.c.subscriber_id == subscriber_id)
            ).first()
            if left is None:
                # nobody asked for anything else: the address is not kept
                delete_pending_subscriber(conn, subscriber_id)
            return sorted(due)

    def confirm_signup(self, subscriber_id: int, requested_until: datetime) -> list[str]:
        """Activate the pending subscriptions asked for up to ``requested_until`` (when the
        confirmation was sent). Returns the digests confirmed now ([] for a reused link)."""
        now = utcnow()
        with self.begin() as conn:
            row = conn.execute(
                select(subscribers.c.status).where(subscribers.c.id == subscriber_id)
            ).first()
            if row is None or row.status in BLOCKED:
                return []
            due = _pending_asked(conn, subscriber_id, requested_until)
            if not due:
                return []
            confirmed = conn.execute(
                update(subscriptions)
                .where(subscriptions.c.subscriber_id == subscriber_id)
                .where(subscriptions.c.digest.in_(due))
                # the rows read as pending above: one a concurrent unsubscribe moved
                # meanwhile stays where it went
                .where(can_move(subscriptions, SUBSCRIPTION, Subn.ACTIVE))
                .where(subscriptions.c.status == Subn.PENDING)
                .values(status=Subn.ACTIVE, confirmed_at=now, unsubscribed_at=None, updated_at=now)
                .returning(subscriptions.c.digest)
            ).scalars()
            done = sorted(confirmed)
            if done and row.status in REOPENED_BY_CONFIRMING:
                activate_confirmed(conn, subscriber_id, now)
            return done


def delete_subscriptions(conn: Connection, subscriber_id: int) -> None:
    """Inside an erasure's transaction: every subscription of the subscriber goes."""
    conn.execute(delete(subscriptions).where(subscriptions.c.subscriber_id == subscriber_id))


def _pending_asked(conn: Connection, subscriber_id: int, requested_until: datetime) -> list[str]:
    """The digests a subscriber asked for, still pending, up to ``requested_until``
    (when the confirmation link was sent): what confirming or declining it acts on."""
    return list(
        conn.execute(
            select(subscriptions.c.digest)
            .where(subscriptions.c.subscriber_id == subscriber_id)
            .where(subscriptions.c.status == Subn.PENDING)
            .where(subscriptions.c.consent_at <= requested_until)
        ).scalars()
    )
