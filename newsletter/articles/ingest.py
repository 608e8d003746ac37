"""Ingest: fetch every source, store what is new or changed, report per source."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from newsletter.articles.normalize import make_tags
from newsletter.articles.sources import make_source
from newsletter.config import Config, SourceConfig
from newsletter.errors import NewsletterError
from newsletter.http import is_url
from newsletter.models import Article
from newsletter.store import Store
from newsletter.store.articles import UpsertResult
from newsletter.store.base import utcnow

logger = logging.getLogger(__name__)


@dataclass
class SourceReport:
    source: str
    fetched: int = 0
    stored: UpsertResult = field(default_factory=UpsertResult)
    not_modified: bool = False
    problems: list[str] = field(default_factory=list)
    error: str = ""

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "fetched": self.fetched,
            "inserted": self.stored.inserted,
            "updated": self.stored.updated,
            "unchanged": self.stored.unchanged,
            "not_modified": self.not_modified,
            "problems": self.problems,
            "error": self.error,
        }


@dataclass
class IngestReport:
    sources: list[SourceReport] = field(default_factory=list)

    @property
    def failed(self) -> list[SourceReport]:
        return [s for s in self.sources if s.error]

    @property
    def inserted(self) -> int:
        return sum(s.stored.inserted for s in self.sources)

    @property
    def updated(self) -> int:
        return sum(s.stored.updated for s in self.sources)

    @property
    def problems(self) -> int:
        return sum(len(s.problems) for s in self.sources)


def _guess_type(target: str) -> str:
    if target.lower().split("?", 1)[0].endswith(".json"):
        return "json"
    if "/wp-json" in target:
        return "wordpress"
    return "rss"


def sources_for(cfg: Config, targets: list[str] | None = None) -> list[SourceConfig]:
    """The configured sources, or ad-hoc ones for PATH_OR_URL arguments.

    A target ending in .json is a JSON source, one with /wp-json in it the
    WordPress REST API, anything else a feed.
    """
    if not targets:
        return cfg.sources
    return [SourceConfig(name=t, type=_guess_type(t), url=t) for t in targets]


def _add_tags(articles: list[Article], names: list[str]) -> None:
    extra = make_tags(names)
    for a in articles:
        have = a.tag_slugs
        a.tags = sorted([*a.tags, *(t for t in extra if t.slug not in have)], key=lambda t: t.slug)


def ingest_source(store: Store, cfg: Config, sc: SourceConfig) -> SourceReport:
    """Fetch one source and store what it gave; never raises for the source's failures."""
    if not is_url(sc.url) and not sc.url.startswith("file://"):
        sc = replace(sc, url=str(cfg.resolve(sc.url)))
    rep = SourceReport(source=sc.name or sc.url)
    try:
        source = make_source(sc, cfg.articles)
        rep.source = source.label
        state = store.get_source_state(source.key)
        result = source.fetch(state)
    except NewsletterError as err:
        rep.error = str(err)
        logger.warning("%s", err)
        return rep
    except Exception as err:  # a bug in one source must not cost the others their run
        logger.exception("%s: unexpected error", rep.source)
        rep.error = f"{rep.source}: unexpected error: {type(err).__name__}: {err}"
        return rep
    rep.not_modified = result.not_modified
    rep.problems = result.problems
    for p in result.problems:
        logger.warning("%s", p)
    if result.not_modified:
        store.set_source_state(
            source.key,
            etag=state.etag,
            last_modified=state.last_modified,
            last_ingest_at=state.last_ingest_at,
        )
        return rep
    if sc.add_tags:
        _add_tags(result.articles, sc.add_tags)
    rep.fetched = len(result.articles)
    rep.stored = store.upsert_articles(result.articles)
    if result.error:
        # what arrived is stored; the state stays, so the next run asks for it all again
        rep.error = result.error
        logger.warning("%s", result.error)
        return rep
    store.set_source_state(
        source.key,
        etag=result.state.etag,
        last_modified=result.state.last_modified,
        last_ingest_at=result.state.last_ingest_at or utcnow(),
    )
    logger.info(
        "%s: %d items, %d new, %d updated",
        rep.source,
        rep.fetched,
        rep.stored.inserted,
        rep.stored.updated,
    )
    return rep


def ingest(store: Store, cfg: Config, sources: list[SourceConfig]) -> IngestReport:
    """Ingest each source in turn. A failing source is reported; the others still run."""
    return IngestReport(sources=[ingest_source(store, cfg, sc) for sc in sources])
