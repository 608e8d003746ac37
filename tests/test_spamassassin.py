"""SpamAssassin (Debian's package, local rules only: no network tests) scores the
messages the demo edition writes, in English and in Russian, at most 0.7, the
score of the hidden preheader (HTML_FONT_LOW_CONTRAST). scripts/system-deps.sh
installs it; in CI it must run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from newsletter.cli import cli

AT = "2026-11-30T07:05:00+05:00"
MAX_SCORE = 0.7

if shutil.which("spamassassin") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("spamassassin is not installed: run scripts/system-deps.sh")
    pytest.skip(
        "spamassassin is not installed (scripts/system-deps.sh installs it)",
        allow_module_level=True,
    )


def score(eml: bytes, home) -> tuple[float, str]:
    out = subprocess.run(
        ["spamassassin", "-L", "-t"],
        input=eml,
        capture_output=True,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(home)},
        timeout=120,
        check=True,
    ).stdout.decode("utf-8", "replace")
    found = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", out, re.M)
    assert found, out[:2000]
    report = out[out.find("Content analysis details") :]
    return float(found.group(1)), report


@pytest.mark.parametrize("language", ["en", "ru"])
def test_demo_messages_score_at_most_0_7_with_local_rules(project, tmp_path, language):
    toml = project / "newsletter.toml"
    toml.write_text(
        toml.read_text().replace("min_articles = 1", f'min_articles = 1\nlanguage = "{language}"')
    )
    runner = CliRunner()
    assert runner.invoke(cli, ["subscribers", "import", "subscribers.csv"]).exit_code == 0
    assert runner.invoke(cli, ["run", "--at", AT]).exit_code == 0
    files = sorted((project / "outbox").rglob("*.eml"))
    assert len(files) == 22
    # a Cyrillic name, a Latin one, and the variant with the most stories
    picks = {files[0], files[2], max(files, key=lambda f: f.stat().st_size)}
    for eml in picks:
        data = eml.read_bytes()
        if language == "ru":  # the edition is the Russian one, as it goes out
            assert "Вы получаете".encode() in data, eml.name
        points, report = score(data, tmp_path)
        assert points <= MAX_SCORE, f"{eml.name}: {points}\n{report}"
