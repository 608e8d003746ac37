"""The Jinja environment: the user's template folder first, the bundled one after."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from functools import lru_cache, partial
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from newsletter import i18n
from newsletter.render.voice import teaser, topics


def bundled_templates() -> Path:
    """templates/ at the top of a checkout, or the copy inside an installed wheel."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_templates"
    return packaged if packaged.is_dir() else here.parent / "templates"


#: Unicode categories MRML writes as-is in attribute values. Anything else
#: (variation selectors, joiners, combining marks, symbols) it may write in Rust
#: debug escaping (``\\u{fe0f}``), so those become character references.
_SAFE_CATEGORIES = ("L", "N", "P", "Zs", "Sm", "Sc")
#: letters Rust escapes all the same (Hangul fillers and two halfwidth sound
#: marks that are Grapheme_Extend); found by compiling every code point
_UNSAFE_LETTERS = frozenset("\u115f\u1160\u3164\uff9e\uff9f\uffa0")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\\": "&#92;"}
_PLAIN = re.compile(r"[ !#-%(-;=?-\[\]-~]*")


def _is_noncharacter(ch: str) -> bool:
    cp = ord(ch)
    return 0xFDD0 <= cp <= 0xFDEF or cp & 0xFFFE == 0xFFFE


@lru_cache(maxsize=4096)
def _attr_char(ch: str) -> str:
    if ch in _ENTITIES:
        return _ENTITIES[ch]
    cat = unicodedata.category(ch)
    if cat in ("Cc", "Cs") or _is_noncharacter(ch):
        return ""  # not allowed in HTML text at all
    if cat.startswith(_SAFE_CATEGORIES) and ch not in _UNSAFE_LETTERS:
        return ch
    return f"&#x{ord(ch):X};"


def mjattr(value: object) -> Markup:
    """``value`` made safe for an MJML attribute under mjml-python 1.4.2 (MRML 6).

    MRML writes attribute values with Rust debug escaping, also those of raw HTML
    inside ``<mj-text>``: a newline becomes a literal ``\\n``, an emoji's
    variation selector ``\\u{fe0f}``, ``"`` ``\\"`` and a backslash ``\\\\``. So
    whitespace is folded to single spaces, the HTML specials and the backslash
    become entities, and every character outside the safe categories a numeric
    character reference, which MRML passes through verbatim. Control characters
    and noncharacters, which HTML does not allow, are dropped.
    tests/test_render_attr.py compiles every code point through MRML to prove it.
    """
    text = " ".join(str(value).split())
    if _PLAIN.fullmatch(text):
        return Markup(text)
    return Markup("".join(_attr_char(ch) for ch in text))


def format_date(value: datetime, fmt: str = "", *, language: str = "en") -> str:
    """'30 November 2026' in the edition's language (CLDR month names); a
    strftime ``fmt`` (a user template's) is used as given."""
    return value.strftime(fmt) if fmt else i18n.lang(language).day(value)


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal ("12.5%"); "–" for none (the report)."""
    return "–" if value is None else f"{value * 100:.1f}%"


def oneline(value: object) -> str:
    """Whitespace, line breaks included, folded to single spaces (plaintext titles)."""
    return " ".join(str(value).split())


@lru_cache(maxsize=16)
def make_env(user_folder: str = "", language: str = "en") -> Environment:
    """One environment per template folder and language, built once and reused.

    Everything a reader or an editor sees is rendered here: the digest, the
    archive (``archive/``), the reader pages of ``newsletter serve``
    (``pages/``), the confirmation and welcome emails (``mail/``) and the
    report (``report/``), so a newsroom's ``[render] templates`` folder
    re-brands all of them.

    ``_()``, ``gettext`` and ``ngettext`` are the language's catalogue
    (jinja2.ext.i18n, new style: ``_("Hi %(name)s,", name=…)``, values escaped
    in HTML); the ``date`` and ``topics`` filters write the language."""
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
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(i18n.translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters["mjattr"] = mjattr
    env.filters["date"] = partial(format_date, language=language)
    env.filters["oneline"] = oneline
    env.filters["pct"] = pct
    env.filters["teaser"] = teaser
    env.filters["topics"] = partial(topics, language=language)
    env.globals["language"] = language
    return env
