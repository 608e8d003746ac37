"""The CLI: help everywhere, one-line errors, no tracebacks."""

import pytest
from click.testing import CliRunner

from newsletter.cli import cli


def all_commands(group=cli, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if hasattr(cmd, "commands"):
            yield from all_commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", list(all_commands()), ids=" ".join)
def test_every_command_has_short_help(path):
    result = CliRunner().invoke(cli, [*path, "-h"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--config", "missing.toml", "articles"], "missing.toml: cannot read config"),
        (["subscribers", "import", "nope.csv"], "nope.csv: cannot read"),
        (["status", "99"], "no edition 99"),
        (["preview", "--as", "nobody@example.com"], "nobody@example.com: no such subscriber"),
        (["run", "--at", "tuesday"], "not an ISO 8601 time"),
    ],
)
def test_user_mistakes_give_one_line_and_non_zero_exit(project, args, needle):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert needle in result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1


def test_bad_config_value_names_file_and_key(project):
    (project / "newsletter.toml").write_text("[[digests]]\nname = 'w'\nmax_articles = 'x'\n")
    result = CliRunner().invoke(cli, ["articles"])
    assert result.exit_code == 2
    assert "newsletter.toml: digests[0].max_articles: expected an integer" in result.output


def test_init_writes_a_config_that_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(cli, ["init"]).exit_code == 0
    assert (tmp_path / "newsletter.toml").exists()
    again = CliRunner().invoke(cli, ["init"])
    assert again.exit_code != 0 and "already exists" in again.output
    from newsletter.config import load_config

    assert load_config(tmp_path / "newsletter.toml", env={}).site.name
