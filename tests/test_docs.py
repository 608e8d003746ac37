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


def test_every_run_outcome_is_in_the_operations_table():
    """docs/operations.md "How a run decides" names every status a run can report."""
    from newsletter.states import RunStatus

    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    table = text.split("## How a run decides what is due", 1)[1].split("Decisions the issue", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]  # no heading
    named = {cell.strip().strip("`") for row in rows for cell in row.split("|")[3:4]}
    named = {part.strip().strip("`") for cell in named for part in cell.split(",")}
    assert named == {str(s) for s in RunStatus}
