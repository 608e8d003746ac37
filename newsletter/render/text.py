"""Plaintext helpers: 78-column wrapping that never breaks a URL, aligned rates.

Decision: a URL is never broken (a broken URL is a dead link in most mail
apps), so a URL longer than the line stands alone on its own line, indented
like its paragraph. Every other line is at most :data:`WIDTH` characters.
The per-recipient URL placeholders (``%%unsubscribe_url%%``…) are laid out as
the long URLs they become, so "Unsubscribe: <URL>" comes out as two lines.
"""

from __future__ import annotations

import re

from newsletter import i18n
from newsletter.models import RatesHeader
from newsletter.rates.format import RateRow, legend, rate_rows

WIDTH = 78

#: a list item's marker ("12. ", "- "): continuation lines hang under its text
_MARKER = re.compile(r"^(\s*)(\d+\.|[-*•])\s+")
_URL = re.compile(r"^(https?://\S+|%%[a-z_]+_url%%)$")
#: filled per recipient with a signed URL: as wide as the size budget allows for one
_URL_PLACEHOLDERS = {"%%unsubscribe_url%%": 200, "%%preferences_url%%": 200}


def _width(text: str) -> int:
    """Characters, a URL placeholder counted as the URL it becomes."""
    if "%%" not in text:
        return len(text)
    return len(text) + sum((w - len(p)) * text.count(p) for p, w in _URL_PLACEHOLDERS.items())


def _wrap_line(line: str, width: int) -> list[str]:
    """Greedy word wrap (textwrap is 10x slower and this is all we need)."""
    body = line.lstrip()
    indent = line[: len(line) - len(body)]
    marker = _MARKER.match(line)
    hang = " " * marker.end() if marker else indent
    out: list[str] = []
    current = indent
    room = width - len(indent)
    first = True
    for word in body.split():
        if first:
            current += word
            room -= _width(word)
            first = False
        elif _width(word) < room:
            current += " " + word
            room -= _width(word) + 1
        else:
            out.append(current)
            current = hang + word
            room = width - len(hang) - _width(word)
    out.append(current)
    return out


def wrap(text: str, width: int = WIDTH) -> str:
    """Every line wrapped to ``width`` with its indent kept (list items hang);
    trailing spaces and runs of more than two blank lines are removed."""
    out: list[str] = []
    blank = 0
    for line in text.splitlines():
        line = line.rstrip()
        if not line:
            blank += 1
            if blank <= 2:
                out.append("")
            continue
        blank = 0
        out.extend([line] if _width(line) <= width else _wrap_line(line, width))
    return "\n".join(out).strip("\n") + "\n"


def is_long_url_line(line: str) -> bool:
    """A line allowed over :data:`WIDTH`: one URL and its indent, nothing else."""
    return bool(_URL.match(line.strip()))


def rates_table(rows: list[RateRow]) -> str:
    """The rates header as aligned columns: label with its source's footnote
    number, figure (right-aligned), arrow and change, "as of"."""
    if not rows:
        return ""
    cells = [
        (
            f"{r.label}[{r.note}]" if r.note else r.label,
            r.figure,
            f"{r.arrow} {r.change}" if r.change else "",
            r.as_of,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(3)]
    lines = [
        f"{p:<{widths[0]}}  {t:>{widths[1]}}  {c:<{widths[2]}}  {a}".rstrip()
        for p, t, c, a in cells
    ]
    return "\n".join(lines)


def rates_sources(rates: RatesHeader, locale: str = "en") -> str:
    """'Rates: NBK' or, with several sources, 'Rates: [1] NBK, [2] NBT' (the
    numbers match the footnotes in :func:`rates_table`), in ``locale``."""
    _ = i18n.lang(locale)
    sources = [_(s) for s in rates.sources]
    if len(sources) == 1:
        return _("Rates: {sources}", sources=sources[0])
    return _("Rates: {sources}", sources=", ".join(f"[{i}] {s}" for i, s in enumerate(sources, 1)))


def rates_text(rates: RatesHeader, convention: str = "ticker", locale: str = "en") -> str:
    """The rates block of the text edition and of `newsletter rates`: the table,
    what the arrows mean, and the sources."""
    if not rates:
        return ""
    quote = rates.items[0].quote
    return "\n".join(
        (
            rates_table(rate_rows(rates, convention, locale)),
            legend(quote, locale),
            rates_sources(rates, locale),
        )
    )
