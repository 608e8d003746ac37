"""What happened to an edition: counts per status and rates, overall and per variant.

Definitions (the same in `newsletter status` and the HTML report):

- sent: deliveries the provider took (accepted, or anything its events said since);
- delivered: deliveries with a delivered, unsubscribed or complained status, or
  opened or clicked (each proves the message arrived);
- delivery rate = delivered / sent;  bounce rate = bounced / sent;
- open rate = opened / delivered;  click rate = clicked / delivered;
- click-to-open = clicked / opened;  complaint and unsubscribe rate: / delivered;
- left: not sent, because the subscriber was no longer active when their turn came;
- unsubscribes: the edition's unsubscribes, those mailed who unsubscribed
  (``unsubscribed``) plus those who unsubscribed during its send before their
  turn (``left``, ``queued``, ``claimed``, ``failed`` or ``cancelled``, with the unsubscribe
  recorded on that delivery) or while their delivery was held (``unresolved``:
  ``unsubscribes_held``).

Opens are counted from SendGrid's open events; Apple Mail Privacy Protection
pre-fetches images, so the open rate is an upper bound.

A backend without delivery events (SMTP, the outbox) only tells that a message
was accepted: for its editions ``events_reported`` is false and every rate that
needs events (delivery, open, click, click-to-open, bounce, complaint) is None
("unknown"), never 0%.
"""

from __future__ import annotations

from typing import Any

from newsletter.delivery.backends import EVENT_BACKENDS
from newsletter.errors import NotFoundError
from newsletter.models import EditionInfo
from newsletter.states import REACHED, DeliveryStatus
from newsletter.store import Store

D = DeliveryStatus

#: delivery statuses, in the order they are shown
STATUSES = (
    D.QUEUED,
    D.CLAIMED,
    D.ACCEPTED,
    D.DELIVERED,
    D.DEFERRED,
    D.BOUNCED,
    D.DROPPED,
    D.COMPLAINED,
    D.UNSUBSCRIBED,
    D.FAILED,
    D.UNRESOLVED,
    D.CANCELLED,
    D.LEFT,
)
#: everything `status` counts: the statuses plus the engagement flags
COUNTS = (*STATUSES, "opened", "clicked")

#: not (yet) taken by the provider
_NOT_SENT = (D.QUEUED, D.CLAIMED, D.FAILED, D.UNRESOLVED, D.CANCELLED, D.LEFT)
#: statuses that prove the message arrived
_ARRIVED = REACHED


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


#: rates that need the provider's events
_EVENT_RATES = ("delivery", "open", "click", "click_to_open", "bounce", "complaint")


def summarize(rows: list[tuple[str, bool, bool, int]], *, events: bool = True) -> dict[str, Any]:
    """Counts and rates from (status, opened, clicked, count) rows; with ``events``
    False (a backend that reports none) the rates that need them are None."""
    counts = {k: 0 for k in COUNTS}
    recipients = sent = delivered = 0
    for status, opened, clicked, n in rows:
        recipients += n
        counts[status] = counts.get(status, 0) + n
        if opened:
            counts["opened"] += n
        if clicked:
            counts["clicked"] += n
        if status not in _NOT_SENT:
            sent += n
        if status in _ARRIVED or opened or clicked:
            delivered += n
    out: dict[str, Any] = {
        "recipients": recipients,
        "sent": sent,
        "delivered_total": delivered,
        "counts": counts,
        "rates": {
            "delivery": _rate(delivered, sent),
            "open": _rate(counts["opened"], delivered),
            "click": _rate(counts["clicked"], delivered),
            "click_to_open": _rate(counts["clicked"], counts["opened"]),
            "bounce": _rate(counts["bounced"], sent),
            "complaint": _rate(counts["complained"], delivered),
            "unsubscribe": _rate(counts["unsubscribed"], delivered),
        },
    }
    if not events:
        out["rates"] |= dict.fromkeys(_EVENT_RATES)
        out["rates"]["unsubscribe"] = _rate(counts["unsubscribed"], sent)
    return out


def find_edition(store: Store, edition_id: int | None) -> EditionInfo:
    if edition_id is None:
        latest = store.list_editions(limit=1)
        if not latest:
            raise NotFoundError("no editions yet", hint="run `newsletter run` first")
        return latest[0]
    info = store.get_edition(edition_id)
    if info is None:
        raise NotFoundError(f"no edition {edition_id}")
    return info


def edition_status(store: Store, edition_id: int | None = None) -> dict[str, Any]:
    """Everything `newsletter status` shows, as plain data (the --json output)."""
    info = find_edition(store, edition_id)
    rows = store.engagement_rows(info.id)
    per_variant: dict[str, list[tuple[str, bool, bool, int]]] = {}
    for variant, status, opened, clicked, n in rows:
        per_variant.setdefault(variant, []).append((status, opened, clicked, n))
    backends = store.edition_backends(info.id)
    # no batch yet (nothing sent): rates are unknown either way
    events = bool(backends) and any(b in EVENT_BACKENDS for b in backends)
    overall = summarize([r[1:] for r in rows], events=events)
    unmailed = store.unsubscribed_unmailed(info.id)
    overall["unsubscribes"] = overall["counts"]["unsubscribed"] + sum(unmailed.values())
    overall["unsubscribes_held"] = unmailed.get(D.UNRESOLVED, 0)
    return {
        "id": info.id,
        "digest": info.digest,
        "period": info.period,
        "status": info.status,
        "subject": info.subject,
        "created_at": info.created_at.isoformat(),
        "sent_at": info.sent_at.isoformat() if info.sent_at else None,
        "backends": backends,
        #: whether the backend reports delivery events (SendGrid) or only acceptance
        "events_reported": events,
        **overall,
        "variants": {v: summarize(r, events=events) for v, r in sorted(per_variant.items())},
        "events": store.event_type_counts(info.id),
        # across all editions: events whose message we could not find
        "unmatched_events": store.unmatched_event_count(),
        "unresolved_batches": [
            {"id": b.id, "size": b.size, "error": b.error, "variant": b.variant}
            for b in store.unresolved_batches(info.id)
        ],
    }
