"""Ingest: fetch every source, store what is new or changed, report per source."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from newsletter.articles.sources import SourceState, make_source
from newsletter.config import Config, SourceConfig
from newsletter.errors import SourceError
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


def sources_for(cfg: Config, targets: list[str] | None = None) -> list[SourceConfig]:
    """The configured sources, or ad-hoc ones for PATH_OR_URL arguments."""
    if not targets:
        return cfg.sources
    out = []
    for t in targets:
        kind = "json" if t.lower().endswith(".json") else "rss"
        out.append(SourceConfig(name=t, type=kind, url=t))
    return out


def ingest(store: Store, cfg: Config, sources: list[SourceConfig]) -> IngestReport:
    """Ingest each source in turn. A failing source is reported; the others still run."""
    report = IngestReport()
    for sc in sources:
        if not sc.url.startswith(("http://", "https://")):
            sc = SourceConfig(**{**sc.__dict__, "url": str(cfg.resolve(sc.url))})
        source = make_source(sc, cfg.articles)
        rep = SourceReport(source=source.label)
        report.sources.append(rep)
        saved = store.get_source_state(source.key)
        state = SourceState(**saved)  # type: ignore[arg-type]
        try:
            result = source.fetch(state)
        except SourceError as err:
            rep.error = str(err)
            logger.warning("%s", err)
            continue
        rep.not_modified = result.not_modified
        rep.problems = result.problems
        for p in result.problems:
            logger.warning("%s", p)
        if not result.not_modified:
            rep.fetched = len(result.articles)
            rep.stored = store.upsert_articles(result.articles)
            store.set_source_state(
                source.key,
                etag=result.state.etag,
                last_modified=result.state.last_modified,
                last_ingest_at=utcnow(),
            )
    return report
