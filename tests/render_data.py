"""A fixed edition for the render tests, golden files and benchmarks/render.py.

tests/data/render_edition.json holds 30 stories taken from the sample feed, with
summaries cut to 60–120 words and a feed-sized image each (three have none).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from newsletter.config import DigestConfig, SiteConfig
from newsletter.models import Article, Tag
from newsletter.rates.service import header_from_json
from newsletter.render.compile import EditionContent

DATA = Path(__file__).parent / "data" / "render_edition.json"


def load_content(count: int = 30, *, layout: str = "list", **changes: object) -> EditionContent:
    """The first ``count`` stories of the fixed edition as an EditionContent."""
    data = json.loads(DATA.read_text(encoding="utf-8"))
    articles = [
        Article(
            uid=a["url"],
            url=a["url"],
            title=a["title"],
            published_at=datetime.fromisoformat(a["published_at"]),
            summary_text=a["summary_text"],
            author=a["author"],
            image_url=a["image_url"],
            image_alt=a["image_alt"],
            tags=[Tag.from_name(t) for t in a["tags"]],
            id=i + 1,
        )
        for i, a in enumerate(data["articles"][:count])
    ]
    rates = header_from_json(data["rates"])
    content = EditionContent(
        site=SiteConfig(**data["site"]),
        digest=DigestConfig(**data["digest"]),
        subject=data["subject"],
        edition_date=data["edition_date"],
        articles=articles,
        rates=rates,
        reason_tags=data["reason_tags"],
        archive_url=data["archive_url"],
        layout=layout,
    )
    for key, value in changes.items():
        setattr(content, key, value)
    return content


#: words of Russian news prose, cycled to give each story a Russian title and summary
#: of the same length as the English one (tests, benchmarks)
RUSSIAN_WORDS = (
    "министры энергетики Казахстана Узбекистана Кыргызстана и Таджикистана договорились "
    "изучить общий рынок резервных мощностей после зимы когда дефицит электроэнергии "
    "вынудил страны региона закупать ток у соседей по высоким ценам а новые станции "
    "строятся медленнее чем растёт спрос в городах на юге страны"
).split()


def russian_content(count: int = 30, **changes: object) -> EditionContent:
    """The fixed edition with every title, summary and alt text in Russian, site in ru."""
    from dataclasses import replace

    content = load_content(count, **changes)
    words = iter(RUSSIAN_WORDS * 1000)

    def russian(text: str) -> str:
        return " ".join(next(words) for _ in text.split()).capitalize()

    content.articles = [
        replace(
            a,
            title=f"{russian(a.title)}: итоги недели, часть {i + 1}",
            summary_text=russian(a.summary_text),
            image_alt="",
        )
        for i, a in enumerate(content.articles)
    ]
    content.site = replace(content.site, language="ru")
    content.subject = "Степной вестник: дайджест недели"
    return content
