"""CSS inlining, configured for MJML output. Two engines, one behaviour.

premailer's defaults break MJML output: it would fetch the Google Fonts
stylesheet MJML links, strip ``!important`` (which MJML's ``@media`` rules and
our dark mode need), turn CSS widths into HTML attributes (an image's
``width="560"``, which Outlook needs, would become ``width="100%"``) and drop a
lowercase doctype. So both engines here:

- never touch the network (not even for an ``@import``, which cssutils would
  fetch behind premailer's back), and leave ``<link>`` tags where they are;
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
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

_DOCTYPE = re.compile(r"^\s*<!doctype[^>]*>", re.IGNORECASE)
#: MJML's reset block: always the first <style> of its head, starting "#outlook a"
_MJML_RESET = re.compile(r'<style type="text/css">(\s*#outlook a)')
_IGNORE = 'data-premailer="ignore" data-css-inline="ignore"'


def _refuse(url: str) -> None:
    """cssutils' fetcher for @import: nothing is ever fetched."""
    logger.debug("not fetching %s (no network while inlining)", url)
    return None


@lru_cache(maxsize=64)
def _parse_css(css_body: str, validate: bool) -> Any:
    """Parsed once per distinct style block: every edition has the same ones."""
    import cssutils

    return cssutils.CSSParser(fetcher=_refuse, validate=validate).parseString(css_body)


_premailer_class: Any = None


def _premailer(html: str) -> str:
    global _premailer_class
    if _premailer_class is None:
        from premailer import Premailer

        rules_cache: dict[tuple[str, int], Any] = {}

        class OfflinePremailer(Premailer):
            # premailer's allow_network=False covers <link> tags only: cssutils
            # would still fetch an @import (MJML writes one per <mj-font>)
            def _parse_css_string(self, css_body: str, validate: bool = True) -> Any:
                return _parse_css(css_body, validate)

            # every edition has the same style blocks: premailer re-serialises each
            # rule of each block per call (a third of its time), so keep the result
            def _parse_style_rules(self, css_body: str, ruleset_index: int) -> Any:
                key = (css_body, ruleset_index)
                if key not in rules_cache:
                    if len(rules_cache) > 64:
                        rules_cache.clear()
                    rules_cache[key] = super()._parse_style_rules(css_body, ruleset_index)
                return rules_cache[key]

            # all of them are disabled (see disable_basic_attributes): skip the work
            def _style_to_basic_html_attributes(self, *args: Any, **kwargs: Any) -> None:
                return None

        _premailer_class = OfflinePremailer
        # cssutils logs every vendor property it does not know (mso-*); keep logs useful
        logging.getLogger("CSSUTILS").setLevel(logging.CRITICAL)
    return _premailer_class(
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
