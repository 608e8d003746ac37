"""The web app of ``newsletter serve``: the event webhook and the unsubscribe pages.

    POST /webhooks/sendgrid          SendGrid's Signed Event Webhook
    GET  /unsubscribe/<token>        confirm, or change topics instead
    POST /unsubscribe/<token>        RFC 8058 one-click unsubscribe (or save topics)
    GET  /healthz                    "ok" once the database answers
    GET  /metrics                    Prometheus text format (tracking/metrics.py)

SendGrid retries any non-2xx answer for 24 hours, so the webhook answers 200
only after the events are committed, 403 for requests that are not genuine
(never worth retrying with the same signature), 413 for oversized bodies, 400
for a body that is not an event array, and 503 when the database failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

import jinja2
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from newsletter.config import Config
from newsletter.errors import ConfigError, InputError, StoreError, WebhookError
from newsletter.store import Store
from newsletter.tracking import unsubscribe as unsub
from newsletter.tracking.metrics import metrics_endpoint
from newsletter.tracking.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    load_public_key,
    verify,
)
from newsletter.tracking.webhook import ingest_sendgrid

logger = logging.getLogger(__name__)

#: form posts from the unsubscribe page are tiny
FORM_LIMIT = 64_000

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # the token in the URL must not leak to other sites
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


class BodyTooLarge(WebhookError):
    """The request body is over [webhook] max_body_bytes (answered 413)."""

    def __init__(self) -> None:
        super().__init__("request body too large")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes whatever Content-Length says."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise BodyTooLarge
    return bytes(buf)


def webhook_key_text(cfg: Config) -> tuple[str, str]:
    """(key text, where it came from): the environment wins over the file."""
    if cfg.secrets.webhook_public_key:
        return cfg.secrets.webhook_public_key, "NEWSLETTER_SENDGRID_WEBHOOK_KEY"
    return (
        cfg.delivery.sendgrid.webhook_public_key,
        f"{cfg.path}: delivery.sendgrid.webhook_public_key",
    )


def create_app(cfg: Config, store: Store) -> Starlette:
    """The ASGI app. ConfigError when the secret key is missing or the webhook key is bad."""
    if not cfg.secrets.secret_key:
        raise ConfigError(
            "NEWSLETTER_SECRET_KEY is not set",
            hint="unsubscribe links are signed with it; set the value the sends used",
        )
    text, where = webhook_key_text(cfg)
    key = load_public_key(text, where=where) if text.strip() else None
    if key is None:
        logger.warning(
            "no SendGrid webhook verification key configured: every webhook request will be "
            "refused (set NEWSLETTER_SENDGRID_WEBHOOK_KEY)"
        )
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    wh = cfg.webhook

    def page(mode: str, status: int = 200, **values: object) -> HTMLResponse:
        defaults = {
            "lang": cfg.site.language,
            "direction": cfg.site.direction,
            "site": cfg.site.name,
            "mailto": cfg.site.unsubscribe_mailto,
            "title": {
                "confirm": "Unsubscribe",
                "unsubscribed": "Unsubscribed",
                "saved": "Preferences saved",
            }.get(mode, "Invalid link"),
            "digest_title": "",
            "masked": "",
            "topics": [],
            "chosen": [],
        }
        html = templates.get_template("page.html.j2").render(**{**defaults, **values}, mode=mode)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def invalid_link() -> HTMLResponse:
        return page("invalid", 404)

    async def sendgrid_webhook(request: Request) -> Response:
        try:
            body = await read_body(request, wh.max_body_bytes)
        except BodyTooLarge:
            logger.warning("webhook: body over %d bytes refused", wh.max_body_bytes)
            return JSONResponse({"error": "body too large"}, status_code=413)
        if key is None:
            return JSONResponse({"error": "no verification key configured"}, status_code=403)
        try:
            verify(
                key,
                body,
                request.headers.get(SIGNATURE_HEADER),
                request.headers.get(TIMESTAMP_HEADER),
                max_age=wh.max_age,
            )
        except WebhookError as err:
            client = request.client.host if request.client else "?"
            logger.warning("webhook: refused a request from %s: %s", client, err.message)
            return JSONResponse({"error": err.message}, status_code=403)
        try:
            report = await run_in_threadpool(ingest_sendgrid, store, cfg, body)
        except InputError as err:
            return JSONResponse({"error": err.message}, status_code=400)
        except (SQLAlchemyError, StoreError) as err:
            logger.error("webhook: could not store events: %s", err)
            return JSONResponse(
                {"error": "could not store events, try again"},
                status_code=503,
                headers={"Retry-After": "30"},
            )
        return JSONResponse(report.as_dict())

    async def reader_for(request: Request) -> unsub.Reader | None:
        token = request.path_params["token"]
        try:
            return await run_in_threadpool(unsub.resolve, cfg, store, token)
        except InputError:
            return None

    async def unsubscribe_page(request: Request) -> Response:
        reader = await reader_for(request)
        if reader is None:
            return invalid_link()
        sub = reader.subscriber
        if sub is None or sub.status != "active":
            return page("unsubscribed", digest_title=reader.digest.title)
        topics = await run_in_threadpool(unsub.topics, store, reader)
        return page(
            "confirm",
            digest_title=reader.digest.title,
            masked=unsub.mask_email(sub.email),
            topics=topics,
        )

    async def unsubscribe_post(request: Request) -> Response:
        reader = await reader_for(request)
        if reader is None:
            return invalid_link()
        try:
            body = await read_body(request, FORM_LIMIT)
        except BodyTooLarge:
            return PlainTextResponse("request too large", status_code=413)
        form: dict[str, list[str]] = {}
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=500)
        if form.get("action") == ["preferences"]:
            chosen = await run_in_threadpool(
                unsub.save_preferences, store, reader, form.get("tag", [])
            )
            return page("saved", chosen=chosen)
        # RFC 8058: a POST to this URL is the unsubscribe, whatever the body holds
        await run_in_threadpool(unsub.unsubscribe, cfg, store, reader)
        return page("unsubscribed", digest_title=reader.digest.title)

    async def healthz(request: Request) -> Response:
        try:
            await run_in_threadpool(store.revision)
        except SQLAlchemyError:
            return PlainTextResponse("database unavailable", status_code=503)
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/webhooks/sendgrid", sendgrid_webhook, methods=["POST"]),
            Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
            Route("/unsubscribe/{token}", unsubscribe_post, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint(store), methods=["GET"]),
        ]
    )


def serve(
    cfg: Config,
    store: Store,
    *,
    host: str | None = None,
    port: int | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Run the app under uvicorn until interrupted. Binds 127.0.0.1 unless told otherwise."""
    import uvicorn

    app = create_app(cfg, store)
    host = host or cfg.webhook.host
    port = cfg.webhook.port if port is None else port
    if announce:
        announce(f"http://{host}:{port}")
    uvicorn.run(
        app,
        host=host,
        port=port,
        # access lines would write unsubscribe tokens into the logs
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=30,
    )
