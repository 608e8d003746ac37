"""Editions: plan (select articles per variant), freeze, and render.

An edition belongs to one digest and one schedule period. Planning reads the
audience to find the distinct tag sets (variants), selects each variant's
articles, and freezes the result in the store together with the rates header,
so a resumed send renders exactly what the first attempt rendered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from newsletter.config import Config, DigestConfig
from newsletter.errors import InputError, NotFoundError, RenderError
from newsletter.models import Article, RatesHeader, Recipient, Rendered, Subscriber, slugify
from newsletter.rates.service import header_from_json
from newsletter.render.compile import EditionContent, render
from newsletter.schedule import period_key, period_start  # noqa: F401 - re-exported
from newsletter.store import Store

if TYPE_CHECKING:
    from newsletter.render.check import CheckReport

logger = logging.getLogger(__name__)

DEFAULT_VARIANT = "default"


def variant_key(tags: list[str]) -> str:
    """The variant a subscriber with ``tags`` gets; no preference: the default.

    Tags are compared as slugs, so "Kazakhstan" and "kazakhstan" are one variant.
    """
    slugs = tag_slugs(tags)
    return "+".join(sorted(slugs)) if slugs else DEFAULT_VARIANT


def variant_tags(key: str, digest: DigestConfig) -> list[str]:
    return list(digest.tags) if key == DEFAULT_VARIANT else key.split("+")


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
    #: variant key -> why it is skipped (fewer than min_articles new articles)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def skip_message(self) -> str:
        """Why nothing (or not everything) goes out, one variant per clause."""
        return "; ".join(self.skipped[k] for k in sorted(self.skipped))

    @property
    def article_count(self) -> int:
        return len({a.id for v in self.variants.values() for a in v.articles})

    @property
    def recipients(self) -> int:
        return sum(v.subscribers for v in self.variants.values())


def window_for(store: Store, digest: DigestConfig, now: datetime) -> tuple[datetime, datetime]:
    """From the previous sent edition of this digest (else ``lookback_days`` ago) to now."""
    since, _ = _window_and_previous(store, digest, now)
    return since, now


def _window_and_previous(
    store: Store, digest: DigestConfig, now: datetime
) -> tuple[datetime, datetime | None]:
    """(window start, end of the previous edition's window or None for the first edition)."""
    last = store.last_edition(digest.name)
    previous = store.edition_window_end(last.id) if last is not None else None
    if previous is None:
        return now - timedelta(days=digest.lookback_days), None
    return previous, previous


def tag_slugs(tags: list[str]) -> list[str]:
    """Tags as slugs, whatever spelling the config or a subscriber used, duplicates dropped."""
    out: list[str] = []
    for t in tags:
        s = slugify(t)
        if s and s not in out:
            out.append(s)
    return out


def select_articles(
    store: Store,
    digest: DigestConfig,
    tags: list[str],
    since: datetime,
    until: datetime,
    *,
    late_since: datetime | None = None,
) -> list[Article]:
    """Articles for one variant: any of ``tags``, none excluded, never sent before.

    Pinned first, then newest, at most ``max_articles``. ``late_since`` (the end
    of the previous edition's window) also admits stories stored after it that
    were published up to ``lookback_days`` before it: a story that reached the
    feed just after the previous edition was compiled still gets sent once.
    """
    return store.find_articles(
        tags=tag_slugs(tags),
        exclude_tags=tag_slugs(digest.exclude_tags),
        since=since,
        until=until,
        late_since=late_since,
        late_floor=late_since - timedelta(days=digest.lookback_days) if late_since else None,
        not_sent_in_digest=digest.name,
        limit=digest.max_articles,
    )


@dataclass
class Selection:
    """What one variant of a digest's next edition would carry, and whether it is enough."""

    digest: str
    variant: str
    tags: list[str]
    window_start: datetime
    window_end: datetime
    articles: list[Article]
    min_articles: int
    max_articles: int
    #: the previous edition's window end, when late arrivals are admitted
    late_since: datetime | None = None

    @property
    def enough(self) -> bool:
        # min_articles = 0 still means at least one: no empty newsletters
        return len(self.articles) >= max(self.min_articles, 1)

    @property
    def skip_reason(self) -> str:
        """Why this variant would be skipped; empty when it would be sent."""
        if self.enough:
            return ""
        tags = ", ".join(self.tags) if self.tags else "any tag"
        n = len(self.articles)
        return (
            f"variant {self.variant}: {n} new article{'' if n == 1 else 's'} ({tags}) "
            f"since {self.window_start.astimezone(UTC):%Y-%m-%d %H:%M} UTC, fewer than "
            f"min_articles={max(self.min_articles, 1)}"
        )

    def as_dict(self) -> dict:
        return {
            "digest": self.digest,
            "variant": self.variant,
            "tags": self.tags,
            "window_start": self.window_start.astimezone(UTC).isoformat(),
            "window_end": self.window_end.astimezone(UTC).isoformat(),
            "late_since": self.late_since.astimezone(UTC).isoformat() if self.late_since else None,
            "min_articles": self.min_articles,
            "max_articles": self.max_articles,
            "skip_reason": self.skip_reason or None,
        }


def selection(
    store: Store,
    digest: DigestConfig,
    now: datetime,
    *,
    tags: list[str] | None = None,
    since: datetime | None = None,
) -> Selection:
    """What the next edition of ``digest`` would carry for a subscriber with ``tags``.

    No tags: the digest's default tags. ``since`` overrides the window start
    (which otherwise runs from the previous sent edition, or ``lookback_days``).
    """
    key = variant_key(tag_slugs(tags or []))
    wanted = tag_slugs(variant_tags(key, digest))
    start, previous = _window_and_previous(store, digest, now)
    late_since = previous
    if since is not None:
        start, late_since = since, None
    return Selection(
        digest=digest.name,
        variant=key,
        tags=wanted,
        window_start=start,
        window_end=now,
        articles=select_articles(store, digest, wanted, start, now, late_since=late_since),
        min_articles=digest.min_articles,
        max_articles=digest.max_articles,
        late_since=late_since,
    )


def plan_edition(
    store: Store,
    cfg: Config,
    digest: DigestConfig,
    now: datetime,
    *,
    audience: list[Subscriber] | None = None,
) -> EditionPlan:
    """Work out variants and their articles for the period containing ``now``.

    A variant with fewer than ``min_articles`` new articles is left out and
    its reason kept in ``plan.skipped``; its subscribers get nothing this time.
    """
    start = period_start(digest, now)
    since, previous = _window_and_previous(store, digest, now)
    local = now.astimezone(ZoneInfo(digest.timezone))
    edition_date = f"{local.day} {local:%B %Y}"
    plan = EditionPlan(
        digest=digest,
        period=period_key(start),
        subject="",
        edition_date=edition_date,
        window_start=since,
        window_end=now,
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
        arts = select_articles(store, digest, tags, since, now, late_since=previous)
        chosen = Selection(
            digest=digest.name,
            variant=key,
            tags=tag_slugs(tags),
            window_start=since,
            window_end=now,
            articles=arts,
            min_articles=digest.min_articles,
            max_articles=digest.max_articles,
            late_since=previous,
        )
        if not chosen.enough:
            plan.skipped_subscribers += counts[key]
            plan.skipped[key] = chosen.skip_reason
            logger.info("%s: %s; skipped", digest.name, chosen.skip_reason)
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
