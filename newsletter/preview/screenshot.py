"""Screenshots of an edition in headless Chromium, so an editor can look before sending.

Debian's chromium package, driven by Playwright's Python package (the
``browser`` extra). The page is loaded as a string: it can fetch its images
(or get grey placeholders of the same shape, ``images="placeholder"``, for
machines without network access) and nothing else: scripts, frames and
stylesheets from elsewhere are refused, as a mail client would.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from newsletter.errors import RenderError

logger = logging.getLogger(__name__)

#: a phone and the template's full width
WIDTHS = (375, 600)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: stands in for every image in placeholder mode (16:9, grey)
PLACEHOLDER_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="675" viewBox="0 0 1200 675">'
    b'<rect width="1200" height="675" fill="#c9d1d9"/>'
    b'<path d="M420 470l130-160 100 120 70-80 110 120z" fill="#8c959f"/></svg>'
)
#: an image slower than this is drawn as missing rather than holding the screenshot
LOAD_TIMEOUT_MS = 15_000


@contextmanager
def browser(executable: str = CHROMIUM) -> Iterator[Any]:
    """A headless Chromium for the duration of the block."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        raise RenderError(
            "screenshots need Playwright",
            hint="pip install 'newsletter[browser]' (Playwright's Python package)",
        ) from err
    if not Path(executable).exists():
        raise RenderError(
            "headless Chromium not found",
            where=executable,
            hint="apt-get install chromium, or set [render] chromium to its path",
        )
    with sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except PlaywrightError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else "no reason given"
            raise RenderError(f"Chromium did not start: {first}", where=executable) from err
        try:
            yield b
        finally:
            b.close()


_IMG_SRC = re.compile(r'(<img\b[^>]*?\bsrc=)("https?://[^"]*"|\'https?://[^\']*\')', re.I)


def with_placeholders(html: str) -> str:
    """``html`` with every remote image replaced by the grey placeholder (inline,
    so the page makes no request at all)."""
    data = "data:image/svg+xml;base64," + base64.b64encode(PLACEHOLDER_SVG).decode()
    return _IMG_SRC.sub(lambda m: f'{m.group(1)}"{data}"', html)


def open_page(b: Any, html: str, width: int, *, images: str = "load", dark: bool = False) -> Any:
    """A page ``width`` CSS pixels wide showing ``html`` as a mail client would."""
    if images == "placeholder":
        html = with_placeholders(html)

    def route(r: Any) -> None:
        req = r.request
        if req.resource_type == "image" and req.url.startswith(("http://", "https://")):
            r.continue_()
        else:
            r.abort()

    page = b.new_page(
        viewport={"width": width, "height": 800},
        color_scheme="dark" if dark else "light",
        java_script_enabled=True,
    )
    page.route("**/*", route)
    page.set_content(html, wait_until="load", timeout=LOAD_TIMEOUT_MS)
    return page


def take_screenshots(
    html: str,
    folder: Path,
    *,
    name: str = "preview",
    widths: tuple[int, ...] = WIDTHS,
    images: str = "load",
    dark: bool = False,
    executable: str = CHROMIUM,
) -> list[Path]:
    """Full-page PNGs of ``html``, one per width: ``<folder>/<name>-<width>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with browser(executable) as b:
        for width in widths:
            page = open_page(b, html, width, images=images, dark=dark)
            suffix = "-dark" if dark else ""
            path = folder / f"{name}-{width}{suffix}.png"
            page.screenshot(path=str(path), full_page=True)
            page.close()
            paths.append(path)
            logger.info("screenshot %s", path)
    return paths
