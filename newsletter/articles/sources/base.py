"""The contract every article source fills.

A source fetches once and returns normalized articles plus per-item problems.
A failure of the whole source raises :class:`~newsletter.errors.SourceError`;
a bad item is reported and skipped, the rest still counts.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime

from newsletter.config import ArticlesConfig, SourceConfig
from newsletter.models import Article


@dataclass
class SourceState:
    """What a source remembers between runs (conditional GET, last ingest)."""

    etag: str = ""
    last_modified: str = ""
    last_ingest_at: datetime | None = None


@dataclass
class FetchResult:
    articles: list[Article] = field(default_factory=list)
    #: one line per skipped item, naming the source and the item
    problems: list[str] = field(default_factory=list)
    state: SourceState = field(default_factory=SourceState)
    not_modified: bool = False


class Source(abc.ABC):
    #: the ``type`` in the config
    kind: str = ""

    def __init__(self, cfg: SourceConfig, articles: ArticlesConfig):
        self.cfg = cfg
        self.articles_cfg = articles

    @property
    def key(self) -> str:
        """Identifies the source's state in the store."""
        return f"{self.kind}:{self.cfg.url}"

    @property
    def label(self) -> str:
        return self.cfg.name or self.cfg.url

    @abc.abstractmethod
    def fetch(self, state: SourceState) -> FetchResult:
        """Fetch and normalize; raise SourceError when the source as a whole fails."""


def make_source(cfg: SourceConfig, articles: ArticlesConfig) -> Source:
    from newsletter.articles.sources import rss

    kinds: dict[str, type[Source]] = {"rss": rss.FeedSource}
    try:
        from newsletter.articles.sources import wordpress

        kinds["wordpress"] = wordpress.WordPressSource
    except ImportError:  # pragma: no cover - optional until built
        pass
    try:
        from newsletter.articles.sources import jsonfile

        kinds["json"] = jsonfile.JsonSource
    except ImportError:  # pragma: no cover
        pass
    return kinds[cfg.type](cfg, articles)
