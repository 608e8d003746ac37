"""Plaintext helpers: 78-column wrapping that never breaks a URL, aligned rates."""

from __future__ import annotations

import textwrap

from newsletter.models import RatesHeader

WIDTH = 78


def wrap(text: str, width: int = WIDTH) -> str:
    """Wrap every paragraph line to ``width``; a word longer than that (a URL)
    stands alone on its line rather than being broken."""
    out = []
    for line in text.splitlines():
        if len(line) <= width:
            out.append(line.rstrip())
            continue
        indent = line[: len(line) - len(line.lstrip())]
        out.extend(
            textwrap.wrap(
                line,
                width=width,
                subsequent_indent=indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    return "\n".join(out).strip() + "\n"


def rates_table(rates: RatesHeader) -> str:
    """The rates header as aligned columns."""
    if not rates:
        return ""
    marks = {"up": "▲", "down": "▼", "flat": "="}
    rows = [
        (r.pair, r.text, f"{marks[r.direction]} {r.change}".rstrip(), r.as_of) for r in rates.items
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        f"{p:<{widths[0]}}  {t:>{widths[1]}}  {c:<{widths[2]}}  {a}".rstrip() for p, t, c, a in rows
    ]
    return "\n".join(lines)
