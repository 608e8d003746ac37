"""RSS 2.0 and Atom feeds (WordPress site and per-tag feeds too), via feedparser."""

from __future__ import annotations

import calendar
import logging
from datetime import UTC, datetime

import feedparser

from newsletter import http
from newsletter.articles import normalize
from newsletter.articles.sources.base import FetchResult, Source, SourceState
from newsletter.errors import SourceError
from newsletter.models import Article, Tag

logger = logging.getLogger(__name__)

#: WordPress categories that mark an article for the top of the digest
PINNED_TAGS = {"featured", "pinned", "sticky"}


def _when(entry: dict, *keys: str) -> datetime | None:
    for key in keys:
        # asking for a missing updated_parsed makes feedparser fall back (with a warning)
        if key not in entry:
            continue
        parsed = entry.get(f"{key}_parsed")
        if parsed:
            return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    return None


def _image(entry: dict) -> tuple[str, str]:
    for media in entry.get("media_content", []) or []:
        if media.get("medium", "image") == "image" and media.get("url"):
            return media["url"], normalize.clean_title(entry.get("media_description", "") or "")
    for thumb in entry.get("media_thumbnail", []) or []:
        if thumb.get("url"):
            return thumb["url"], ""
    for enc in entry.get("enclosures", []) or []:
        if str(enc.get("type", "")).startswith("image/") and enc.get("href"):
            return enc["href"], ""
    return "", ""


def parse_feed(body: bytes, *, source: str, summary_length: int) -> FetchResult:
    """Normalize a feed document. Items that cannot be used are reported, not raised."""
    parsed = feedparser.parse(body)
    if parsed.bozo and not parsed.entries:
        err = parsed.get("bozo_exception")
        raise SourceError(f"not a feed: {err}", where=source)
    result = FetchResult()
    seen: set[str] = set()
    for i, entry in enumerate(parsed.entries, 1):
        item = f"{source}: item {i}"
        title = normalize.clean_title(entry.get("title", ""))
        link = entry.get("link", "")
        if title:
            item += f" ({title[:60]!r})"
        published = _when(entry, "published", "updated", "created")
        missing = [n for n, v in (("link", link), ("title", title), ("date", published)) if not v]
        if missing:
            result.problems.append(f"{item}: skipped, no {' or '.join(missing)}")
            continue
        url = normalize.clean_url(link)
        uid = (entry.get("id") or "").strip() or url
        if uid in seen:
            result.problems.append(f"{item}: skipped, duplicate guid {uid}")
            continue
        seen.add(uid)
        raw_summary = entry.get("summary", "") or ""
        if not raw_summary and entry.get("content"):
            raw_summary = entry["content"][0].get("value", "")
        text, safe_html = normalize.summarize(raw_summary, summary_length)
        tags = []
        for t in entry.get("tags", []) or []:
            term = (t.get("label") or t.get("term") or "").strip()
            if term:
                tags.append(Tag.from_name(term))
        by_slug = {t.slug: t for t in reversed(tags)}  # first spelling wins
        image_url, image_alt = _image(entry)
        updated = _when(entry, "updated")
        result.articles.append(
            Article(
                uid=uid,
                url=url,
                title=title,
                summary_text=text,
                summary_html=safe_html,
                author=normalize.clean_title(entry.get("author", "") or ""),
                image_url=image_url,
                image_alt=image_alt or title,
                published_at=published,
                updated_at=updated if updated and updated != published else None,
                tags=sorted((t for t in by_slug.values() if t.slug), key=lambda t: t.slug),
                pinned=bool(PINNED_TAGS & set(by_slug)),
                source=source,
            )
        )
    if parsed.bozo:
        result.problems.append(
            f"{source}: feed is not well-formed ({parsed.get('bozo_exception')})"
        )
    return result


class FeedSource(Source):
    kind = "rss"

    def fetch(self, state: SourceState) -> FetchResult:
        headers = {}
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        resp = http.get(
            self.cfg.url,
            timeout=self.cfg.timeout,
            max_bytes=self.articles_cfg.max_feed_bytes,
            headers=headers,
        )
        if resp.not_modified:
            return FetchResult(state=state, not_modified=True)
        result = parse_feed(
            resp.body, source=self.label, summary_length=self.articles_cfg.summary_length
        )
        result.state = SourceState(
            etag=resp.headers.get("ETag", ""),
            last_modified=resp.headers.get("Last-Modified", ""),
        )
        return result
