"""Editions and the articles each variant carried."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from newsletter.errors import TransitionError
from newsletter.models import EditionInfo
from newsletter.states import (
    EDITION,
    EDITION_DONE,
    EDITION_HANDLED,
    EDITION_SENT,
    DeliveryStatus,
    EditionStatus,
    SubscriberStatus,
)
from newsletter.store.base import StoreBase, can_move, move_row, utcnow
from newsletter.store.schema import deliveries, edition_articles, editions, subscribers

#: statuses of an edition whose articles count as "already sent"
SENT_STATES = EDITION_SENT
#: statuses of an edition whose period is done with: nothing more goes out for it
DONE_STATES = EDITION_DONE
#: every status an edition of a handled period can have
HANDLED_STATES = EDITION_HANDLED


def move_edition(conn: Connection, edition_id: int, status: str, **values: Any) -> bool:
    """Move an edition to ``status`` inside the caller's transaction (see
    :func:`newsletter.store.base.move_row`); how other domains of the store change
    an edition's status."""
    return move_row(
        conn,
        editions,
        EDITION,
        editions.c.id == edition_id,
        status,
        what=f"edition {edition_id}",
        **values,
    )


def move_edition_if(
    conn: Connection, edition_id: int, status: str, *, only_from: str | None = None
) -> bool:
    """Move an edition to ``status`` if the table allows it from where it is (and, with
    ``only_from``, only from that status); False, and nothing changed, otherwise. An
    operator's command (store/control.py) reports a refusal instead of raising."""
    allowed = can_move(editions, EDITION, status)
    if only_from is not None:
        allowed = allowed & (editions.c.status == EditionStatus(only_from))
    stmt = update(editions).where((editions.c.id == edition_id) & allowed)
    return bool(conn.execute(stmt.values(status=EditionStatus(status))).rowcount)


@dataclass(frozen=True)
class EditionDetails:
    """The frozen parts of an edition."""

    window_start: datetime | None
    window_end: datetime | None
    #: the rates header's figures, as JSON (formatted text for editions frozen before issue 14)
    rates: Any
    #: edition_date, the audience counts of the freeze, why it was skipped …
    info: dict[str, Any]
    #: article ids per variant, in their order
    variants: dict[str, list[int]]


def _info(r: Row[Any]) -> EditionInfo:
    return EditionInfo(
        id=r.id,
        digest=r.digest,
        period=r.period,
        status=r.status,
        subject=r.subject,
        created_at=r.created_at,
        sent_at=r.sent_at,
    )


def mark_frozen(conn: Connection, edition_id: int, info: dict[str, Any]) -> None:
    """Inside the freeze's transaction: record the audience in the edition's info and
    make it ``sending`` (it may be already: a second freeze adds late rows)."""
    move_edition(conn, edition_id, EditionStatus.SENDING, stay=True, info=info)


def finish_if_sending(conn: Connection, edition_id: int, status: str, now: datetime) -> bool:
    """Inside the caller's transaction: a ``sending`` edition with nothing open becomes
    ``status`` (sent or partially_failed); one in any other status keeps it."""
    return bool(
        conn.execute(
            update(editions)
            .where(
                (editions.c.id == edition_id)
                & (editions.c.status == EditionStatus.SENDING)
                & can_move(editions, EDITION, status)
            )
            .values(status=EditionStatus(status), sent_at=now)
        ).rowcount
    )


class EditionQueries(StoreBase):
    def create_edition(
        self,
        *,
        digest: str,
        period: str,
        subject: str,
        window_start: datetime | None,
        window_end: datetime | None,
        rates: Any = None,
        info: Any = None,
        status: str = EditionStatus.COMPILED,
        variants: dict[str, Sequence[int]] | None = None,
    ) -> tuple[int, bool]:
        """Create the edition of (digest, period) with its articles, in one transaction.

        Returns (id, created). When another run created it first, returns that
        one's id and False: one edition per digest and period, whoever wins.
        ``status`` must be one an edition may start in (compiled, skipped).
        """
        EDITION.check_initial(status)
        try:
            with self.begin() as conn:
                inserted = conn.execute(
                    insert(editions).values(
                        digest=digest,
                        period=period,
                        status=status,
                        subject=subject,
                        window_start=window_start,
                        window_end=window_end,
                        rates=rates,
                        info=info,
                        created_at=utcnow(),
                    )
                ).inserted_primary_key
                assert inserted is not None
                eid = inserted[0]
                rows = [
                    {"edition_id": eid, "variant": v, "article_id": a, "position": i}
                    for v, ids in (variants or {}).items()
                    for i, a in enumerate(ids)
                ]
                if rows:
                    conn.execute(insert(edition_articles), rows)
                return eid, True
        except IntegrityError:
            found = self.find_edition(digest, period)
            if found is None:
                raise
            return found.id, False

    def find_edition(self, digest: str, period: str) -> EditionInfo | None:
        with self.connect() as conn:
            row = conn.execute(
                select(editions).where(
                    (editions.c.digest == digest) & (editions.c.period == period)
                )
            ).first()
        return _info(row) if row else None

    def get_edition(self, edition_id: int) -> EditionInfo | None:
        with self.connect() as conn:
            row = conn.execute(select(editions).where(editions.c.id == edition_id)).first()
        return _info(row) if row else None

    def edition_details(self, edition_id: int) -> EditionDetails:
        """The frozen parts of an edition: window, rates, info, articles per variant."""
        with self.connect() as conn:
            row = conn.execute(select(editions).where(editions.c.id == edition_id)).one()
            variants: dict[str, list[int]] = {}
            for v, a in conn.execute(
                select(edition_articles.c.variant, edition_articles.c.article_id)
                .where(edition_articles.c.edition_id == edition_id)
                .order_by(edition_articles.c.variant, edition_articles.c.position)
            ):
                variants.setdefault(v, []).append(a)
        return EditionDetails(
            window_start=row.window_start,
            window_end=row.window_end,
            rates=row.rates,
            info=dict(row.info or {}),
            variants=variants,
        )

    def last_edition(
        self, digest: str, *, statuses: Sequence[str] = SENT_STATES
    ) -> EditionInfo | None:
        """The newest edition of ``digest`` in one of ``statuses``."""
        with self.connect() as conn:
            row = conn.execute(
                select(editions)
                .where((editions.c.digest == digest) & editions.c.status.in_(list(statuses)))
                .order_by(editions.c.created_at.desc(), editions.c.id.desc())
                .limit(1)
            ).first()
        return _info(row) if row else None

    def edition_window_end(self, edition_id: int) -> datetime | None:
        with self.connect() as conn:
            return conn.execute(
                select(editions.c.window_end).where(editions.c.id == edition_id)
            ).scalar_one_or_none()

    def set_edition_status(
        self, edition_id: int, status: str, *, sent: bool = False, unless: Sequence[str] = ()
    ) -> bool:
        """Move an edition to ``status`` (``sent``: stamp ``sent_at`` too).

        Conditional on the edition being in a status that move is allowed from
        (``newsletter.states.EDITION``): True when it moved, False when it was in
        ``status`` already or in one of ``unless`` (it keeps that: a cancelled
        edition stays cancelled when its last batches settle);
        :class:`TransitionError` for any other refused move.
        """
        values: dict[str, Any] = {}
        if sent:
            values["sent_at"] = utcnow()
        with self.begin() as conn:
            try:
                return move_edition(conn, edition_id, status, **values)
            except TransitionError as err:
                if err.current in unless:
                    return False
                raise

    def list_editions(self, digest: str | None = None, limit: int = 20) -> list[EditionInfo]:
        q = select(editions).order_by(editions.c.id.desc()).limit(limit)
        if digest:
            q = q.where(editions.c.digest == digest)
        with self.connect() as conn:
            return [_info(r) for r in conn.execute(q)]

    def record_skipped(self, *, digest: str, period: str, reason: str) -> tuple[int, bool]:
        """Record that the period of ``digest`` was skipped, so no later run sends it.

        Returns (id, created); an edition of that period that exists already is kept.
        """
        return self.create_edition(
            digest=digest,
            period=period,
            subject="",
            window_start=None,
            window_end=None,
            info={"skipped": reason},
            status=EditionStatus.SKIPPED,
        )

    def delete_skipped_edition(self, edition_id: int) -> bool:
        """Forget a skipped period (for a deliberate late send). Only a skipped one goes."""
        with self.begin() as conn:
            return bool(
                conn.execute(
                    delete(editions).where(
                        (editions.c.id == edition_id) & (editions.c.status == EditionStatus.SKIPPED)
                    )
                ).rowcount
            )

    def unfinished_editions(
        self, digest: str, statuses: Sequence[str] = (EditionStatus.SENDING,)
    ) -> list[EditionInfo]:
        """Editions of ``digest`` still being sent, oldest first."""
        with self.connect() as conn:
            rows = conn.execute(
                select(editions)
                .where((editions.c.digest == digest) & editions.c.status.in_(list(statuses)))
                .order_by(editions.c.id)
            ).all()
        return [_info(r) for r in rows]

    def active_timezones(self) -> list[str]:
        """The distinct time zones of active subscribers ("" for those without one).

        Local-time sends span these zones.
        """
        with self.connect() as conn:
            return sorted(
                conn.execute(
                    select(subscribers.c.timezone)
                    .where(subscribers.c.status == SubscriberStatus.ACTIVE)
                    .group_by(subscribers.c.timezone)
                ).scalars()
            )

    def release_state(self, edition_id: int, now: datetime) -> tuple[int, datetime | None]:
        """Queued deliveries of an edition still waiting for their local time, and the next
        release among them."""
        waiting = and_(
            deliveries.c.edition_id == edition_id,
            deliveries.c.status == DeliveryStatus.QUEUED,
            deliveries.c.release_at > now,
        )
        with self.connect() as conn:
            n, first = conn.execute(
                select(func.count(), func.min(deliveries.c.release_at)).where(waiting)
            ).one()
        if first is not None and first.tzinfo is None:  # SQLite drops the offset in min()
            first = datetime.fromisoformat(str(first)).replace(tzinfo=UTC)
        return int(n or 0), first
