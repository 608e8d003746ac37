"""Status precedence: a delivery never moves backwards.

Provider events arrive late, twice and out of order. The status a delivery
ends in is therefore the highest-ranked status any of its events points to,
whatever order they came in: a fold with ``max``. That makes replaying,
duplicating or reordering an event stream harmless (see the property test in
tests/test_webhook_precedence.py).

Engagement (opened, clicked) is kept in two flags beside the status; an open
or a click also proves the message was delivered.
"""

from __future__ import annotations

#: statuses before the provider took the message: events do not move these,
#: except ``unresolved``, for which any provider event is proof of acceptance
PRE_ACCEPTANCE = ("queued", "claimed", "failed", "left")

#: how far along a delivery is; a higher rank always wins
RANK: dict[str, int] = {
    "queued": 0,
    "claimed": 0,
    "failed": 0,
    "left": 0,
    "unresolved": 0,
    "accepted": 1,
    "deferred": 2,
    "delivered": 3,
    # SendGrid never sends a dropped message, so dropped and delivered do not meet
    "dropped": 4,
    # a bounce can follow a delivery (the receiving server accepted, then bounced)
    "bounced": 5,
    # both prove the message arrived; a complaint outweighs an unsubscribe
    "unsubscribed": 6,
    "complained": 7,
}

#: normalized event type -> the delivery status it points to (None: no status change)
EVENT_STATUS: dict[str, str | None] = {
    "queued": "accepted",
    "deferred": "deferred",
    "delivered": "delivered",
    "bounced": "bounced",
    "dropped": "dropped",
    "complained": "complained",
    "unsubscribed": "unsubscribed",
    "opened": "delivered",
    "clicked": "delivered",
    "unknown": None,
}

#: final statuses that say the address accepted mail (end a soft-bounce streak)
REACHED = ("delivered", "unsubscribed", "complained")
#: final statuses that count as a soft bounce in a streak
SOFT_FAILED = ("deferred", "bounced")


def advance(current: str, event_type: str) -> str:
    """The status after ``event_type`` happened to a delivery in ``current``."""
    if current in PRE_ACCEPTANCE:
        return current
    target = EVENT_STATUS.get(event_type)
    if target is None:
        return current
    return target if RANK[target] > RANK.get(current, 0) else current


def fold(current: str, event_types: list[str] | tuple[str, ...]) -> tuple[str, bool, bool]:
    """(status, opened, clicked) after all ``event_types``, in any order."""
    status = current
    opened = clicked = False
    for t in event_types:
        status = advance(status, t)
        if t == "clicked":
            # a click proves an open even when the tracking pixel was blocked
            clicked = opened = True
        elif t == "opened":
            opened = True
    return status, opened, clicked


#: subscriber statuses: a higher rank is never overwritten by a lower one from an event
SUBSCRIBER_RANK: dict[str, int] = {
    "active": 0,
    "suppressed": 1,  # too many soft bounces in a row; lifted when mail gets through
    "unsubscribed": 2,
    "bounced": 3,
    "complained": 4,
    # erased on request: no event brings the row back
    "forgotten": 9,
}

#: status_reason prefix of a soft-bounce suppression (the only one lifted automatically)
SOFT_REASON = "soft bounces"


def soft_bounce_streak(statuses: list[str]) -> int:
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
