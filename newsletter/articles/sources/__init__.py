"""Article sources: one module each, behind the contract in ``base``."""

from newsletter.articles.sources.base import FetchResult, Source, SourceState, make_source

__all__ = ["FetchResult", "Source", "SourceState", "make_source"]
