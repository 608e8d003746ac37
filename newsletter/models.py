"""Plain data passed between the stages. No I/O here."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal


def slugify(name: str) -> str:
    """A tag's slug: "Oil and Gas" -> "oil-and-gas"; non-Latin letters are kept.

    "Kazakhstan", "kazakhstan" and "KAZAKHSTAN" give the same slug.
    """
    text = unicodedata.normalize("NFKC", name).casefold().strip()
    text = re.sub(r"[^\w]+", "-", text, flags=re.UNICODE)
    return text.strip("-_")


@dataclass(frozen=True)
class Tag:
    slug: str
    name: str

    @classmethod
    def from_name(cls, name: str) -> Tag:
        return cls(slug=slugify(name), name=" ".join(name.split()))


@dataclass
class Article:
    """One story, normalized from any source."""

    uid: str  # the feed's guid, else the canonical URL
    url: str
    title: str
    published_at: datetime  # timezone-aware, UTC
    summary_text: str = ""
    summary_html: str = ""
    author: str = ""
    image_url: str = ""
    image_alt: str = ""
    updated_at: datetime | None = None
    tags: list[Tag] = field(default_factory=list)
    pinned: bool = False
    source: str = ""
    #: database id, once stored
    id: int | None = None

    @property
    def tag_slugs(self) -> set[str]:
        return {t.slug for t in self.tags}


@dataclass(frozen=True)
class Rate:
    """One ``currency`` costs ``value`` ``quote`` (KZT/USD = 0.002088), from one
    source on one date."""

    currency: str
    quote: str
    value: Decimal
    rate_date: date
    source: str
    #: the change since the previous business day, in percent, if known
    change_pct: Decimal | None = None
    #: significant digits the published figures behind ``value`` are good to
    #: (None: not known, e.g. stored before this was recorded)
    digits: int | None = None


@dataclass
class RatesHeader:
    """The rates header of an edition: figures, frozen; formatted when rendered
    (``newsletter.rates.format.rate_rows``), in the digest's convention."""

    items: list[RateLine] = field(default_factory=list)
    #: the oldest date of a figure not from the edition's own date
    as_of: date | None = None

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def sources(self) -> list[str]:
        """The sources of the figures, in order of first use."""
        return list(dict.fromkeys(line.source for line in self.items))

    def note(self, line: RateLine) -> int:
        """The footnote number naming ``line``'s source; 0 when one source gave them all."""
        sources = self.sources
        return sources.index(line.source) + 1 if len(sources) > 1 else 0


@dataclass
class RateLine:
    """One pair of the header as the edition freezes it: numbers, not text."""

    currency: str  # "KZT"
    quote: str  # "USD"
    #: what one ``currency`` costs in ``quote``
    value: Decimal
    #: the currency's change against ``quote`` since the previous business day, in
    #: percent (positive: the currency got stronger); None when unknown
    change_pct: Decimal | None
    #: significant digits to print: the configured ones, fewer only when no
    #: source had that many
    digits: int
    source: str  # the provider's label
    rate_date: date
    #: the figure is not from the edition's own date: printed "as of <date>"
    dated: bool = False
    #: an edition frozen before figures were stored as numbers: its formatted row
    #: (pair, text, change, direction, as_of), printed as it was
    legacy: dict[str, str] | None = None

    @property
    def pair(self) -> str:
        return f"{self.currency}/{self.quote}"

    def as_dict(self) -> dict[str, str | int | bool | None]:
        if self.legacy is not None:
            return {**self.legacy, "source": self.source, "date": self.rate_date.isoformat()}
        return {
            "currency": self.currency,
            "quote": self.quote,
            "value": str(self.value),
            "change_pct": None if self.change_pct is None else str(self.change_pct),
            "digits": self.digits,
            "source": self.source,
            "date": self.rate_date.isoformat(),
            "dated": self.dated,
        }


@dataclass
class SourceState:
    """What an article source remembers between runs (conditional GET, last ingest)."""

    etag: str = ""
    last_modified: str = ""
    last_ingest_at: datetime | None = None


@dataclass
class Subscriber:
    email: str
    name: str = ""
    tags: list[str] = field(default_factory=list)  # slugs; empty = the digest's defaults
    timezone: str = ""
    status: str = "active"
    id: int | None = None


@dataclass
class Variant:
    """One distinct tag set of an edition and the articles it gets."""

    key: str  # sorted slugs joined by "+", or "default"
    tags: list[str]
    articles: list[Article]


@dataclass
class Rendered:
    """One compiled variant: rendered once, personalised by substitution."""

    subject: str
    html: str
    text: str
    preheader: str = ""
    #: articles moved to the "More stories" list to stay under the size budget
    overflow: int = 0
    warnings: list[str] = field(default_factory=list)
    #: values of placeholders a recipient has nothing for (the greeting's name)
    fallbacks: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipient:
    """One message to send: a delivery row, with what personalises it."""

    delivery_id: int
    email: str
    name: str
    unsubscribe_url: str
    variant: str


@dataclass
class EditionInfo:
    id: int
    digest: str
    period: str
    status: str
    subject: str
    created_at: datetime
    sent_at: datetime | None = None


@dataclass
class Subscription:
    """One subscriber's subscription to one digest ("*": every digest, from before 0002)."""

    digest: str
    status: str  # pending | active | unsubscribed
    #: tag slugs; None: the subscriber's own tags; []: everything the digest covers
    topics: list[str] | None
    created_at: datetime
    updated_at: datetime
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    consent_source: str = ""  # import | form | cli | migration
    consent_at: datetime | None = None
    consent_ip: str = ""
    consent_text: str = ""
