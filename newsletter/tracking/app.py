"""The web app of ``newsletter serve``: the event webhook and the unsubscribe pages.

    POST /webhooks/sendgrid          SendGrid's Signed Event Webhook
    GET  /unsubscribe/<token>        confirm leaving the digest, or change preferences
    POST /unsubscribe/<token>        RFC 8058 one-click: leave that digest (or: everything,
                                     undo, save preferences)
    GET/POST /preferences/<token>    digests and topics (the welcome email's link)
    GET/POST /subscribe              the signup form; JSON for a site's own form (CORS)
    GET/POST /subscribe/confirm/<t>  double opt-in: a button, then the welcome email
    GET  /healthz                    "ok": the process answers (liveness)
    GET  /readyz                     "ok" once the database answers (readiness)
    GET  /metrics                    Prometheus text format (tracking/metrics.py)

SendGrid retries any non-2xx answer for 24 hours, so the webhook answers 200
only after the events are committed, 403 for requests that are not genuine
(never worth retrying with the same signature), 413 for oversized bodies, 400
for a body that is not an event array, and 503 when the database failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import parse_qs

import jinja2
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from newsletter import i18n
from newsletter.config import Config
from newsletter.errors import ConfigError, InputError, StoreError, WebhookError
from newsletter.i18n import N_
from newsletter.render.env import make_env
from newsletter.store import Store
from newsletter.tracking import signup
from newsletter.tracking import unsubscribe as unsub
from newsletter.tracking.metrics import metrics_endpoint
from newsletter.tracking.server import uvicorn_settings
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


CHECK_INBOX = (
    "If the address can get our newsletters, a message with a confirmation link is on its way."
)

TITLES = {
    "confirm": N_("Unsubscribe"),
    "preferences": N_("Your newsletters"),
    "left": N_("Unsubscribed"),
    "left_all": N_("Unsubscribed"),
    "unsubscribed": N_("Unsubscribed"),
    "rejoined": N_("Subscribed again"),
    "saved": N_("Preferences saved"),
    "subscribe": N_("Subscribe"),
    "check_inbox": N_("Check your inbox"),
    "confirm_signup": N_("Confirm your subscription"),
    "confirmed": N_("Subscribed"),
    "already": N_("Already confirmed"),
    "declined": N_("Not subscribed"),
    "expired": N_("Link expired"),
}
INVALID_TITLE = N_("Invalid link")


class BodyTimeout(WebhookError):
    """The request body did not arrive within [webhook] body_timeout (answered 408)."""

    def __init__(self) -> None:
        super().__init__("request body too slow")


class BodyTooLarge(WebhookError):
    """The request body is over [webhook] max_body_bytes (answered 413)."""

    def __init__(self) -> None:
        super().__init__("request body too large")


async def read_body(request: Request, limit: int, *, timeout: float | None = None) -> bytes:
    """The request body, refusing more than ``limit`` bytes whatever Content-Length says,
    and (BodyTimeout) a body that takes longer than ``timeout`` seconds to arrive."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge

    async def collect() -> bytes:
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise BodyTooLarge
        return bytes(buf)

    if timeout is None:
        return await collect()
    try:
        return await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        raise BodyTimeout from None


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
    wh = cfg.webhook

    def page_defaults(mode: str, language: str) -> dict[str, Any]:
        return {
            "lang": language,
            "direction": cfg.site.direction,
            "site": cfg.site.name,
            "mailto": cfg.site.unsubscribe_mailto,
            "title": i18n.lang(language)(TITLES.get(mode, INVALID_TITLE)),
            "digest_title": "",
            "masked": "",
            "topics": [],
            "digests": [],
            "chosen": [],
            "others": [],
            "left": [],
            "undo": [],
            "joined": [],
            "error": "",
            "form": {"email": "", "name": ""},
        }

    def page(mode: str, status: int = 200, language: str = "", **values: Any) -> HTMLResponse:
        """pages/page.html.j2 through the one environment (render/env.py), in
        ``language``: the digest's the page is about, else the site's."""
        language = language or cfg.site.language
        if values:
            defaults = page_defaults(mode, language)
            html = page_template(language).render(**{**defaults, **values}, mode=mode)
        else:
            html = fixed_page(mode, language)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    # The templates are read once per process (a changed template takes a restart
    # of serve): Jinja's own check stats every file of the loader's path on every
    # render, and a page that takes no values (the signup's "check your inbox")
    # is rendered once per language.
    @functools.cache
    def page_template(language: str) -> jinja2.Template:
        env = make_env(signup.templates_folder(cfg), language)
        return env.get_template("pages/page.html.j2")

    @functools.lru_cache(maxsize=256)
    def fixed_page(mode: str, language: str) -> str:
        return page_template(language).render(**page_defaults(mode, language), mode=mode)

    def said(err: InputError) -> str:
        """An error of the signup form in the form's language (the site's)."""
        if isinstance(err, signup.FormError):
            return i18n.lang(cfg.site.language)(err.msgid, **err.values)
        return err.message

    def invalid_link() -> HTMLResponse:
        return page("invalid", 404)

    def lang_of(reader: unsub.Reader) -> str:
        if reader.digest is not None:
            return reader.digest.language or cfg.site.language
        return cfg.site.language

    async def sendgrid_webhook(request: Request) -> Response:
        try:
            body = await read_body(request, wh.max_body_bytes, timeout=wh.body_timeout)
        except BodyTooLarge:
            logger.warning("webhook: body over %d bytes refused", wh.max_body_bytes)
            return JSONResponse({"error": "body too large"}, status_code=413)
        except BodyTimeout:
            return JSONResponse({"error": "body too slow"}, status_code=408)
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

    def digest_titles(names: list[str]) -> list[str]:
        return signup.titles(cfg, names)

    async def choices(reader: unsub.Reader) -> dict[str, Any]:
        digests, topics = await run_in_threadpool(unsub.preferences, cfg, store, reader)
        sub = reader.subscriber
        return {
            "digests": digests,
            "topics": topics,
            "masked": unsub.mask_email(sub.email) if sub else "",
        }

    async def unsubscribe_page(request: Request) -> Response:
        reader = await reader_for(request)
        if reader is None:
            return invalid_link()
        active = await run_in_threadpool(unsub.active_digests, cfg, store, reader)
        if reader.digest is None:
            return page("preferences", language=lang_of(reader), **(await choices(reader)))
        if reader.digest.name not in active:
            return page("unsubscribed", language=lang_of(reader), digest_title=reader.digest.title)
        others = digest_titles([d for d in active if d != reader.digest.name])
        return page(
            "confirm",
            language=lang_of(reader),
            digest_title=reader.digest.title,
            others=others,
            **(await choices(reader)),
        )

    async def page_form_body(request: Request) -> bytes | Response:
        """The body of a reader page's form, or the 413/408 answer that refuses it."""
        try:
            return await read_body(request, FORM_LIMIT, timeout=wh.body_timeout)
        except BodyTooLarge:
            return PlainTextResponse("request too large", status_code=413)
        except BodyTimeout:
            return PlainTextResponse("request too slow", status_code=408)

    async def unsubscribe_post(request: Request) -> Response:
        reader = await reader_for(request)
        if reader is None:
            return invalid_link()
        body = await page_form_body(request)
        if isinstance(body, Response):
            return body
        form: dict[str, list[str]] = {}
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=500)
        action = (form.get("action") or [""])[0]
        if action == "preferences":
            saved = await run_in_threadpool(
                unsub.save_preferences,
                cfg,
                store,
                reader,
                form.get("digest", []),
                form.get("tag", []),
            )
            return page(
                "saved",
                language=lang_of(reader),
                joined=digest_titles(saved.digests),
                chosen=saved.topics,
            )
        if action == "undo":
            joined = await run_in_threadpool(unsub.undo, cfg, store, reader, form.get("digest", []))
            return page("rejoined", language=lang_of(reader), joined=digest_titles(joined))
        if action == "everything" or reader.digest is None:
            left = await run_in_threadpool(unsub.leave_all, cfg, store, reader)
            return page("left_all", language=lang_of(reader), undo=left)
        # RFC 8058: any other POST to this URL is the one-click unsubscribe of its digest
        left = await run_in_threadpool(unsub.leave, cfg, store, reader, [reader.digest.name])
        active = await run_in_threadpool(unsub.active_digests, cfg, store, reader)
        return page(
            "left",
            language=lang_of(reader),
            left=[reader.digest.title],
            undo=left,
            others=digest_titles(active),
        )

    # ------------------------------------------------------------------ signup

    def cors_headers(request: Request) -> dict[str, str] | None:
        """CORS headers for an allowed Origin; {} without one; None for another site."""
        origin = request.headers.get("origin")
        if origin is None:
            return {}
        if origin not in cfg.signup.cors_origins:
            return None
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    def signup_choices(fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
        fields = fields or {}
        picked = set(fields.get("digest", []))
        tags = set(fields.get("tag", []))
        offered = signup.offered_digests(cfg)
        return {
            "digests": [
                unsub.Choice(d.name, d.title, d.name in picked or len(offered) == 1)
                for d in offered
            ],
            "topics": [
                unsub.Choice(slug, name, slug in tags)
                for slug, name in unsub.topic_names(cfg, store).items()
            ],
            "form": {
                "email": (fields.get("email") or [""])[0][:320],
                "name": (fields.get("name") or [""])[0][:200],
            },
        }

    async def subscribe_page(request: Request) -> Response:
        if not cfg.signup.enabled:
            return PlainTextResponse("not found", status_code=404)
        return page("subscribe", **(await run_in_threadpool(signup_choices)))

    async def subscribe_options(request: Request) -> Response:
        headers = cors_headers(request)
        if not cfg.signup.enabled or not headers:
            return JSONResponse({"error": "origin not allowed", "field": None}, status_code=403)
        headers.update(
            {
                "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": "600",
            }
        )
        return Response(status_code=204, headers=headers)

    async def subscribe_post(request: Request) -> Response:
        if not cfg.signup.enabled:
            return PlainTextResponse("not found", status_code=404)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        as_json = ctype == "application/json"
        cors = cors_headers(request) if as_json else {}

        async def fail(
            message: str,
            where: str | None,
            status: int,
            fields: dict[str, list[str]] | None = None,
            shown: str = "",
        ) -> Response:
            if as_json:
                return JSONResponse(
                    {"error": message, "field": where}, status_code=status, headers=cors or {}
                )
            # the form again, with what was typed and the message (``shown``: in
            # the page's language) above it
            choices = await run_in_threadpool(signup_choices, fields)
            return page("subscribe", status, error=shown or message, **choices)

        if as_json and cors is None:
            return JSONResponse({"error": "origin not allowed", "field": None}, status_code=403)
        if ctype not in ("application/json", "application/x-www-form-urlencoded"):
            return await fail("send a form or JSON", None, 415)
        ip = signup.client_ip(
            cfg,
            request.client.host if request.client else "",
            request.headers.get("x-forwarded-for", ""),
        )
        try:
            body = await read_body(request, signup.MAX_BODY, timeout=cfg.webhook.body_timeout)
        except (BodyTooLarge, BodyTimeout) as err:
            refused = (
                ("the request is too large", 413)
                if isinstance(err, BodyTooLarge)
                else ("the request body came too slowly", 408)
            )
            return await counted(ip, as_json, cors, await fail(refused[0], "body", refused[1]))
        fields: dict[str, list[str]] = {}
        try:
            if as_json:
                fields = signup.fields_from_json(body)
            else:
                fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=100)
            form = signup.parse(cfg, fields)
            deliver = await run_in_threadpool(signup.request, cfg, store, form, ip)
        except signup.RateLimited as err:
            return await rate_limited(err, as_json, cors)
        except InputError as err:
            status = 400 if err.where == "body" else 422
            return await counted(
                ip, as_json, cors, await fail(err.message, err.where, status, fields, said(err))
            )
        except (SQLAlchemyError, StoreError) as err:
            logger.error("signup: database failed: %s", err)
            again = N_("please try again in a minute")
            return await fail(again, None, 503, shown=i18n.lang(cfg.site.language)(again))
        task = BackgroundTask(deliver) if deliver else None
        if as_json:
            return JSONResponse(
                {"status": "check your inbox", "message": CHECK_INBOX},
                status_code=202,
                headers=cors or {},
                background=task,
            )
        response = page("check_inbox", 202)
        response.background = task
        return response

    async def counted(
        ip: str, as_json: bool, cors: dict[str, str] | None, answer: Response
    ) -> Response:
        """A refused attempt still counts against the client's limit."""
        try:
            await run_in_threadpool(signup.count_client, cfg, store, ip)
        except signup.RateLimited as err:
            return await rate_limited(err, as_json, cors)
        return answer

    async def rate_limited(
        err: signup.RateLimited, as_json: bool, cors: dict[str, str] | None
    ) -> Response:
        headers = {**(cors or {}), "Retry-After": str(err.retry_after)}
        if as_json:
            return JSONResponse({"error": err.message, "field": None}, 429, headers=headers)
        choices = await run_in_threadpool(signup_choices)
        response = page("subscribe", 429, error=said(err), **choices)
        response.headers["Retry-After"] = str(err.retry_after)
        return response

    def confirm_page_for(result: str) -> Response:
        if result == "expired":
            return page(
                "expired",
                410,
                hours=f"{cfg.signup.confirm_hours:g}",
                subscribe_url=f"{cfg.site.public_url.rstrip('/')}/subscribe",
            )
        return invalid_link()

    async def confirm_get(request: Request) -> Response:
        checked = signup.check_token(cfg, request.path_params["token"])
        if isinstance(checked, str):
            return confirm_page_for(checked)
        return page("confirm_signup")

    async def confirm_post(request: Request) -> Response:
        body = await page_form_body(request)
        if isinstance(body, Response):
            return body
        if parse_qs(body.decode("utf-8", "replace")).get("action") == ["decline"]:
            what = await run_in_threadpool(signup.decline, cfg, store, request.path_params["token"])
            if what in ("expired", "invalid"):
                return confirm_page_for(what)
            return page("declined" if what == "declined" else "already")
        result, deliver = await run_in_threadpool(
            signup.confirm, cfg, store, request.path_params["token"]
        )
        if result.mode in ("expired", "invalid"):
            return confirm_page_for(result.mode)
        if result.mode == "already":
            return page("already")
        response = page("confirmed", language=result.language, joined=result.joined)
        response.background = BackgroundTask(deliver) if deliver else None
        return response

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
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
            Route("/preferences/{token}", unsubscribe_page, methods=["GET"]),
            Route("/preferences/{token}", unsubscribe_post, methods=["POST"]),
            Route("/subscribe", subscribe_page, methods=["GET"]),
            Route("/subscribe", subscribe_post, methods=["POST"]),
            Route("/subscribe", subscribe_options, methods=["OPTIONS"]),
            Route("/subscribe/confirm/{token}", confirm_get, methods=["GET"]),
            Route("/subscribe/confirm/{token}", confirm_post, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
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
    workers: int = 1,
) -> None:
    """Run the app under uvicorn until interrupted. Binds 127.0.0.1 unless told otherwise.

    ``workers`` > 1: that many processes answer on the one socket (forked after
    it is bound, each with its own database connections). They share nothing
    but the database, where the signup limits are kept, so they count the same
    hits; one that dies stops the others, for the service manager to restart."""
    import uvicorn

    host = host or cfg.webhook.host
    port = cfg.webhook.port if port is None else port
    if workers <= 1:
        app = create_app(cfg, store)
        if announce:
            announce(f"http://{host}:{port}")
        uvicorn.run(app, host=host, port=port, **uvicorn_settings(cfg))
        return
    if not hasattr(os, "fork"):
        raise ConfigError("serve --workers needs a system with fork()", where="--workers")
    sock = listening_socket(host, port)
    if announce:
        announce(f"http://{host}:{port} ({workers} processes)")
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            _worker(cfg, store, sock)
        children.append(pid)
    sock.close()
    _supervise(children)


def listening_socket(host: str, port: int) -> socket.socket:
    """The TCP socket ``serve --workers`` binds before it forks.

    Its protocol is given as IPPROTO_TCP, not left 0: asyncio sets TCP_NODELAY
    only on sockets whose ``proto`` says TCP, and accepted sockets inherit it.
    Without it every answer waited on Nagle's algorithm and delayed ACKs
    (~40 ms each): two workers answered 8 times slower than one process.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _worker(cfg: Config, store: Store, sock: socket.socket) -> NoReturn:
    """One forked ``serve`` process: its own connections, uvicorn on the shared socket."""
    import uvicorn

    code = 1
    try:
        # the parent's pooled connections are not this process's to use or close
        store.engine.dispose(close=False)
        server = uvicorn.Server(uvicorn.Config(create_app(cfg, store), **uvicorn_settings(cfg)))
        server.run(sockets=[sock])
        code = 0
    except BaseException:  # noqa: BLE001 - a forked child must never return into the parent's code
        logger.exception("serve: a worker process failed")
    finally:
        logging.shutdown()
        os._exit(code)


def _supervise(children: list[int]) -> None:
    """Wait for the worker processes; SIGTERM and SIGINT go on to them, and when one
    ends, the others are stopped. Raises SystemExit(1) if one ended by itself."""
    running = set(children)
    stopping = False

    def stop(signum: int, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = False
    while running:
        pid, _status = os.wait()
        running.discard(pid)
        if not stopping:
            logger.error("serve: worker process %d ended; stopping the others", pid)
            failed = True
            stop(signal.SIGTERM)
    if failed:
        raise SystemExit(1)
