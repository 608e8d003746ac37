"""The contract every article source fills.

A source fetches once and returns normalized articles plus per-item problems.
A failure of the whole source raises :class:`~newsletter.errors.SourceError`;
a bad item is reported and skipped, the rest still counts. A source that got
part of the way (say pages 1-3 of 5) returns what it has with ``error`` set:
those articles are stored, the source counts as failed, and its state is not
advanced, so the next run asks again.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from newsletter import http
from newsletter.articles.normalize import ItemNormalizer
from newsletter.config import ArticlesConfig, SourceConfig
from newsletter.errors import ConfigError
from newsletter.models import Article, SourceState


@dataclass
class FetchResult:
    articles: list[Article] = field(default_factory=list)
    #: one line per skipped item (or note on the document), naming the source and the item
    problems: list[str] = field(default_factory=list)
    state: SourceState = field(default_factory=SourceState)
    not_modified: bool = False
    #: set when the source failed part-way; ``articles`` holds what arrived before
    error: str = ""


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

    def conditional_headers(self, state: SourceState) -> dict[str, str]:
        """If-None-Match / If-Modified-Since from the last answer, so nothing new costs nothing."""
        headers = {}
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        return headers

    def get(self, url: str, headers: dict[str, str] | None = None) -> http.Response:
        """GET ``url`` with this source's timeout and the [articles] size cap."""
        return http.get(
            url,
            timeout=self.cfg.timeout,
            max_bytes=self.articles_cfg.max_feed_bytes,
            headers=headers,
            limit_hint="articles.max_feed_bytes",
        )

    def normalizer(self, base_url: str = "") -> ItemNormalizer:
        """The normalizer with this source's name and the [articles] settings."""
        return ItemNormalizer(
            self.label,
            summary_length=self.articles_cfg.summary_length,
            pinned_tags=self.articles_cfg.pinned_tags,
            strip_params=self.articles_cfg.strip_query_params,
            base_url=base_url,
        )

    @abc.abstractmethod
    def fetch(self, state: SourceState) -> FetchResult:
        """Fetch and normalize; raise SourceError when the source as a whole fails."""


def make_source(cfg: SourceConfig, articles: ArticlesConfig) -> Source:
    from newsletter.articles.sources import jsonfile, rss, wordpress

    kinds: dict[str, type[Source]] = {
        "rss": rss.FeedSource,
        "wordpress": wordpress.WordPressSource,
        "json": jsonfile.JsonSource,
    }
    if cfg.type not in kinds:
        raise ConfigError(
            f"unknown source type {cfg.type!r} (known: {', '.join(kinds)})",
            where=cfg.name or cfg.url,
        )
    return kinds[cfg.type](cfg, articles)
