"""The editor's note: Markdown in, HTML and plaintext out. Pure.

Headings are not made (the edition's outline is the template's), and raw HTML
in the Markdown is escaped, not passed through (markdown-it's
"commonmark" preset with ``html`` off): a note is text with emphasis, links,
lists, quotes and code blocks, and nothing in it can break the email's markup. Links must be http(s)
or mailto (markdown-it refuses javascript: and data: itself).
"""

from __future__ import annotations

import re
from functools import lru_cache

from markdown_it import MarkdownIt
from markupsafe import Markup

#: a link, [text](url "title"), or an autolink <url>
_LINK = re.compile(r"\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|`)(\S(?:.*?\S)?)\1")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+", re.MULTILINE)
#: a line that starts a list item ("- ", "* ", "+ ", "1. ", "1) ")
_ITEM = re.compile(r"^\s{0,3}(?:[-*+]|\d{1,9}[.)])\s")
#: a line of a block quote ("> "), and the fence that opens or closes a code block
_QUOTE = re.compile(r"^\s{0,3}>\s?")
_FENCE = re.compile(r"^\s{0,3}(?:```|~~~)")


@lru_cache(maxsize=1)
def _md() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    # no headings: a "# Title" in a note would be a second h1 beside the masthead
    # and break the outline (h1 masthead, h2 sections, h3 stories)
    return md.disable(["heading", "lheading"])


def note_html(markdown: str) -> Markup:
    """The note as HTML (paragraphs, emphasis, links, lists); "" for an empty note."""
    if not markdown.strip():
        return Markup("")
    return Markup(_md().render(markdown).strip())


def note_text(markdown: str) -> str:
    """The note as plaintext: the Markdown as written, each paragraph and list
    item on one line (the text part wraps them), with each link's URL in
    brackets after its text so that every link of the HTML is in the text part."""
    text = _reflow(_HEADING.sub("", markdown))
    text = _LINK.sub(lambda m: f"{m.group(1)} ({m.group(2)})" if m.group(1) else m.group(2), text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\2", text)
    return text.strip()


def _reflow(text: str) -> str:
    """Each paragraph and list item on one line, as Markdown reads them: a line
    break inside a paragraph is a space (the text part is wrapped to 78 columns
    afterwards, and a kept break left a short line wherever the source's lines
    were longer than that). A hard break (two trailing spaces or a backslash)
    stays a break; a list item starts its own line. A block quote is one line
    that starts with "> "; a fenced code block keeps its lines as they are,
    without the fences."""
    out: list[str] = []
    joinable = quoting = fenced = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced, joinable = not fenced, False
            continue
        if fenced:
            out.append(line.rstrip())
            continue
        body = line.rstrip()
        hard = line.endswith("  ") or body.endswith("\\")
        if hard and body.endswith("\\"):
            body = body[:-1].rstrip()
        quote = _QUOTE.match(body)
        if quote:
            body = body[quote.end() :]
        if not body.strip():
            out.append("")
            joinable = quoting = False
            continue
        if joinable and not _ITEM.match(body) and (quoting or not quote):
            out[-1] += " " + body.strip()
        else:
            out.append(f"> {body.strip()}" if quote else body)
            quoting = bool(quote)
        joinable = not hard
    return "\n".join(out)
