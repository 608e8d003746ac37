"""A JSON file or URL of articles, for sites without a feed.

The schema is documented in docs/articles.md ("JSON source"). In short: an
array of article objects, or ``{"articles": [...]}``; each article has
``url``, ``title`` and ``published`` (ISO 8601 with an offset), and may have
``id``, ``updated``, ``summary``, ``content``, ``author``, ``image``,
``image_alt``, ``tags`` and ``pinned``. An item that breaks the schema is
skipped with one line saying which field is wrong and why; the others are
still stored.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from newsletter.articles.normalize import Item, one_line, to_utc, truncate
from newsletter.articles.sources.base import FetchResult, Source, SourceState
from newsletter.errors import SourceError

logger = logging.getLogger(__name__)

REQUIRED = ("url", "title", "published")
OPTIONAL = (
    "id",
    "updated",
    "summary",
    "content",
    "author",
    "image",
    "image_alt",
    "tags",
    "pinned",
)
FIELDS = REQUIRED + OPTIONAL
_STRINGS = ("url", "title", "summary", "content", "author", "image", "image_alt")


def _time(value: Any, name: str, errors: list[str]) -> datetime | None:
    if not isinstance(value, str):
        errors.append(f"{name}: expected an ISO 8601 time as a string, got {value!r}")
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        errors.append(f"{name}: not an ISO 8601 time: {value!r}")
        return None
    if when.tzinfo is None:
        errors.append(f"{name}: {value!r} needs a UTC offset, e.g. 2026-11-28T09:30:00+05:00")
        return None
    return to_utc(when)


def validate(raw: Any, position: int) -> tuple[Item | None, list[str], list[str]]:
    """(item or None, errors that skip it, warnings that do not) for one article object."""
    if not isinstance(raw, dict):
        return None, [f"expected an object, got {type(raw).__name__}"], []
    errors: list[str] = []
    warnings = [
        f"unknown field {k!r} ignored (fields: {', '.join(FIELDS)})" for k in raw if k not in FIELDS
    ]
    for name in REQUIRED:
        if raw.get(name) in (None, ""):
            errors.append(f"{name}: missing")
    for name in _STRINGS:
        if raw.get(name) is not None and not isinstance(raw[name], str):
            errors.append(f"{name}: expected a string, got {raw[name]!r}")
    uid = raw.get("id")
    if uid is not None and (isinstance(uid, bool) or not isinstance(uid, str | int)):
        errors.append(f"id: expected a string or an integer, got {uid!r}")
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        errors.append(f"tags: expected a list of strings, got {tags!r}")
        tags = []
    pinned = raw.get("pinned", False)
    if not isinstance(pinned, bool):
        errors.append(f"pinned: expected true or false, got {pinned!r}")
    published = _time(raw["published"], "published", errors) if raw.get("published") else None
    updated = _time(raw["updated"], "updated", errors) if raw.get("updated") else None
    if errors:
        return None, errors, warnings
    item = Item(
        position=position,
        uid=str(uid) if uid is not None else "",
        link=raw["url"],
        title=raw["title"],
        summary=raw.get("summary") or "",
        content=raw.get("content") or "",
        author=raw.get("author") or "",
        image_url=raw.get("image") or "",
        image_alt=raw.get("image_alt") or "",
        published=published,
        updated=updated,
        tags=list(tags),
        pinned=pinned is True,
    )
    return item, [], warnings


def articles_list(data: Any, where: str) -> list[Any]:
    """The article objects of a document: a bare array or ``{"articles": [...]}``."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("articles"), list):
        return data["articles"]
    raise SourceError(
        'expected an array of articles or an object with an "articles" array', where=where
    )


class JsonSource(Source):
    kind = "json"

    def fetch(self, state: SourceState) -> FetchResult:
        resp = self.get(self.cfg.url, self.conditional_headers(state))
        if resp.not_modified:
            return FetchResult(state=state, not_modified=True)
        try:
            data = json.loads(resp.body)
        except UnicodeDecodeError as err:
            raise SourceError(f"not UTF-8 text: {err.reason}", where=self.cfg.url) from err
        except json.JSONDecodeError as err:
            raise SourceError(
                f"not valid JSON: line {err.lineno} column {err.colno}: {err.msg}",
                where=self.cfg.url,
            ) from err
        norm = self.normalizer(base_url=resp.url)
        notes: list[str] = []
        for pos, raw in enumerate(articles_list(data, self.cfg.url), 1):
            item, errors, warnings = validate(raw, pos)
            raw_title = raw.get("title") if isinstance(raw, dict) else None
            title = one_line(raw_title) if isinstance(raw_title, str) else ""
            label = norm.describe(Item(position=pos, title=title))
            notes += [f"{label}: {w}" for w in warnings]
            if item is None:
                notes.append(f"{label}: skipped, {'; '.join(truncate(e, 200) for e in errors)}")
                continue
            norm.add(item)
        return FetchResult(
            articles=norm.articles,
            problems=notes + norm.problems,
            state=SourceState(
                etag=resp.headers.get("ETag", ""),
                last_modified=resp.headers.get("Last-Modified", ""),
            ),
        )
