"""Per-recipient values, filled in after rendering.

A variant is rendered once; what differs per recipient is written as
placeholders that survive MJML and CSS inlining untouched. SendGrid fills them
as substitutions; the other backends fill them with :func:`personalize`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

UNSUBSCRIBE_URL = "%%unsubscribe_url%%"
PREFERENCES_URL = "%%preferences_url%%"
NAME = "%%name%%"
#: the greeting's name: the subscriber's first name, else the variant's fallback
#: (``Rendered.fallbacks``, "there" in English: "Hi there,")
FIRST_NAME = "%%first_name%%"

PLACEHOLDERS = (UNSUBSCRIBE_URL, PREFERENCES_URL, NAME, FIRST_NAME)


def first_name(name: str) -> str:
    """The name a greeting uses: the first word of ``name``, unless that is an
    initial or a title ("A. Reader", "Dr. Aliyev"), when the whole name is kept."""
    words = name.split()
    if not words:
        return ""
    first = words[0]
    if len(words) == 1 or first.endswith(".") or len(first) == 1:
        return " ".join(words)
    return first


def values_for(
    *, name: str, unsubscribe_url: str, fallbacks: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Every placeholder's value for one recipient; ``fallbacks`` fill the empty ones."""
    values = {
        UNSUBSCRIBE_URL: unsubscribe_url,
        PREFERENCES_URL: unsubscribe_url,
        NAME: name,
        FIRST_NAME: first_name(name),
    }
    for key, fallback in (fallbacks or {}).items():
        if not values.get(key):
            values[key] = fallback
    return values


def personalize(text: str, values: dict[str, str], *, html_part: bool) -> str:
    """``text`` with each placeholder replaced by its value (HTML-escaped in HTML)."""
    for key, value in values.items():
        text = text.replace(key, html.escape(value, quote=True) if html_part else value)
    return text
