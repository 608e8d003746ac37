"""`newsletter check`: every variant the audience would get, checked as sent."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from newsletter import i18n
from newsletter.config import Config, DigestConfig
from newsletter.delivery.mime import html_wire_sizes
from newsletter.editions.frozen import content_for, render_content, tag_names
from newsletter.editions.notes import note_for_period
from newsletter.editions.plan import plan_edition
from newsletter.errors import RenderError
from newsletter.preview.message import build_preview, preview_archive_link
from newsletter.rates.service import build_header
from newsletter.render.check import CheckReport, check_message
from newsletter.store import Store


def preflight(store: Store, cfg: Config, digest: DigestConfig, now: datetime) -> CheckReport:
    """`newsletter check`: every variant the current audience would get, checked
    as the messages a send would build. Sends and records nothing."""
    from newsletter.render.check import CheckReport

    report = CheckReport()
    # the findings speak the edition's language, like the edition
    language = digest.language or cfg.site.language
    _ = i18n.lang(language)
    if not cfg.secrets.secret_key:
        report.add(
            "error",
            "unsubscribe",
            _("NEWSLETTER_SECRET_KEY is not set: unsubscribe links cannot be signed"),
        )
    if cfg.site.archive_url and not cfg.archive.dir:
        report.add(
            "warning",
            "archive",
            _(
                "site.archive_url is set but archive.dir is empty: "
                "nothing publishes the pages “{link}” points to",
                link=_("View in browser"),
            ),
        )
    plan = plan_edition(store, cfg, digest, now)
    if not plan.variants:
        report.add(
            "error",
            "empty",
            _(
                "no variant has min_articles={count} new stories: the edition would be empty",
                count=digest.min_articles,
            ),
        )
        return report
    if plan.recipients == 0:
        report.add("warning", "audience", _("no active subscriber would get this edition"))
    rates = build_header(
        store, cfg.rates, now.astimezone(ZoneInfo(digest.timezone)).date(), save=False
    )
    names = tag_names(store)
    archive_url = preview_archive_link(store, cfg, digest, plan)
    note = note_for_period(cfg, digest, plan.period)
    for key, variant in plan.variants.items():
        content = content_for(
            cfg,
            digest,
            subject=plan.subject,
            edition_date=plan.edition_date,
            articles=variant.articles,
            rates=rates,
            tags=variant.tags,
            names=names,
            archive_url=archive_url,
            note=note,
        )
        try:
            rendered = render_content(cfg, content)
        except RenderError as err:
            report.add("error", "render", str(err), key)
            continue
        unsub = f"{cfg.site.public_url.rstrip('/')}/unsubscribe/CHECK"
        html, text, headers = build_preview(cfg, digest, rendered, unsubscribe=unsub)
        report.findings += check_message(
            subject=rendered.subject,
            html=html,
            text=text,
            headers=headers,
            unsubscribe_url=unsub,
            articles=len(variant.articles),
            max_bytes=cfg.render.max_html_bytes,
            variant=key,
            notes=rendered.warnings,
            language=language,
            unsubscribe_wording=cfg.render.unsubscribe_words,
            content=[
                note,
                *(
                    text
                    for a in variant.articles
                    for text in (a.title, a.summary_text, a.author, a.image_alt, a.url, a.image_url)
                ),
            ],
        )
        report.variants[key] = {
            # the decoded HTML: what max_html_bytes budgets
            "bytes": len(html.encode()),
            # the HTML part as transferred (docs/templates.md: which one Gmail counts)
            **html_wire_sizes(html),
            "stories": len(variant.articles),
            "more_stories": rendered.overflow,
            "subscribers": variant.subscribers,
        }
    return report
