"""Preflight: what would be wrong with a message if it went out now.

Pure: takes a finished message (subject, personalised HTML and text, the
headers) and returns findings. Errors stop ``newsletter check`` with a
non-zero exit; warnings are shown.

Errors: HTML over the size budget, an image without alt text, no unsubscribe
link (HTML or text) or header, unresolved template variables or
placeholders, an empty edition, a link or image that is not absolute
http(s) (``mailto:`` links are allowed).
Warnings: images without a width, subjects over 78 characters, stories moved
to "More stories", links of the HTML part missing from the text part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import lxml.html

SUBJECT_MAX = 78
#: Jinja syntax, our per-recipient placeholders, and MJML tags left over
_UNRESOLVED = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}|%%[A-Za-z_]+%%|</?mj-[a-z-]+")
_TEXT_URL = re.compile(r"https?://[^\s<>\"]+")
_NOT_SHOWN = ("style", "script", "head", "title")


@dataclass
class Finding:
    level: str  # error | warning
    code: str
    message: str
    variant: str = ""

    def __str__(self) -> str:
        where = f"[{self.variant}] " if self.variant else ""
        return f"{self.level}: {where}{self.message}"


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    #: per variant: size in bytes, stories, stories moved to More stories
    variants: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, level: str, code: str, message: str, variant: str = "") -> None:
        self.findings.append(Finding(level, code, message, variant))

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "errors": [asdict(f) for f in self.errors],
            "warnings": [asdict(f) for f in self.warnings],
            "variants": self.variants,
        }


def _few(items: Iterable[str], limit: int = 3) -> str:
    items = list(dict.fromkeys(items))
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _absolute_http(url: str) -> bool:
    parts = urlsplit(url.strip())
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def links_of(html: str) -> list[str]:
    """Every link target of an HTML document, in order (entities decoded)."""
    doc = lxml.html.document_fromstring(html)
    return [a.get("href", "") for a in doc.iter("a")]


def check_message(
    *,
    subject: str,
    html: str,
    text: str,
    headers: Mapping[str, str],
    unsubscribe_url: str,
    articles: int,
    max_bytes: int,
    variant: str = "",
    notes: Iterable[str] = (),
) -> list[Finding]:
    """Findings for one personalised message. ``notes``: the renderer's warnings."""
    report = CheckReport()

    def error(code: str, message: str) -> None:
        report.add("error", code, message, variant)

    def warn(code: str, message: str) -> None:
        report.add("warning", code, message, variant)

    if articles == 0:
        error("empty", "the edition has no stories")
    size = len(html.encode())
    if size > max_bytes:
        error("size", f"HTML is {size} bytes, over the {max_bytes}-byte budget (Gmail clips)")
    for note in notes:
        warn("overflow" if "More stories" in note else "render", note)

    doc = lxml.html.document_fromstring(html)
    images = list(doc.iter("img"))
    decorative = [
        i for i in images if i.get("role") == "presentation" or i.get("aria-hidden") == "true"
    ]
    no_alt = [i.get("src", "?") for i in images if i not in decorative and not i.get("alt", "")]
    if no_alt:
        error("alt", f"{len(no_alt)} image(s) without alt text: {_few(no_alt)}")
    no_width = [i.get("src", "?") for i in images if not (i.get("width") or "").isdigit()]
    if no_width:
        warn("image-size", f"{len(no_width)} image(s) without a width: {_few(no_width)}")
    bad_src = [
        i.get("src", "") or "(empty)" for i in images if not _absolute_http(i.get("src", ""))
    ]
    if bad_src:
        error("link", f"image source(s) not absolute http(s): {_few(bad_src)}")

    hrefs = [a.get("href", "") for a in doc.iter("a")]
    bad = [h or "(empty)" for h in hrefs if not (_absolute_http(h) or h.startswith("mailto:"))]
    if bad:
        error("link", f"link(s) not absolute http(s): {_few(bad)}")
    if unsubscribe_url not in hrefs:
        error("unsubscribe", "the HTML part has no unsubscribe link")
    if unsubscribe_url not in text:
        error("unsubscribe", "the text part has no unsubscribe URL")
    header = headers.get("List-Unsubscribe", "")
    if not re.search(r"<https://[^>]+>", header):
        error("unsubscribe", "no List-Unsubscribe header with an https URL")
    elif headers.get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click":
        error("unsubscribe", "no List-Unsubscribe-Post header (RFC 8058 one-click)")

    shown = [
        t
        for el in doc.iter()
        if isinstance(el.tag, str) and el.tag not in _NOT_SHOWN
        for t in (el.text, el.tail)
        if isinstance(t, str) and t
    ]
    shown += [str(v) for el in doc.iter() if isinstance(el.tag, str) for v in el.attrib.values()]
    leftovers = [m.group(0) for part in (subject, text, *shown) for m in _UNRESOLVED.finditer(part)]
    leftovers += [f"<{el.tag}>" for el in doc.iter() if str(el.tag).startswith("mj-")]
    if leftovers:
        error("unresolved", f"unresolved template variables: {_few(leftovers)}")

    if len(subject) > SUBJECT_MAX:
        warn("subject", f"the subject is {len(subject)} characters; over {SUBJECT_MAX} get cut")
    text_urls = set(_TEXT_URL.findall(text))
    missing = [h for h in hrefs if _absolute_http(h) and h not in text_urls]
    if missing:
        warn("text-links", f"link(s) of the HTML part missing from the text part: {_few(missing)}")
    return report.findings
