"""CSS inlining, configured for MJML output.

premailer's defaults break MJML: it fetches remote CSS (Google Fonts), strips
``!important`` (which breaks MJML's ``@media`` rules) and drops a lowercase
doctype. Both engines here keep the ``<style>`` blocks (media queries, dark
mode), never touch the network, and keep the doctype.
"""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)

_DOCTYPE = re.compile(r"^\s*<!doctype[^>]*>", re.IGNORECASE)


def _premailer(html: str) -> str:
    from premailer import Premailer

    # cssutils logs every vendor property it does not know; keep logs useful
    logging.getLogger("CSSUTILS").setLevel(logging.CRITICAL)
    return Premailer(
        html,
        allow_network=False,
        allow_loading_external_files=False,
        external_styles=None,
        disable_link_rewrites=True,
        keep_style_tags=True,
        strip_important=False,
        remove_classes=False,
        exclude_pseudoclasses=True,
        cssutils_logging_level=logging.CRITICAL,
        disable_validation=True,
        cache_css_parsing=True,
    ).transform(pretty_print=False)


def _css_inline(html: str) -> str:
    import css_inline

    return css_inline.CSSInliner(
        keep_style_tags=True,
        load_remote_stylesheets=False,
        keep_link_tags=True,
    ).inline(html)


ENGINES = {"premailer": _premailer, "css-inline": _css_inline}


def inline_css(html: str, engine: str = "premailer") -> str:
    """Inline ``html``'s CSS with ``engine``; the doctype is always kept."""
    m = _DOCTYPE.match(html)
    doctype = m.group(0).strip() if m else "<!doctype html>"
    out = ENGINES[engine](html)
    out = _DOCTYPE.sub("", out, count=1).lstrip()
    return f"{doctype}\n{out}"
