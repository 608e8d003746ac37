"""Every status a row can have, the moves allowed between them, and event precedence.

This module is the one place the states of a send are written down; the store
makes every status change through it (a conditional UPDATE whose WHERE is
``status IN (sources of the target)``, see ``newsletter/store/base.py``), the
migrations build CHECK constraints from the enums, and a test compares the
tables with the diagrams in docs/architecture.md.

The values are ``StrEnum``: a member *is* its string, so what is stored, shown
and compared stays the plain words (``"sent"``, ``"queued"`` …).

Rules that hold for every machine:

- a move the table does not allow is refused (:class:`TransitionError`);
- asking for the status a row already has is not a move: nothing changes and
  nothing is refused, so repeats (a second freeze, a second finalize) are harmless;
- new rows start in one of the machine's ``initial`` states.

Delivery moves caused by provider events follow *precedence* instead of a
list: a delivery never moves backwards. Each event points to a status, each
status has a rank, and the status a delivery ends in is the highest-ranked one
any of its events pointed to, in whatever order they came. The event-driven
part of :data:`DELIVERY` is generated from :data:`RANK`, so the table and the
webhook cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from newsletter.errors import TransitionError


class EditionStatus(StrEnum):
    COMPILED = "compiled"  # frozen articles and subject; no audience yet
    SENDING = "sending"  # audience frozen; deliveries going out (or waiting)
    PAUSED = "paused"  # an operator stopped new batches (`newsletter pause`); resumable
    SENT = "sent"  # nothing left open, none failed
    PARTIALLY_FAILED = "partially_failed"  # nothing left open, some failed
    CANCELLED = "cancelled"  # stopped for good by an operator (`newsletter cancel`)
    SKIPPED = "skipped"  # a period missed by more than catch_up_hours


class BatchStatus(StrEnum):
    CLAIMED = "claimed"  # committed before the provider is called
    ACCEPTED = "accepted"  # the provider took (some of) it
    FAILED = "failed"  # the provider refused all of it for good
    REQUEUED = "requeued"  # certainly not taken; its deliveries queued again
    UNKNOWN = "unknown"  # outcome unknown: held for events, a cancel or an operator
    CANCELLED = "cancelled"  # cancelled at the provider, its deliveries queued again
    RESOLVED = "resolved"  # an operator decided (`send --resolve`)


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    FAILED = "failed"
    UNRESOLVED = "unresolved"
    CANCELLED = "cancelled"  # still queued when its edition was cancelled
    LEFT = "left"  # its subscriber was no longer active when it was claimed: never sent
    ACCEPTED = "accepted"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    DROPPED = "dropped"
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    COMPLAINED = "complained"


class SubscriberStatus(StrEnum):
    ACTIVE = "active"
    PENDING = "pending"  # signed up, not confirmed yet (double opt-in)
    SUPPRESSED = "suppressed"  # too many soft bounces in a row; lifted when mail gets through
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    FORGOTTEN = "forgotten"  # erased on request: no event brings the row back


class SubscriptionStatus(StrEnum):
    """One subscriber's subscription to one digest (or to every digest: ``*``)."""

    ACTIVE = "active"
    PENDING = "pending"  # asked for, not confirmed yet
    UNSUBSCRIBED = "unsubscribed"


class RunStatus(StrEnum):
    """A digest's outcome in one run (``DigestOutcome.status``; the last one is kept
    in ``digest_runs.status``). Not a machine: each run writes whichever one it
    ended with, whatever the last run's was."""

    SENT = "sent"  # a new edition went out
    RESUMED = "resumed"  # an unfinished edition was sent on
    SENDING = "sending"  # sent what is released; local-time deliveries wait for their hour
    PARTIAL = "partial"  # its edition ended partially_failed
    ALREADY_SENT = "already-sent"  # the period's edition is done with
    PAUSED = "paused"  # an operator paused the period's edition: nothing until `resume`
    SKIPPED = "skipped"  # the period was recorded as missed earlier
    MISSED = "missed"  # the period opened more than catch_up_hours ago
    TOO_FEW_ARTICLES = "too-few-articles"  # fewer than min_articles for every variant
    NO_SUBSCRIBERS = "no-subscribers"  # no active subscriber gets any variant
    DRY_RUN = "dry-run"  # what would be sent (never recorded)
    FAILED = "failed"  # an error, or the preflight's errors: nothing sent
    STALE = "stale"  # an unfinished edition older than resume_max_age_hours: not sent


#: run outcomes that did their work (for the exit code)
RUN_WORKED: tuple[RunStatus, ...] = (
    RunStatus.SENT,
    RunStatus.RESUMED,
    RunStatus.SENDING,
    RunStatus.PARTIAL,
)
#: run outcomes that mean the period has an edition (an idle streak ends)
RUN_HAS_EDITION: tuple[RunStatus, ...] = (
    *RUN_WORKED,
    RunStatus.ALREADY_SENT,
    RunStatus.PAUSED,
)
#: run outcomes that fail the run (exit 1, or 3 when another digest worked)
RUN_FAILED: tuple[RunStatus, ...] = (RunStatus.FAILED, RunStatus.STALE)


class EventType(StrEnum):
    """The closed set of normalized provider event types."""

    QUEUED = "queued"  # SendGrid "processed": the provider took the message
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    DROPPED = "dropped"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    OPENED = "opened"
    CLICKED = "clicked"
    UNKNOWN = "unknown"


S = TypeVar("S", bound=StrEnum)


@dataclass(frozen=True)
class Machine(Generic[S]):
    """The allowed moves of one kind of row."""

    #: what the rows are, for messages ("edition", "batch", "delivery")
    name: str
    states: type[S]
    initial: frozenset[S]
    moves: Mapping[S, frozenset[S]]
    _pairs: frozenset[tuple[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # (from, to) as plain strings: allowed() runs for every webhook event
        pairs = frozenset((str(a), str(b)) for a, bs in self.moves.items() for b in bs)
        object.__setattr__(self, "_pairs", pairs)

    def allowed(self, current: str, target: str) -> bool:
        return (str(current), str(target)) in self._pairs

    def sources(self, target: str) -> tuple[S, ...]:
        """The statuses a row may be in to move to ``target``, in declaration order."""
        t = self.states(target)
        return tuple(s for s in self.states if t in self.moves.get(s, frozenset()))

    def check(self, current: str, target: str, *, what: str = "") -> None:
        """Raise :class:`TransitionError` unless ``current`` → ``target`` is allowed.

        The same status twice is not a move and passes.
        """
        if current != target and not self.allowed(current, target):
            raise TransitionError(what or self.name, current, target)

    def check_initial(self, status: str, *, what: str = "") -> None:
        if self.states(status) not in self.initial:
            raise TransitionError(what or self.name, None, status)

    def pairs(self) -> Iterable[tuple[S, S]]:
        """Every allowed (from, to)."""
        for s in self.states:
            for t in self.states:
                if t in self.moves.get(s, frozenset()):
                    yield s, t

    def final(self) -> tuple[S, ...]:
        """States no move leaves."""
        return tuple(s for s in self.states if not self.moves.get(s))


def _moves(table: Mapping[S, Iterable[S]]) -> dict[S, frozenset[S]]:
    return {k: frozenset(v) for k, v in table.items()}


E, B, D = EditionStatus, BatchStatus, DeliveryStatus

EDITION: Machine[EditionStatus] = Machine(
    "edition",
    EditionStatus,
    initial=frozenset({E.COMPILED, E.SKIPPED}),
    moves=_moves(
        {
            E.COMPILED: {E.SENDING, E.PAUSED, E.CANCELLED},
            E.SENDING: {E.SENT, E.PARTIALLY_FAILED, E.PAUSED, E.CANCELLED},
            # resume: sending, or compiled when paused before the audience was frozen;
            # done when the batches in flight at the pause settle and nothing is queued
            E.PAUSED: {E.SENDING, E.COMPILED, E.SENT, E.PARTIALLY_FAILED, E.CANCELLED},
        }
    ),
)

BATCH: Machine[BatchStatus] = Machine(
    "batch",
    BatchStatus,
    initial=frozenset({B.CLAIMED}),
    moves=_moves(
        {
            B.CLAIMED: {B.ACCEPTED, B.FAILED, B.REQUEUED, B.UNKNOWN, B.CANCELLED},
            # a late answer of the worker, provider events, a cancel, an operator
            B.UNKNOWN: {B.ACCEPTED, B.FAILED, B.REQUEUED, B.CANCELLED, B.RESOLVED},
        }
    ),
)

#: edition statuses whose articles count as already sent
EDITION_SENT: tuple[EditionStatus, ...] = (E.SENDING, E.SENT, E.PARTIALLY_FAILED)
#: edition statuses whose period is done with: nothing more goes out for it
EDITION_DONE: tuple[EditionStatus, ...] = (E.SENT, E.PARTIALLY_FAILED, E.CANCELLED, E.SKIPPED)
#: edition statuses an edition of a handled period can have (all of them)
EDITION_HANDLED: tuple[EditionStatus, ...] = (E.COMPILED, E.SENDING, E.PAUSED, *EDITION_DONE)
#: edition statuses from which no new batch is claimed
EDITION_NOT_SENDING: tuple[EditionStatus, ...] = (E.PAUSED, E.CANCELLED)
#: delivery statuses still open: the edition is not finished while any is left
DELIVERY_OPEN: tuple[DeliveryStatus, ...] = (D.QUEUED, D.CLAIMED, D.UNRESOLVED)

# ---------------------------------------------------------------- event precedence

#: statuses before the provider took the message: events do not move these
#: (``unresolved`` is not among them: any provider event proves acceptance)
PRE_ACCEPTANCE: tuple[DeliveryStatus, ...] = (
    D.QUEUED,
    D.CLAIMED,
    D.FAILED,
    D.CANCELLED,
    D.LEFT,
)

#: how far along a delivery is; an event-driven move only ever goes up
RANK: dict[DeliveryStatus, int] = {
    D.QUEUED: 0,
    D.CLAIMED: 0,
    D.FAILED: 0,
    D.UNRESOLVED: 0,
    D.CANCELLED: 0,
    D.LEFT: 0,
    D.ACCEPTED: 1,
    D.DEFERRED: 2,
    D.DELIVERED: 3,
    # SendGrid never sends a dropped message, so dropped and delivered do not meet
    D.DROPPED: 4,
    # a bounce can follow a delivery (the receiving server accepted, then bounced)
    D.BOUNCED: 5,
    # both prove the message arrived; a complaint outweighs an unsubscribe
    D.UNSUBSCRIBED: 6,
    D.COMPLAINED: 7,
}

#: event type -> the delivery status it points to (None: no status change)
EVENT_STATUS: dict[EventType, DeliveryStatus | None] = {
    EventType.QUEUED: D.ACCEPTED,
    EventType.DEFERRED: D.DEFERRED,
    EventType.DELIVERED: D.DELIVERED,
    EventType.BOUNCED: D.BOUNCED,
    EventType.DROPPED: D.DROPPED,
    EventType.COMPLAINED: D.COMPLAINED,
    EventType.UNSUBSCRIBED: D.UNSUBSCRIBED,
    EventType.OPENED: D.DELIVERED,
    EventType.CLICKED: D.DELIVERED,
    EventType.UNKNOWN: None,
}

#: statuses an event can point to
EVENT_TARGETS: frozenset[DeliveryStatus] = frozenset(
    s for s in EVENT_STATUS.values() if s is not None
)
#: statuses events may move a delivery out of: taken by the provider, or maybe taken
EVENT_DRIVEN: tuple[DeliveryStatus, ...] = tuple(
    s for s in DeliveryStatus if s not in PRE_ACCEPTANCE
)


def _event_moves() -> dict[DeliveryStatus, set[DeliveryStatus]]:
    return {s: {t for t in EVENT_TARGETS if RANK[t] > RANK[s]} for s in EVENT_DRIVEN}


def _delivery_moves() -> dict[DeliveryStatus, frozenset[DeliveryStatus]]:
    table: dict[DeliveryStatus, set[DeliveryStatus]] = {
        # cancelled: its edition was cancelled before the delivery was claimed
        D.QUEUED: {D.CLAIMED, D.CANCELLED},
        # what the provider said: took it, refused it for good, certainly did not
        # take it, or the answer never came
        # left: in the claim's transaction, its subscriber is no longer active
        D.CLAIMED: {D.ACCEPTED, D.FAILED, D.QUEUED, D.UNRESOLVED, D.LEFT},
        # events, a cancel at the provider, or an operator's resend | sent | failed
        D.UNRESOLVED: {D.QUEUED, D.ACCEPTED, D.FAILED},
    }
    for s, targets in _event_moves().items():
        table.setdefault(s, set()).update(targets)
    return _moves(table)


DELIVERY: Machine[DeliveryStatus] = Machine(
    "delivery",
    DeliveryStatus,
    initial=frozenset({D.QUEUED, D.FAILED}),  # failed: a duplicate address, sent once
    moves=_delivery_moves(),
)

Subn = SubscriptionStatus

SUBSCRIPTION: Machine[SubscriptionStatus] = Machine(
    "subscription",
    SubscriptionStatus,
    # pending: a signup; active or unsubscribed: an import. A digest's own row split
    # off the "*" row starts where the "*" row's status moves to (any of the three)
    initial=frozenset(SubscriptionStatus),
    moves=_moves(
        {
            # confirmed, or a signed link (undo, preferences); unsubscribed
            Subn.PENDING: {Subn.ACTIVE, Subn.UNSUBSCRIBED},
            # unsubscribed; pending: a signup of an address that is not active
            # itself (it left by a provider's unsubscribe) waits for its confirmation
            Subn.ACTIVE: {Subn.UNSUBSCRIBED, Subn.PENDING},
            # an undo, the preferences page, a provider's resubscribe; a new signup
            Subn.UNSUBSCRIBED: {Subn.ACTIVE, Subn.PENDING},
        }
    ),
)

#: every machine, by the name the docs use
MACHINES: dict[
    str,
    Machine[EditionStatus]
    | Machine[BatchStatus]
    | Machine[DeliveryStatus]
    | Machine[SubscriptionStatus],
] = {
    "edition": EDITION,
    "batch": BATCH,
    "delivery": DELIVERY,
    "subscription": SUBSCRIPTION,
}


def advance(current: str, event_type: str) -> DeliveryStatus:
    """The status after ``event_type`` happened to a delivery in ``current``."""
    status = DeliveryStatus(current)
    if status in PRE_ACCEPTANCE:
        return status
    target = EVENT_STATUS.get(event_type)  # type: ignore[call-overload]
    if target is None:
        return status
    return target if RANK[target] > RANK[status] else status


def fold(current: str, event_types: Iterable[str]) -> tuple[DeliveryStatus, bool, bool]:
    """(status, opened, clicked) after all ``event_types``, in any order."""
    status = DeliveryStatus(current)
    opened = clicked = False
    for t in event_types:
        status = advance(status, t)
        if t == EventType.CLICKED:
            # a click proves an open even when the tracking pixel was blocked
            clicked = opened = True
        elif t == EventType.OPENED:
            opened = True
    return status, opened, clicked


def refused_by(current: str, event_type: str) -> bool:
    """True when ``event_type`` points to a status a delivery in ``current`` cannot
    take: it came late or out of order (or before the provider's answer was recorded)."""
    target = EVENT_STATUS.get(event_type)  # type: ignore[call-overload]
    return target is not None and target != current and not DELIVERY.allowed(current, target)


# ---------------------------------------------------------------- subscribers

#: subscriber statuses: an event never replaces a higher rank with a lower one.
#: Subscribers have no move table: an import sets any status (``--resubscribe``
#: to make one active again); events only ever raise the rank, except that a
#: soft-bounce suppression is lifted when mail gets through.
SUBSCRIBER_RANK: dict[SubscriberStatus, int] = {
    SubscriberStatus.ACTIVE: 0,
    SubscriberStatus.PENDING: 0,
    SubscriberStatus.SUPPRESSED: 1,
    SubscriberStatus.UNSUBSCRIBED: 2,
    SubscriberStatus.BOUNCED: 3,
    SubscriberStatus.COMPLAINED: 4,
    SubscriberStatus.FORGOTTEN: 9,
}

#: subscriber statuses that block the whole address: no mail of any kind, and a
#: signup or confirmation link does not reopen it
SUBSCRIBER_BLOCKED: tuple[SubscriberStatus, ...] = (
    SubscriberStatus.BOUNCED,
    SubscriberStatus.COMPLAINED,
    SubscriberStatus.SUPPRESSED,
    SubscriberStatus.FORGOTTEN,
)

#: status_reason prefix of a soft-bounce suppression (the only one lifted automatically)
SOFT_REASON = "soft bounces"

#: final delivery statuses that say the address accepted mail (end a soft-bounce streak)
REACHED: tuple[DeliveryStatus, ...] = (D.DELIVERED, D.UNSUBSCRIBED, D.COMPLAINED)
#: final delivery statuses that count as a soft bounce in a streak
SOFT_FAILED: tuple[DeliveryStatus, ...] = (D.DEFERRED, D.BOUNCED)


def soft_bounce_streak(statuses: Iterable[str]) -> int:
    """Soft-failed deliveries in a row, newest first, until one got through.

    Deliveries with no news yet (accepted) or none to give (queued, failed,
    dropped …) are skipped: they neither extend nor break the streak.
    """
    n = 0
    for s in statuses:
        if s in REACHED:
            break
        if s in SOFT_FAILED:
            n += 1
    return n


def check_values(column: str, states: Iterable[str]) -> str:
    """SQL for a CHECK constraint: ``column`` holds one of ``states``."""
    return f"{column} IN ({', '.join(repr(str(s)) for s in states)})"
