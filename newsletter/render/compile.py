"""Compile one variant: Jinja2 → MJML → mjml-python → CSS inlining, plus plaintext.

Pure: takes data, returns strings. The HTML must stay under the size budget
(Gmail clips beyond ~102 KB): when it would not, the last articles move into a
"More stories" list of titles and links, and ``Rendered.overflow`` says how many.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import mjml
from jinja2 import TemplateError
from markupsafe import Markup

from newsletter import i18n
from newsletter.config import DigestConfig, SiteConfig
from newsletter.errors import RenderError
from newsletter.i18n import N_
from newsletter.models import Article, RatesHeader, Rendered
from newsletter.rates.format import legend, rate_rows
from newsletter.render import personalize
from newsletter.render.env import make_env
from newsletter.render.inline import inline_css
from newsletter.render.note import note_html, note_text
from newsletter.render.text import rates_text, wrap
from newsletter.render.voice import topic_order

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
    #: the web archive's copy: no personal data, no unsubscribe links
    web: bool = False
    #: the editor's note, Markdown ("" for none)
    note: str = ""

    @property
    def language(self) -> str:
        """The edition's language: the digest's, else the site's."""
        return self.digest.language or self.site.language

    @property
    def preheader(self) -> str:
        """The lead: the first story's title and the start of its summary."""
        if not self.articles:
            return ""
        lead = self.articles[0]
        text = " — ".join(t for t in (lead.title, lead.summary_text) if t)
        return text[:140].rsplit(" ", 1)[0].rstrip(" ,;:.—") + "…" if len(text) > 140 else text


#: after the preheader: stops mail apps from padding the inbox preview with
#: the start of the body (site name, rates): combining grapheme joiner, zero-width
#: non-joiner and no-break space, the usual invisible filler
PREHEADER_PAD = "\u034f\u200c\u00a0" * 40


def _sections(c: EditionContent, rest: list[Article]) -> list[dict]:
    """The stories after the lead: one untitled list, or a section per tag."""
    if c.layout != "tags":
        return [{"name": "", "articles": rest}] if rest else []
    sections: list[dict] = []
    placed: set[int] = set()
    for tag_name in c.reason_tags:
        items = [a for a in rest if id(a) not in placed and tag_name in {t.name for t in a.tags}]
        placed.update(id(a) for a in items)
        if items:
            sections.append({"name": tag_name, "articles": items})
    others = [a for a in rest if id(a) not in placed]
    if others:
        _ = i18n.lang(c.language)
        sections.append({"name": _("More news") if sections else "", "articles": others})
    return sections


#: the greeting's name for a subscriber without one: "Hi there,"
GREETING_FALLBACK = N_("there")


def _contents(c: EditionContent) -> list[Article]:
    """The stories "In this issue" lists: all of them, when there are more than
    ``contents_above``."""
    stories = c.articles + c.more_stories
    return stories if len(stories) > c.digest.contents_above else []


def _context(c: EditionContent) -> dict:
    lead, rest = (c.articles[0], c.articles[1:]) if c.articles else (None, [])
    return {
        "site": c.site,
        "digest": c.digest,
        "subject": c.subject,
        "edition_date": c.edition_date,
        "articles": c.articles,
        "lead": lead,
        "sections": _sections(c, rest),
        "layout": c.layout,
        "more_stories": c.more_stories,
        "rates": c.rates,
        "rate_rows": rate_rows(c.rates, c.digest.rates_convention, c.language),
        "rates_legend": legend(c.rates.items[0].quote, c.language) if c.rates else "",
        "rates_sources": [i18n.lang(c.language)(s) for s in c.rates.sources],
        "rates_text": rates_text(c.rates, c.digest.rates_convention, c.language),
        "language": c.language,
        "reason_tags": topic_order(c.reason_tags, c.digest.tags),
        "contents": _contents(c),
        "note_html": note_html(c.note),
        "note_text": note_text(c.note),
        "first_name": personalize.FIRST_NAME,
        "archive_url": c.archive_url,
        "web": c.web,
        "preheader": c.preheader,
        "preheader_pad": Markup(PREHEADER_PAD),
        "unsubscribe_url": personalize.UNSUBSCRIBE_URL,
        "preferences_url": personalize.PREFERENCES_URL,
        "name": personalize.NAME,
    }


#: seconds spent per stage ("jinja", "mjml", "inline", "text"), added up
Timings = dict[str, float]


@contextmanager
def _stage(timings: Timings | None, name: str) -> Iterator[None]:
    if timings is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


_POSITION = re.compile(r"position (\d+):(\d+)")


def _mjml_error(err: Exception, source: str, name: str) -> RenderError:
    """MRML's error, with the line of the generated MJML it points at."""
    message = str(err) or type(err).__name__
    m = _POSITION.search(message)
    if m:
        start = int(m.group(1))
        line = source.count("\n", 0, start) + 1
        excerpt = source[max(0, start - 40) : start + 40].replace("\n", "⏎")
        message += f" (line {line} of the generated MJML, near {excerpt!r})"
    return RenderError(f"MJML did not compile: {message}", where=name)


def compile_mjml(c: EditionContent, *, templates: str = "", timings: Timings | None = None) -> str:
    """Jinja2 → MJML → HTML, before CSS inlining."""
    env = make_env(templates, c.language)
    name = f"{c.digest.template}.mjml.j2"
    with _stage(timings, "jinja"):
        try:
            source = env.get_template(name).render(_context(c))
        except TemplateError as err:
            raise _template_error(err, name) from err
    with _stage(timings, "mjml"):
        try:
            return mjml.mjml2html(source)
        except Exception as err:  # mjml-python raises plain ValueErrors
            raise _mjml_error(err, source, name) from err


def _template_error(err: TemplateError, name: str) -> RenderError:
    """The error with the template file and line it happened in.

    Syntax errors carry them; errors while rendering (an undefined variable)
    do not, but Jinja rewrites the traceback so that its frames are template
    lines: the innermost template frame is the place."""
    where, lineno = getattr(err, "filename", None) or name, getattr(err, "lineno", None)
    if not lineno:
        tb = err.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.endswith(".j2"):
                where, lineno = tb.tb_frame.f_code.co_filename, tb.tb_lineno
            tb = tb.tb_next
    return RenderError(
        f"template error: {err.message or err}", where=f"{where}:{lineno}" if lineno else where
    )


def render_html(
    c: EditionContent,
    *,
    templates: str = "",
    inliner: str = "premailer",
    timings: Timings | None = None,
) -> str:
    """The finished HTML part: compiled MJML with its CSS inlined."""
    compiled = compile_mjml(c, templates=templates, timings=timings)
    with _stage(timings, "inline"):
        return inline_css(compiled, inliner)


def render_text(c: EditionContent, *, templates: str = "", timings: Timings | None = None) -> str:
    """The plaintext part, from its own template, wrapped to 78 columns."""
    env = make_env(templates, c.language)
    name = f"{c.digest.template}.txt.j2"
    with _stage(timings, "text"):
        try:
            return wrap(env.get_template(name).render(_context(c)))
        except TemplateError as err:
            raise _template_error(err, name) from err


#: bytes a per-recipient placeholder may grow by when personalised (a signed
#: unsubscribe URL is ~110 characters, a name rarely 60)
PLACEHOLDER_ROOM = 200


def sent_size(html: str) -> int:
    """The HTML's size as a recipient gets it: room is kept for each placeholder."""
    return len(html.encode()) + PLACEHOLDER_ROOM * sum(
        html.count(p) for p in personalize.PLACEHOLDERS
    )


def _keep(c: EditionContent, keep: int) -> EditionContent:
    """``c`` with only the first ``keep`` stories as cards, the rest in More stories."""
    return replace(c, articles=c.articles[:keep], more_stories=c.articles[keep:] + c.more_stories)


def fit_budget(
    c: EditionContent,
    *,
    templates: str = "",
    inliner: str = "premailer",
    max_bytes: int = 100_000,
    timings: Timings | None = None,
) -> tuple[EditionContent, str]:
    """The content and its HTML, with as many stories as cards as fit in ``max_bytes``.

    One full render when the edition fits. Otherwise the number of cards is
    found on the size of the compiled MJML (Jinja and MJML take a few ms;
    inlining is the slow stage), scaled by the inlined/compiled ratio of the
    full render: interpolated between one card and all, then walked to the
    exact count; then the result is inlined and checked, stepping a card up
    while the next still fits, or down while it does not. At least one card always
    stays; check() reports an edition still over budget.
    """
    compiled = compile_mjml(c, templates=templates, timings=timings)
    with _stage(timings, "inline"):
        html = inline_css(compiled, inliner)
    size = sent_size(html)
    if size <= max_bytes or len(c.articles) <= 1:
        return c, html
    n = len(c.articles)
    limit = max_bytes * len(compiled.encode()) / size  # the budget in compiled bytes
    sizes = {n: len(compiled.encode())}

    def compiled_size(k: int) -> int:
        if k not in sizes:
            out = compile_mjml(_keep(c, k), templates=templates, timings=timings)
            sizes[k] = len(out.encode())
        return sizes[k]

    # stories are about the same size: interpolate between one card and all of
    # them, then walk to the exact count (usually a step or two)
    per_card = (sizes[n] - compiled_size(1)) / (n - 1)
    keep = min(n - 1, max(1, 1 + int((limit - compiled_size(1)) / per_card)))
    while keep > 1 and compiled_size(keep) > limit:
        keep -= 1
    while keep + 1 < n and compiled_size(keep + 1) <= limit:
        keep += 1
    trial = _keep(c, keep)
    out = render_html(trial, templates=templates, inliner=inliner, timings=timings)
    if sent_size(out) <= max_bytes:
        # the estimate may be a card short: step up while the next one still fits
        while keep + 1 < n:
            bigger = _keep(c, keep + 1)
            bigger_out = render_html(bigger, templates=templates, inliner=inliner, timings=timings)
            if sent_size(bigger_out) > max_bytes:
                break
            keep, trial, out = keep + 1, bigger, bigger_out
        return trial, out
    while keep > 1:
        keep -= 1
        trial = _keep(c, keep)
        out = render_html(trial, templates=templates, inliner=inliner, timings=timings)
        if sent_size(out) <= max_bytes:
            break
    return trial, out


def render(
    c: EditionContent,
    *,
    templates: str = "",
    inliner: str = "premailer",
    max_bytes: int = 100_000,
    timings: Timings | None = None,
) -> Rendered:
    """Render a variant, HTML and text, within the size budget."""
    fitted, html = fit_budget(
        c, templates=templates, inliner=inliner, max_bytes=max_bytes, timings=timings
    )
    overflow = len(c.articles) - len(fitted.articles)
    size = sent_size(html)
    warnings = []
    _ = i18n.lang(c.language)  # the warnings are shown with the edition (preview, check)
    if overflow:
        logger.info("edition over %d bytes: %d stories moved to More stories", max_bytes, overflow)
        warnings.append(
            _(
                "{count} of {total} stories moved to the {more} list "
                "to keep the HTML under {budget} bytes",
                count=overflow,
                total=len(c.articles),
                more=_("More stories"),
                budget=max_bytes,
            )
        )
    if size > max_bytes:
        warnings.append(
            _(
                "HTML is about {size} bytes, over the {budget}-byte budget",
                size=size,
                budget=max_bytes,
            )
        )
    return Rendered(
        subject=c.subject,
        html=html,
        text=render_text(fitted, templates=templates, timings=timings),
        preheader=c.preheader,
        overflow=overflow,
        warnings=warnings,
        fallbacks={
            personalize.FIRST_NAME: c.digest.greeting_fallback
            or i18n.lang(c.language)(GREETING_FALLBACK)
        },
    )
