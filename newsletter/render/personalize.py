"""Per-recipient values, filled in after rendering.

A variant is rendered once; what differs per recipient is written as
placeholders that survive MJML and CSS inlining untouched. SendGrid fills them
as substitutions; the other backends fill them with :func:`personalize`.
"""

from __future__ import annotations

import html

UNSUBSCRIBE_URL = "%%unsubscribe_url%%"
PREFERENCES_URL = "%%preferences_url%%"
NAME = "%%name%%"

PLACEHOLDERS = (UNSUBSCRIBE_URL, PREFERENCES_URL, NAME)


def personalize(text: str, values: dict[str, str], *, html_part: bool) -> str:
    """``text`` with each placeholder replaced by its value (HTML-escaped in HTML)."""
    for key, value in values.items():
        text = text.replace(key, html.escape(value, quote=True) if html_part else value)
    return text
