"""Signup with double opt-in: the form, the confirmation, the welcome.

A signup stores the address as ``pending`` (or keeps a known subscriber as it
is) with a pending subscription per digest asked for, and mails a signed link
that expires (``signup.confirm_hours``). Opening it and pressing the button
(a GET only shows the button, so mail scanners that fetch every link confirm
nothing) activates what was asked before the link was sent, and a welcome
email with the preferences link follows.

Against abuse:

- the answer is the same whatever the address (new, subscribed, pending,
  suppressed): nothing tells a stranger whether someone is on the list, and the
  mail goes out after the answer, so neither does the time it takes;
- a honeypot field that people do not see: filled in, the request gets the
  usual answer and nothing happens;
- rate limits per client address and per email address, counted in the
  database so every ``serve`` process shares them;
- a confirmation goes to one address at most once per ``signup.resend_minutes``;
- suppressed addresses (bounced, complained …) get no mail at all.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
import markupsafe

from newsletter import i18n
from newsletter.audience.subscribers import BIDI_CONTROLS, neutral_name, normalize_email
from newsletter.audience.tokens import (
    ExpiredLink,
    address_hash,
    make_confirm_token,
    read_confirm_token,
)
from newsletter.config import Config, DigestConfig
from newsletter.delivery.backends import make_backend
from newsletter.delivery.backends.base import OutgoingMessage
from newsletter.delivery.message import list_id
from newsletter.errors import DeliveryError, InputError
from newsletter.i18n import N_
from newsletter.models import Recipient, Rendered, slugify
from newsletter.render.env import make_env
from newsletter.store import Store
from newsletter.store.schema import ALL_DIGESTS
from newsletter.store.subscriptions import Limit, SignupRequest
from newsletter.tracking.unsubscribe import preferences_url

logger = logging.getLogger(__name__)

#: a signup is a few fields; anything bigger is not one
MAX_BODY = 16_000
HONEYPOT = "website"
MAX_NAME = 200


class FormError(InputError):
    """A signup form field is wrong. ``message`` is English (the JSON API's
    answer and the logs); the form page shows ``msgid`` from the catalogue of
    the page's language, with ``values`` filled in."""

    def __init__(self, msgid: str, *, where: str | None = None, **values: object):
        super().__init__(msgid.format(**values), where=where)
        self.msgid = msgid
        self.values = values


class RateLimited(FormError):
    """Too many signups from one client or for one address (answered 429)."""

    def __init__(self, retry_after: int):
        super().__init__(N_("too many signups, try again later"))
        self.retry_after = retry_after


@dataclass
class SignupForm:
    email: str
    name: str = ""
    digests: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    #: the honeypot was filled in: a bot
    bot: bool = False


def offered_digests(cfg: Config) -> list[DigestConfig]:
    names = cfg.signup.digests
    return [d for d in cfg.digests if not names or d.name in names]


def fields_from_json(body: bytes) -> dict[str, list[str]]:
    """A JSON signup as form fields; InputError naming the field that is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InputError("the body is not JSON", where="body") from None
    if not isinstance(data, dict):
        raise InputError("the body is not a JSON object", where="body")
    out: dict[str, list[str]] = {}
    for key in ("email", "name", HONEYPOT):
        value = data.get(key, "")
        if not isinstance(value, str):
            raise InputError("must be a string", where=key)
        out[key] = [value]
    for key, alias in (("digests", "digest"), ("topics", "tag")):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InputError("must be a list of strings", where=key)
        out[alias] = value
    unknown = sorted(set(data) - {"email", "name", HONEYPOT, "digests", "topics"})
    if unknown:
        raise InputError(f"unknown field {unknown[0]!r}", where=unknown[0])
    return out


def parse(cfg: Config, fields: Mapping[str, Sequence[str]]) -> SignupForm:
    """A validated signup from form fields; InputError whose ``where`` names the field.

    Pure: no database, so it runs on the event loop."""

    def one(key: str) -> str:
        values = fields.get(key) or [""]
        return values[0]

    if one(HONEYPOT).strip():
        return SignupForm(email="", bot=True)
    raw = one("email").strip()
    if not raw:
        raise FormError(N_("enter your email address"), where="email")
    if len(raw) > 320:
        raise FormError(N_("the email address is too long"), where="email")
    try:
        email = normalize_email(raw)
    except InputError as err:
        reason = err.message.split(": ", 1)[-1]
        raise FormError(
            N_("not a valid email address: {reason}"), where="email", reason=reason
        ) from None
    name = " ".join(one("name").split())
    if len(name) > MAX_NAME:
        raise FormError(
            N_("the name is longer than {limit} characters"), where="name", limit=MAX_NAME
        )
    # the rules of an import (audience/subscribers.py clean_name): control
    # characters refused, an encoded-word's "=?" stored as "= ?"
    if not name.isprintable() and any(
        c in BIDI_CONTROLS or unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name
    ):
        raise FormError(N_("the name has control characters"), where="name")
    name = neutral_name(name)
    offered = [d.name for d in offered_digests(cfg)]
    digests = list(dict.fromkeys(fields.get("digest") or []))
    if not digests and len(offered) == 1:
        digests = offered
    if not digests:
        raise FormError(N_("choose at least one newsletter"), where="digests")
    for d in digests:
        if d not in offered:
            raise FormError(N_("no newsletter named {name!r}"), where="digests", name=d[:60])
    chosen = fields.get("tag") or []
    known = topic_slugs(cfg)
    topics: list[str] = []
    for t in chosen:
        slug = slugify(t)
        if slug not in known:
            raise FormError(N_("no topic named {name!r}"), where="topics", name=t[:60])
        if slug not in topics:
            topics.append(slug)
    return SignupForm(email=email, name=name, digests=digests, topics=topics)


def topic_slugs(cfg: Config) -> set[str]:
    """The topics the form offers: the digests' tags, as slugs."""
    return {slugify(t) for d in cfg.digests for t in d.tags if slugify(t)}


def client_ip(cfg: Config, peer: str, forwarded_for: str) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy, the
    nearest address in X-Forwarded-For that is not one (a client can prepend
    anything to that header, so it is read from the right)."""
    nets = [ipaddress.ip_network(n, strict=False) for n in cfg.webhook.trusted_proxies]

    def trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in n for n in nets)

    if not nets or not trusted(peer) or not forwarded_for.strip():
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage in the header: the proxy is the best we know
    return hops[0] if hops else peer


# --------------------------------------------------------------------------- mail


def templates_folder(cfg: Config) -> str:
    """The newsroom's ``[render] templates`` folder, or "" (the bundled ones only)."""
    return str(cfg.resolve(cfg.render.templates)) if cfg.render.templates else ""


def language_of(cfg: Config, names: Sequence[str] = ()) -> str:
    """The language of the first of ``names`` (digests, config order); else the site's."""
    for d in cfg.digests:
        if d.name in names:
            return d.language or cfg.site.language
    return cfg.site.language


def mail_templates(cfg: Config, language: str = "") -> jinja2.Environment:
    """The one environment (render/env.py): the newsroom's folder first, the bundled after."""
    return make_env(templates_folder(cfg), language or cfg.site.language)


def _mail_template(env: jinja2.Environment, kind: str, part: str) -> jinja2.Template:
    # mail/<kind>.<part>.j2; a newsroom's <kind>.<part>.j2 at the folder's top (where
    # it lived before the one environment) is still honoured
    return env.select_template([f"{kind}.{part}.j2", f"mail/{kind}.{part}.j2"])


#: stands for the signup's own link while a mail is rendered for the cache
_LINK = "link-0f3c9a7e5b2d4c1e"
#: a link with every character autoescape changes, to prove the substitution right
_PROBE = "https://probe.invalid/?a='1'&b=\"<2>\""


@functools.lru_cache(maxsize=64)
def _mail_templates(folder: str, language: str, kind: str) -> tuple[jinja2.Template, ...]:
    # read once per process, as serve's pages are (tracking/app.py)
    env = make_env(folder, language)
    return _mail_template(env, kind, "html"), _mail_template(env, kind, "txt")


def _render(templates: tuple[jinja2.Template, ...], values: Mapping[str, Any]) -> tuple[str, str]:
    return templates[0].render(values), templates[1].render(values)


@functools.lru_cache(maxsize=256)
def _rendered_once(
    folder: str, language: str, kind: str, link_key: str, frozen: tuple[tuple[str, Any], ...]
) -> tuple[str, str] | None:
    """The mail rendered with a stand-in for its link, or None when the templates do
    more with the link than write it (then each mail is rendered in full)."""
    templates = _mail_templates(folder, language, kind)
    values = dict(frozen)
    html, text = _render(templates, {**values, link_key: _LINK})
    if _with_link((html, text), _PROBE) != _render(templates, {**values, link_key: _PROBE}):
        return None
    return html, text


def _with_link(rendered: tuple[str, str], link: str) -> tuple[str, str]:
    html, text = rendered
    return html.replace(_LINK, str(markupsafe.escape(link))), text.replace(_LINK, link)


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def render_mail(
    cfg: Config, kind: str, values: dict[str, Any], language: str = "", link_key: str = ""
) -> tuple[str, str]:
    """(html, text) of a ``kind`` email. With ``link_key``, the templates are rendered
    once per process for all other values, and only that value (the signup's link)
    is written in per mail."""
    language = language or cfg.site.language
    common = {
        "site": cfg.site.name,
        "lang": language,
        "direction": cfg.site.direction,
        "postal_address": cfg.site.postal_address,
        **values,
    }
    folder = templates_folder(cfg)
    if link_key:
        frozen = tuple(sorted((k, _freeze(v)) for k, v in common.items() if k != link_key))
        try:
            once = _rendered_once(folder, language, kind, link_key, frozen)
        except TypeError:  # a value that cannot be a cache key
            once = None
        if once is not None:
            return _with_link(once, str(common[link_key]))
    return _render(_mail_templates(folder, language, kind), common)


def send_mail(
    cfg: Config,
    to: str,
    name: str,
    kind: str,
    subject: str,
    values: dict[str, Any],
    language: str = "",
    link_key: str = "",
) -> None:
    """One ``kind`` ("confirm" or "welcome") email through the configured backend,
    in ``language`` (default: the site's); ``link_key``: see :func:`render_mail`."""
    html, text = render_mail(cfg, kind, values, language, link_key)
    message = OutgoingMessage(
        rendered=Rendered(subject=subject, html=html, text=text),
        from_email=cfg.site.from_email,
        from_name=cfg.site.from_name or cfg.site.name,
        reply_to=cfg.site.reply_to,
        list_id=list_id(cfg, ALL_DIGESTS),
        digest=f"signup-{kind}",
        edition_id=0,
        transactional=True,
    )
    backend = make_backend(cfg)
    try:
        result = backend.send_batch(message, [Recipient(0, to, name, "", kind)])
    finally:
        backend.close()
    if result.rejected:
        raise DeliveryError(f"the provider refused the {kind} email: {result.rejected[0]}")
    logger.info("%s email sent via %s", kind, backend.name)


def titles(cfg: Config, names: Sequence[str]) -> list[str]:
    """The display names of ``names``, in config order."""
    return [d.title for d in cfg.digests if d.name in names]


# --------------------------------------------------------------------------- signup


def _window(cfg: Config) -> float:
    return cfg.signup.rate_window_minutes * 60


def count_client(cfg: Config, store: Store, ip: str) -> None:
    """Count an attempt from ``ip`` that goes no further (bad input, the honeypot);
    RateLimited over signup.per_ip."""
    if store.hit(f"signup-ip:{ip}", _window(cfg)) > cfg.signup.per_ip:
        raise RateLimited(int(_window(cfg)))


def request(
    cfg: Config, store: Store, form: SignupForm, ip: str, *, now_ms: int | None = None
) -> Callable[[], None] | None:
    """Count the attempt and record the signup, in one transaction. Returns the mail
    to send after answering (None: no mail is due).

    RateLimited over signup.per_ip or signup.per_address (the hits are kept, nothing
    else is stored). The caller answers the same in every other case.
    """
    if form.bot:
        logger.info("signup: honeypot filled in; ignored")
        count_client(cfg, store, ip)
        return None
    secret = cfg.secrets.secret_key
    hashed = address_hash(secret, form.email)
    resend_key = f"signup-confirm:{hashed}"
    window = _window(cfg)
    outcome = store.record_signup(
        SignupRequest(
            email=form.email,
            digests=form.digests,
            topics=form.topics,
            name=form.name,
            ip=ip,
            consent_text=cfg.signup.consent_text,
            source="form",
        ),
        # the client's counter last: it is the one many signups share
        limits=[
            Limit(f"signup-address:{hashed}", cfg.signup.per_address, window),
            Limit(f"signup-ip:{ip}", cfg.signup.per_ip, window),
        ],
        # at most one confirmation per address per resend interval
        resend=Limit(resend_key, 1, cfg.signup.resend_minutes * 60)
        if cfg.signup.resend_minutes
        else None,
    )
    if outcome.limited:
        raise RateLimited(int(window))
    if not outcome.confirm_due or outcome.subscriber_id is None:
        logger.info("signup: no confirmation due (%s)", outcome.quiet_reason)
        return None
    sid, pending = outcome.subscriber_id, outcome.pending
    issued = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    token = make_confirm_token(secret, sid, issued)
    url = f"{cfg.site.public_url.rstrip('/')}/subscribe/confirm/{token}"
    digests = titles(cfg, pending)
    language = language_of(cfg, pending)
    email, name = form.email, form.name

    def deliver() -> None:
        try:
            send_mail(
                cfg,
                email,
                name,
                "confirm",
                i18n.lang(language)(N_("Confirm your subscription to {site}"), site=cfg.site.name),
                {"confirm_url": url, "digests": digests, "hours": f"{cfg.signup.confirm_hours:g}"},
                language,
                link_key="confirm_url",
            )
        except Exception as err:  # noqa: BLE001 - the reader already has the answer
            # a later signup may try again at once
            store.release(resend_key)
            logger.error("signup: could not send the confirmation: %s", err)

    return deliver


def decline(cfg: Config, store: Store, token: str, *, now_ms: int | None = None) -> str:
    """ "No thanks" on the confirmation page: "declined", "already", "expired" or "invalid"."""
    from datetime import UTC, datetime

    checked = check_token(cfg, token, now_ms=now_ms)
    if isinstance(checked, str):
        return checked
    sid, issued = checked
    dropped = store.decline_signup(sid, datetime.fromtimestamp((issued + 1) / 1000, UTC))
    if dropped:
        logger.info("subscriber %s declined %s", sid, ", ".join(dropped))
    return "declined" if dropped else "already"


@dataclass
class Confirmation:
    #: confirmed | already | expired | invalid
    mode: str
    joined: list[str] = field(default_factory=list)
    #: the page's language: that of the first digest joined (else the site's)
    language: str = ""


def check_token(cfg: Config, token: str, *, now_ms: int | None = None) -> tuple[int, int] | str:
    """(subscriber id, issued ms) of a usable link, else "expired" or "invalid"."""
    now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    try:
        return read_confirm_token(
            cfg.secrets.secret_key, token, max_age=cfg.signup.confirm_hours * 3600, now_ms=now_ms
        )
    except ExpiredLink:
        return "expired"
    except InputError:
        return "invalid"


def confirm(
    cfg: Config, store: Store, token: str, *, now_ms: int | None = None
) -> tuple[Confirmation, Callable[[], None] | None]:
    """Confirm what the link's signup asked for; returns the page and the welcome mail."""
    from datetime import UTC, datetime

    checked = check_token(cfg, token, now_ms=now_ms)
    if isinstance(checked, str):
        return Confirmation(checked), None
    sid, issued = checked
    # the link confirms what was asked before it was made (ms, rounded up)
    until = datetime.fromtimestamp((issued + 1) / 1000, UTC)
    joined = store.confirm_signup(sid, until)
    if not joined:
        return Confirmation("already"), None
    sub = store.get_subscriber(id=sid)
    if sub is None:
        return Confirmation("invalid"), None
    store.unforget(address_hash(cfg.secrets.secret_key, sub.email))
    names = titles(cfg, joined)
    language = language_of(cfg, joined)
    logger.info("subscriber %s confirmed %s", sid, ", ".join(joined))
    prefs = preferences_url(cfg, sid)

    def deliver() -> None:
        try:
            send_mail(
                cfg,
                sub.email,
                sub.name,
                "welcome",
                i18n.lang(language)(N_("Welcome to {site}"), site=cfg.site.name),
                {"digests": names, "preferences_url": prefs},
                language,
            )
        except Exception as err:  # noqa: BLE001 - confirmed either way
            logger.error("signup: could not send the welcome email: %s", err)

    return Confirmation("confirmed", names, language), deliver
