"""`newsletter preview --serve`: a live preview for editors and template authors.

Listens on 127.0.0.1 only. The page shows the edition in a frame with a
picker: each variant the current audience gets, any tag set, or exactly what
one subscriber gets; HTML or text; 375 px, 600 px or full width. Every view
is rendered afresh through the same code path as a send (Jinja reloads a
template whose file changed), and the page polls ``/stamp``, a fingerprint of
the template folders, to reload the frame as soon as a template is saved.
Sends and records nothing.

It answers only requests addressed to its own host names (127.0.0.1,
localhost, [::1]); any other Host header gets 400. The page hands out real
unsubscribe links and tells whether an address is subscribed, so a web page
that points its own domain name at 127.0.0.1 (DNS rebinding) must not be able
to read it.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from newsletter.config import Config, DigestConfig
from newsletter.editions.plan import plan_edition
from newsletter.editions.variants import DEFAULT_VARIANT
from newsletter.errors import NewsletterError
from newsletter.models import RatesHeader
from newsletter.preview.message import preview_message
from newsletter.rates.service import build_header
from newsletter.render.env import bundled_templates, make_env
from newsletter.store import Store

logger = logging.getLogger(__name__)

#: seconds a fetched rates header is reused between views
RATES_TTL = 600
#: the Host names the preview answers to (any port)
OWN_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def template_stamp(folders: list[Path]) -> str:
    """A fingerprint of every file under ``folders``: changes when one is saved,
    added or removed."""
    h = hashlib.sha1()
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                st = path.stat()
                h.update(f"{path}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
    return h.hexdigest()[:16]


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Preview: {digest}</title>
<style>
body {{ margin: 0; font: 14px/1.4 system-ui, sans-serif; background: #eaeef2; color: #1f2328; }}
form {{ display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: end; padding: 12px 16px;
  background: #fff; border-bottom: 1px solid #d0d7de; position: sticky; top: 0; }}
label {{ display: flex; flex-direction: column; font-size: 12px; color: #59636e; gap: 2px; }}
select, input, button {{ font: inherit; padding: 4px 6px; }}
#info {{ padding: 6px 16px; font-size: 12px; color: #59636e; }}
#frame {{ display: block; margin: 12px auto 24px; border: 0; background: #fff;
  box-shadow: 0 1px 4px rgba(0,0,0,.2); height: calc(100vh - 150px); }}
</style></head><body>
<form id="picker" onsubmit="show(); return false">
  <label>Variant<select name="variant" onchange="this.form.as.value=''; this.form.tags.value='';
    show()">{options}</select></label>
  <label>or tags (slugs, comma-separated)
    <input name="tags" size="28" placeholder="kazakhstan,energy"></label>
  <label>or subscriber
    <input name="as" size="28" type="email" placeholder="reader@example.com"></label>
  <label>Format<select name="format" onchange="show()"><option>html</option><option>text</option>
    </select></label>
  <label>Width<select name="width" onchange="show()"><option value="375">375 px</option>
    <option value="600" selected>600 px</option><option value="100%">full</option></select></label>
  <button>Show</button>
</form>
<div id="info">{info}</div>
<iframe id="frame" title="preview"></iframe>
<script>
let stamp = {stamp};
function show() {{
  const f = document.getElementById("picker");
  const q = new URLSearchParams();
  if (f.as.value) q.set("as", f.as.value);
  else if (f.tags.value) q.set("tags", f.tags.value);
  else q.set("variant", f.variant.value);
  q.set("format", f.format.value);
  const frame = document.getElementById("frame");
  frame.style.width = f.width.value.endsWith("%") ? f.width.value : f.width.value + "px";
  frame.src = "/message?" + q.toString();
}}
async function poll() {{
  try {{
    const r = await fetch("/stamp", {{cache: "no-store"}});
    const s = (await r.json()).stamp;
    if (s !== stamp) {{
      stamp = s;
      document.getElementById("frame").contentWindow.location.reload();
    }}
  }} catch (e) {{}}
  setTimeout(poll, 1000);
}}
show(); poll();
</script></body></html>
"""

_ERROR = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Error</title></head>
<body style="font: 14px/1.5 system-ui, sans-serif; padding: 16px; color: #cf222e">
<h1 style="font-size: 16px">This preview does not render</h1>
<pre style="white-space: pre-wrap">{}</pre>
<p style="color: #59636e">Fix the template and save: this frame reloads by itself.</p></body></html>
"""


def make_app(store: Store, cfg: Config, digest: DigestConfig, *, at: datetime | None = None) -> Any:
    """The Starlette application of the preview server."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    folders = [bundled_templates()]
    if cfg.render.templates:
        folders.insert(0, cfg.resolve(cfg.render.templates))

    def now() -> datetime:
        return at or datetime.now(UTC)

    rates_cache: dict[str, tuple[float, RatesHeader]] = {}

    def rates() -> RatesHeader:
        """The rates header, fetched once every RATES_TTL seconds, not on every view."""
        day = now().astimezone(ZoneInfo(digest.timezone)).date()
        key = day.isoformat()
        hit = rates_cache.get(key)
        if hit is None or time.monotonic() - hit[0] > RATES_TTL:
            header = build_header(store, cfg.rates, day, save=False)
            rates_cache.clear()
            rates_cache[key] = hit = (time.monotonic(), header)
        return hit[1]

    def page(request: Request) -> Response:
        plan = plan_edition(store, cfg, digest, now())
        keys = sorted(plan.variants, key=lambda k: (k != DEFAULT_VARIANT, k))
        options = (
            "".join(
                f'<option value="{html.escape(k)}">{html.escape(k)} · '
                f"{plan.variants[k].subscribers} subscribers, "
                f"{len(plan.variants[k].articles)} stories</option>"
                for k in keys
            )
            or '<option value="">(no variant has enough stories)</option>'
        )
        info = (
            f"{html.escape(digest.name)}: {html.escape(plan.subject)} · templates: "
            + html.escape(", ".join(str(f) for f in folders))
        )
        return HTMLResponse(
            _PAGE.format(
                digest=html.escape(digest.name),
                options=options,
                info=info,
                stamp=json.dumps(template_stamp(folders)),
            )
        )

    seen = {"stamp": template_stamp(folders)}

    def message(request: Request) -> Response:
        stamp_now = template_stamp(folders)
        if stamp_now != seen["stamp"]:
            # Jinja notices an edited file by itself, but not a new file in the user
            # folder that now overrides a bundled one it has cached: start afresh
            make_env.cache_clear()
            seen["stamp"] = stamp_now
        q = request.query_params
        as_email = q.get("as") or None
        tags = [t.strip() for t in (q.get("tags") or "").split(",") if t.strip()]
        if as_email:
            tags = []
        elif not tags and q.get("variant", "default") not in ("", "default"):
            tags = q["variant"].split("+")
        try:
            result = preview_message(
                store, cfg, digest, now(), as_email=as_email, tags=tags, rates=rates()
            )
        except NewsletterError as err:
            return HTMLResponse(_ERROR.format(html.escape(str(err))), status_code=422)
        if q.get("format") == "text":
            return PlainTextResponse(result.text)
        return HTMLResponse(result.html)

    def stamp(request: Request) -> Response:
        return JSONResponse(
            {"stamp": template_stamp(folders)}, headers={"Cache-Control": "no-store"}
        )

    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    return Starlette(
        routes=[Route("/", page), Route("/message", message), Route("/stamp", stamp)],
        middleware=[
            Middleware(TrustedHostMiddleware, allowed_hosts=list(OWN_HOSTS), www_redirect=False)
        ],
    )


def serve_preview(
    store: Store,
    cfg: Config,
    digest: DigestConfig,
    *,
    port: int = 8026,
    at: datetime | None = None,
) -> None:
    """Serve the live preview on 127.0.0.1:``port`` until interrupted."""
    import uvicorn

    uvicorn.run(
        make_app(store, cfg, digest, at=at), host="127.0.0.1", port=port, log_level="warning"
    )
