"""Articles, their tags, and the per-source ingest state."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from newsletter.models import Article, SourceState, Tag
from newsletter.states import EDITION_SENT
from newsletter.store.base import StoreBase, utcnow
from newsletter.store.schema import article_tags, articles, edition_articles, editions, source_state
from newsletter.store.schema import tags as tags_table


@dataclass
class UpsertResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def __iadd__(self, other: UpsertResult) -> UpsertResult:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        return self


def _content_hash(a: Article) -> str:
    payload = json.dumps(
        [
            a.url,
            a.title,
            a.summary_text,
            a.summary_html,
            a.author,
            a.image_url,
            a.image_alt,
            a.published_at.isoformat(),
            a.updated_at.isoformat() if a.updated_at else "",
            sorted((t.slug, t.name) for t in a.tags),
            a.pinned,
        ],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _row_values(a: Article) -> dict[str, Any]:
    return {
        "uid": a.uid,
        "url": a.url,
        "title": a.title,
        "summary_text": a.summary_text,
        "summary_html": a.summary_html,
        "author": a.author,
        "image_url": a.image_url,
        "image_alt": a.image_alt,
        "published_at": a.published_at,
        "updated_at": a.updated_at,
        "pinned": a.pinned,
        "source": a.source[:200],
    }


def _may_update(row: Any, a: Article) -> bool:
    """The source that stored an article updates it; another only with a newer copy."""
    if row.source == a.source[:200]:
        return True
    return bool((a.updated_at or a.published_at) > (row.updated_at or row.published_at))


class ArticleQueries(StoreBase):
    def upsert_articles(self, items: Iterable[Article], *, chunk: int = 500) -> UpsertResult:
        """Insert new articles, update changed ones in place, leave the rest.

        An article is the same when its uid matches, or else its URL: the same
        story from two sources is stored once. A stored article is changed by
        the source that stored it, or by another source whose copy is newer
        (a later updated or published time), so two sources carrying one story
        do not overwrite each other on every run.
        """
        result = UpsertResult()
        batch: list[Article] = []
        for a in items:
            batch.append(a)
            if len(batch) >= chunk:
                result += self._upsert_chunk_retrying(batch)
                batch = []
        if batch:
            result += self._upsert_chunk_retrying(batch)
        return result

    def _upsert_chunk_retrying(self, batch: Sequence[Article]) -> UpsertResult:
        try:
            return self._upsert_chunk(batch)
        except IntegrityError:
            # a concurrent ingest stored one of these first: the second pass sees it
            return self._upsert_chunk(batch)

    def _upsert_chunk(self, batch: Sequence[Article]) -> UpsertResult:
        result = UpsertResult()
        now = utcnow()
        with self.begin() as conn:
            uids = list({a.uid for a in batch})
            urls = list({a.url for a in batch})
            found = conn.execute(
                select(
                    articles.c.id,
                    articles.c.uid,
                    articles.c.url,
                    articles.c.content_hash,
                    articles.c.source,
                    articles.c.published_at,
                    articles.c.updated_at,
                ).where(or_(articles.c.uid.in_(uids), articles.c.url.in_(urls)))
            ).all()
            by_uid: dict[str, Any] = {r.uid: r for r in found}
            by_url: dict[str, Any] = {}
            for r in sorted(found, key=lambda r: r.id):
                by_url.setdefault(r.url, r)
            self._ensure_tags(conn, {t for a in batch for t in a.tags})
            new: list[Article] = []
            new_rows: list[dict[str, Any]] = []
            tag_rows: list[dict[str, Any]] = []
            for a in batch:
                digest = _content_hash(a)
                row = by_uid.get(a.uid) or by_url.get(a.url)
                if row is None:
                    new.append(a)
                    new_rows.append(_row_values(a) | {"content_hash": digest, "ingested_at": now})
                    by_uid[a.uid] = by_url[a.url] = _PENDING
                    continue
                if row is _PENDING or row.content_hash == digest or not _may_update(row, a):
                    a.id = None if row is _PENDING else row.id
                    result.unchanged += 1
                    continue
                a.id = row.id
                values = _row_values(a) | {"content_hash": digest}
                values.pop("uid")  # the first uid seen stays the key
                conn.execute(update(articles).where(articles.c.id == row.id).values(**values))
                conn.execute(delete(article_tags).where(article_tags.c.article_id == row.id))
                tag_rows += [{"article_id": a.id, "tag_slug": s} for s in sorted(a.tag_slugs)]
                result.updated += 1
            if new_rows:
                conn.execute(insert(articles), new_rows)
                ids = dict(
                    conn.execute(
                        select(articles.c.uid, articles.c.id).where(
                            articles.c.uid.in_([a.uid for a in new])
                        )
                    ).all()
                )
                for a in new:
                    a.id = ids[a.uid]
                    tag_rows += [{"article_id": a.id, "tag_slug": s} for s in sorted(a.tag_slugs)]
                result.inserted += len(new)
            if tag_rows:
                conn.execute(insert(article_tags), tag_rows)
        return result

    def _ensure_tags(self, conn: Connection, wanted: set[Tag]) -> None:
        if not wanted:
            return
        by_slug: dict[str, str] = {}
        for t in sorted(wanted, key=lambda t: (t.slug, _name_rank(t.name), t.name)):
            by_slug.setdefault(t.slug, t.name)
        have = dict(
            conn.execute(
                select(tags_table.c.slug, tags_table.c.name).where(tags_table.c.slug.in_(by_slug))
            ).all()
        )
        # a better spelling ("Kazakhstan" over "KAZAKHSTAN") renames the tag
        for slug, name in by_slug.items():
            if slug in have and _name_rank(name) < _name_rank(have[slug]):
                conn.execute(update(tags_table).where(tags_table.c.slug == slug).values(name=name))
        new = [{"slug": s, "name": n} for s, n in by_slug.items() if s not in have]
        if not new:
            return
        # a concurrent ingest may add the same tag first
        if self.dialect == "postgresql":
            stmt: Any = pg_insert(tags_table).on_conflict_do_nothing(index_elements=["slug"])
        elif self.dialect == "sqlite":
            stmt = sqlite_insert(tags_table).on_conflict_do_nothing(index_elements=["slug"])
        else:  # pragma: no cover - only the two engines above are supported
            stmt = insert(tags_table)
        conn.execute(stmt, new)

    def _load_articles(self, conn: Connection, query: Select[Any]) -> list[Article]:
        rows = conn.execute(query).all()
        ids = [r.id for r in rows]
        tag_map: dict[int, list[Tag]] = {i: [] for i in ids}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            for at in conn.execute(
                select(article_tags.c.article_id, tags_table.c.slug, tags_table.c.name)
                .join(tags_table, tags_table.c.slug == article_tags.c.tag_slug)
                .where(article_tags.c.article_id.in_(part))
                .order_by(tags_table.c.name)
            ):
                tag_map[at.article_id].append(Tag(at.slug, at.name))
        return [
            Article(
                id=r.id,
                uid=r.uid,
                url=r.url,
                title=r.title,
                summary_text=r.summary_text,
                summary_html=r.summary_html,
                author=r.author,
                image_url=r.image_url,
                image_alt=r.image_alt,
                published_at=r.published_at,
                updated_at=r.updated_at,
                pinned=r.pinned,
                source=r.source,
                tags=tag_map[r.id],
            )
            for r in rows
        ]

    def find_articles(
        self,
        *,
        tags: Iterable[str] = (),
        exclude_tags: Iterable[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        late_since: datetime | None = None,
        late_floor: datetime | None = None,
        not_sent_in_digest: str | None = None,
        limit: int | None = None,
    ) -> list[Article]:
        """Articles with any of ``tags`` (all when empty), none of ``exclude_tags``,
        published in [since, until), pinned first, then newest first.

        ``late_since`` also lets in late arrivals: articles first stored in
        [late_since, until) although published before ``since`` (but not before
        ``late_floor``), such as a story that reached the feed after the previous
        edition was compiled. ``not_sent_in_digest`` leaves out every article an
        earlier edition of that digest already carried.
        """
        q = select(articles)
        tags, exclude_tags = list(tags), list(exclude_tags)
        if tags:
            q = q.where(
                exists().where(
                    and_(
                        article_tags.c.article_id == articles.c.id,
                        article_tags.c.tag_slug.in_(tags),
                    )
                )
            )
        if exclude_tags:
            q = q.where(
                ~exists().where(
                    and_(
                        article_tags.c.article_id == articles.c.id,
                        article_tags.c.tag_slug.in_(exclude_tags),
                    )
                )
            )
        if since is not None:
            in_window = articles.c.published_at >= since
            if late_since is not None:
                late = articles.c.ingested_at >= late_since
                if until is not None:
                    late = and_(late, articles.c.ingested_at < until)
                if late_floor is not None:
                    late = and_(late, articles.c.published_at >= late_floor)
                in_window = or_(in_window, late)
            q = q.where(in_window)
        if until is not None:
            q = q.where(articles.c.published_at < until)
        if not_sent_in_digest is not None:
            q = q.where(
                ~exists().where(
                    and_(
                        edition_articles.c.article_id == articles.c.id,
                        edition_articles.c.edition_id == editions.c.id,
                        editions.c.digest == not_sent_in_digest,
                        editions.c.status.in_(EDITION_SENT),
                    )
                )
            )
        q = q.order_by(articles.c.pinned.desc(), articles.c.published_at.desc(), articles.c.id)
        if limit is not None:
            q = q.limit(limit)
        with self.connect() as conn:
            return self._load_articles(conn, q)

    def get_articles(self, ids: Sequence[int]) -> list[Article]:
        """Articles by id, in the order given."""
        with self.connect() as conn:
            found = {
                a.id: a
                for a in self._load_articles(conn, select(articles).where(articles.c.id.in_(ids)))
            }
        return [found[i] for i in ids if i in found]

    def count_articles(self) -> int:
        with self.connect() as conn:
            return conn.execute(select(func.count()).select_from(articles)).scalar_one()

    def list_tags(self) -> list[tuple[Tag, int]]:
        """Every tag with its article count, most used first."""
        q = (
            select(tags_table.c.slug, tags_table.c.name, func.count(article_tags.c.article_id))
            .join(article_tags, article_tags.c.tag_slug == tags_table.c.slug, isouter=True)
            .group_by(tags_table.c.slug, tags_table.c.name)
            .order_by(func.count(article_tags.c.article_id).desc(), tags_table.c.slug)
        )
        with self.connect() as conn:
            return [(Tag(s, n), c) for s, n, c in conn.execute(q)]

    # --------------------------------------------------------------- source state

    def get_source_state(self, source: str) -> SourceState:
        """What ``source`` (a source's key) remembered after its last good fetch; an
        empty state for one never fetched."""
        with self.connect() as conn:
            row = conn.execute(select(source_state).where(source_state.c.source == source)).first()
        if row is None:
            return SourceState()
        return SourceState(
            etag=row.etag, last_modified=row.last_modified, last_ingest_at=row.last_ingest_at
        )

    def set_source_state(
        self,
        source: str,
        *,
        etag: str = "",
        last_modified: str = "",
        last_ingest_at: datetime | None = None,
    ) -> None:
        values = {"etag": etag, "last_modified": last_modified, "last_ingest_at": last_ingest_at}
        with self.begin() as conn:
            done = conn.execute(
                update(source_state).where(source_state.c.source == source).values(**values)
            ).rowcount
            if not done:
                conn.execute(insert(source_state).values(source=source, **values))


#: marks an article inserted earlier in the same chunk
_PENDING: Any = object()


def _name_rank(name: str) -> int:
    """How good a tag's display spelling is: mixed case ("Oil and Gas") beats all
    lower case, which beats shouting ("KAZAKHSTAN")."""
    if name.isupper():
        return 2
    if name.islower():
        return 1
    return 0
