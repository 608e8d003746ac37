"""SendGrid's v3 mail/send through the ``sendgrid`` package: one request per batch.

A batch is up to 1000 recipients of one variant. The variant's subject, text
and HTML go into the request once; each recipient gets one personalization
with its substitutions (unsubscribe URL, name), its List-Unsubscribe header and
``custom_args`` = our delivery and edition ids (nothing personal), so webhook
events find their delivery again.

What an answer means (see docs/sending.md):

- 202 (200 in sandbox mode): every recipient in the request was accepted; the
  X-Message-Id is kept for the batch.
- 400: nothing was sent. The error body names fields such as
  ``personalizations.17.to.0.email``; those recipients are refused and the rest
  are sent again at once. A 400 that names no recipient refuses the request.
- 401/403: the key is refused: :class:`AuthError`, the send stops.
- 429, 5xx (but 504), and errors before the request was fully written: nothing
  was taken; retried with exponential backoff and jitter, a 429 not before its
  X-RateLimit-Reset.
- A timeout or a dropped connection *after* the request was written, and 504:
  SendGrid may have taken it. Not retried blindly: :class:`DeliveryError`, the
  batch's outcome is unknown and is resolved by the state machine.

The client has no timeout and no retries of its own; urllib raises errors
while connecting or writing as ``URLError`` and errors while waiting for the
answer unwrapped (``TimeoutError``, ``ConnectionResetError``, ``http.client``
exceptions). That split is what tells "not sent" from "unknown".
"""

from __future__ import annotations

import functools
import html
import http.client
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from json.encoder import encode_basestring_ascii
from typing import Any

import sendgrid
from python_http_client.client import Response
from python_http_client.exceptions import HTTPError, handle_error

from newsletter.audience.subscribers import neutral_name
from newsletter.config import Config
from newsletter.delivery.backends.base import (
    Backend,
    BatchResult,
    OutgoingMessage,
    with_partial,
)
from newsletter.delivery.mime import (
    URL_SAFE,
    addr_spec,
    header_url,
    list_headers,
    list_unsubscribe,
)
from newsletter.delivery.pacing import Pacer, backoff_delay
from newsletter.errors import (
    AuthError,
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TransientError,
)
from newsletter.models import Recipient
from newsletter.render.personalize import (
    FIRST_NAME,
    NAME,
    PLACEHOLDERS,
    PREFERENCES_URL,
    UNSUBSCRIBE_URL,
    first_name,
)

logger = logging.getLogger(__name__)


class _NoPayloads(logging.Filter):
    """python_http_client logs every request body, its headers and every answer
    at DEBUG: recipients' addresses, names and unsubscribe tokens. Keep only the
    request line and the status; our own debug lines name batches and counts."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg.startswith(("PAYLOAD:", "HEADERS:")):
            return False
        method, sep, rest = msg.partition(" Response: ")
        if sep:
            record.msg, record.args = f"{method} Response: {rest.split(' ', 1)[0]}", ()
        return True


logging.getLogger("python_http_client.client").addFilter(_NoPayloads())

REGION_HOSTS = {"global": "https://api.sendgrid.com", "eu": "https://api.eu.sendgrid.com"}
DEFAULT_HOST = REGION_HOSTS["global"]

#: the personalization a 400's field path points at
_FIELD = re.compile(r"^personalizations\.(\d+)(?:\.|$)")
#: SendGrid quotes addresses in brackets: "... instance of [a@b.example] in ..."
_BRACKETED = re.compile(r"\[([^\[\]\s]+@[^\[\]\s]+)\]")


_HTML_SPECIAL = re.compile(r"[&<>\"']")


def _escape(value: str) -> str:
    """html.escape, skipped for the usual value that needs none (a URL, a plain name)."""
    return html.escape(value, quote=True) if _HTML_SPECIAL.search(value) else value


#: a JSON string literal, as json.dumps writes it (ensure_ascii)
_quote: Callable[[str], str] = encode_basestring_ascii
#: a URL header_url would leave as it is (quote() costs microseconds a recipient)
_HEADER_SAFE = re.compile("[" + re.escape(URL_SAFE) + "]+").fullmatch
#: printable ASCII without runs of spaces, edge spaces or "=?": what neutral_name keeps
_PLAIN_NAME = re.compile(r"(?:[!-~]+(?: [!-~]+)*)?").fullmatch


def _neutral(name: str) -> str:
    """neutral_name, skipped for the usual name it would return unchanged."""
    if _PLAIN_NAME(name) and "=?" not in name:
        return name
    return neutral_name(name)


def _quoted(values: list[str]) -> list[str]:
    """Each value as a JSON string literal; one C call for the usual batch that needs
    no escaping at all."""
    joined = "".join(values)
    if len(_quote(joined)) == len(joined) + 2:
        return [f'"{v}"' for v in values]
    return [_quote(v) for v in values]


def _quoted_inner(values: list[str]) -> list[str]:
    """Each value JSON-escaped, without the quotes."""
    joined = "".join(values)
    if len(_quote(joined)) == len(joined) + 2:
        return values
    return [_quote(v)[1:-1] for v in values]


def _mailto_part(message: OutgoingMessage) -> str:
    """What list_unsubscribe puts after the https URL: the mailto, if any."""
    if not message.unsubscribe_mailto:
        return ""
    return f", <mailto:{addr_spec(message.unsubscribe_mailto)}?subject=unsubscribe>"


@dataclass(frozen=True)
class _Plan:
    subject: str
    text: str
    page: str
    #: each recipient's display name (neutral_name), "" for none
    names: list[str]
    #: substitution tag -> each recipient's value, in the order the body lists them
    subs: dict[str, list[str]]


def _escaped(values: list[str]) -> list[str]:
    """_escape of each value; the same list when none needs it (the usual batch)."""
    if not _HTML_SPECIAL.search("".join(values)):
        return values
    return [_escape(v) for v in values]


def _text_tag(tag: str) -> str:
    """The tag a text part uses when its value differs from the HTML-escaped one."""
    return tag[:-2] + "_text%%"


def _error_items(body: bytes | str | None) -> list[dict[str, str]]:
    """SendGrid's ``{"errors": [{"message", "field", "help"}]}``, tolerant of junk."""
    try:
        data = json.loads(body or b"{}")
    except (ValueError, TypeError):
        return []
    items = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    return [
        {"message": str(e.get("message") or ""), "field": str(e.get("field") or "")}
        for e in items
        if isinstance(e, dict)
    ]


def _describe(err: HTTPError) -> str:
    items = _error_items(err.body)
    detail = "; ".join(
        f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in items
    )
    text = f"{err.status_code} {getattr(err, 'reason', '') or ''}".strip()
    return f"{text}: {detail}" if detail else text


class SendGridBackend(Backend):
    name = "sendgrid"
    max_batch = 1000
    idempotent = False

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.settings = cfg.delivery.sendgrid
        self.api_key = cfg.secrets.sendgrid_api_key
        if not self.api_key:
            raise ConfigError(
                "SENDGRID_API_KEY is not set",
                where=f"{cfg.path}: delivery.backend",
                hint="export the key, or use the outbox or smtp backend",
            )
        host = self.settings.host.rstrip("/")
        if host == DEFAULT_HOST:
            host = REGION_HOSTS[self.settings.region]
        self.host = host
        self.concurrency = self.settings.concurrency
        self.pacer = Pacer(self.settings.rate)
        self._local = threading.local()
        #: content value -> its JSON string literal (see _shared_json)
        self._encoded: dict[str, str] = {}
        #: replaced in tests to record waits
        self.sleep: Callable[[float], None] = time.sleep

    # ------------------------------------------------------------------ the HTTP calls

    def _api(self) -> Any:
        """This thread's client: the package's client keeps mutable headers per instance."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = sendgrid.SendGridAPIClient(api_key=self.api_key, host=self.host).client
            self._local.client = client
        return client

    def _post(self, body: bytes) -> Any:
        """POST an encoded mail/send body: what the package's client does with a dict
        (headers, urllib, its HTTPError for 4xx/5xx), without serializing it again."""
        client = self._api()
        request = urllib.request.Request(
            f"{self.host}/v3/mail/send",
            data=body,
            headers={**client.request_headers, "Content-Type": "application/json"},
            method="POST",
        )
        try:
            return Response(
                urllib.request.build_opener().open(request, timeout=self.settings.timeout)
            )
        except urllib.error.HTTPError as err:
            exc = handle_error(err)
            exc.__cause__ = None
            raise exc from None

    def _call(self, what: str, request: Callable[[], Any], *, idempotent: bool) -> Any:
        """One API request with the retry policy; returns the package's Response.

        4xx answers other than 401/403/429 are raised as the package's HTTPError
        for the caller to read.
        """
        attempt = 0
        s = self.settings
        while True:
            self.pacer.wait_pause()
            try:
                return request()
            except HTTPError as err:
                status = err.status_code
                if status in (401, 403):
                    raise AuthError(
                        f"SendGrid refused the API key ({_describe(err)}); the send stops "
                        "and nothing more is sent",
                        where=self.host,
                        hint="check SENDGRID_API_KEY and that it may use Mail Send",
                    ) from None
                if status == 429:
                    wait, reason = self._rate_limit_wait(err), f"rate limited ({_describe(err)})"
                elif status == 504 and not idempotent:
                    raise DeliveryError(
                        f"{what}: SendGrid answered 504 (a gateway timed out after the "
                        "request was passed on); the outcome is unknown",
                        where=self.host,
                    ) from None
                elif status >= 500:
                    wait = backoff_delay(attempt, s.backoff, s.retry_max_wait)
                    reason = f"server error {_describe(err)}"
                else:
                    raise
            except urllib.error.URLError as err:
                # raised while connecting or writing the request: SendGrid never had all
                # of it, so it cannot have acted on it
                wait = backoff_delay(attempt, s.backoff, s.retry_max_wait)
                reason = f"cannot reach SendGrid ({err.reason})"
            except (OSError, http.client.HTTPException) as err:
                # raised while waiting for or reading the answer: the request was written
                if not idempotent:
                    raise DeliveryError(
                        f"{what}: the request was sent but no answer came back "
                        f"({type(err).__name__}: {err}); the outcome is unknown",
                        where=self.host,
                    ) from None
                wait = backoff_delay(attempt, s.backoff, s.retry_max_wait)
                reason = f"no answer ({type(err).__name__})"
            if attempt >= s.max_retries:
                raise TransientError(
                    f"{what}: {reason}; gave up after {attempt + 1} attempts", where=self.host
                )
            attempt += 1
            logger.info("%s: %s; retry %d in %.2fs", what, reason, attempt, wait)
            self.sleep(wait)

    def _rate_limit_wait(self, err: HTTPError) -> float:
        headers = err.headers or {}
        s = self.settings
        wait = None
        reset = headers.get("X-RateLimit-Reset")
        retry_after = headers.get("Retry-After")
        try:
            if reset is not None:
                wait = max(0.0, float(reset) - time.time())
            elif retry_after is not None:
                wait = max(0.0, float(retry_after))
        except ValueError:
            wait = None
        if wait is None:
            wait = backoff_delay(0, s.backoff, s.retry_max_wait)
        if wait > s.retry_max_wait:
            at = datetime.fromtimestamp(time.time() + wait).strftime("%H:%M:%S")
            raise TransientError(
                f"SendGrid's rate limit resets at {at}, more than retry_max_wait="
                f"{s.retry_max_wait:g}s from now; run `newsletter send` again then",
                where=self.host,
            )
        # the limit is the account's: every worker holds until it resets
        wait += backoff_delay(0, min(s.backoff, 1.0), 1.0) / 2
        self.pacer.pause(wait)
        return wait

    # ------------------------------------------------------------------ the request body

    def _plan(self, message: OutgoingMessage, recipients: list[Recipient]) -> _Plan:
        """What one request's body is made of, shared by :meth:`build_body` and
        :meth:`encode_body` so the two cannot drift apart."""
        r = message.rendered
        subject = f"[TEST] {r.subject}" if message.test else r.subject
        text, page = r.text, r.html
        names = [_neutral(x.name) for x in recipients]
        urls = [x.unsubscribe_url for x in recipients]
        # each placeholder's column of values, as values_for makes them one by one
        values: dict[str, list[str]] = {
            UNSUBSCRIBE_URL: urls,
            PREFERENCES_URL: urls,
            NAME: names,
            FIRST_NAME: [first_name(n) for n in names]
            if FIRST_NAME in page or FIRST_NAME in text or FIRST_NAME in subject
            else names,
        }
        for key, fallback in (r.fallbacks or {}).items():
            if key in values and not all(values[key]):
                values[key] = [v or fallback for v in values[key]]
        # tags with the same value for everyone (the unsubscribe and preferences
        # URLs) travel once: the content is pointed at the first of them
        used = [t for t in PLACEHOLDERS if t in page or t in text or t in subject]
        for i, tag in enumerate(used):
            same = next(
                (u for u in used[:i] if values[u] is values[tag] or values[u] == values[tag]),
                None,
            )
            if same is not None:
                page, text = page.replace(tag, same), text.replace(tag, same)
                subject = subject.replace(tag, same)
        in_html = [t for t in PLACEHOLDERS if t in page]
        in_text = [t for t in PLACEHOLDERS if t in text or t in subject]
        escaped = {t: _escaped(values[t]) for t in in_html}
        # SendGrid puts one value in both parts; where HTML escaping changes a value
        # (a name with "&"), the text part gets a tag of its own for this request
        split = [
            t
            for t in in_text
            if t in in_html
            and escaped[t] is not values[t]
            and any(e != v for e, v in zip(escaped[t], values[t], strict=True))
        ]
        for t in split:
            text = text.replace(t, _text_tag(t))
            subject = subject.replace(t, _text_tag(t))
        # the substitutions of every recipient, in one order: (tag, its values)
        subs: dict[str, list[str]] = {t: values[t] for t in in_text if t not in split}
        subs.update(escaped)
        for t in split:
            subs[_text_tag(t)] = values[t]
        return _Plan(subject, text, page, names, subs)

    def _shared(
        self,
        message: OutgoingMessage,
        recipients: list[Recipient],
        plan: _Plan,
        provider_batch_id: str,
        send_at: int | None,
    ) -> dict[str, Any]:
        """Every key of the body after ``personalizations``, in order."""
        shared = (
            list_headers(message, recipients[0]) if recipients and not message.transactional else {}
        )
        sender: dict[str, str] = {"email": message.from_email}
        if message.from_name:
            sender["name"] = message.from_name
        edition = str(message.edition_id)
        body: dict[str, Any] = {
            "from": sender,
            "subject": plan.subject,
            "content": [
                {"type": "text/plain", "value": plan.text or " "},
                {"type": "text/html", "value": plan.page or " "},
            ],
            "headers": {k: v for k, v in shared.items() if k != "List-Unsubscribe"},
            "categories": list(dict.fromkeys([message.digest[:255], f"edition-{edition}"])),
        }
        if message.reply_to:
            body["reply_to"] = {"email": message.reply_to}
        s = self.settings
        if message.transactional:
            body["categories"] = [message.digest[:255]]
            del body["headers"]
        if s.asm_group_id and not message.transactional:
            body["asm"] = {"group_id": s.asm_group_id}
        if s.ip_pool:
            body["ip_pool_name"] = s.ip_pool
        if s.sandbox:
            body["mail_settings"] = {"sandbox_mode": {"enable": True}}
        if provider_batch_id:
            body["batch_id"] = provider_batch_id
            body["send_at"] = int(time.time()) + s.schedule_delay if send_at is None else send_at
        return body

    def build_body(
        self,
        message: OutgoingMessage,
        recipients: list[Recipient],
        *,
        provider_batch_id: str = "",
        send_at: int | None = None,
    ) -> dict[str, Any]:
        """The mail/send body: the variant once, one personalization per recipient.

        The plain form, kept as the reference :meth:`encode_body` is tested
        against (byte for byte, after ``json.dumps``).
        """
        plan = self._plan(message, recipients)
        edition = str(message.edition_id)
        personalizations = []
        for i, rec in enumerate(recipients):
            name = plan.names[i]
            p: dict[str, Any] = {
                "to": [{"email": rec.email, "name": name} if name else {"email": rec.email}],
                "custom_args": {
                    "newsletter_delivery_id": str(rec.delivery_id),
                    "newsletter_edition_id": edition,
                },
                # per recipient, so in the personalization: SendGrid documents
                # substitutions for subject, reply-to and content, not for headers
                "headers": {"List-Unsubscribe": list_unsubscribe(message, rec)},
            }
            if message.transactional:
                del p["custom_args"], p["headers"]
            if plan.subs:
                p["substitutions"] = {t: v[i] for t, v in plan.subs.items()}
            personalizations.append(p)
        body: dict[str, Any] = {"personalizations": personalizations}
        body.update(self._shared(message, recipients, plan, provider_batch_id, send_at))
        return body

    def encode_body(
        self,
        message: OutgoingMessage,
        recipients: list[Recipient],
        *,
        provider_batch_id: str = "",
        send_at: int | None = None,
    ) -> bytes:
        """``json.dumps(build_body(...)).encode()``, made from pre-serialized fragments.

        The parts every personalization shares are serialized once per request;
        per recipient only its own strings go through the JSON string encoder.
        The bytes are the same as the plain form's (tests/test_sendgrid_body.py).
        """
        if message.transactional:
            # one message to one reader (a signup's confirmation): the plain form
            body = self.build_body(
                message, recipients, provider_batch_id=provider_batch_id, send_at=send_at
            )
            return json.dumps(body).encode()
        plan = self._plan(message, recipients)
        mailto = _quote(_mailto_part(message))[1:-1]
        urls = [r.unsubscribe_url for r in recipients]
        if not _HEADER_SAFE("".join(urls)):
            urls = [u if _HEADER_SAFE(u) else header_url(u) for u in urls]
        to = [
            f'{{"email": {e}, "name": {n}}}' if name else f'{{"email": {e}}}'
            for e, n, name in zip(
                _quoted([r.email for r in recipients]),
                _quoted(plan.names),
                plan.names,
                strict=True,
            )
        ]
        ids = [str(r.delivery_id) for r in recipients]
        edition = _quote(str(message.edition_id))
        args = [
            f'"custom_args": {{"newsletter_delivery_id": {i}, "newsletter_edition_id": {edition}}}'
            for i in _quoted(ids)
        ]
        heads = [f'"headers": {{"List-Unsubscribe": "<{u}>{mailto}"}}' for u in _quoted_inner(urls)]
        if plan.subs:
            cols = []
            for tag, values in plan.subs.items():
                key = _quote(tag) + ": "
                cols.append([key + v for v in _quoted(values)])
            subs = [
                ', "substitutions": {' + ", ".join(row) + "}" for row in zip(*cols, strict=True)
            ]
        else:
            subs = [""] * len(recipients)
        parts = [
            f'{{"to": [{t}], {a}, {h}{s}}}'
            for t, a, h, s in zip(to, args, heads, subs, strict=True)
        ]
        rest = self._shared_json(
            self._shared(message, recipients, plan, provider_batch_id, send_at)
        )
        return ('{"personalizations": [' + ", ".join(parts) + "], " + rest[1:]).encode()

    def _shared_json(self, shared: dict[str, Any]) -> str:
        """json.dumps of the shared keys; the content (~100 KB of HTML) is encoded once
        per variant, not once per request. Keys before and after it are dumped as
        they are, so the bytes are json.dumps's."""
        keys = list(shared)
        at = keys.index("content")
        before = json.dumps({k: shared[k] for k in keys[:at]})
        after = json.dumps({k: shared[k] for k in keys[at + 1 :]})
        cache = self._encoded
        items = []
        for c in shared["content"]:
            value = c["value"]
            encoded = cache.get(value)
            if encoded is None:
                if len(cache) > 32:
                    cache.clear()
                encoded = cache[value] = _quote(value)
            items.append(f'{{"type": {_quote(c["type"])}, "value": {encoded}}}')
        return (
            before[:-1]
            + (", " if at else "")
            + '"content": ['
            + ", ".join(items)
            + "]"
            + (", " + after[1:] if len(after) > 2 else "}")
        )

    # ------------------------------------------------------------------ the contract

    def send_batch(
        self,
        message: OutgoingMessage,
        recipients: list[Recipient],
        *,
        provider_batch_id: str = "",
    ) -> BatchResult:
        rejected: dict[int, str] = {}
        first: dict[str, int] = {}
        batch: list[Recipient] = []
        for rec in recipients:
            key = rec.email.strip().casefold()
            if key in first:
                rejected[rec.delivery_id] = (
                    f"duplicate address: {rec.email} is also delivery {first[key]} in this "
                    "request, and SendGrid refuses an address twice; not sent"
                )
                continue
            first[key] = rec.delivery_id
            batch.append(rec)
        while batch:
            body = self.encode_body(message, batch, provider_batch_id=provider_batch_id)
            logger.debug(
                "edition %s batch %s: %d recipient(s), deliveries %d-%d",
                message.edition_id,
                provider_batch_id or "-",
                len(batch),
                batch[0].delivery_id,
                batch[-1].delivery_id,
            )
            try:
                response = self._call(
                    "mail/send",
                    functools.partial(self._post, body),
                    idempotent=False,
                )
            except HTTPError as err:
                if err.status_code != 400:
                    raise with_partial(
                        PermanentDeliveryError(
                            f"SendGrid refused the request ({_describe(err)})", where=self.host
                        ),
                        BatchResult(rejected=rejected),
                    ) from None
                bad = self._refused(err, batch)
                if not bad:
                    raise with_partial(
                        PermanentDeliveryError(
                            f"SendGrid refused the request ({_describe(err)}); it names no "
                            "recipient, so every batch would fail the same way",
                            where=self.host,
                        ),
                        BatchResult(rejected=rejected),
                    ) from None
                rejected.update(bad)
                batch = [x for x in batch if x.delivery_id not in bad]
                logger.warning("SendGrid refused %d address(es); sending the rest", len(bad))
                continue
            except TransientError as err:
                if not rejected:
                    raise
                return BatchResult(
                    rejected=rejected, retry={x.delivery_id: str(err) for x in batch}
                )
            except DeliveryError as err:
                if not rejected or isinstance(err, AuthError):
                    raise with_partial(err, BatchResult(rejected=rejected)) from None
                return BatchResult(
                    rejected=rejected, unknown={x.delivery_id: str(err) for x in batch}
                )
            message_id = response.headers.get("X-Message-Id", "") if response.headers else ""
            if response.status_code == 200 and self.settings.sandbox:
                message_id = message_id or "sandbox"
            elif response.status_code != 202:
                logger.warning("mail/send answered %s, not 202", response.status_code)
            return BatchResult(message_id=message_id, rejected=rejected)
        return BatchResult(rejected=rejected)

    @staticmethod
    def _refused(err: HTTPError, batch: list[Recipient]) -> dict[int, str]:
        """The recipients a 400 names, by field path or by a bracketed address."""
        by_address = {x.email.strip().casefold(): x for x in batch}
        out: dict[int, str] = {}
        unnamed = False
        for item in _error_items(err.body):
            found: Recipient | None = None
            m = _FIELD.match(item["field"])
            if m and int(m.group(1)) < len(batch):
                found = batch[int(m.group(1))]
            else:
                for addr in _BRACKETED.findall(item["message"]):
                    found = by_address.get(addr.casefold()) or found
            if found is None:
                unnamed = True
                continue
            reason = f"refused by SendGrid: {item['message']}".strip()
            out.setdefault(found.delivery_id, reason)
        # a refusal that names nobody cannot be fixed by dropping recipients
        return {} if unnamed else out

    @property
    def provider_batches(self) -> bool:
        return bool(self.settings.schedule_delay)

    def new_provider_batch(self) -> str:
        if not self.settings.schedule_delay:
            return ""
        response = self._call(
            "mail/batch",
            lambda: self._api().mail.batch.post(timeout=self.settings.timeout),
            idempotent=True,
        )
        try:
            return str(json.loads(response.body)["batch_id"])
        except (ValueError, KeyError, TypeError) as err:
            raise TransientError("mail/batch answered without a batch_id", where=self.host) from err

    def cancel_deadline(self, claimed_at: datetime) -> datetime | None:
        s = self.settings
        if not s.schedule_delay:
            return None
        # send_at was set after the claim, so it is at least claimed_at + delay
        return claimed_at + timedelta(seconds=s.schedule_delay - s.cancel_margin)

    def cancel_provider_batch(self, provider_batch_id: str) -> bool:
        timeout = self.settings.timeout
        api = self._api
        try:
            self._call(
                "scheduled_sends",
                lambda: api().user.scheduled_sends.post(
                    request_body={"batch_id": provider_batch_id, "status": "cancel"},
                    timeout=timeout,
                ),
                idempotent=True,
            )
        except HTTPError as err:
            if err.status_code != 400:
                raise TransientError(
                    f"cannot cancel batch {provider_batch_id}: {_describe(err)}",
                    where=self.host,
                ) from None
            # the batch already has a status (paused, or cancelled by an earlier try)
            try:
                self._call(
                    "scheduled_sends",
                    lambda: (
                        api()
                        .user.scheduled_sends._(provider_batch_id)
                        .patch(request_body={"status": "cancel"}, timeout=timeout)
                    ),
                    idempotent=True,
                )
            except HTTPError as err2:
                raise TransientError(
                    f"cannot cancel batch {provider_batch_id}: {_describe(err2)}",
                    where=self.host,
                ) from None
        logger.info("cancelled SendGrid batch %s", provider_batch_id)
        return True

    def close(self) -> None:
        self._local = threading.local()
