"""What happened to an edition: counts per status, per variant."""

from __future__ import annotations

from typing import Any

from newsletter.errors import NotFoundError
from newsletter.store import Store

STATUSES = (
    "queued",
    "claimed",
    "accepted",
    "delivered",
    "deferred",
    "bounced",
    "dropped",
    "complained",
    "unsubscribed",
    "failed",
    "unresolved",
)


def edition_status(store: Store, edition_id: int | None = None) -> dict[str, Any]:
    if edition_id is None:
        latest = store.list_editions(limit=1)
        if not latest:
            raise NotFoundError("no editions yet", hint="run `newsletter run` first")
        info = latest[0]
    else:
        info = store.get_edition(edition_id)
        if info is None:
            raise NotFoundError(f"no edition {edition_id}")
    per_variant = store.delivery_counts(info.id)
    total = {s: 0 for s in STATUSES}
    variants = {}
    for v, counts in per_variant.items():
        variants[v] = {s: counts.get(s, 0) for s in STATUSES}
        for s, n in counts.items():
            total[s] = total.get(s, 0) + n
    return {
        "id": info.id,
        "digest": info.digest,
        "period": info.period,
        "status": info.status,
        "subject": info.subject,
        "created_at": info.created_at.isoformat(),
        "sent_at": info.sent_at.isoformat() if info.sent_at else None,
        "recipients": sum(total.values()),
        "counts": total,
        "variants": variants,
        "unresolved_batches": [
            {"id": b["id"], "size": b["size"], "error": b["error"], "variant": b["variant"]}
            for b in store.unresolved_batches(info.id)
        ],
    }
