"""The WordPress REST API: /wp-json/wp/v2/posts with ``_embed``.

- Pages of up to 100 posts, following ``X-WP-TotalPages`` (at most
  ``max_pages`` per run, newest modification first).
- Tag slugs in the config are turned into ids through /wp/v2/tags?slug=.
- Author, featured image (with its alt text) and terms come from ``_embed``.
- Only posts modified since the last ingest are asked for. WordPress compares
  ``modified_after`` with the site's *local* time, whatever offset we send, so
  we ask from 14 hours (the largest UTC offset) before the last ingest began;
  unchanged posts cost a hash comparison, a missed one would cost a story.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlencode

from newsletter import http
from newsletter.articles import normalize
from newsletter.articles.normalize import Item
from newsletter.articles.sources.base import FetchResult, Source, SourceState
from newsletter.errors import SourceError

logger = logging.getLogger(__name__)

#: see the module docstring: the widest gap between a site's local time and UTC
MODIFIED_OVERLAP = timedelta(hours=14)
#: image sizes good for an email card, best first; else the original upload
_SIZES = ("large", "medium_large", "full")
_EMBED = "author,wp:featuredmedia,wp:term"


def _dig(data: Any, *path: Any) -> Any:
    for step in path:
        try:
            data = data[step]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _rendered(post: dict, key: str) -> str:
    value = post.get(key)
    if isinstance(value, dict):
        value = value.get("rendered")
    return value if isinstance(value, str) else ""


def _gmt(value: Any) -> datetime | None:
    """WordPress ``*_gmt`` fields carry no offset but are UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        return normalize.parse_time(value)


def _featured_image(post: dict) -> tuple[str, str]:
    media = _dig(post, "_embedded", "wp:featuredmedia", 0)
    if not isinstance(media, dict) or media.get("code"):  # e.g. rest_forbidden
        return "", ""
    url = ""
    sizes = _dig(media, "media_details", "sizes")
    if isinstance(sizes, dict):
        for size in _SIZES:
            candidate = _dig(sizes, size, "source_url")
            if isinstance(candidate, str) and candidate:
                url = candidate
                break
    url = url or (media.get("source_url") or "")
    alt = media.get("alt_text") or _rendered(media, "title") or ""
    return (url, alt) if isinstance(url, str) else ("", "")


def _terms(post: dict) -> list[str]:
    names = []
    for group in _dig(post, "_embedded", "wp:term") or []:
        for term in group if isinstance(group, list) else []:
            if isinstance(term, dict) and isinstance(term.get("name"), str):
                names.append(term["name"])
    return names


def post_item(post: dict, position: int) -> Item | str:
    """One post of the API as an Item, or why it cannot be used."""
    if not isinstance(post, dict):
        return f"not a post object: {str(post)[:60]!r}"
    if _dig(post, "content", "protected") or _dig(post, "excerpt", "protected"):
        return "skipped, password-protected"
    author = _dig(post, "_embedded", "author", 0, "name")
    published = _gmt(post.get("date_gmt")) or _gmt(post.get("date"))
    link = post.get("link")
    return Item(
        position=position,
        uid=_rendered(post, "guid"),
        link=link if isinstance(link, str) else "",
        title=_rendered(post, "title"),
        summary=_rendered(post, "excerpt"),
        content=_rendered(post, "content"),
        author=author if isinstance(author, str) else "",
        published=published,
        updated=_gmt(post.get("modified_gmt")),
        tags=_terms(post),
        pinned=post.get("sticky") is True,
        image_url="",
        image_alt="",
    )


class WordPressSource(Source):
    kind = "wordpress"

    @property
    def api_root(self) -> str:
        """``https://site/wp-json`` from the site's address or its REST root."""
        url = self.cfg.url.rstrip("/")
        if "/wp-json" in url:
            return url[: url.index("/wp-json")] + "/wp-json"
        return url + "/wp-json"

    @property
    def key(self) -> str:
        # another tag filter is another query: its progress is kept apart
        tags = ",".join(sorted(self.cfg.tags))
        return f"{self.kind}:{self.api_root}" + (f"?tags={tags}" if tags else "")

    def _get_json(self, url: str) -> tuple[Any, http.Response]:
        resp = self.get(url, {"Accept": "application/json"})
        try:
            return json.loads(resp.body), resp
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SourceError(f"not JSON: {err}", where=url) from err

    def tag_ids(self) -> tuple[list[int], list[str]]:
        """Ids of the configured tag slugs, and one problem per slug the site lacks."""
        wanted = {unquote(s).casefold(): s for s in self.cfg.tags}
        url = f"{self.api_root}/wp/v2/tags?" + urlencode(
            {"slug": ",".join(self.cfg.tags), "per_page": 100, "_fields": "id,slug,name"}
        )
        data, _ = self._get_json(url)
        if not isinstance(data, list):
            raise SourceError(f"not a list of tags: {str(data)[:100]}", where=url)
        ids, found = [], set()
        for tag in data:
            slug = unquote(str(_dig(tag, "slug") or "")).casefold()
            if slug in wanted and isinstance(_dig(tag, "id"), int):
                ids.append(tag["id"])
                found.add(slug)
        problems = [
            f"{self.label}: tag {wanted[s]!r} does not exist on the site"
            for s in wanted
            if s not in found
        ]
        if not ids:
            raise SourceError(
                f"none of the tags {', '.join(self.cfg.tags)} exist on the site", where=url
            )
        return sorted(ids), problems

    def fetch(self, state: SourceState) -> FetchResult:
        started = datetime.now(UTC)
        if state.last_ingest_at is not None:
            since = state.last_ingest_at - MODIFIED_OVERLAP
        else:
            since = started - timedelta(days=self.cfg.backfill_days)
        params: dict[str, Any] = {
            "_embed": _EMBED,
            "per_page": self.cfg.per_page,
            "orderby": "modified",
            "order": "desc",
            "modified_after": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        }
        result = FetchResult(state=SourceState(last_ingest_at=started))
        if self.cfg.tags:
            ids, result.problems = self.tag_ids()
            params["tags"] = ",".join(str(i) for i in ids)
        norm = self.normalizer(base_url=self.api_root)
        seen: set[Any] = set()
        position = 0
        page = 1
        while True:
            url = f"{self.api_root}/wp/v2/posts?" + urlencode({**params, "page": page})
            try:
                data, resp = self._get_json(url)
                if not isinstance(data, list):
                    raise SourceError(f"not a list of posts: {str(data)[:100]}", where=url)
            except SourceError as err:
                if page == 1:
                    raise
                # keep pages already read; the state stays put so the next run asks again
                result.error = f"{err} (after {page - 1} pages)"
                break
            for post in data:
                post_id = _dig(post, "id")
                if post_id is not None and post_id in seen:
                    continue  # an edit during paging moved it onto the next page
                seen.add(post_id)
                position += 1
                item = post_item(post, position)
                if isinstance(item, str):
                    title = (
                        normalize.clean_title(_rendered(post, "title"))
                        if isinstance(post, dict)
                        else ""
                    )
                    norm.problem(Item(position=position), item, title)
                    continue
                item.image_url, item.image_alt = _featured_image(post)
                norm.add(item)
            total = resp.headers.get("X-WP-TotalPages", "")
            total_pages = int(total) if total.strip().isdigit() else None
            last = len(data) < self.cfg.per_page if total_pages is None else page >= total_pages
            if last:
                break
            if page >= self.cfg.max_pages:
                result.problems.append(
                    f"{self.label}: stopped after max_pages={self.cfg.max_pages} of "
                    f"{total_pages or 'more'} pages; older posts were not read"
                )
                break
            page += 1
        result.articles = norm.articles
        result.problems += norm.problems
        return result
