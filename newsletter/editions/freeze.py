"""Freezing an edition: its articles, rates header and audience, written before any send.

There is one way to freeze an audience, :func:`freeze_audience`: from the
digest's subscribers as they are now (the store's ``Audience``, the same
definition ``Store.iter_audience`` reads), each with the variant of that
subscription's topics and, for a local-time digest, the instant their own
clock reaches the period's fire time. The rows are copied inside the database
(``Store.freeze_digest_audience``): this module only says which variant a topic
set gets and when a time zone is released.
It is idempotent, so a run that died while freezing finishes the job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from newsletter import schedule
from newsletter.config import Config, DigestConfig
from newsletter.editions.notes import note_for_period
from newsletter.editions.plan import EditionPlan
from newsletter.editions.variants import variant_key
from newsletter.errors import NotFoundError
from newsletter.rates.service import build_header, header_to_json
from newsletter.states import EditionStatus
from newsletter.store import Store
from newsletter.store.audience import SENDABLE


def digest_zones(store: Store, digest: DigestConfig) -> list[ZoneInfo]:
    """The zones a local-time digest is released across (none without local_time)."""
    if not digest.local_time:
        return []
    home = schedule.zone(digest.timezone)
    return sorted(
        {schedule.subscriber_zone(name, home) for name in store.active_timezones()},
        key=lambda z: z.key,
    )


def left_out_counts(store: Store) -> dict[str, int]:
    """Subscribers never sent to, by status: unsubscribed, suppressed, bounced, complained."""
    return {
        status: n
        for status, n in sorted(store.count_subscribers().items())
        if status not in SENDABLE and n
    }


def create_edition(
    store: Store,
    cfg: Config,
    plan: EditionPlan,
    now: datetime,
    *,
    extra_info: dict[str, Any] | None = None,
) -> tuple[int, bool]:
    """Freeze a planned edition: articles per variant, rates, then the audience.

    Returns (edition id, created); a period's edition is created once, whoever
    comes first, so a second caller gets the existing one and freezes nothing.
    ``extra_info`` is kept in the edition's info (e.g. a skipped preflight's reason).
    """
    header = build_header(store, cfg.rates, now.astimezone(ZoneInfo(plan.digest.timezone)).date())
    edition_id, created = store.create_edition(
        digest=plan.digest.name,
        period=plan.period,
        subject=plan.subject,
        window_start=plan.window_start,
        window_end=plan.window_end,
        rates=header_to_json(header),
        info={
            "edition_date": plan.edition_date,
            "skipped_subscribers": plan.skipped_subscribers,
            # the editor's note as it was when the edition was frozen: a resumed
            # send and the archive show what the first recipients got
            "note": note_for_period(cfg, plan.digest, plan.period),
            **(extra_info or {}),
        },
        status=EditionStatus.COMPILED,
        variants={
            k: [a.id for a in v.articles if a.id is not None] for k, v in plan.variants.items()
        },
    )
    if created:
        freeze_audience(store, cfg, edition_id)
    return edition_id, created


def freeze_audience(store: Store, cfg: Config, edition_id: int) -> int:
    """Write the edition's queued deliveries from the subscribers as they are now.

    Idempotent: subscribers already frozen are kept as they are. Each gets the
    variant of their topics (one of the edition's; a subscriber whose topics
    have no variant in it gets nothing). With ``local_time`` each delivery gets
    ``release_at``, the period's wall-clock fire time in the subscriber's zone
    (the digest's when they have none, or an unknown one). The store copies the
    audience inside the database, asking for the variant once per distinct topic
    set and for the release once per zone, and marks the edition sending in the
    same transaction. Returns how many deliveries were queued.
    """
    info = store.get_edition(edition_id)
    if info is None:
        raise NotFoundError(f"no edition {edition_id}")
    digest = cfg.digest(info.digest)
    variants = set(store.edition_details(edition_id).variants)
    home = schedule.zone(digest.timezone)

    def variant_of(tags: list[str]) -> str | None:
        key = variant_key(tags)
        return key if key in variants else None

    release_of = None
    if digest.local_time:
        period = schedule.period_from_key(digest, info.period)

        def release_of(name: str) -> datetime:
            return period.release_at(schedule.subscriber_zone(name, home))

    return store.freeze_digest_audience(
        edition_id,
        digest.name,
        variant_of=variant_of,
        release_of=release_of,
        left_out=left_out_counts(store),
    )
