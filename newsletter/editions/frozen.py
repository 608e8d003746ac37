"""A frozen edition read back and rendered: what a send (or a resumed send) renders.

Rendering is pure and deterministic, so a resumed send renders exactly what the
first attempt rendered from the edition's stored article ids and rates header.
"""

from __future__ import annotations

from newsletter.config import Config, DigestConfig
from newsletter.editions.variants import variant_tags
from newsletter.models import Article, RatesHeader, Rendered
from newsletter.rates.service import header_from_json
from newsletter.render.compile import EditionContent, render
from newsletter.store import Store


def tag_names(store: Store) -> dict[str, str]:
    return {t.slug: t.name for t, _ in store.list_tags()}


def content_for(
    cfg: Config,
    digest: DigestConfig,
    *,
    subject: str,
    edition_date: str,
    articles: list[Article],
    rates: RatesHeader,
    tags: list[str],
    names: dict[str, str],
    archive_url: str = "",
    note: str = "",
) -> EditionContent:
    return EditionContent(
        site=cfg.site,
        digest=digest,
        subject=subject,
        edition_date=edition_date,
        articles=articles,
        rates=rates,
        reason_tags=[names.get(t, t) for t in tags],
        archive_url=archive_url,
        layout=cfg.render.layout,
        note=note,
    )


def render_content(cfg: Config, content: EditionContent) -> Rendered:
    return render(
        content,
        templates=str(cfg.resolve(cfg.render.templates)) if cfg.render.templates else "",
        inliner=cfg.render.inliner,
        max_bytes=cfg.render.max_html_bytes,
    )


def archive_link(cfg: Config, digest: DigestConfig, edition_id: int) -> str:
    base = cfg.site.archive_url.rstrip("/")
    return f"{base}/{digest.name}/{edition_id}.html" if base else ""


def render_frozen(store: Store, cfg: Config, edition_id: int) -> dict[str, Rendered]:
    """Render every variant of a stored edition from its frozen data."""
    info = store.get_edition(edition_id)
    assert info is not None
    digest = cfg.digest(info.digest)
    details = store.edition_details(edition_id)
    rates = header_from_json(details.rates)
    names = tag_names(store)
    out = {}
    for key, ids in details.variants.items():
        content = content_for(
            cfg,
            digest,
            subject=info.subject,
            edition_date=details.info.get("edition_date", ""),
            articles=store.get_articles(ids),
            rates=rates,
            tags=variant_tags(key, digest),
            names=names,
            archive_url=archive_link(cfg, digest, edition_id),
            note=details.info.get("note", ""),
        )
        out[key] = render_content(cfg, content)
    return out
