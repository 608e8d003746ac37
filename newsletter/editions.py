"""Editions: plan (select articles per variant), freeze, and render.

An edition belongs to one digest and one schedule period. Planning reads the
audience to find the distinct tag sets (variants), selects each variant's
articles, and freezes the result in the store together with the rates header,
so a resumed send renders exactly what the first attempt rendered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from croniter import croniter

from newsletter.config import Config, DigestConfig
from newsletter.errors import InputError, NotFoundError, RenderError
from newsletter.models import Article, RatesHeader, Recipient, Rendered, Subscriber
from newsletter.rates.service import header_from_json
from newsletter.render.compile import EditionContent, render
from newsletter.store import Store

if TYPE_CHECKING:
    from newsletter.render.check import CheckReport

logger = logging.getLogger(__name__)

DEFAULT_VARIANT = "default"


def variant_key(tags: list[str]) -> str:
    """The variant a subscriber with ``tags`` gets; no preference: the default."""
    return "+".join(sorted(set(tags))) if tags else DEFAULT_VARIANT


def variant_tags(key: str, digest: DigestConfig) -> list[str]:
    return list(digest.tags) if key == DEFAULT_VARIANT else key.split("+")


def period_start(digest: DigestConfig, now: datetime) -> datetime:
    """The schedule's latest fire time at or before ``now`` (the current period)."""
    tz = ZoneInfo(digest.timezone)
    local = now.astimezone(tz)
    it = croniter(digest.schedule, local + timedelta(seconds=1))
    return it.get_prev(datetime).astimezone(tz)


def period_key(start: datetime) -> str:
    return start.isoformat(timespec="minutes")


@dataclass
class VariantPlan:
    key: str
    tags: list[str]
    articles: list[Article]
    subscribers: int = 0


@dataclass
class EditionPlan:
    digest: DigestConfig
    period: str
    subject: str
    edition_date: str
    window_start: datetime
    window_end: datetime
    variants: dict[str, VariantPlan] = field(default_factory=dict)
    #: subscribers whose variant has too few articles this time
    skipped_subscribers: int = 0

    @property
    def article_count(self) -> int:
        return len({a.id for v in self.variants.values() for a in v.articles})

    @property
    def recipients(self) -> int:
        return sum(v.subscribers for v in self.variants.values())


def window_for(store: Store, digest: DigestConfig, now: datetime) -> tuple[datetime, datetime]:
    """From the previous sent edition of this digest (else ``lookback_days`` ago) to now."""
    last = store.last_edition(digest.name)
    start = None
    if last is not None:
        start = store.edition_window_end(last.id)
    if start is None:
        start = now - timedelta(days=digest.lookback_days)
    return start, now


def select_articles(
    store: Store, digest: DigestConfig, tags: list[str], since: datetime, until: datetime
) -> list[Article]:
    """Articles for one variant: any of ``tags``, none excluded, never sent before."""
    return store.find_articles(
        tags=tags,
        exclude_tags=digest.exclude_tags,
        since=since,
        until=until,
        not_sent_in_digest=digest.name,
        limit=digest.max_articles,
    )


def plan_edition(
    store: Store,
    cfg: Config,
    digest: DigestConfig,
    now: datetime,
    *,
    audience: list[Subscriber] | None = None,
) -> EditionPlan:
    """Work out variants and their articles for the period containing ``now``."""
    start = period_start(digest, now)
    since, until = window_for(store, digest, now)
    local = now.astimezone(ZoneInfo(digest.timezone))
    edition_date = f"{local.day} {local:%B %Y}"
    plan = EditionPlan(
        digest=digest,
        period=period_key(start),
        subject="",
        edition_date=edition_date,
        window_start=since,
        window_end=until,
    )
    if audience is None:
        audience = list(store.iter_subscribers(status=("active",)))
    counts: dict[str, int] = {}
    for sub in audience:
        key = variant_key(sub.tags)
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        counts[DEFAULT_VARIANT] = 0
    for key in sorted(counts):
        tags = variant_tags(key, digest)
        arts = select_articles(store, digest, tags, since, until)
        if len(arts) < max(digest.min_articles, 1):
            plan.skipped_subscribers += counts[key]
            logger.info(
                "variant %s: %d articles, below the minimum of %d",
                key,
                len(arts),
                digest.min_articles,
            )
            continue
        plan.variants[key] = VariantPlan(key=key, tags=tags, articles=arts, subscribers=counts[key])
    lead = max((len(v.articles) for v in plan.variants.values()), default=0)
    plan.subject = digest.subject.format(
        site=cfg.site.name, title=digest.title, date=edition_date, count=lead
    )
    return plan


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
    rates = header_from_json(details["rates"])
    names = tag_names(store)
    out = {}
    for key, ids in details["variants"].items():
        content = content_for(
            cfg,
            digest,
            subject=info.subject,
            edition_date=details["info"].get("edition_date", ""),
            articles=store.get_articles(ids),
            rates=rates,
            tags=variant_tags(key, digest),
            names=names,
            archive_url=archive_link(cfg, digest, edition_id),
        )
        out[key] = render_content(cfg, content)
    return out


def preview(
    store: Store,
    cfg: Config,
    digest: DigestConfig,
    now: datetime,
    *,
    subscriber: Subscriber | None = None,
    tags: list[str] | None = None,
    rates: RatesHeader | None = None,
) -> tuple[Rendered, EditionPlan]:
    """What one subscriber (or one tag set) would get now, through the send's code path.

    Records nothing: rates are read, not stored, and no edition is created.
    """
    from newsletter.rates.service import build_header

    who = subscriber or Subscriber(email=PREVIEW_EMAIL, tags=list(tags or []), id=0)
    plan = plan_edition(store, cfg, digest, now, audience=[who])
    key = variant_key(who.tags)
    variant = plan.variants.get(key)
    articles = variant.articles if variant else []
    if rates is None:
        rates = build_header(
            store, cfg.rates, now.astimezone(ZoneInfo(digest.timezone)).date(), save=False
        )
    content = content_for(
        cfg,
        digest,
        subject=plan.subject,
        edition_date=plan.edition_date,
        articles=articles,
        rates=rates,
        tags=variant_tags(key, digest),
        names=tag_names(store),
        archive_url=_preview_archive_link(store, cfg, digest, plan),
    )
    return render_content(cfg, content), plan


# --------------------------------------------------------------------------- preview helpers

PREVIEW_EMAIL = "preview@example.invalid"


@dataclass
class Preview:
    """One message exactly as a send would build it, and what it was built from."""

    subject: str
    html: str
    text: str
    headers: dict[str, str]
    rendered: Rendered
    plan: EditionPlan
    variant: str
    unsubscribe_url: str
    articles: int


def _preview_archive_link(
    store: Store, cfg: Config, digest: DigestConfig, plan: EditionPlan
) -> str:
    """The edition's archive page once it exists; before, the digest's archive index
    (the edition's number is not known until it is created)."""
    if not cfg.site.archive_url:
        return ""
    found = store.find_edition(digest.name, plan.period)
    if found is not None:
        return archive_link(cfg, digest, found.id)
    return f"{cfg.site.archive_url.rstrip('/')}/{digest.name}/"


def preview_unsubscribe_url(
    cfg: Config, digest: DigestConfig, subscriber: Subscriber | None
) -> str:
    """A subscriber's real unsubscribe link; for anyone else one that unsubscribes nobody."""
    from newsletter.delivery.send import unsubscribe_url

    if subscriber is not None and subscriber.id and cfg.secrets.secret_key:
        return unsubscribe_url(cfg, subscriber.id, digest.name)
    return f"{cfg.site.public_url.rstrip('/')}/unsubscribe/PREVIEW"


def build_preview(
    cfg: Config,
    digest: DigestConfig,
    rendered: Rendered,
    *,
    email: str = PREVIEW_EMAIL,
    name: str = "",
    unsubscribe: str = "",
    test: bool = False,
) -> tuple[str, str, dict[str, str]]:
    """(html, text, headers) of ``rendered`` personalised for one recipient, taken
    from the very message a send would hand to the backend."""
    from newsletter.delivery.mime import build_message
    from newsletter.delivery.send import outgoing

    recipient = Recipient(0, email, name, unsubscribe, "")
    msg = build_message(outgoing(cfg, digest.name, 0, rendered, test=test), recipient)
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    headers = {k: str(v) for k, v in msg.items()}
    return html, text, headers


def preview_message(
    store: Store,
    cfg: Config,
    digest: DigestConfig,
    now: datetime,
    *,
    as_email: str | None = None,
    tags: list[str] | None = None,
    rates: RatesHeader | None = None,
) -> Preview:
    """What ``as_email`` (a subscriber) or a reader of ``tags`` would get now, personalised.

    Sends and records nothing. Raises NotFoundError for an unknown subscriber.
    """
    from newsletter.audience.subscribers import normalize_email

    if as_email and tags:
        raise InputError("give a subscriber or a tag set, not both")
    sub = None
    if as_email:
        sub = store.get_subscriber(normalize_email(as_email))
        if sub is None:
            raise NotFoundError("no such subscriber", where=as_email)
    rendered, plan = preview(store, cfg, digest, now, subscriber=sub, tags=tags, rates=rates)
    unsub = preview_unsubscribe_url(cfg, digest, sub)
    html, text, headers = build_preview(
        cfg,
        digest,
        rendered,
        email=sub.email if sub else PREVIEW_EMAIL,
        name=sub.name if sub else "",
        unsubscribe=unsub,
    )
    key = variant_key(sub.tags if sub else list(tags or []))
    variant = plan.variants.get(key)
    return Preview(
        subject=rendered.subject,
        html=html,
        text=text,
        headers=headers,
        rendered=rendered,
        plan=plan,
        variant=key,
        unsubscribe_url=unsub,
        articles=len(variant.articles) if variant else 0,
    )


def preflight(store: Store, cfg: Config, digest: DigestConfig, now: datetime) -> CheckReport:
    """`newsletter check`: every variant the current audience would get, checked
    as the messages a send would build. Sends and records nothing."""
    from newsletter.rates.service import build_header
    from newsletter.render.check import CheckReport, check_message

    report = CheckReport()
    if not cfg.secrets.secret_key:
        report.add(
            "error",
            "unsubscribe",
            "NEWSLETTER_SECRET_KEY is not set: unsubscribe links cannot be signed",
        )
    if cfg.site.archive_url and not cfg.archive.dir:
        report.add(
            "warning",
            "archive",
            "site.archive_url is set but archive.dir is empty: "
            'nothing publishes the pages "View in browser" points to',
        )
    plan = plan_edition(store, cfg, digest, now)
    if not plan.variants:
        report.add(
            "error",
            "empty",
            f"no variant has min_articles={digest.min_articles} "
            "new stories: the edition would be empty",
        )
        return report
    if plan.recipients == 0:
        report.add("warning", "audience", "no active subscriber would get this edition")
    rates = build_header(
        store, cfg.rates, now.astimezone(ZoneInfo(digest.timezone)).date(), save=False
    )
    names = tag_names(store)
    archive_url = _preview_archive_link(store, cfg, digest, plan)
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
        )
        report.variants[key] = {
            "bytes": len(html.encode()),
            "stories": len(variant.articles),
            "more_stories": rendered.overflow,
            "subscribers": variant.subscribers,
        }
    return report
