r"""Preflight: what would be wrong with a message if it went out now.

Pure: takes a finished message (subject, personalised HTML and text, the
headers) and returns findings, each with a code (``check --json``). Errors stop
``newsletter check`` with a non-zero exit; warnings are shown.

Errors:
  ``size`` HTML over the size budget; ``alt`` an image without alt text;
  ``unsubscribe`` no unsubscribe link (HTML or text) or header;
  ``unsubscribe-wording`` no *visible* (not hidden by inline style) link
  (HTML) or line (text) that says unsubscribe in the site's language;
  ``unresolved`` template variables or
  placeholders left over; ``escape`` MRML's Rust escapes (``\n``, ``\u{…}``,
  ``\"``) in an attribute or text: a value that missed ``|mjattr`` (not a
  backslash of the edition's own text, ``content``); ``empty``
  an empty edition; ``link`` a link or image that is not absolute http(s)
  (``mailto:`` links are allowed).
Warnings:
  ``image-size`` an image without width and height; ``alt-style`` an image
  whose alt text is unstyled (images off, a reader sees nothing readable);
  ``headings`` an outline other than one h1 first and no skipped level;
  ``tables`` a presentation table with header cells, or a data table without
  caption or scoped header cells; ``link-text`` one visible link text for
  several targets; ``text-width`` a text line over 78 characters that is not a
  URL alone; ``subject`` over 78 characters; ``overflow`` stories moved to
  "More stories"; ``text-links`` links of the HTML part missing from the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import lxml.html

from newsletter import i18n
from newsletter.i18n import Lang

SUBJECT_MAX = 78
TEXT_WIDTH = 78
#: MRML writes attribute values with Rust debug escaping (docs/templates.md)
_RUST_ESCAPE = re.compile(r'\\(?:u\{[0-9a-fA-F]{1,6}\}|[nrt"\'\\])')
#: what an unsubscribe link says, by the site's primary language subtag;
#: English is accepted in every language. ``[render] unsubscribe_words`` adds more.
UNSUBSCRIBE_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("unsubscribe",),
    "ru": ("отписаться", "отписка", "отменить подписку", "отказаться от рассылки"),
    "kk": ("жазылымнан бас тарту", "жазылудан бас тарту", "отписаться"),
    "ky": ("жазылуудан баш тартуу", "отписаться"),
    "uz": ("obunani bekor qilish", "obunadan chiqish", "обунани бекор қилиш"),
    "tg": ("бекор кардани обуна", "отписаться"),
    "tk": ("abunalykdan çykmak",),
    "de": ("abmelden", "abbestellen"),
    "fr": ("désabonner", "désinscrire", "désinscription"),
    "es": ("darse de baja", "cancelar suscripción"),
    "tr": ("abonelikten çık",),
}
#: Jinja syntax, our per-recipient placeholders, and MJML tags left over
_UNRESOLVED = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}|%%[A-Za-z_]+%%|</?mj-[a-z-]+")
_TEXT_URL = re.compile(r"https?://[^\s<>\"]+")
_NOT_SHOWN = ("style", "script", "head", "title")
_URL_ALONE = re.compile(r"^\s*(https?://\S+|<https?://\S+>)$")
#: alt text a reader can see with images off: a font size and a colour of its own
_ALT_STYLE = re.compile(r"(?=.*\bfont-size\s*:)(?=.*(?:^|[;\s])color\s*:)", re.S)


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
    variants: dict[str, dict[str, int | str]] = field(default_factory=dict)

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


def _few(items: Iterable[str], limit: int = 3, _: Lang | None = None) -> str:
    items = list(dict.fromkeys(items))
    shown = ", ".join(items[:limit])
    if len(items) <= limit:
        return shown
    rest = len(items) - limit
    _ = _ or i18n.lang("en")
    return _.ngettext("{names} and {count} more", "{names} and {count} more", rest).format(
        names=shown, count=rest
    )


def _absolute_http(url: str) -> bool:
    parts = urlsplit(url.strip())
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def links_of(html: str) -> list[str]:
    """Every link target of an HTML document, in order (entities decoded)."""
    doc = lxml.html.document_fromstring(html)
    return [a.get("href", "") for a in doc.iter("a")]


def unsubscribe_words(language: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The words that make a link an unsubscribe link for ``language`` (``ru-RU``…)."""
    primary = language.split("-")[0].split("_")[0].lower()
    words = (*UNSUBSCRIBE_WORDS.get(primary, ()), *UNSUBSCRIBE_WORDS["en"], *extra)
    return tuple(dict.fromkeys(w.casefold() for w in words if w.strip()))


def _says(text: str, words: Iterable[str]) -> bool:
    """``text`` says one of ``words`` (a URL that merely contains one does not count)."""
    folded = " ".join(_TEXT_URL.sub(" ", text).casefold().split())
    return any(w in folded for w in words)


def _visible_text(el: lxml.html.HtmlElement) -> str:
    """What a link shows: its text, and the alt text of images inside it."""
    return " ".join([el.text_content(), *(i.get("alt", "") for i in el.iter("img"))]).strip()


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
    language: str = "en",
    unsubscribe_wording: Iterable[str] = (),
    content: Iterable[str] = (),
) -> list[Finding]:
    """Findings for one personalised message, worded in ``language`` (the
    edition's). ``notes``: the renderer's warnings; ``language`` and
    ``unsubscribe_wording`` (more words) decide what a visible unsubscribe link
    may say; ``content``: the edition's own text (titles, summaries, authors,
    alt text, URLs, the note), whose backslashes are no MRML escapes."""
    report = CheckReport()
    _ = i18n.lang(language)

    def few(items: Iterable[str], limit: int = 3) -> str:
        return _few(items, limit, _)

    def error(code: str, message: str) -> None:
        report.add("error", code, message, variant)

    def warn(code: str, message: str) -> None:
        report.add("warning", code, message, variant)

    if articles == 0:
        error("empty", _("the edition has no stories"))
    size = len(html.encode())
    if size > max_bytes:
        error(
            "size",
            _(
                "HTML is {size} bytes, over the {budget}-byte budget (Gmail clips)",
                size=size,
                budget=max_bytes,
            ),
        )
    for note in notes:
        warn("overflow" if _("More stories") in note else "render", note)

    doc = lxml.html.document_fromstring(html)
    elements = [el for el in doc.iter() if isinstance(el.tag, str)]
    _check_images(doc, error, warn, _)

    hrefs = [a.get("href", "") for a in doc.iter("a")]
    bad = [h or _("(empty)") for h in hrefs if not (_absolute_http(h) or h.startswith("mailto:"))]
    if bad:
        error("link", _("link(s) not absolute http(s): {items}", items=few(bad)))
    if unsubscribe_url not in hrefs:
        error("unsubscribe", _("the HTML part has no unsubscribe link"))
    if unsubscribe_url not in text:
        error("unsubscribe", _("the text part has no unsubscribe URL"))
    header = headers.get("List-Unsubscribe", "")
    if not re.search(r"<https://[^>]+>", header):
        error("unsubscribe", _("no List-Unsubscribe header with an https URL"))
    elif headers.get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click":
        error("unsubscribe", _("no List-Unsubscribe-Post header (RFC 8058 one-click)"))
    _check_unsubscribe_wording(
        doc, text, unsubscribe_url, unsubscribe_words(language, unsubscribe_wording), error, _
    )

    shown = [
        t
        for el in elements
        if el.tag not in _NOT_SHOWN
        for t in (el.text, el.tail)
        if isinstance(t, str) and t
    ]
    attrs = [str(v) for el in elements for v in el.attrib.values()]
    leftovers = [
        m.group(0) for part in (subject, text, *shown, *attrs) for m in _UNRESOLVED.finditer(part)
    ]
    leftovers += [f"<{el.tag}>" for el in elements if str(el.tag).startswith("mj-")]
    if leftovers:
        error("unresolved", _("unresolved template variables: {items}", items=few(leftovers)))
    # a story may say C:\temp itself: a backslash inside a word of the
    # edition's own text is the newsroom's, not MRML's
    own_words = {w for c in content if "\\" in c for w in c.split() if "\\" in w}
    escapes = [
        _(
            "{escape} in {context}",
            escape=m.group(0),
            context=repr(part[max(0, m.start() - 20) : m.end() + 10]),
        )
        for part in (*shown, *attrs)
        for m in _RUST_ESCAPE.finditer(part)
        if not _in_content(part, m.start(), m.end(), own_words)
    ]
    if escapes:
        error(
            "escape",
            _(
                "MRML escape(s) left in the HTML (a value without |mjattr): {items}",
                items=few(escapes, 2),
            ),
        )

    _check_headings(elements, warn, _)
    _check_tables(doc, warn, _)
    _check_link_texts(doc, warn, _)

    if len(subject) > SUBJECT_MAX:
        warn(
            "subject",
            _(
                "the subject is {length} characters; over {limit} get cut",
                length=len(subject),
                limit=SUBJECT_MAX,
            ),
        )
    long_lines = [
        _("line {number}: {start}…", number=i, start=line[:40])
        for i, line in enumerate(text.splitlines(), 1)
        if len(line) > TEXT_WIDTH and not _URL_ALONE.match(line)
    ]
    if long_lines:
        warn(
            "text-width",
            _(
                "{count} text line(s) over {width} characters that are not a URL alone: {items}",
                count=len(long_lines),
                width=TEXT_WIDTH,
                items=few(long_lines, 2),
            ),
        )
    text_urls = set(_TEXT_URL.findall(text))
    missing = [h for h in hrefs if _absolute_http(h) and h not in text_urls]
    if missing:
        warn(
            "text-links",
            _("link(s) of the HTML part missing from the text part: {items}", items=few(missing)),
        )
    return report.findings


Report = Callable[[str, str], None]


def _in_content(part: str, start: int, end: int, words: Iterable[str]) -> bool:
    """The escape at ``part[start:end]``, with the rest of its word before it, is
    found in one of ``words`` (the edition's own words that hold a backslash; a
    teaser or the preheader may have cut the word after it)."""
    before = part[:start]
    left = before.rsplit(None, 1)[-1] if before and not before[-1].isspace() else ""
    left += part[start:end]
    return any(left in word for word in words)


def _check_images(doc: lxml.html.HtmlElement, error: Report, warn: Report, _: Lang) -> None:
    images = list(doc.iter("img"))
    decorative = [
        i for i in images if i.get("role") == "presentation" or i.get("aria-hidden") == "true"
    ]
    no_alt = [i.get("src", "?") for i in images if i not in decorative and not i.get("alt", "")]
    if no_alt:
        error(
            "alt",
            _(
                "{count} image(s) without alt text: {items}",
                count=len(no_alt),
                items=_few(no_alt, 3, _),
            ),
        )
    unsized = [
        i.get("src", "?")
        for i in images
        if not ((i.get("width") or "").isdigit() and (i.get("height") or "").isdigit())
    ]
    if unsized:
        warn(
            "image-size",
            _(
                "{count} image(s) without a width and height (Outlook sizes by them; "
                "with images off they keep the box the alt text shows in): {items}",
                count=len(unsized),
                items=_few(unsized, 3, _),
            ),
        )
    unstyled = [
        i.get("src", "?")
        for i in images
        if i.get("alt") and not _ALT_STYLE.search(i.get("style", ""))
    ]
    if unstyled:
        warn(
            "alt-style",
            _(
                "{count} image(s) whose alt text has no font-size and color of its own "
                "(images off, the words are unreadable or hidden): {items}",
                count=len(unstyled),
                items=_few(unstyled, 3, _),
            ),
        )
    bad_src = [
        i.get("src", "") or _("(empty)") for i in images if not _absolute_http(i.get("src", ""))
    ]
    if bad_src:
        error(
            "link",
            _("image source(s) not absolute http(s): {items}", items=_few(bad_src, 3, _)),
        )


def _check_unsubscribe_wording(
    doc: lxml.html.HtmlElement,
    text: str,
    url: str,
    words: tuple[str, ...],
    error: Report,
    _: Lang,
) -> None:
    links = [a for a in doc.iter("a") if a.get("href", "") == url]
    shown = [a for a in links if not _hidden(a)]
    if links and not any(_says(_visible_text(a), words) for a in shown):
        said = _few((repr(_visible_text(a)) for a in shown), 3, _) or _("(hidden)")
        error(
            "unsubscribe-wording",
            _(
                "no visible link in the HTML part says {word}: the unsubscribe URL "
                "is linked as {said}",
                word=repr(words[0]),
                said=said,
            ),
        )
    lines = text.splitlines()
    at = [i for i, line in enumerate(lines) if url in line]
    if at and not any(_says(lines[i], words) or (i > 0 and _says(lines[i - 1], words)) for i in at):
        error(
            "unsubscribe-wording",
            _("no line of the text part says {word} at the unsubscribe URL", word=repr(words[0])),
        )


#: inline declarations that hide an element and all inside it (mso-hide: in
#: Outlook; a zero height hides what overflows it)
_HIDES_ALL = re.compile(
    r"(?:^|;)\s*(?:display\s*:\s*none|mso-hide\s*:\s*all"
    r"|opacity\s*:\s*0+(?:\.0*)?\s*(?:!important\s*)?(?:;|$))",
    re.I,
)
_ZERO_HEIGHT = re.compile(
    r"(?:^|;)\s*(?:max-)?height\s*:\s*0+(?:\.0*)?(?:px|pt|em|rem|%)?\s*(?:!important\s*)?(?:;|$)",
    re.I,
)
_OVERFLOW_HIDDEN = re.compile(r"(?:^|;)\s*overflow\s*:\s*hidden", re.I)
#: inherited properties: the nearest declaration decides
_FONT_SIZE = re.compile(r"(?:^|;)\s*font-size\s*:\s*([^;]*)", re.I)
_VISIBILITY = re.compile(r"(?:^|;)\s*visibility\s*:\s*([^;]*)", re.I)
_ZERO = re.compile(r"0*(?:\.0*)?(?:px|pt|em|rem|%)?(?:\s*!important)?", re.I)


def _hidden(el: lxml.html.HtmlElement) -> bool:
    """``el`` cannot be seen, by the inline styles of it and the elements around it
    (after inlining, the template's CSS is inline) or ``hidden``: display none,
    zero opacity, zero height with overflow hidden, mso-hide, or, nearest
    declaration first, a zero font size or hidden visibility (MJML's columns
    set font-size: 0px and their content sets it back). Colours are not
    compared."""
    size = visibility = None
    node: lxml.html.HtmlElement | None = el
    while node is not None:
        style = node.get("style", "")
        if node.get("hidden") is not None or _HIDES_ALL.search(style):
            return True
        if _ZERO_HEIGHT.search(style) and _OVERFLOW_HIDDEN.search(style):
            return True
        if size is None and (m := _FONT_SIZE.search(style)):
            size = m.group(1).strip()
        if visibility is None and (m := _VISIBILITY.search(style)):
            visibility = m.group(1).strip().lower()
        node = node.getparent()
    return bool(
        (size is not None and _ZERO.fullmatch(size))
        or (visibility or "").startswith(("hidden", "collapse"))
    )


def _check_headings(elements: list, warn: Report, _: Lang) -> None:
    """One h1 (the masthead) first; sections h2; stories (a heading that is a
    link to the story) h3; no level skipped on the way down."""
    headings = [el for el in elements if re.fullmatch(r"h[1-6]", el.tag)]
    levels = [int(el.tag[1]) for el in headings]
    problems = []
    if levels.count(1) != 1:
        problems.append(_("{count} h1 (one masthead expected)", count=levels.count(1)))
    elif levels[0] != 1:
        problems.append(_("the first heading is h{level}, not the h1 masthead", level=levels[0]))
    below = [el for el in headings if el.tag != "h1"]
    stories = {el.tag for el in below if el.find(".//a") is not None} - {"h3"}
    sections = {el.tag for el in below if el.find(".//a") is None} - {"h2"}
    if stories:
        problems.append(_("story title(s) at {tags}, not h3", tags=", ".join(sorted(stories))))
    if sections:
        problems.append(_("section heading(s) at {tags}, not h2", tags=", ".join(sorted(sections))))
    skips = {f"h{a} to h{b}" for a, b in zip(levels, levels[1:], strict=False) if b > a + 1}
    if skips:
        problems.append(_("skipped level(s): {levels}", levels=", ".join(sorted(skips))))
    if problems:
        warn(
            "headings",
            _(
                "heading outline (h1 masthead, h2 sections, h3 stories): {problems}",
                problems="; ".join(problems),
            ),
        )


def _check_tables(doc: lxml.html.HtmlElement, warn: Report, _: Lang) -> None:
    problems = []
    for table in doc.iter("table"):
        own = list(_own(table))
        header_cells = [el for el in own if el.tag in ("th", "caption", "thead")]
        header_cells += [el for el in own if el.get("scope") or el.get("headers")]
        presentation = table.get("role") in ("presentation", "none")
        name = table.get("class") or "table"
        if presentation and header_cells:
            problems.append(
                _("{table}: role=presentation with header cells (th, caption, scope)", table=name)
            )
        elif not presentation:
            ths = [el for el in own if el.tag == "th"]
            if not ths:
                problems.append(_("{table}: a layout table without role=presentation", table=name))
            elif table.find(".//caption") is None or any(not th.get("scope") for th in ths):
                problems.append(
                    _("{table}: a data table needs a caption and th with scope", table=name)
                )
    if problems:
        warn("tables", _("tables: {problems}", problems="; ".join(dict.fromkeys(problems))))


def _own(table: lxml.html.HtmlElement) -> Iterable[lxml.html.HtmlElement]:
    """The elements of ``table`` that are not inside a table nested in it."""
    for child in table:
        if not isinstance(child.tag, str):
            continue
        yield child
        if child.tag != "table":
            yield from _own(child)


def _check_link_texts(doc: lxml.html.HtmlElement, warn: Report, _: Lang) -> None:
    targets: dict[str, set[str]] = {}
    for a in doc.iter("a"):
        shown = " ".join(_visible_text(a).split())
        if shown:
            targets.setdefault(shown.casefold(), set()).add(a.get("href", ""))
    ambiguous = [t for t, hrefs in targets.items() if len(hrefs) > 1]
    if ambiguous:
        warn(
            "link-text",
            _(
                "link text(s) used for different targets (ambiguous without aria-label): {items}",
                items=_few((repr(t) for t in ambiguous), 3, _),
            ),
        )
