"""Planning an edition: the window, each variant's articles, the subject.

An edition belongs to one digest and one schedule period. Planning reads the
audience to find the distinct tag sets (variants) and selects each variant's
articles; nothing is written until the plan is frozen (``editions.freeze``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from newsletter import i18n
from newsletter.config import Config, DigestConfig
from newsletter.editions.variants import DEFAULT_VARIANT, tag_slugs, variant_key, variant_tags
from newsletter.models import Article, Subscriber
from newsletter.schedule import period_key, period_start
from newsletter.store import Store

logger = logging.getLogger(__name__)


@dataclass
class VariantPlan:
    key: str
    tags: list[str]
    articles: list[Article]
    subscribers: int = 0


@dataclass
class EditionPlan:
    digest: DigestConfig
    period: str
    subject: str
    edition_date: str
    window_start: datetime
    window_end: datetime
    variants: dict[str, VariantPlan] = field(default_factory=dict)
    #: subscribers whose variant has too few articles this time
    skipped_subscribers: int = 0
    #: variant key -> why it is skipped (fewer than min_articles new articles)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def skip_message(self) -> str:
        """Why nothing (or not everything) goes out, one variant per clause."""
        return "; ".join(self.skipped[k] for k in sorted(self.skipped))

    @property
    def article_count(self) -> int:
        return len({a.id for v in self.variants.values() for a in v.articles})

    @property
    def recipients(self) -> int:
        return sum(v.subscribers for v in self.variants.values())


def window_for(store: Store, digest: DigestConfig, now: datetime) -> tuple[datetime, datetime]:
    """From the previous sent edition of this digest (else ``lookback_days`` ago) to now."""
    since, _ = _window_and_previous(store, digest, now)
    return since, now


def _window_and_previous(
    store: Store, digest: DigestConfig, now: datetime
) -> tuple[datetime, datetime | None]:
    """(window start, end of the previous edition's window or None for the first edition)."""
    last = store.last_edition(digest.name)
    previous = store.edition_window_end(last.id) if last is not None else None
    if previous is None:
        return now - timedelta(days=digest.lookback_days), None
    return previous, previous


def select_articles(
    store: Store,
    digest: DigestConfig,
    tags: list[str],
    since: datetime,
    until: datetime,
    *,
    late_since: datetime | None = None,
) -> list[Article]:
    """Articles for one variant: any of ``tags``, none excluded, never sent before.

    Pinned first, then newest, at most ``max_articles``. ``late_since`` (the end
    of the previous edition's window) also admits stories stored after it that
    were published up to ``lookback_days`` before it: a story that reached the
    feed just after the previous edition was compiled still gets sent once.
    """
    return store.find_articles(
        tags=tag_slugs(tags),
        exclude_tags=tag_slugs(digest.exclude_tags),
        since=since,
        until=until,
        late_since=late_since,
        late_floor=late_since - timedelta(days=digest.lookback_days) if late_since else None,
        not_sent_in_digest=digest.name,
        limit=digest.max_articles,
    )


@dataclass
class Selection:
    """What one variant of a digest's next edition would carry, and whether it is enough."""

    digest: str
    variant: str
    tags: list[str]
    window_start: datetime
    window_end: datetime
    articles: list[Article]
    min_articles: int
    max_articles: int
    #: the previous edition's window end, when late arrivals are admitted
    late_since: datetime | None = None

    @property
    def enough(self) -> bool:
        # min_articles = 0 still means at least one: no empty newsletters
        return len(self.articles) >= max(self.min_articles, 1)

    @property
    def skip_reason(self) -> str:
        """Why this variant would be skipped; empty when it would be sent."""
        if self.enough:
            return ""
        tags = ", ".join(self.tags) if self.tags else "any tag"
        n = len(self.articles)
        return (
            f"variant {self.variant}: {n} new article{'' if n == 1 else 's'} ({tags}) "
            f"since {self.window_start.astimezone(UTC):%Y-%m-%d %H:%M} UTC, fewer than "
            f"min_articles={max(self.min_articles, 1)}"
        )

    def as_dict(self) -> dict:
        return {
            "digest": self.digest,
            "variant": self.variant,
            "tags": self.tags,
            "window_start": self.window_start.astimezone(UTC).isoformat(),
            "window_end": self.window_end.astimezone(UTC).isoformat(),
            "late_since": self.late_since.astimezone(UTC).isoformat() if self.late_since else None,
            "min_articles": self.min_articles,
            "max_articles": self.max_articles,
            "skip_reason": self.skip_reason or None,
        }


def selection(
    store: Store,
    digest: DigestConfig,
    now: datetime,
    *,
    tags: list[str] | None = None,
    since: datetime | None = None,
) -> Selection:
    """What the next edition of ``digest`` would carry for a subscriber with ``tags``.

    No tags: the digest's default tags. ``since`` overrides the window start
    (which otherwise runs from the previous sent edition, or ``lookback_days``).
    """
    key = variant_key(tag_slugs(tags or []))
    wanted = tag_slugs(variant_tags(key, digest))
    start, previous = _window_and_previous(store, digest, now)
    late_since = previous
    if since is not None:
        start, late_since = since, None
    return Selection(
        digest=digest.name,
        variant=key,
        tags=wanted,
        window_start=start,
        window_end=now,
        articles=select_articles(store, digest, wanted, start, now, late_since=late_since),
        min_articles=digest.min_articles,
        max_articles=digest.max_articles,
        late_since=late_since,
    )


def plan_edition(
    store: Store,
    cfg: Config,
    digest: DigestConfig,
    now: datetime,
    *,
    audience: Iterable[Subscriber] | None = None,
) -> EditionPlan:
    """Work out variants and their articles for the period containing ``now``.

    A variant with fewer than ``min_articles`` new articles is left out and
    its reason kept in ``plan.skipped``; its subscribers get nothing this time.
    """
    start = period_start(digest, now)
    since, previous = _window_and_previous(store, digest, now)
    local = now.astimezone(ZoneInfo(digest.timezone))
    # '30 November 2026', '30 ноября 2026': the edition's language (CLDR)
    edition_date = i18n.lang(digest.language or cfg.site.language).day(local)
    plan = EditionPlan(
        digest=digest,
        period=period_key(start),
        subject="",
        edition_date=edition_date,
        window_start=since,
        window_end=now,
    )
    counts: dict[str, int] = {}
    if audience is None:
        # counted in the database, per distinct topic set (the freeze's keys):
        # constant memory, and no subscriber passes through Python
        for tags, n in store.audience_topic_counts(digest.name):
            key = variant_key(tags)
            counts[key] = counts.get(key, 0) + n
    else:
        for sub in audience:
            key = variant_key(sub.tags)
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        counts[DEFAULT_VARIANT] = 0
    for key in sorted(counts):
        tags = variant_tags(key, digest)
        arts = select_articles(store, digest, tags, since, now, late_since=previous)
        chosen = Selection(
            digest=digest.name,
            variant=key,
            tags=tag_slugs(tags),
            window_start=since,
            window_end=now,
            articles=arts,
            min_articles=digest.min_articles,
            max_articles=digest.max_articles,
            late_since=previous,
        )
        if not chosen.enough:
            plan.skipped_subscribers += counts[key]
            plan.skipped[key] = chosen.skip_reason
            logger.info("%s: %s; skipped", digest.name, chosen.skip_reason)
            continue
        plan.variants[key] = VariantPlan(key=key, tags=tags, articles=arts, subscribers=counts[key])
    lead = max((len(v.articles) for v in plan.variants.values()), default=0)
    plan.subject = digest.subject.format(
        site=cfg.site.name, title=digest.title, date=edition_date, count=lead
    )
    return plan
