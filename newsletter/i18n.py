"""Editions in the reader's language: gettext catalogues and CLDR formats (Babel).

Every fixed string of the templates, the reader's pages and the preflight goes
through the catalogue of the digest's ``language``
(``newsletter/locale/<lang>/LC_MESSAGES/messages.po``); dates, numbers and
percentages are written the way that language writes them (Babel's CLDR data).

The ``.po`` files are the source and are committed; ``make`` compiles them to
``.mo`` next to them (``make catalogues``, run by ``make install`` and ``make
test``). A ``.mo`` older than its ``.po``, or none at all (an install that did
not run ``make``), is never used: the ``.po`` is compiled in memory instead,
so a translation cannot be stale.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from datetime import date
from functools import lru_cache
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

logger = logging.getLogger(__name__)

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"


def N_(message: str) -> str:  # noqa: N802 (the gettext convention)
    """Marks a string for the catalogue where it is defined; translated where shown."""
    return message


def language_code(language: str) -> str:
    """'ru', 'ru_RU', 'ru-RU' -> 'ru': the catalogue's language."""
    return (language or "en").replace("-", "_").split("_")[0].lower()


def languages() -> list[str]:
    """Languages with a catalogue."""
    return sorted(p.parent.parent.name for p in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def check_language(language: str) -> str | None:
    """None if ``language`` can be used for an edition, else why not."""
    try:
        Locale.parse(language.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return f"unknown language {language!r}"
    available = languages()
    if language_code(language) not in available:
        return f"no catalogue for {language!r} (available: {', '.join(available)})"
    return None


def locale(language: str) -> Locale:
    """Babel's locale for ``language``; English when Babel does not know it."""
    try:
        return Locale.parse((language or "en").replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en")


@lru_cache(maxsize=16)
def translations(language: str) -> NullTranslations:
    """The catalogue of ``language``: the compiled .mo if it is current, else the
    .po compiled in memory; the msgids themselves (English) when there is none."""
    folder = LOCALE_DIR / language_code(language) / "LC_MESSAGES"
    po, mo = folder / f"{DOMAIN}.po", folder / f"{DOMAIN}.mo"
    if not po.exists():
        return NullTranslations()
    if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as fh:
            return Translations(fp=fh, domain=DOMAIN)
    logger.debug("i18n: %s has no current .mo; compiling %s in memory", language, po)
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=language_code(language))
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(fp=buf, domain=DOMAIN)


class Lang:
    """One language's gettext and formats, for Python code that writes reader text."""

    def __init__(self, language: str = "en"):
        self.language = language or "en"
        self.locale = locale(self.language)
        t = translations(self.language)
        self.gettext: Callable[[str], str] = t.gettext
        self.ngettext: Callable[[str, str, int], str] = t.ngettext

    def __call__(self, message: str, **values: object) -> str:
        """The translation of ``message``, with ``{name}`` fields filled in."""
        text = self.gettext(message)
        return text.format(**values) if values else text

    def day(self, value: date) -> str:
        """'30 November 2026', '30 ноября 2026'."""
        return format_date(value, "d MMMM y", locale=self.locale)

    def short_day(self, value: date) -> str:
        """'27 Nov', '27 нояб.'."""
        return format_date(value, "d MMM", locale=self.locale)


@lru_cache(maxsize=16)
def lang(language: str) -> Lang:
    return Lang(language)
