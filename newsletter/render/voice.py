"""Small text helpers of the edition's voice: teasers and the footer's topics. Pure."""

from __future__ import annotations

import re

from babel.lists import format_list

from newsletter import i18n
from newsletter.models import slugify

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)+$")


def teaser(text: str, words: int = 35) -> str:
    """The first ``words`` words of ``text``, ending in "…" when cut (0: "").

    A cut that lands within a few words of the end keeps the whole text: "…"
    that hides three words saves nobody any reading."""
    if words <= 0:
        return ""
    parts = text.split()
    if len(parts) <= words + 5:
        return " ".join(parts)
    return " ".join(parts[:words]).rstrip(",;:—–-") + "…"


def display_name(name: str) -> str:
    """A topic as readers see it: a bare slug ("extra-topic-10", a tag the store
    has no name for) becomes words ("Extra topic 10"); names are kept."""
    if _SLUG.match(name):
        words = name.replace("-", " ")
        return words[:1].upper() + words[1:]
    return name


def topic_order(names: list[str], digest_tags: list[str]) -> list[str]:
    """Display names, in the order the digest lists its tags; others after, as given."""
    rank = {slugify(t): i for i, t in enumerate(digest_tags)}
    shown = [display_name(n) for n in dict.fromkeys(names)]
    return sorted(shown, key=lambda n: rank.get(slugify(n), len(rank)))


def topics(names: list[str], limit: int = 4, *, language: str = "en") -> str:
    """'Kazakhstan', 'Kazakhstan and Energy', 'Kazakhstan, Uzbekistan, and Energy'
    (the language's way of listing, CLDR's), or beyond ``limit``: 'Kazakhstan,
    Uzbekistan, Energy, Oil and 46 more'."""
    if not names:
        return ""
    _ = i18n.lang(language)
    if len(names) > limit:
        rest = len(names) - limit
        text = _.ngettext("{names} and {count} more", "{names} and {count} more", rest)
        return text.format(names=", ".join(names[:limit]), count=rest)
    return format_list(names, locale=_.locale)
