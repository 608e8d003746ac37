"""Variants: the distinct tag sets of an edition's audience, one render each."""

from __future__ import annotations

from newsletter.config import DigestConfig
from newsletter.models import slugify

DEFAULT_VARIANT = "default"


def variant_key(tags: list[str]) -> str:
    """The variant a subscriber with ``tags`` gets; no preference: the default.

    Tags are compared as slugs, so "Kazakhstan" and "kazakhstan" are one variant.
    """
    slugs = tag_slugs(tags)
    return "+".join(sorted(slugs)) if slugs else DEFAULT_VARIANT


def variant_tags(key: str, digest: DigestConfig) -> list[str]:
    return list(digest.tags) if key == DEFAULT_VARIANT else key.split("+")


def tag_slugs(tags: list[str]) -> list[str]:
    """Tags as slugs, whatever spelling the config or a subscriber used, duplicates dropped."""
    out: list[str] = []
    for t in tags:
        s = slugify(t)
        if s and s not in out:
            out.append(s)
    return out
