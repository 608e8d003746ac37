"""Compile one variant: Jinja2 → MJML → mjml-python → CSS inlining, plus plaintext.

Pure: takes data, returns strings. The HTML must stay under the size budget
(Gmail clips beyond ~102 KB): when it would not, the last articles move into a
"More stories" list of titles and links, and ``Rendered.overflow`` says how many.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import mjml
from jinja2 import TemplateError

from newsletter.config import DigestConfig, SiteConfig
from newsletter.errors import RenderError
from newsletter.models import Article, RatesHeader, Rendered
from newsletter.render import personalize
from newsletter.render.env import make_env
from newsletter.render.inline import inline_css
from newsletter.render.text import rates_table, wrap

logger = logging.getLogger(__name__)


@dataclass
class EditionContent:
    """Everything a variant's rendering depends on."""

    site: SiteConfig
    digest: DigestConfig
    subject: str
    edition_date: str
    articles: list[Article]
    rates: RatesHeader = field(default_factory=RatesHeader)
    #: tag display names this variant was chosen for ("why you get this")
    reason_tags: list[str] = field(default_factory=list)
    archive_url: str = ""
    layout: str = "list"
    more_stories: list[Article] = field(default_factory=list)

    @property
    def preheader(self) -> str:
        """The lead: the first story's title and the start of its summary."""
        if not self.articles:
            return ""
        lead = self.articles[0]
        text = f"{lead.title} — {lead.summary_text}"
        return text[:140].rsplit(" ", 1)[0] + "…" if len(text) > 140 else text


def _context(c: EditionContent) -> dict:
    sections: list[dict] = []
    if c.layout == "tags":
        placed: set[int] = set()
        for tag_name in c.reason_tags or []:
            items = [
                a
                for a in c.articles
                if tag_name in {t.name for t in a.tags} and id(a) not in placed
            ]
            placed.update(id(a) for a in items)
            if items:
                sections.append({"name": tag_name, "articles": items})
        rest = [a for a in c.articles if id(a) not in placed]
        if rest:
            sections.append({"name": "More news", "articles": rest})
    return {
        "site": c.site,
        "digest": c.digest,
        "subject": c.subject,
        "edition_date": c.edition_date,
        "articles": c.articles,
        "sections": sections,
        "layout": c.layout,
        "more_stories": c.more_stories,
        "rates": c.rates,
        "rates_table": rates_table(c.rates),
        "reason_tags": c.reason_tags,
        "archive_url": c.archive_url,
        "preheader": c.preheader,
        "unsubscribe_url": personalize.UNSUBSCRIBE_URL,
        "preferences_url": personalize.PREFERENCES_URL,
        "name": personalize.NAME,
    }


def render_html(c: EditionContent, *, templates: str = "", inliner: str = "premailer") -> str:
    env = make_env(templates)
    name = f"{c.digest.template}.mjml.j2"
    try:
        source = env.get_template(name).render(_context(c))
    except TemplateError as err:
        raise RenderError(f"template error: {err}", where=name) from err
    try:
        compiled = mjml.mjml2html(source)
    except Exception as err:  # mjml-python raises plain exceptions
        raise RenderError(f"MJML did not compile: {err}", where=name) from err
    return inline_css(compiled, inliner)


def render_text(c: EditionContent, *, templates: str = "") -> str:
    env = make_env(templates)
    name = f"{c.digest.template}.txt.j2"
    try:
        return wrap(env.get_template(name).render(_context(c)))
    except TemplateError as err:
        raise RenderError(f"template error: {err}", where=name) from err


def render(
    c: EditionContent, *, templates: str = "", inliner: str = "premailer", max_bytes: int = 100_000
) -> Rendered:
    """Render a variant within the size budget."""
    html = render_html(c, templates=templates, inliner=inliner)
    overflow = 0
    if len(html.encode()) > max_bytes and len(c.articles) > 1:
        # move articles to "More stories" until it fits; binary search on the count kept
        lo, hi = 1, len(c.articles) - 1
        best: tuple[int, str] | None = None
        while lo <= hi:
            keep = (lo + hi) // 2
            trial = replace(
                c, articles=c.articles[:keep], more_stories=c.articles[keep:] + c.more_stories
            )
            out = render_html(trial, templates=templates, inliner=inliner)
            if len(out.encode()) <= max_bytes:
                best = (keep, out)
                lo = keep + 1
            else:
                hi = keep - 1
        if best is not None:
            keep, html = best
            overflow = len(c.articles) - keep
            c = replace(
                c, articles=c.articles[:keep], more_stories=c.articles[keep:] + c.more_stories
            )
            logger.info(
                "edition over %d bytes: %d articles moved to More stories", max_bytes, overflow
            )
    warnings = []
    if len(html.encode()) > max_bytes:
        warnings.append(f"HTML is {len(html.encode())} bytes, over the {max_bytes}-byte budget")
    if overflow:
        warnings.append(
            f"{overflow} articles moved to More stories to stay under {max_bytes} bytes"
        )
    return Rendered(
        subject=c.subject,
        html=html,
        text=render_text(c, templates=templates),
        preheader=c.preheader,
        overflow=overflow,
        warnings=warnings,
    )
