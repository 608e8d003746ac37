"""CSS inlining, configured for MJML output. Two engines, one behaviour.

premailer's defaults break MJML output: it would fetch the Google Fonts
stylesheet MJML links, strip ``!important`` (which MJML's ``@media`` rules and
our dark mode need), turn CSS widths into HTML attributes (an image's
``width="560"``, which Outlook needs, would become ``width="100%"``) and drop a
lowercase doctype. So both engines here:

- never touch the network, and leave ``<link>`` tags where they are;
- keep every ``<style>`` block as written, ``!important`` and media queries
  included, for the clients that read them;
- add no HTML attributes, only ``style``;
- do not inline MJML's own reset block (``#outlook a``, ``table, td``, ``img``,
  ``p``): MJML writes the styles its structure needs inline already, and the
  reset copied onto every table cell and image would cost ~10 KB of a
  30-story edition for nothing, since only clients that read ``<style>``
  (Outlook) use its properties;
- keep the doctype.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

logger = logging.getLogger(__name__)

_DOCTYPE = re.compile(r"^\s*<!doctype[^>]*>", re.IGNORECASE)
#: MJML's reset block: always the first <style> of its head, starting "#outlook a"
_MJML_RESET = re.compile(r'<style type="text/css">(\s*#outlook a)')
_IGNORE = 'data-premailer="ignore" data-css-inline="ignore"'


def _premailer(html: str) -> str:
    from premailer import Premailer

    # cssutils logs every vendor property it does not know (mso-*); keep logs useful
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
        disable_basic_attributes=["align", "valign", "bgcolor", "width", "height"],
        align_floating_images=False,
        cssutils_logging_level=logging.CRITICAL,
        disable_validation=True,
        cache_css_parsing=True,
    ).transform(pretty_print=False)


_css_inliner = None


def _css_inline(html: str) -> str:
    global _css_inliner
    if _css_inliner is None:
        import css_inline

        _css_inliner = css_inline.CSSInliner(
            keep_style_tags=True,
            keep_link_tags=True,
            load_remote_stylesheets=False,
            apply_width_attributes=False,
            apply_height_attributes=False,
        )
    return _css_inliner.inline(html)


ENGINES: dict[str, Callable[[str], str]] = {"premailer": _premailer, "css-inline": _css_inline}


def inline_css(html: str, engine: str = "premailer") -> str:
    """Inline ``html``'s CSS with ``engine``; the doctype is always kept."""
    m = _DOCTYPE.match(html)
    doctype = m.group(0).strip() if m else "<!doctype html>"
    marked = _MJML_RESET.sub(rf'<style type="text/css" {_IGNORE}>\1', html, count=1)
    out = ENGINES[engine](marked)
    # premailer removes its own marker; css-inline leaves both
    out = out.replace(f" {_IGNORE}", "", 1).replace(' data-css-inline="ignore"', "", 1)
    out = _DOCTYPE.sub("", out, count=1).lstrip()
    return f"{doctype}\n{out}"
