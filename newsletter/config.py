"""Settings: defaults, then newsletter.toml, then the environment.

Validated in one place. Every error names the file and the key, e.g.
``newsletter.toml: digests[0].max_articles: expected an integer, got 'ten'``.

Secrets never live in the file; they come from the environment only and are
kept in :class:`Secrets`, whose ``repr`` hides them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.errors import ConfigError
from newsletter.i18n import check_language

#: how an edition prints its rates header, one convention for every pair (per
#: digest): "ticker" as the site's ticker, "KZT/USD 0.001966" (what one unit of
#: the currency costs in dollars); "bank" as banks and the press, "1 USD = 508.6 KZT"
CONVENTIONS = ("ticker", "bank")

DEFAULT_CONFIG_NAME = "newsletter.toml"


@dataclass
class SiteConfig:
    name: str = "Newsletter"
    url: str = "https://example.com/"
    language: str = "en"
    direction: str = "ltr"
    postal_address: str = ""
    from_email: str = "digest@example.com"
    from_name: str = ""
    reply_to: str = ""
    #: the public base URL under which `newsletter serve` is reachable;
    #: unsubscribe and preference links are built on it
    public_url: str = "https://example.com/newsletter"
    #: mailto: unsubscribe address put in List-Unsubscribe beside the https URL
    unsubscribe_mailto: str = ""
    #: base URL of the web archive ("view in browser"); empty: no link
    archive_url: str = ""
    #: the masthead's logo (an absolute https URL); empty: the site name in text.
    #: width and height are the size it is shown at, in CSS pixels (both needed)
    logo_url: str = ""
    logo_width: int = 0
    logo_height: int = 0
    #: the logo's alt text (empty: the site name)
    logo_alt: str = ""


@dataclass
class SourceConfig:
    name: str = ""
    #: rss (RSS/Atom, also WordPress feeds), wordpress (REST API), json
    type: str = "rss"
    #: a URL or a path (relative paths are relative to the config file)
    url: str = ""
    #: WordPress REST: only posts with these tag slugs (empty: all)
    tags: list[str] = field(default_factory=list)
    timeout: float = 20.0
    #: tag names given to every article of this source (e.g. a per-tag feed of a
    #: site whose items carry no categories)
    add_tags: list[str] = field(default_factory=list)
    #: WordPress REST: posts per page (the API allows at most 100)
    per_page: int = 100
    #: WordPress REST: pages read per run at most; the newest come first
    max_pages: int = 20
    #: WordPress REST: the first run asks for posts modified this many days back
    backfill_days: int = 30


@dataclass
class ArticlesConfig:
    summary_length: int = 400
    #: bytes; a response larger than this is refused
    max_feed_bytes: int = 20_000_000
    #: articles with any of these tags (or WordPress "sticky") lead the digest
    pinned_tags: list[str] = field(default_factory=lambda: ["featured", "pinned", "sticky"])
    #: query parameters stripped from article URLs besides the usual trackers
    #: (utm_*, fbclid, gclid, mc_cid, …)
    strip_query_params: list[str] = field(default_factory=list)


@dataclass
class RatePairConfig:
    """Settings of one XXX/quote pair, under ``[rates.pairs.XXX]``; unset keys inherit."""

    #: providers for this pair, in order (empty: ``[rates].providers``)
    providers: list[str] = field(default_factory=list)
    #: significant digits shown (unset: ``[rates].significant_digits``)
    significant_digits: int | None = None


@dataclass
class RatesConfig:
    #: providers tried in order, pair by pair
    providers: list[str] = field(default_factory=lambda: ["snapshot"])
    currencies: list[str] = field(default_factory=lambda: ["KGS", "KZT", "TJS", "UZS", "TMT"])
    quote: str = "USD"
    #: older stored rates are shown with "as of <date>"; a provider answering with
    #: figures older than this counts as failed
    stale_after_days: int = 3
    timeout: float = 10.0
    #: path of the offline snapshot (empty: the bundled one)
    snapshot: str = ""
    #: significant digits printed (fewer only when no source has that many)
    significant_digits: int = 4
    #: per-provider base URL overrides (for mirrors and tests)
    urls: dict[str, str] = field(default_factory=dict)
    #: per-currency overrides of providers and formatting: [rates.pairs.UZS]
    pairs: dict[str, RatePairConfig] = field(default_factory=dict)
    #: the "peg" provider's fixed rates: units of the currency per 1 USD
    pegs: dict[str, float] = field(default_factory=lambda: {"TMT": 3.5})
    #: for a pair that inherits `providers`: ask the currency's own issuer first
    #: (nbk for KZT, nbkr for KGS, nbt for TJS, cbu for UZS, peg for a pegged one)
    issuer_first: bool = False

    def pair(self, currency: str) -> RatePairConfig:
        """The settings of one pair with the inherited values filled in.

        A pair without its own ``providers`` takes ``[rates] providers``; with
        ``issuer_first`` the provider that issues the currency (its central bank, or
        ``peg`` for a pegged one) is moved to the front of that list.
        """
        own = self.pairs.get(currency, RatePairConfig())
        providers = list(own.providers)
        if not providers:
            providers = list(self.providers)
            if self.issuer_first:
                providers.sort(key=lambda name: not self._issues(name, currency))
        return RatePairConfig(
            providers=providers,
            significant_digits=own.significant_digits or self.significant_digits,
        )

    def _issues(self, provider: str, currency: str) -> bool:
        # imported here: the providers import this module for RatesConfig
        from newsletter.rates.providers import PROVIDERS

        if provider == "peg":
            return currency in self.pegs
        cls = PROVIDERS.get(provider)
        return cls is not None and cls.home == currency


@dataclass
class RenderConfig:
    #: a folder whose files override the bundled templates one by one
    templates: str = ""
    #: premailer or css-inline
    inliner: str = "premailer"
    #: Gmail clips HTML beyond ~102 KB; overflow goes to "More stories"
    max_html_bytes: int = 100_000
    #: sections per tag ("tags") or one list ("list")
    layout: str = "list"
    #: the headless Chromium `newsletter preview --screenshot` drives (Debian's package)
    chromium: str = "/usr/bin/chromium"
    #: more words `check` accepts as a visible unsubscribe link, besides the built-in
    #: ones for site.language and English (render/check.py UNSUBSCRIBE_WORDS)
    unsubscribe_words: list[str] = field(default_factory=list)


@dataclass
class SendGridConfig:
    #: the API base URL; NEWSLETTER_SENDGRID_HOST overrides it (tests, proxies). Left at
    #: the default, `region` picks it.
    host: str = "https://api.sendgrid.com"
    #: global or eu (https://api.eu.sendgrid.com, for an EU-pinned subuser)
    region: str = "global"
    #: mail/send validates but sends nothing (answers 200, not 202)
    sandbox: bool = False
    #: unsubscribe group (ASM) id; 0 = none
    asm_group_id: int = 0
    #: IP pool name; "" = the account's default
    ip_pool: str = ""
    #: seconds to connect, write the request and read the answer
    timeout: float = 30.0
    #: retries of one request on 429, 5xx and network errors before giving up
    max_retries: int = 5
    #: seconds before the first retry; doubled each time, with jitter
    backoff: float = 0.5
    #: longest single wait between retries, seconds; a rate limit that resets later
    #: than this stops the send instead of sleeping
    retry_max_wait: float = 60.0
    #: messages per second, 0 = unlimited
    rate: float = 0.0
    #: requests in flight at once
    concurrency: int = 4
    #: seconds; > 0 sends every batch with send_at = now + this and a SendGrid batch id,
    #: so a batch whose outcome is unknown can be cancelled and sent again (0 = off)
    schedule_delay: int = 0
    #: seconds before send_at after which a cancel is not trusted (SendGrid: 10 minutes)
    cancel_margin: int = 600
    #: public key for the signed event webhook (or NEWSLETTER_SENDGRID_WEBHOOK_KEY)
    webhook_public_key: str = ""


@dataclass
class SmtpConfig:
    host: str = "localhost"
    port: int = 587
    #: upgrade the connection with STARTTLS (port 587)
    starttls: bool = True
    #: implicit TLS from the first byte (port 465); starttls is then ignored
    ssl: bool = False
    #: login name; the password comes from NEWSLETTER_SMTP_PASSWORD
    username: str = ""
    timeout: float = 30.0
    #: a PEM file of CA certificates to trust (a private relay's); "" = the system's
    ca_file: str = ""
    #: messages per batch (one claim, one connection); smaller batches mean fewer
    #: deliveries held as unknown if the sender dies mid-batch
    batch_size: int = 50
    #: messages per second, 0 = unlimited
    rate: float = 0.0
    #: connections in use at once
    concurrency: int = 1


@dataclass
class DeliveryConfig:
    #: outbox (files), sendgrid or smtp
    backend: str = "outbox"
    outbox_dir: str = "outbox"
    batch_size: int = 1000
    #: seconds after which a batch claimed by a worker that cannot be checked (another
    #: machine, or a reused pid) counts as abandoned and is resolved by the next run
    lease_seconds: int = 900
    #: sending processes on this machine, sharing the edition through the store's
    #: claims (`newsletter send --workers N` overrides it for one run)
    processes: int = 1
    sendgrid: SendGridConfig = field(default_factory=SendGridConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)


@dataclass
class DigestConfig:
    name: str = "weekly"
    title: str = "Weekly digest"
    #: str.format fields: {site}, {title}, {date}, {count}
    subject: str = "{site}: {title}, {date}"
    tags: list[str] = field(default_factory=list)
    exclude_tags: list[str] = field(default_factory=list)
    #: cron expression, in `timezone`
    schedule: str = "0 7 * * MON"
    timezone: str = "UTC"
    lookback_days: int = 7
    min_articles: int = 1
    max_articles: int = 30
    #: a template name in the template folders
    template: str = "digest"
    #: the edition's language: its catalogue (en, ru), dates and numbers; empty:
    #: site.language
    language: str = ""
    #: how the rates header prints every pair: "ticker" (KZT/USD 0.001966, as the
    #: site's ticker) or "bank" (1 USD = 508.6 KZT, as banks and the press)
    rates_convention: str = "ticker"
    #: the greeting's name for a subscriber without one: "Hi there," (empty: the
    #: language's word)
    greeting_fallback: str = ""
    #: words of a story's summary shown (0: none); longer summaries end in "…"
    teaser_words: int = 35
    #: an "In this issue" list of titles when the edition has more stories than this
    contents_above: int = 5
    #: topics the footer names before "and N more"
    footer_topics: int = 4
    #: folder of the editor's notes, one Markdown file per edition date
    #: (YYYY-MM-DD.md); empty: notes/<digest name> next to the config
    notes_dir: str = ""
    #: send a missed period late, up to this many hours; older ones are skipped
    catch_up_hours: int = 24
    #: release deliveries per subscriber timezone as local time reaches the schedule
    #: (subscribers without a time zone get the digest's); run cron every few minutes
    local_time: bool = False
    #: schedule periods in a row without an edition (no subscribers, too few articles,
    #: every source failing, a missed period) after which a run alerts and exits
    #: non-zero; 0: never
    alert_idle_periods: int = 2
    #: an unfinished edition older than this (hours since it was created) is not
    #: resumed by itself: it is reported and alerted, and goes out only with
    #: `newsletter send --resume EDITION`. 0: one schedule period (plus 26 hours
    #: of local-time releases with local_time)
    resume_max_age_hours: float = 0


@dataclass
class AlertsConfig:
    """Scheduling: an email to the editors when a run fails (issue 8)."""

    #: addresses told when a run fails; empty: no alert emails
    email_to: list[str] = field(default_factory=list)
    #: also tell them when a run partly failed (exit code 3)
    on_partial: bool = True
    #: "smtp" ([delivery.smtp] and NEWSLETTER_SMTP_PASSWORD) or "outbox" (a file in
    #: outbox_dir/alerts); empty: "outbox" with the outbox backend, else "smtp"
    via: str = ""


@dataclass
class WebhookConfig:
    #: `newsletter serve` binds this address; 127.0.0.1 unless you mean to expose it
    host: str = "127.0.0.1"
    port: int = 8025
    #: seconds; 0 turns the signature timestamp age check off
    max_age: int = 600
    #: a webhook request body larger than this is refused with 413
    max_body_bytes: int = 5_000_000
    #: consecutive soft bounces (deferred, blocked) that suppress an address; 0 = never
    soft_bounce_limit: int = 5
    #: proxies (addresses or CIDR networks) whose X-Forwarded-For / -Proto are believed
    trusted_proxies: list[str] = field(default_factory=list)
    #: seconds an idle keep-alive connection stays open
    keep_alive_timeout: float = 5.0
    #: seconds for a client to send the request line and headers
    header_timeout: float = 10.0
    #: seconds for a client to send the whole request body
    body_timeout: float = 10.0
    #: open connections at most; more are answered 503
    max_connections: int = 200


@dataclass
class SignupConfig:
    """GET/POST /subscribe: signup with double opt-in (docs/subscribe.md)."""

    enabled: bool = True
    #: hours a confirmation link stays valid
    confirm_hours: float = 48.0
    #: minutes before a confirmation is sent to the same address again
    resend_minutes: float = 10.0
    #: signups per client address per window (rate_window_minutes)
    per_ip: int = 20
    #: signups per email address per window
    per_address: int = 5
    rate_window_minutes: float = 60.0
    #: origins whose pages may POST JSON to /subscribe (CORS), e.g. "https://example.com"
    cors_origins: list[str] = field(default_factory=list)
    #: version label of the consent wording the form shows, kept with each consent
    consent_text: str = "v1"
    #: digests offered on the form (empty: all)
    digests: list[str] = field(default_factory=list)


@dataclass
class ArchiveConfig:
    #: folder the web archive is written to after each send (empty: no archive);
    #: publish it at site.archive_url, which the "View in browser" links use
    dir: str = ""


@dataclass
class Config:
    site: SiteConfig = field(default_factory=SiteConfig)
    database: str = "sqlite:///newsletter.db"
    sources: list[SourceConfig] = field(default_factory=list)
    articles: ArticlesConfig = field(default_factory=ArticlesConfig)
    rates: RatesConfig = field(default_factory=RatesConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    digests: list[DigestConfig] = field(default_factory=lambda: [DigestConfig()])
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    signup: SignupConfig = field(default_factory=SignupConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    #: folder relative paths in the file are resolved against
    base_dir: Path = field(default_factory=Path.cwd)
    #: the file this came from, for messages
    path: str = "<defaults>"
    #: where `database` came from: default, config, NEWSLETTER_DATABASE_URL or --db
    database_source: str = "default"
    #: the tables and keys as the file wrote them (to tell set from defaulted)
    file_data: dict[str, Any] = field(default_factory=dict)
    secrets: Secrets = field(default_factory=lambda: Secrets.from_env({}))

    def resolve(self, value: str) -> Path:
        """A path from the config, made absolute against the config's folder."""
        p = Path(value).expanduser()
        return (p if p.is_absolute() else self.base_dir / p).resolve()

    def digest(self, name: str | None = None) -> DigestConfig:
        if name is None:
            return self.digests[0]
        for d in self.digests:
            if d.name == name:
                return d
        names = ", ".join(d.name for d in self.digests)
        raise ConfigError(f"no digest named {name!r} (configured: {names})", where=self.path)

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL; a relative SQLite path is taken from the config folder."""
        url = self.database
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.resolve(url[len(prefix) :]))
        return url


@dataclass(frozen=True)
class Secrets:
    """Secrets from the environment. ``repr`` never shows them."""

    sendgrid_api_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    smtp_password: str = field(default="", repr=False)
    webhook_public_key: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: typing.Mapping[str, str]) -> Secrets:
        return cls(
            sendgrid_api_key=env.get("SENDGRID_API_KEY", ""),
            secret_key=env.get("NEWSLETTER_SECRET_KEY", ""),
            smtp_password=env.get("NEWSLETTER_SMTP_PASSWORD", ""),
            webhook_public_key=env.get("NEWSLETTER_SENDGRID_WEBHOOK_KEY", ""),
        )

    @property
    def hidden(self) -> tuple[str, ...]:
        """The values :meth:`redact` hides (the webhook's key is public; values shorter
        than 4 characters would hide ordinary text)."""
        values = (self.sendgrid_api_key, self.secret_key, self.smtp_password)
        return tuple(v for v in values if len(v) >= 4)

    def redact(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``: the one redaction,
        for errors, alerts and log lines."""
        for value in self.hidden:
            text = text.replace(value, "***")
        return text


# --------------------------------------------------------------------------- loading

_SECRET_KEYS = {"api_key", "sendgrid_api_key", "secret_key", "password", "smtp_password"}

#: keys of [rates] that once existed, with what replaced them
_REMOVED_RATES_KEYS = {
    "invert_below": (
        "removed: an edition prints every pair in one convention; for "
        '"1 USD = 12,042 UZS" set rates_convention = "bank" in the [[digests]] table'
    ),
    "locale": "removed: figures are written the way the edition's language writes them "
    "(site.language)",
}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list"
    if origin is dict:
        return "a table"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
    }.get(tp, getattr(tp, "__name__", str(tp)))


#: Config fields set by the loader, never by the file
_NOT_FROM_FILE = {"base_dir", "path", "secrets", "database_source", "file_data"}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {value!r}", where=where)
        return _build(typing.cast(type, tp), value, where)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"expected a list, got {value!r}", where=where)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {value!r}", where=where)
        return {k: _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if origin in (types.UnionType, typing.Union):
        return value
    ok = (
        isinstance(value, bool)
        if tp is bool
        else isinstance(value, tp) and not isinstance(value, bool)
        if tp is int
        else isinstance(value, int | float) and not isinstance(value, bool)
        if tp is float
        else isinstance(value, tp)
    )
    if not ok:
        raise ConfigError(f"expected {_type_name(tp)}, got {value!r}", where=where)
    return float(value) if tp is float else value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        here = f"{where}.{key}" if where else key
        if key in _SECRET_KEYS:
            raise ConfigError(
                "secrets do not belong in the config file",
                where=here,
                hint="set SENDGRID_API_KEY, NEWSLETTER_SECRET_KEY or NEWSLETTER_SMTP_PASSWORD",
            )
        if key in _REMOVED_RATES_KEYS and key not in fields and here.startswith("rates."):
            raise ConfigError(_REMOVED_RATES_KEYS[key], where=here)
        if key not in fields or key in _NOT_FROM_FILE:
            known = ", ".join(sorted(fields - _NOT_FROM_FILE))
            raise ConfigError(f"unknown key (known keys: {known})", where=here)
        kwargs[key] = _coerce(value, hints[key], here)
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    def fail(key: str, message: str) -> None:
        raise ConfigError(message, where=f"{cfg.path}: {key}")

    if not cfg.digests:
        fail("digests", "at least one [[digests]] table is needed")
    seen: set[str] = set()
    for i, d in enumerate(cfg.digests):
        key = f"digests[{i}]"
        if not d.name or d.name in seen:
            fail(f"{key}.name", f"digest names must be unique and non-empty, got {d.name!r}")
        seen.add(d.name)
        try:
            ZoneInfo(d.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            fail(f"{key}.timezone", f"unknown time zone {d.timezone!r}")
        if d.min_articles < 0 or d.max_articles < max(d.min_articles, 1):
            fail(f"{key}.max_articles", "need 0 <= min_articles <= max_articles, max >= 1")
        if d.lookback_days < 1:
            fail(f"{key}.lookback_days", "must be at least 1")
        try:
            from croniter import croniter

            # five fields (or @daily …): a seconds field would make periods shorter
            # than the minute an edition's period is named by
            fields = d.schedule.split()
            if not (len(fields) == 5 or d.schedule.strip().startswith("@")):
                raise ValueError
            if not croniter.is_valid(d.schedule):
                raise ValueError
        except ValueError:
            fail(
                f"{key}.schedule",
                f"not a valid cron expression: {d.schedule!r} "
                "(five fields: minute hour day-of-month month day-of-week)",
            )
        if d.catch_up_hours < 0:
            fail(f"{key}.catch_up_hours", "must be 0 or more")
        if d.alert_idle_periods < 0:
            fail(f"{key}.alert_idle_periods", "must be 0 (never) or a number of periods")
        if d.resume_max_age_hours < 0:
            fail(f"{key}.resume_max_age_hours", "must be 0 (one schedule period) or more")
        if d.teaser_words < 0 or d.contents_above < 0 or d.footer_topics < 1:
            bad = (
                "teaser_words"
                if d.teaser_words < 0
                else "contents_above"
                if d.contents_above < 0
                else "footer_topics"
            )
            fail(
                f"{key}.{bad}",
                "must be 0 or more" if bad != "footer_topics" else "must be at least 1",
            )
        if d.language and (problem := check_language(d.language)):
            fail(f"{key}.language", problem)
        if d.rates_convention not in CONVENTIONS:
            fail(
                f"{key}.rates_convention",
                f"must be ticker (KZT/USD 0.001966) or bank (1 USD = 508.6 KZT), "
                f"got {d.rates_convention!r}",
            )
    for i, addr in enumerate(cfg.alerts.email_to):
        if "@" not in addr or any(c.isspace() for c in addr.strip()):
            fail(f"alerts.email_to[{i}]", f"not an email address: {addr!r}")
    if cfg.alerts.via not in ("", "smtp", "outbox"):
        fail("alerts.via", f"must be smtp or outbox, got {cfg.alerts.via!r}")
    for i, s in enumerate(cfg.sources):
        if s.type not in ("rss", "wordpress", "json"):
            fail(f"sources[{i}].type", f"must be rss, wordpress or json, got {s.type!r}")
        if not s.url:
            fail(f"sources[{i}].url", "a source needs a url or a path")
        if not 1 <= s.per_page <= 100:
            fail(f"sources[{i}].per_page", "must be between 1 and 100 (the WordPress limit)")
        if s.max_pages < 1:
            fail(f"sources[{i}].max_pages", "must be at least 1")
        if s.backfill_days < 1:
            fail(f"sources[{i}].backfill_days", "must be at least 1")
        if s.timeout <= 0:
            fail(f"sources[{i}].timeout", "must be more than 0 seconds")
    if cfg.articles.summary_length < 20:
        fail("articles.summary_length", "must be at least 20 characters")
    if cfg.articles.max_feed_bytes < 1000:
        fail("articles.max_feed_bytes", "must be at least 1000 bytes")
    if cfg.delivery.backend not in ("outbox", "sendgrid", "smtp"):
        fail("delivery.backend", f"must be outbox, sendgrid or smtp, got {cfg.delivery.backend!r}")
    if not 1 <= cfg.delivery.batch_size <= 1000:
        fail("delivery.batch_size", "must be between 1 and 1000 (SendGrid's limit)")
    if cfg.delivery.lease_seconds < 60:
        fail("delivery.lease_seconds", "must be at least 60")
    if not 1 <= cfg.delivery.processes <= 64:
        fail("delivery.processes", "must be between 1 and 64")
    _validate_sendgrid(cfg.delivery.sendgrid, fail)
    _validate_smtp(cfg.delivery.smtp, fail)
    if cfg.render.inliner not in ("premailer", "css-inline"):
        fail("render.inliner", f"must be premailer or css-inline, got {cfg.render.inliner!r}")
    if cfg.render.layout not in ("list", "tags"):
        fail("render.layout", f"must be list or tags, got {cfg.render.layout!r}")
    if cfg.render.templates and not cfg.resolve(cfg.render.templates).is_dir():
        fail("render.templates", f"no such folder: {cfg.resolve(cfg.render.templates)}")
    if cfg.render.max_html_bytes < 10_000:
        fail("render.max_html_bytes", "must be at least 10000 (Gmail clips at about 102 KB)")
    if cfg.site.archive_url and not cfg.site.archive_url.startswith(("https://", "http://")):
        fail("site.archive_url", "must be an absolute http(s) URL")
    if problem := check_language(cfg.site.language):
        fail("site.language", problem)
    if cfg.site.direction not in ("ltr", "rtl"):
        fail("site.direction", "must be ltr or rtl")
    if cfg.site.logo_url:
        if not cfg.site.logo_url.startswith(("https://", "http://")):
            fail("site.logo_url", "must be an absolute http(s) URL (mail apps load it)")
        if not (0 < cfg.site.logo_width <= 600 and 0 < cfg.site.logo_height <= 600):
            fail(
                "site.logo_width",
                "a logo needs logo_width and logo_height, 1 to 600 CSS pixels each "
                "(mail apps that block images keep the space)",
            )
    if not 0 < cfg.webhook.port < 65536:
        fail("webhook.port", f"must be between 1 and 65535, got {cfg.webhook.port}")
    if cfg.webhook.max_age < 0:
        fail("webhook.max_age", "must be 0 (no check) or a number of seconds")
    if cfg.webhook.max_body_bytes < 1000:
        fail("webhook.max_body_bytes", "must be at least 1000")
    if cfg.webhook.soft_bounce_limit < 0:
        fail("webhook.soft_bounce_limit", "must be 0 (never) or a positive count")
    _validate_serve(cfg, fail)
    _validate_rates(cfg.rates, fail)


def _validate_serve(cfg: Config, fail: typing.Callable[[str, str], None]) -> None:
    import ipaddress

    w, sg = cfg.webhook, cfg.signup
    for i, net in enumerate(w.trusted_proxies):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            fail(f"webhook.trusted_proxies[{i}]", f"not an address or network: {net!r}")
    for key in ("keep_alive_timeout", "header_timeout", "body_timeout"):
        if not 0 < getattr(w, key) <= 3600:
            fail(f"webhook.{key}", "must be more than 0 and at most 3600 seconds")
    if not 1 <= w.max_connections <= 100_000:
        fail("webhook.max_connections", "must be between 1 and 100000")
    if sg.confirm_hours <= 0:
        fail("signup.confirm_hours", "must be more than 0")
    if sg.resend_minutes < 0 or sg.rate_window_minutes <= 0:
        fail("signup.resend_minutes", "resend_minutes >= 0 and rate_window_minutes > 0")
    if sg.per_ip < 1 or sg.per_address < 1:
        fail("signup.per_ip", "per_ip and per_address must be at least 1")
    for i, origin in enumerate(sg.cors_origins):
        if not origin.startswith(("https://", "http://")) or origin.rstrip("/") != origin:
            fail(f"signup.cors_origins[{i}]", f"an origin like https://example.com: {origin!r}")
    names = {d.name for d in cfg.digests}
    for i, name in enumerate(sg.digests):
        if name not in names:
            fail(f"signup.digests[{i}]", f"no digest named {name!r}")


def _validate_rates(r: RatesConfig, fail: typing.Callable[[str, str], None]) -> None:
    # imported here: the providers import this module for RatesConfig
    from newsletter.rates.providers import PROVIDERS

    known = ", ".join(sorted(PROVIDERS))

    def check_providers(key: str, names: list[str]) -> None:
        for i, name in enumerate(names):
            if name not in PROVIDERS:
                fail(f"{key}[{i}]", f"unknown rates provider {name!r} (known: {known})")
        if len(set(names)) != len(names):
            fail(key, "a provider is listed twice")

    def check_code(key: str, code: str) -> None:
        if not (len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()):
            fail(key, f"expected a three-letter ISO 4217 code like 'KZT', got {code!r}")

    if not r.providers:
        fail("rates.providers", "at least one provider is needed")
    check_providers("rates.providers", r.providers)
    check_code("rates.quote", r.quote)
    for i, cur in enumerate(r.currencies):
        check_code(f"rates.currencies[{i}]", cur)
        if cur == r.quote:
            fail(f"rates.currencies[{i}]", f"{cur}/{r.quote} is not a pair")
    if len(set(r.currencies)) != len(r.currencies):
        fail("rates.currencies", "a currency is listed twice")
    if r.stale_after_days < 0:
        fail("rates.stale_after_days", "must be 0 or more")
    if r.timeout <= 0:
        fail("rates.timeout", "must be more than 0 seconds")

    def check_digits(key: str, digits: object) -> None:
        if not isinstance(digits, int) or isinstance(digits, bool) or not 4 <= digits <= 15:
            fail(key, f"must be an integer from 4 to 15, got {digits!r}")

    check_digits("rates.significant_digits", r.significant_digits)
    for cur, pair in r.pairs.items():
        key = f"rates.pairs.{cur}"
        if cur not in r.currencies:
            fail(key, f"{cur} is not in rates.currencies")
        check_providers(f"{key}.providers", pair.providers)
        if pair.significant_digits is not None:
            check_digits(f"{key}.significant_digits", pair.significant_digits)
    for name in r.urls:
        if name not in PROVIDERS:
            fail(f"rates.urls.{name}", f"unknown rates provider {name!r} (known: {known})")
    for cur, per_usd in r.pegs.items():
        check_code(f"rates.pegs.{cur}", cur)
        if per_usd <= 0:
            fail(f"rates.pegs.{cur}", f"must be more than 0, got {per_usd!r}")


def _validate_sendgrid(sg: SendGridConfig, fail: Any) -> None:
    key = "delivery.sendgrid"
    if sg.region not in ("global", "eu"):
        fail(f"{key}.region", f"must be global or eu, got {sg.region!r}")
    if not sg.host.startswith(("https://", "http://")):
        fail(f"{key}.host", f"must be an http(s) URL, got {sg.host!r}")
    if sg.timeout <= 0:
        fail(f"{key}.timeout", "must be more than 0 seconds")
    if not 0 <= sg.max_retries <= 20:
        fail(f"{key}.max_retries", "must be between 0 and 20")
    if sg.backoff < 0 or sg.retry_max_wait < 0:
        fail(f"{key}.backoff", "backoff and retry_max_wait must not be negative")
    if sg.rate < 0:
        fail(f"{key}.rate", "must not be negative (0 = unlimited)")
    if not 1 <= sg.concurrency <= 64:
        fail(f"{key}.concurrency", "must be between 1 and 64")
    if sg.asm_group_id < 0:
        fail(f"{key}.asm_group_id", "must be a group id, or 0 for none")
    if sg.ip_pool and not 2 <= len(sg.ip_pool) <= 64:
        fail(f"{key}.ip_pool", "must be 2 to 64 characters (SendGrid's limit)")
    if sg.cancel_margin < 0:
        fail(f"{key}.cancel_margin", "must not be negative")
    if sg.schedule_delay and not sg.cancel_margin < sg.schedule_delay <= 72 * 3600:
        fail(
            f"{key}.schedule_delay",
            "must be 0 (off) or more than cancel_margin and at most 259200 (72 hours)",
        )


def _validate_smtp(sm: SmtpConfig, fail: Any) -> None:
    key = "delivery.smtp"
    if not 1 <= sm.port <= 65535:
        fail(f"{key}.port", f"not a port number: {sm.port}")
    if sm.timeout <= 0:
        fail(f"{key}.timeout", "must be more than 0 seconds")
    if not 1 <= sm.batch_size <= 1000:
        fail(f"{key}.batch_size", "must be between 1 and 1000")
    if sm.rate < 0:
        fail(f"{key}.rate", "must not be negative (0 = unlimited)")
    if not 1 <= sm.concurrency <= 32:
        fail(f"{key}.concurrency", "must be between 1 and 32")


def find_config_path(explicit: str | None, env: typing.Mapping[str, str]) -> Path | None:
    """--config, else NEWSLETTER_CONFIG, else ./newsletter.toml if it exists."""
    if explicit:
        return Path(explicit)
    if env.get("NEWSLETTER_CONFIG"):
        return Path(env["NEWSLETTER_CONFIG"])
    default = Path.cwd() / DEFAULT_CONFIG_NAME
    return default if default.exists() else None


def no_config_error() -> ConfigError:
    """The one-line error for "no config anywhere", naming every place looked at."""
    return ConfigError(
        "no config file: --config not given, NEWSLETTER_CONFIG not set, "
        f"no {DEFAULT_CONFIG_NAME} in {Path.cwd()}",
        hint="`newsletter init` writes a starter config",
    )


def load_config(
    path: str | Path | None = None,
    *,
    env: typing.Mapping[str, str] | None = None,
    database: str | None = None,
) -> Config:
    """Load and validate settings. ``database`` (``--db``) wins over everything.

    A config file is required: with no ``path``, no NEWSLETTER_CONFIG and no
    ./newsletter.toml this raises :class:`ConfigError` (exit code 2) rather than run
    on defaults. :func:`default_config` is the built-in defaults, on purpose.
    """
    env = os.environ if env is None else env
    found = find_config_path(str(path) if path else None, env)
    if found is None:
        raise no_config_error()
    try:
        raw = found.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read config: {err.strerror}", where=str(found)) from err
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"not valid TOML: {err}", where=str(found)) from err
    return _finish(data, found, env, database)


def default_config(
    *, env: typing.Mapping[str, str] | None = None, database: str | None = None
) -> Config:
    """The built-in defaults with no file (for tests and library use; never the CLI's)."""
    return _finish({}, None, os.environ if env is None else env, database)


def _finish(
    data: dict[str, Any], found: Path | None, env: typing.Mapping[str, str], database: str | None
) -> Config:
    where = str(found) if found else "<defaults>"
    try:
        cfg: Config = _build(Config, data, "")
    except ConfigError as err:
        raise ConfigError(err.message, where=f"{where}: {err.where}", hint=err.hint) from None
    cfg.path = where
    cfg.file_data = data
    cfg.base_dir = found.resolve().parent if found else Path.cwd()
    cfg.secrets = Secrets.from_env(env)
    if cfg.rates.snapshot:
        cfg.rates.snapshot = str(cfg.resolve(cfg.rates.snapshot))
    cfg.database_source = "config" if "database" in data else "default"
    if env.get("NEWSLETTER_DATABASE_URL"):
        cfg.database = env["NEWSLETTER_DATABASE_URL"]
        cfg.database_source = "NEWSLETTER_DATABASE_URL"
    if database:
        cfg.database = database
        cfg.database_source = "--db"
    if env.get("NEWSLETTER_SENDGRID_HOST"):
        cfg.delivery.sendgrid.host = env["NEWSLETTER_SENDGRID_HOST"]
    _validate(cfg)
    return cfg


# --------------------------------------------------------------------------- showing it

#: environment variables that hold secrets, and the Secrets field of each
SECRET_ENV = {
    "SENDGRID_API_KEY": "sendgrid_api_key",
    "NEWSLETTER_SECRET_KEY": "secret_key",
    "NEWSLETTER_SMTP_PASSWORD": "smtp_password",
}


def _public_url(url: str) -> str:
    """A database URL with its password replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, at, host = rest.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}{at}{host}"


def effective_config(cfg: Config) -> dict[str, Any]:
    """Every setting as the program uses it (defaults, file, environment, options),
    with secrets shown only as set or not, and the database password hidden."""

    def plain(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {
                f.name: plain(getattr(obj, f.name))
                for f in dataclasses.fields(obj)
                if f.name not in _NOT_FROM_FILE
            }
        if isinstance(obj, dict):
            return {k: plain(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [plain(v) for v in obj]
        return obj

    data = plain(cfg)
    data["database"] = _public_url(cfg.database)
    return data


def secrets_status(cfg: Config) -> dict[str, str]:
    """Each secret's environment variable: "set" or "not set", never the value."""
    return {
        name: "set" if getattr(cfg.secrets, attr) else "not set"
        for name, attr in SECRET_ENV.items()
    }


def to_toml(data: dict[str, Any]) -> str:
    """``data`` (from :func:`effective_config`) as TOML that loads back to the same."""
    out: list[str] = []

    def key(k: str) -> str:
        return k if k and all(c.isalnum() or c in "-_" for c in k) else json.dumps(k)

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            inner = ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items() if x is not None)
            return "{ " + inner + " }" if inner else "{}"
        raise TypeError(f"cannot write {v!r} as TOML")

    def is_table(v: Any) -> bool:
        return isinstance(v, dict) and bool(v) and all(isinstance(x, dict) for x in v.values())

    def table(name: str, d: dict[str, Any], header: str) -> None:
        simple = [(k, v) for k, v in d.items() if not _nested(k, v, name)]
        if header:
            out.append("")
            out.append(header)
        for k, v in simple:
            if v is None:
                out.append(f"# {key(k)}: unset (inherited)")
            else:
                out.append(f"{key(k)} = {value(v)}")
        for k, v in d.items():
            here = f"{name}.{key(k)}" if name else key(k)
            if not _nested(k, v, name):
                continue
            if isinstance(v, list):
                for item in v:
                    table(here, item, f"[[{here}]]")
            elif _is_section(k, name):
                table(here, v, f"[{here}]")
            else:  # a table of tables: [rates.pairs.UZS]
                for sub, item in v.items():
                    table(f"{here}.{key(sub)}", item, f"[{here}.{key(sub)}]")

    def _is_section(k: str, parent: str) -> bool:
        return (parent, k) not in _TABLES_OF_TABLES

    def _nested(k: str, v: Any, parent: str) -> bool:
        if isinstance(v, list):
            return bool(v) and all(isinstance(x, dict) for x in v)
        if (parent, k) in _TABLES_OF_TABLES:
            return is_table(v)
        return isinstance(v, dict) and (parent, k) in _SECTIONS

    table("", data, "")
    return "\n".join(out).lstrip("\n") + "\n"


#: (parent, key) of the dataclass sections, written as [tables]
_SECTIONS = {
    ("", "site"),
    ("", "articles"),
    ("", "rates"),
    ("", "render"),
    ("", "delivery"),
    ("delivery", "sendgrid"),
    ("delivery", "smtp"),
    ("", "webhook"),
    ("", "archive"),
    ("", "alerts"),
}
#: (parent, key) of the tables whose values are sections: [rates.pairs.XXX]
_TABLES_OF_TABLES = {("rates", "pairs")}


def no_effect_warnings(cfg: Config) -> list[str]:
    """Settings written in the file (or the environment) that change nothing, each
    as "key: why". A typo'd key is an error already; these are valid but idle."""
    file = cfg.file_data
    defaults = effective_config(Config())
    warnings: list[str] = []

    def given(*path: str) -> bool:
        """The file sets this key (or, for a table, some key in it) to something
        other than the default: a starter config that spells out defaults is quiet."""
        node: Any = file
        default: Any = defaults
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
            default = default.get(part) if isinstance(default, dict) else None
        if isinstance(node, dict) and isinstance(default, dict):
            return any(v != default.get(k) for k, v in node.items())
        return bool(node != default)

    def warn(key: str, why: str) -> None:
        warnings.append(f"{key}: no effect: {why}")

    # the database
    if given("database") and cfg.database_source in ("NEWSLETTER_DATABASE_URL", "--db"):
        warn("database", f"{cfg.database_source} overrides it")
    # rates
    r = cfg.rates
    own = [c for c in r.currencies if r.pairs.get(c) and r.pairs[c].providers]
    # written at all (even as the default) it says "use these": say that it is not
    wrote_providers = "providers" in file.get("rates", {})
    if wrote_providers and r.currencies and len(own) == len(r.currencies):
        warn("rates.providers", "every pair in rates.currencies sets its own providers")
    if given("rates", "issuer_first") and r.currencies and len(own) == len(r.currencies):
        warn("rates.issuer_first", "every pair in rates.currencies sets its own providers")
    used = {name for c in r.currencies for name in r.pair(c).providers}
    for name in r.urls:
        if name not in used:
            warn(f"rates.urls.{name}", f"no pair asks {name}")
    if given("rates", "pegs") and "peg" not in used:
        warn("rates.pegs", "no pair asks the peg provider")
    if given("rates", "snapshot") and "snapshot" not in used:
        warn("rates.snapshot", "no pair asks the snapshot provider")
    # delivery
    backend = cfg.delivery.backend
    alerts_by_smtp = bool(cfg.alerts.email_to) and (
        cfg.alerts.via == "smtp" or (cfg.alerts.via == "" and backend != "outbox")
    )
    if given("delivery", "sendgrid") and backend != "sendgrid":
        warn("delivery.sendgrid", f"delivery.backend is {backend!r}")
    elif given("delivery", "sendgrid", "cancel_margin") and not (
        cfg.delivery.sendgrid.schedule_delay
    ):
        warn("delivery.sendgrid.cancel_margin", "schedule_delay is 0 (off)")
    if given("delivery", "smtp") and backend != "smtp" and not alerts_by_smtp:
        warn("delivery.smtp", f"delivery.backend is {backend!r} and no alert goes by SMTP")
    if given("delivery", "smtp", "starttls") and cfg.delivery.smtp.ssl:
        warn("delivery.smtp.starttls", "ssl = true (implicit TLS) ignores it")
    # alerts
    for k in ("on_partial", "via"):
        if given("alerts", k) and not cfg.alerts.email_to:
            warn(f"alerts.{k}", "alerts.email_to is empty: no alert is sent")
    # sources
    for i, s in enumerate(cfg.sources):
        if s.type == "wordpress":
            continue
        raw = file.get("sources", [{}] * (i + 1))[i] if given("sources") else {}
        for k in ("tags", "per_page", "max_pages", "backfill_days"):
            if isinstance(raw, dict) and k in raw:
                warn(f"sources[{i}].{k}", f"only the wordpress type reads it ({s.name or s.url})")
    return warnings
