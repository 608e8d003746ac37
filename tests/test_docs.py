"""The README and docs keep up with the code (after sqlite-utils' test_docs)."""

import re
from pathlib import Path

import pytest

from newsletter.cli import cli
from newsletter.config import Config

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
STARTER = (ROOT / "newsletter" / "samples" / "starter.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_is_in_the_readme_table(name):
    assert re.search(rf"^\| `{name}\b", README, re.M), f"README's command table lacks `{name}`"


def test_every_doc_the_readme_links_exists():
    for target in re.findall(r"\]\(((?:docs|subscribers|examples)/[^)#]+)\)", README):
        assert (ROOT / target).exists(), target


@pytest.mark.parametrize(
    "section", ["site", "articles", "rates", "render", "delivery", "webhook", "archive", "alerts"]
)
def test_every_config_section_is_in_the_starter_config(section):
    assert section in {f.name for f in Config.__dataclass_fields__.values()}
    assert re.search(rf"^\[{section}\]", STARTER, re.M), f"starter.toml lacks [{section}]"
