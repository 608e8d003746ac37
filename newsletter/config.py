"""Settings: defaults, then newsletter.toml, then the environment.

Validated in one place. Every error names the file and the key, e.g.
``newsletter.toml: digests[0].max_articles: expected an integer, got 'ten'``.

Secrets never live in the file; they come from the environment only and are
kept in :class:`Secrets`, whose ``repr`` hides them.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.errors import ConfigError

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


@dataclass
class ArticlesConfig:
    summary_length: int = 400
    #: bytes; a response larger than this is refused
    max_feed_bytes: int = 20_000_000


@dataclass
class RatesConfig:
    #: providers tried in order, pair by pair
    providers: list[str] = field(default_factory=lambda: ["snapshot"])
    currencies: list[str] = field(default_factory=lambda: ["KGS", "KZT", "TJS", "UZS", "TMT"])
    quote: str = "USD"
    #: older stored rates are shown with "as of <date>"
    stale_after_days: int = 3
    timeout: float = 10.0
    #: path of the offline snapshot (empty: the bundled one)
    snapshot: str = ""
    locale: str = "en"
    #: per-currency: show "1 USD = N XXX" when XXX/USD is below this
    invert_below: dict[str, float] = field(default_factory=dict)
    significant_digits: int = 4
    #: per-provider base URL overrides (for mirrors and tests)
    urls: dict[str, str] = field(default_factory=dict)


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


@dataclass
class SendGridConfig:
    host: str = "https://api.sendgrid.com"
    region: str = "global"
    sandbox: bool = False
    asm_group_id: int = 0
    ip_pool: str = ""
    timeout: float = 30.0
    max_retries: int = 5
    #: messages per second, 0 = unlimited
    rate: float = 0.0
    concurrency: int = 4
    #: public key for the signed event webhook (or NEWSLETTER_SENDGRID_WEBHOOK_KEY)
    webhook_public_key: str = ""


@dataclass
class SmtpConfig:
    host: str = "localhost"
    port: int = 587
    starttls: bool = True
    ssl: bool = False
    username: str = ""
    timeout: float = 30.0


@dataclass
class DeliveryConfig:
    #: outbox (files), sendgrid or smtp
    backend: str = "outbox"
    outbox_dir: str = "outbox"
    batch_size: int = 1000
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
    #: send a missed period late, up to this many hours; older ones are skipped
    catch_up_hours: int = 24
    #: release deliveries per subscriber timezone as local time reaches the schedule
    local_time: bool = False


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


@dataclass
class ArchiveConfig:
    #: folder the web archive is written to (empty: no archive)
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
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    #: folder relative paths in the file are resolved against
    base_dir: Path = field(default_factory=Path.cwd)
    #: the file this came from, for messages
    path: str = "<defaults>"
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

    def redact(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``."""
        for value in (
            self.sendgrid_api_key,
            self.secret_key,
            self.smtp_password,
        ):
            if value and len(value) >= 4:
                text = text.replace(value, "***")
        return text


# --------------------------------------------------------------------------- loading

_SECRET_KEYS = {"api_key", "sendgrid_api_key", "secret_key", "password", "smtp_password"}


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


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {value!r}", where=where)
        return _build(tp, value, where)
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
        if key not in fields or key in ("base_dir", "path", "secrets"):
            known = ", ".join(sorted(fields - {"base_dir", "path", "secrets"}))
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

            if not croniter.is_valid(d.schedule):
                raise ValueError
        except ValueError:
            fail(f"{key}.schedule", f"not a valid cron expression: {d.schedule!r}")
    for i, s in enumerate(cfg.sources):
        if s.type not in ("rss", "wordpress", "json"):
            fail(f"sources[{i}].type", f"must be rss, wordpress or json, got {s.type!r}")
        if not s.url:
            fail(f"sources[{i}].url", "a source needs a url or a path")
    if cfg.delivery.backend not in ("outbox", "sendgrid", "smtp"):
        fail("delivery.backend", f"must be outbox, sendgrid or smtp, got {cfg.delivery.backend!r}")
    if not 1 <= cfg.delivery.batch_size <= 1000:
        fail("delivery.batch_size", "must be between 1 and 1000 (SendGrid's limit)")
    if cfg.render.inliner not in ("premailer", "css-inline"):
        fail("render.inliner", f"must be premailer or css-inline, got {cfg.render.inliner!r}")
    if cfg.render.layout not in ("list", "tags"):
        fail("render.layout", f"must be list or tags, got {cfg.render.layout!r}")
    if cfg.site.direction not in ("ltr", "rtl"):
        fail("site.direction", "must be ltr or rtl")
    if not 0 < cfg.webhook.port < 65536:
        fail("webhook.port", f"must be between 1 and 65535, got {cfg.webhook.port}")
    if cfg.webhook.max_age < 0:
        fail("webhook.max_age", "must be 0 (no check) or a number of seconds")
    if cfg.webhook.max_body_bytes < 1000:
        fail("webhook.max_body_bytes", "must be at least 1000")
    if cfg.webhook.soft_bounce_limit < 0:
        fail("webhook.soft_bounce_limit", "must be 0 (never) or a positive count")


def find_config_path(explicit: str | None, env: typing.Mapping[str, str]) -> Path | None:
    """--config, else NEWSLETTER_CONFIG, else ./newsletter.toml if it exists."""
    if explicit:
        return Path(explicit)
    if env.get("NEWSLETTER_CONFIG"):
        return Path(env["NEWSLETTER_CONFIG"])
    default = Path.cwd() / DEFAULT_CONFIG_NAME
    return default if default.exists() else None


def load_config(
    path: str | Path | None = None,
    *,
    env: typing.Mapping[str, str] | None = None,
    database: str | None = None,
) -> Config:
    """Load and validate settings. ``database`` (``--db``) wins over everything."""
    env = os.environ if env is None else env
    found = find_config_path(str(path) if path else None, env)
    data: dict[str, Any] = {}
    if found is not None:
        try:
            raw = found.read_bytes()
        except OSError as err:
            raise ConfigError(f"cannot read config: {err.strerror}", where=str(found)) from err
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"not valid TOML: {err}", where=str(found)) from err
    where = str(found) if found else "<defaults>"
    try:
        cfg: Config = _build(Config, data, "")
    except ConfigError as err:
        raise ConfigError(err.message, where=f"{where}: {err.where}", hint=err.hint) from None
    cfg.path = where
    cfg.base_dir = found.resolve().parent if found else Path.cwd()
    cfg.secrets = Secrets.from_env(env)
    if env.get("NEWSLETTER_DATABASE_URL"):
        cfg.database = env["NEWSLETTER_DATABASE_URL"]
    if database:
        cfg.database = database
    if env.get("NEWSLETTER_SENDGRID_HOST"):
        cfg.delivery.sendgrid.host = env["NEWSLETTER_SENDGRID_HOST"]
    _validate(cfg)
    return cfg
