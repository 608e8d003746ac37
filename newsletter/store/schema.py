"""SQLAlchemy Core tables: the shape the migrations build.

Rates are stored as strings of their Decimal value so no engine rounds them.
Times are stored as timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

from newsletter.states import (
    BatchStatus,
    DeliveryStatus,
    EditionStatus,
    EventType,
    RunStatus,
    SubscriberStatus,
    SubscriptionStatus,
    check_values,
)

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every engine.

    SQLite keeps no offset, so values are converted to UTC before they are
    written and UTC is attached again when they are read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


TZ = UTCDateTime()

articles = Table(
    "articles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(1000), nullable=False, unique=True),
    Column("url", String(2000), nullable=False),
    Column("title", Text, nullable=False),
    Column("summary_text", Text, nullable=False, default=""),
    Column("summary_html", Text, nullable=False, default=""),
    Column("author", String(500), nullable=False, default=""),
    Column("image_url", String(2000), nullable=False, default=""),
    Column("image_alt", Text, nullable=False, default=""),
    Column("published_at", TZ, nullable=False),
    Column("updated_at", TZ),
    Column("pinned", Boolean, nullable=False, default=False),
    Column("source", String(200), nullable=False, default=""),
    Column("content_hash", String(64), nullable=False, default=""),
    Column("ingested_at", TZ, nullable=False),
    Index("ix_articles_published_at", "published_at"),
    Index("ix_articles_url", "url"),
)

tags = Table(
    "tags",
    metadata,
    Column("slug", String(200), primary_key=True),
    Column("name", String(200), nullable=False),
)

article_tags = Table(
    "article_tags",
    metadata,
    Column("article_id", Integer, ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_slug", String(200), ForeignKey("tags.slug"), primary_key=True),
    Index("ix_article_tags_tag", "tag_slug"),
)

source_state = Table(
    "source_state",
    metadata,
    Column("source", String(2000), primary_key=True),
    Column("etag", String(500), nullable=False, default=""),
    Column("last_modified", String(200), nullable=False, default=""),
    Column("last_ingest_at", TZ),
)

rates = Table(
    "rates",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("rate_date", Date, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("quote", String(3), nullable=False),
    Column("source", String(50), nullable=False),
    Column("value", String(50), nullable=False),
    Column("change_pct", String(50)),
    Column("fetched_at", TZ, nullable=False),
    # significant digits the published figures are good to (NULL: stored before migration 0005)
    Column("digits", Integer),
    UniqueConstraint("rate_date", "currency", "quote", "source", name="uq_rates_day"),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),  # normalized, lower case
    Column("name", String(500), nullable=False, default=""),
    Column("timezone", String(64), nullable=False, default=""),
    # SubscriberStatus: pending = signed up, not confirmed; forgotten = erased on request
    Column("status", String(20), nullable=False, default=SubscriberStatus.ACTIVE),
    Column("status_reason", String(500), nullable=False, default=""),
    Column("soft_bounces", Integer, nullable=False, default=0),
    Column("created_at", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False),
    Index("ix_subscribers_status", "status"),
    CheckConstraint(check_values("status", SubscriberStatus), name="ck_subscribers_status"),
)

subscriber_tags = Table(
    "subscriber_tags",
    metadata,
    Column(
        "subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("tag_slug", String(200), primary_key=True),
)

#: every digest: the one subscription of each subscriber from before migration 0003
ALL_DIGESTS = "*"

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False
    ),
    # a digest name, or "*" (ALL_DIGESTS): every digest without a row of its own
    Column("digest", String(200), nullable=False),
    # pending | active | unsubscribed
    Column("status", String(20), nullable=False),
    # tag slugs; NULL: the subscriber's own tags (subscriber_tags); []: the digest's
    Column("topics", JSON),
    Column("created_at", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False),
    Column("confirmed_at", TZ),
    Column("unsubscribed_at", TZ),
    # consent: how (import | form | cli | migration), when, from where, which wording
    Column("consent_source", String(20), nullable=False, default=""),
    Column("consent_at", TZ),
    Column("consent_ip", String(64), nullable=False, default=""),
    Column("consent_text", String(100), nullable=False, default=""),
    UniqueConstraint("subscriber_id", "digest", name="uq_subscriptions_digest"),
    Index("ix_subscriptions_digest", "digest", "status"),
    CheckConstraint(check_values("status", SubscriptionStatus), name="ck_subscriptions_status"),
)

#: shared counters of the signup rate limits (several serve processes, one table)
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("expires_at", TZ, nullable=False),
    Index("ix_rate_limits_expires", "expires_at"),
)

#: keyed hashes of addresses erased on request: never imported or added again unknowingly
forgotten = Table(
    "forgotten",
    metadata,
    Column("address_hash", String(64), primary_key=True),
    Column("forgotten_at", TZ, nullable=False),
)

editions = Table(
    "editions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("digest", String(200), nullable=False),
    # the schedule period this edition belongs to, e.g. "2026-11-30T07:00"
    Column("period", String(64), nullable=False),
    Column("status", String(20), nullable=False),  # EditionStatus
    Column("subject", Text, nullable=False, default=""),
    Column("window_start", TZ),
    Column("window_end", TZ),
    Column("rates", JSON),
    Column("info", JSON),
    Column("created_at", TZ, nullable=False),
    Column("sent_at", TZ),
    UniqueConstraint("digest", "period", name="uq_editions_period"),
    CheckConstraint(check_values("status", EditionStatus), name="ck_editions_status"),
)

edition_articles = Table(
    "edition_articles",
    metadata,
    Column("edition_id", Integer, ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True),
    Column("variant", String(500), primary_key=True),
    Column("article_id", Integer, ForeignKey("articles.id"), primary_key=True),
    Column("position", Integer, nullable=False),
    Index("ix_edition_articles_article", "article_id"),
)

batches = Table(
    "batches",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("edition_id", Integer, ForeignKey("editions.id", ondelete="CASCADE"), nullable=False),
    Column("variant", String(500), nullable=False),
    Column("status", String(20), nullable=False),  # BatchStatus
    Column("backend", String(50), nullable=False),
    Column("message_id", String(500), nullable=False, default=""),
    Column("provider_batch_id", String(200), nullable=False, default=""),
    Column("size", Integer, nullable=False, default=0),
    Column("worker", String(200), nullable=False, default=""),
    Column("claimed_at", TZ, nullable=False),
    Column("finished_at", TZ),
    Column("error", Text, nullable=False, default=""),
    CheckConstraint(check_values("status", BatchStatus), name="ck_batches_status"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("edition_id", Integer, ForeignKey("editions.id", ondelete="CASCADE"), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False),
    Column("email", String(320), nullable=False),  # frozen with the audience
    Column("variant", String(500), nullable=False),
    Column("status", String(20), nullable=False),  # DeliveryStatus
    Column("batch_id", String(64), ForeignKey("batches.id")),
    Column("message_id", String(500), nullable=False, default=""),
    Column("error", Text, nullable=False, default=""),
    Column("opened", Boolean, nullable=False, default=False),
    Column("clicked", Boolean, nullable=False, default=False),
    Column("release_at", TZ),  # local-time sends: not before this instant
    Column("updated_at", TZ, nullable=False),
    UniqueConstraint("edition_id", "subscriber_id", name="uq_deliveries_recipient"),
    Index("ix_deliveries_status", "edition_id", "status"),
    Index("ix_deliveries_batch", "batch_id"),
    CheckConstraint(check_values("status", DeliveryStatus), name="ck_deliveries_status"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("provider", String(50), nullable=False),
    Column("provider_event_id", String(200), nullable=False),
    Column("delivery_id", Integer, ForeignKey("deliveries.id")),
    Column("edition_id", Integer),
    Column("type", String(20), nullable=False),  # EventType
    Column("raw_type", String(50), nullable=False),
    Column("email", String(320), nullable=False, default=""),
    Column("occurred_at", TZ, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("url", Text, nullable=False, default=""),
    Column("raw", JSON, nullable=False),
    Column("received_at", TZ, nullable=False),
    UniqueConstraint("provider", "provider_event_id", name="uq_events_provider_id"),
    Index("ix_events_delivery", "delivery_id"),
    Index("ix_events_edition", "edition_id"),
    CheckConstraint(check_values("type", EventType), name="ck_events_type"),
)

locks = Table(
    "locks",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", TZ, nullable=False),
    Column("expires_at", TZ, nullable=False),
)

# the last run's outcome per digest (metrics, `newsletter editions`, idle alerts)
digest_runs = Table(
    "digest_runs",
    metadata,
    Column("digest", String(200), primary_key=True),
    Column("ran_at", TZ, nullable=False),
    # the exit code of the run that last handled this digest
    Column("exit_code", Integer, nullable=False),
    # the digest's outcome in that run (RunStatus): sent, no-subscribers, failed …
    Column("status", String(30), nullable=False),
    Column("period", String(64), nullable=False, default=""),
    Column("edition_id", Integer),
    Column("message", Text, nullable=False, default=""),
    # consecutive schedule periods that ended without an edition, and the last one
    # counted (so runs every 5 minutes count each period once)
    Column("idle_periods", Integer, nullable=False, default=0),
    Column("idle_period", String(64), nullable=False, default=""),
    CheckConstraint(check_values("status", RunStatus), name="ck_digest_runs_status"),
)
