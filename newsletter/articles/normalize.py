"""Turning what a source says into one clean Article.

Every source reads its format into an :class:`Item` and hands it to an
:class:`ItemNormalizer`, so the rules below hold for RSS, the WordPress REST
API and JSON alike:

- the id is the source's guid, else the canonical URL;
- the URL loses tracking parameters and its fragment; only http(s) is kept;
- title, author, tag names and alt text are plain text on one line (they reach
  MJML attributes), with HTML entities unescaped and Unicode in NFC form;
- the summary goes through an allowlist sanitizer (nh3) and is cut at a word
  boundary, with an ellipsis, in its text and its HTML form alike;
- times are timezone-aware UTC;
- tags are (slug, display name); the slug case-folds, so "Kazakhstan",
  "kazakhstan" and "KAZAKHSTAN" are one tag.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import nh3

from newsletter.models import Article, Tag, slugify

#: query parameters that only track; stripped from article URLs
TRACKING_PARAMS = re.compile(
    r"^(utm_\w+|fbclid|gclid|gbraid|wbraid|dclid|msclkid|mc_cid|mc_eid|_hsenc|_hsmi|yclid"
    r"|igshid|ref_src|_ga|_gl|mkt_tok|oly_anon_id|oly_enc_id|vero_id|wickedid|rb_clickid"
    r"|s_cid|spm|__s)$",
    re.IGNORECASE,
)

ALLOWED_TAGS = {"a", "b", "strong", "i", "em", "p", "br", "ul", "ol", "li", "blockquote"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
ELLIPSIS = "…"

#: column sizes of the articles table; longer values are cut or refused
MAX_UID = 1000
MAX_URL = 2000
MAX_TITLE = 300
MAX_AUTHOR = 200
MAX_TAG = 100
MAX_ALT = 500

#: WordPress's "The post X appeared first on Y." footer
_WP_FOOTER = re.compile(r"<p>\s*The post .*? appeared first on .*?</p>\s*$", re.S | re.I)
#: WordPress's excerpt "more" marker: "… the end of the excerpt [&hellip;]"
_MORE_MARKER = re.compile(r"\s*\[(?:…|&hellip;|&#8230;|\.\.\.)\]\s*(</p>)?\s*$")
#: C0 controls (but tab, newline, return) and lone surrogates: no database stores them
_JUNK = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_BLOCK_END = re.compile(r"</(?:p|li|blockquote|ul|ol)>|<br\s*/?>", re.I)
_IMG = re.compile(r"<img\b[^>]*>", re.I)
_ATTR = re.compile(r"""([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
#: RSS <author> is "email (Name)"
_EMAIL_NAME = re.compile(r"^\s*\S+@\S+\s+\((.+)\)\s*$")


# --------------------------------------------------------------------------- text


def scrub(text: str) -> str:
    """NFC, without control characters or lone surrogates."""
    if not text:
        return ""
    return unicodedata.normalize("NFC", _JUNK.sub("", text))


def one_line(text: str, limit: int | None = None) -> str:
    """Plain text on one line: entities unescaped, tags dropped, whitespace folded."""
    if not text:
        return ""
    # twice: WordPress titles often arrive escaped once more than the XML needs
    text = scrub(html.unescape(html.unescape(text)))
    if "<" in text:
        text = html.unescape(nh3.clean(text, tags=set()))
    text = " ".join(text.split())
    return truncate(text, limit) if limit else text


def author_name(author: str) -> str:
    """The author's name on one line; "desk@site.example (Anna Ivanova)" gives the name."""
    m = _EMAIL_NAME.match(author or "")
    return one_line(m.group(1) if m else author, MAX_AUTHOR)


def clean_title(title: str) -> str:
    """Unescaped, tag-free, on one line: titles reach MJML attributes, so no newlines."""
    return one_line(title, MAX_TITLE)


def sanitize_html(fragment: str) -> str:
    """Allowlist sanitizer: no script, style, iframes, handlers or javascript: URLs."""
    fragment = _WP_FOOTER.sub("", scrub(fragment or ""))
    cleaned = nh3.clean(
        fragment,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    ).strip()
    return _MORE_MARKER.sub(lambda m: ELLIPSIS + (m.group(1) or ""), cleaned)


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment, whitespace folded."""
    if not fragment:
        return ""
    text = nh3.clean(_BLOCK_END.sub(" ", fragment), tags=set())
    return " ".join(html.unescape(text).split())


#: a tag of nh3's output: attribute values are always double-quoted and may hold ">"
_SAFE_TAG = re.compile(r'<(?:[^>"]|"[^"]*")*>')


def _text_of_safe(safe_html: str) -> str:
    """html_to_text for HTML that nh3 produced (well-formed), without a second nh3 pass."""
    if not safe_html:
        return ""
    text = _SAFE_TAG.sub("", _BLOCK_END.sub(" ", safe_html))
    return " ".join(html.unescape(text).split())


def truncate(text: str, limit: int, ellipsis: str = ELLIPSIS) -> str:
    """Cut ``text`` at a word boundary to at most ``limit`` characters, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ellipsis) + 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    else:  # one very long word: cut inside it rather than lose most of the text
        cut = cut[: limit - len(ellipsis)]
    return cut.rstrip(" ,;:.-–—") + ellipsis


class _HtmlCutter(HTMLParser):
    """Keeps the first ``keep`` non-space text characters of sanitized HTML, tags intact."""

    VOID = {"br"}
    TRAILING = " \t\n\r\f\v,;:.-–—"

    def __init__(self, keep: int, ellipsis: str):
        super().__init__(convert_charrefs=True)
        self.left = keep
        self.ellipsis = ellipsis
        #: (is_text, value): text is kept raw and escaped at the end
        self.out: list[tuple[bool, str]] = []
        self.open: list[str] = []
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        text = "".join(
            f' {k}="{html.escape(v or "", quote=True)}"' if v is not None else f" {k}"
            for k, v in attrs
        )
        self.out.append((False, f"<{tag}{text}>"))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID and self.open and self.open[-1] == tag:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.done or tag not in self.open:
            return
        while self.open:
            top = self.open.pop()
            self.out.append((False, f"</{top}>"))
            if top == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.done:
            return
        solid = sum(1 for c in data if not c.isspace())
        if solid <= self.left:
            self.out.append((True, data))
            self.left -= solid
            return
        cut, seen = len(data), 0
        for pos, c in enumerate(data):
            if not c.isspace():
                if seen == self.left:
                    cut = pos
                    break
                seen += 1
        self.out.append((True, data[:cut]))
        # the ellipsis follows the last word kept, inside its element
        at = len(self.out)
        for j in range(len(self.out) - 1, -1, -1):
            is_text, value = self.out[j]
            if is_text:
                self.out[j] = (True, value.rstrip(self.TRAILING))
                if self.out[j][1]:
                    at = j + 1
                    break
        self.out.insert(at, (True, self.ellipsis))
        self.done = True

    def result(self) -> str:
        if not self.done:
            self.out.append((True, self.ellipsis))
        parts = [html.escape(v, quote=False) if is_text else v for is_text, v in self.out]
        parts.extend(f"</{t}>" for t in reversed(self.open))
        return "".join(parts)


def truncate_html(safe_html: str, text_limit: int, ellipsis: str = ELLIPSIS) -> tuple[str, str]:
    """(text, html) of sanitized HTML cut to ``text_limit`` characters of text.

    The cut is made on the plain text (at a word boundary) and the HTML keeps
    exactly the same words, with its links and emphasis, open tags closed.
    """
    text = _text_of_safe(safe_html)
    if len(text) <= text_limit:
        return text, safe_html
    short = truncate(text, text_limit, ellipsis)
    keep = sum(1 for c in short[: -len(ellipsis)] if not c.isspace())
    cutter = _HtmlCutter(keep, ellipsis)
    cutter.feed(safe_html)
    cutter.close()
    return short, cutter.result()


def summarize(fragment: str, limit: int) -> tuple[str, str]:
    """(plain text, safe HTML) of a summary, both cut to ``limit`` characters of text."""
    return truncate_html(sanitize_html(fragment), limit)


def first_image(fragment: str) -> tuple[str, str]:
    """(src, alt) of the first real image in an HTML fragment (not emoji or pixels)."""
    for tag in _IMG.findall(fragment or ""):
        attrs = {m[0].lower(): html.unescape(m[1] or m[2] or m[3]) for m in _ATTR.findall(tag)}
        src = attrs.get("src", "")
        if not src or "/emoji/" in src or "wp-smiley" in attrs.get("class", ""):
            continue
        if attrs.get("width") in ("0", "1") or attrs.get("height") in ("0", "1"):
            continue
        return src, attrs.get("alt", "")
    return "", ""


# --------------------------------------------------------------------------- URLs and times


_WEB_URL = re.compile(r"^(https?)://([^/?#\s]+)([^?#]*)(?:\?([^#]*))?(?:#.*)?$", re.I | re.S)


def clean_url(url: str, extra_params: Iterable[str] = ()) -> str:
    """The URL without tracking parameters or fragment; scheme and host lower-cased."""
    url = scrub(url).strip()
    m = _WEB_URL.match(url)
    if m is None:  # not http(s): leave it whole, is_web_url refuses it
        parts = urlsplit(url)
        return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, ""))
    scheme, netloc, path, query = m.group(1).lower(), m.group(2).lower(), m.group(3), m.group(4)
    if scheme == "http" and netloc.endswith(":80"):
        netloc = netloc[:-3]
    elif scheme == "https" and netloc.endswith(":443"):
        netloc = netloc[:-4]
    if query:
        extra = {p.lower() for p in extra_params}
        kept = [
            (k, v)
            for k, v in parse_qsl(query, keep_blank_values=True)
            if not TRACKING_PARAMS.match(k) and k.lower() not in extra
        ]
        query = urlencode(kept)
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def is_web_url(url: str) -> bool:
    return bool(url) and _WEB_URL.match(url) is not None


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_time(value: str) -> datetime | None:
    """An RFC 822 (RSS) or ISO 8601 (Atom, JSON) time, in UTC; None when unreadable.

    A time without an offset is taken as UTC.
    """
    value = (value or "").strip()
    if not value:
        return None
    try:
        return to_utc(parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError):
        pass
    try:
        return to_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        pass
    # the many odd formats real feeds use: feedparser knows them all
    from feedparser.datetimes import _parse_date

    parsed = _parse_date(value)
    if parsed is None:
        return None
    import calendar

    return datetime.fromtimestamp(calendar.timegm(parsed), UTC)


# --------------------------------------------------------------------------- tags


@functools.lru_cache(maxsize=4096)
def tag_for(name: str) -> Tag | None:
    """The tag a category name stands for; None for names with no letters or digits."""
    clean = one_line(name, MAX_TAG)
    slug = slugify(clean)[:MAX_TAG]
    return Tag(slug=slug, name=clean) if slug else None


def make_tags(names: Iterable[str]) -> list[Tag]:
    """Distinct tags by slug, sorted by slug; the first spelling of a slug names it."""
    by_slug: dict[str, Tag] = {}
    for name in names:
        tag = tag_for(name) if name else None
        if tag is not None and tag.slug not in by_slug:
            by_slug[tag.slug] = tag
    return [by_slug[s] for s in sorted(by_slug)]


# --------------------------------------------------------------------------- items


@dataclass
class Item:
    """What a source read for one story, before cleaning."""

    #: 1-based position in the source's answer, for messages
    position: int
    uid: str = ""
    link: str = ""
    title: str = ""
    #: HTML (or text) of the summary; ``content`` is used when it is empty
    summary: str = ""
    content: str = ""
    author: str = ""
    image_url: str = ""
    image_alt: str = ""
    published: datetime | None = None
    updated: datetime | None = None
    #: display names of categories and tags
    tags: list[str] = field(default_factory=list)
    pinned: bool = False


class ItemNormalizer:
    """Turns one source's items into Articles; bad or repeated items become problems.

    Problems are one line each, naming the source and the item.
    """

    def __init__(
        self,
        source: str,
        *,
        summary_length: int = 400,
        pinned_tags: Iterable[str] = ("featured", "pinned", "sticky"),
        strip_params: Iterable[str] = (),
        base_url: str = "",
    ):
        self.source = source
        self.summary_length = summary_length
        self.pinned_tags = {slugify(t) for t in pinned_tags}
        self.strip_params = tuple(strip_params)
        self.base_url = base_url if is_web_url(base_url) else ""
        self.articles: list[Article] = []
        self.problems: list[str] = []
        self._uids: dict[str, int] = {}
        self._urls: dict[str, int] = {}

    def describe(self, item: Item, title: str = "") -> str:
        ident = title or one_line(item.title) or item.uid or item.link
        ident = f" ({truncate(ident, 60)!r})" if ident else ""
        return f"{self.source}: item {item.position}{ident}"

    def problem(self, item: Item, message: str, title: str = "") -> None:
        self.problems.append(f"{self.describe(item, title)}: {message}")

    def add(self, item: Item) -> Article | None:
        title = clean_title(item.title)
        link = scrub(item.link).strip()
        if link and self.base_url:
            link = urljoin(self.base_url, link)
        missing = [
            name
            for name, value in (("link", link), ("title", title), ("date", item.published))
            if not value
        ]
        if missing:
            self.problem(item, f"skipped, no {' or '.join(missing)}", title)
            return None
        url = clean_url(link, self.strip_params)
        if not is_web_url(url):
            self.problem(
                item, f"skipped, link is not an http(s) URL: {truncate(link, 80)!r}", title
            )
            return None
        if len(url) > MAX_URL:
            self.problem(item, f"skipped, link longer than {MAX_URL} characters", title)
            return None
        uid = scrub(item.uid).strip() or url
        if len(uid) > MAX_UID:
            uid = "sha256:" + hashlib.sha256(uid.encode()).hexdigest()
        if uid in self._uids:
            self.problem(
                item, f"skipped, duplicate guid {uid} (same as item {self._uids[uid]})", title
            )
            return None
        if url in self._urls:
            self.problem(
                item, f"skipped, duplicate link {url} (same as item {self._urls[url]})", title
            )
            return None
        self._uids[uid] = self._urls[url] = item.position

        text, safe_html = summarize(item.summary or item.content, self.summary_length)
        image_url, image_alt = item.image_url, item.image_alt
        if not image_url:
            image_url, image_alt = first_image(item.content or item.summary)
        image_url = scrub(image_url).strip()
        if image_url and self.base_url:
            image_url = urljoin(self.base_url, image_url)
        if not is_web_url(image_url) or len(image_url) > MAX_URL:
            image_url, image_alt = "", ""
        tags = make_tags(item.tags)
        published = to_utc(item.published)  # type: ignore[arg-type]
        updated = to_utc(item.updated) if item.updated else None
        article = Article(
            uid=uid,
            url=url,
            title=title,
            summary_text=text,
            summary_html=safe_html,
            author=author_name(item.author),
            image_url=image_url,
            image_alt=(one_line(image_alt, MAX_ALT) or title) if image_url else "",
            published_at=published,
            updated_at=updated if updated and updated != published else None,
            tags=tags,
            pinned=item.pinned or any(t.slug in self.pinned_tags for t in tags),
            source=self.source,
        )
        self.articles.append(article)
        return article
