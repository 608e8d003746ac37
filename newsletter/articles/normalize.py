"""Turning what a source says into one clean Article."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import nh3

#: query parameters that only track; stripped from article URLs
TRACKING_PARAMS = re.compile(
    r"^(utm_\w+|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|_hsenc|_hsmi|yclid|igshid|ref_src)$",
    re.IGNORECASE,
)

ALLOWED_TAGS = {"a", "b", "strong", "i", "em", "p", "br", "ul", "ol", "li", "blockquote"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}

#: WordPress's "The post X appeared first on Y." footer, and similar boilerplate
_WP_FOOTER = re.compile(r"<p>\s*The post .*? appeared first on .*?</p>\s*$", re.S | re.I)
_WP_FOOTER_TEXT = re.compile(r"\s*The post .*? appeared first on .*?\.\s*$", re.S | re.I)


def clean_url(url: str) -> str:
    """The URL without tracking parameters or fragment."""
    url = url.strip()
    parts = urlsplit(url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not TRACKING_PARAMS.match(k)
    ]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def clean_title(title: str) -> str:
    """Unescaped, tag-free, on one line: titles reach MJML attributes, so no newlines."""
    text = nh3.clean(html.unescape(title or ""), tags=set())
    return " ".join(html.unescape(text).split())


def sanitize_html(fragment: str) -> str:
    """Allowlist sanitizer: no script, style, iframes, handlers or javascript: URLs."""
    fragment = _WP_FOOTER.sub("", fragment or "")
    return nh3.clean(
        fragment,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    ).strip()


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment, whitespace folded."""
    text = nh3.clean(re.sub(r"</(p|li|blockquote)>|<br\s*/?>", " ", fragment or ""), tags=set())
    text = " ".join(html.unescape(text).split())
    return _WP_FOOTER_TEXT.sub("", text).strip()


def truncate(text: str, limit: int, ellipsis: str = "…") -> str:
    """Cut ``text`` at a word boundary to at most ``limit`` characters, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ellipsis) + 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    else:
        cut = cut[: limit - len(ellipsis)]
    return cut.rstrip(" ,;:.-–—") + ellipsis


def summarize(fragment: str, limit: int) -> tuple[str, str]:
    """(plain text, safe HTML) of a summary, the text cut to ``limit``.

    When the text had to be cut, the HTML is the cut text in one paragraph, so
    both forms say the same thing.
    """
    text = html_to_text(fragment)
    short = truncate(text, limit)
    if short != text:
        return short, f"<p>{html.escape(short, quote=False)}</p>"
    return text, sanitize_html(fragment)


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
