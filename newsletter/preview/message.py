"""One message exactly as a send would build it, for the editor's preview.

Sends and records nothing: rates are read, not stored, and no edition is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from newsletter.audience.subscribers import normalize_email
from newsletter.config import Config, DigestConfig
from newsletter.delivery.message import outgoing, unsubscribe_url
from newsletter.delivery.mime import build_message
from newsletter.editions.frozen import archive_link, content_for, render_content, tag_names
from newsletter.editions.notes import note_for_period
from newsletter.editions.plan import EditionPlan, plan_edition
from newsletter.editions.variants import variant_key, variant_tags
from newsletter.errors import InputError, NotFoundError
from newsletter.models import RatesHeader, Recipient, Rendered, Subscriber
from newsletter.rates.service import build_header
from newsletter.store import Store

PREVIEW_EMAIL = "preview@example.invalid"


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
        archive_url=preview_archive_link(store, cfg, digest, plan),
        note=note_for_period(cfg, digest, plan.period),
    )
    return render_content(cfg, content), plan


# --------------------------------------------------------------------------- preview helpers


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


def preview_archive_link(store: Store, cfg: Config, digest: DigestConfig, plan: EditionPlan) -> str:
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
