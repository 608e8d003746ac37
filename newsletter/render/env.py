"""The Jinja environment: the user's template folder first, the bundled one after."""

from __future__ import annotations

import html
import unicodedata
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup


def bundled_templates() -> Path:
    """templates/ at the top of a checkout, or the copy inside an installed wheel."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_templates"
    return packaged if packaged.is_dir() else here.parent / "templates"


#: Unicode categories MRML writes as-is in attribute values; anything else
#: (emoji, variation selectors, joiners, combining marks) it would write in
#: Rust debug escaping (``\u{fe0f}``), so those become character references.
_SAFE_CATEGORIES = ("L", "N", "P", "Zs", "Sm", "Sc")


def mjattr(value: object) -> Markup:
    """A value made safe for an MJML attribute under mjml-python 1.4.2.

    MRML writes attribute values with Rust debug escaping: a newline becomes a
    literal ``\\n``, an emoji ``\\u{…}`` and ``"`` ``\\"``. So whitespace is
    folded to single spaces, the HTML specials are escaped as entities (which
    MRML passes through verbatim), and every character outside the safe
    categories becomes a numeric character reference.
    """
    text = " ".join(str(value).split())
    out = []
    for ch in html.escape(text, quote=True):
        if ord(ch) < 128 or unicodedata.category(ch).startswith(_SAFE_CATEGORIES):
            out.append(ch)
        else:
            out.append(f"&#x{ord(ch):X};")
    return Markup("".join(out))


def format_date(value: datetime, fmt: str = "%-d %B %Y") -> str:
    return value.strftime(fmt)


@lru_cache(maxsize=16)
def make_env(user_folder: str = "") -> Environment:
    """One environment per template folder, built once and reused."""
    loaders = []
    if user_folder:
        loaders.append(FileSystemLoader(user_folder))
    loaders.append(FileSystemLoader(str(bundled_templates())))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(enabled_extensions=("html", "mjml", "mjml.j2", "html.j2")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["mjattr"] = mjattr
    env.filters["date"] = format_date
    return env
