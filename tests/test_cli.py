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


def test_init_writes_a_config_that_loads_and_creates_its_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("NEWSLETTER_CONFIG", "NEWSLETTER_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    first = CliRunner().invoke(cli, ["init"])
    assert first.exit_code == 0, first.output
    assert (tmp_path / "newsletter.toml").exists()
    assert (tmp_path / "newsletter.db").exists()
    assert f"created sqlite:///{tmp_path / 'newsletter.db'}" in first.output
    # again: the config is kept as edited, the database left as it is
    (tmp_path / "newsletter.toml").open("a").write("# edited\n")
    again = CliRunner().invoke(cli, ["init"])
    assert again.exit_code == 0 and "exists, kept" in again.output
    assert (tmp_path / "newsletter.toml").read_text().endswith("# edited\n")
    from newsletter.config import load_config

    assert load_config(tmp_path / "newsletter.toml", env={}).site.name


NO_CONFIG_COMMANDS = [
    ["run"],
    ["run", "--dry-run"],
    ["schedule"],
    ["ingest"],
    ["articles"],
    ["rates"],
    ["status"],
    ["subscribers", "list"],
    ["subscribers", "import", "x.csv"],
    ["preview"],
    ["send", "--dry-run"],
    ["serve"],
]


@pytest.mark.parametrize("args", NO_CONFIG_COMMANDS, ids=" ".join)
def test_without_any_config_every_command_exits_2_saying_where_it_looked(
    tmp_path, monkeypatch, args
):
    monkeypatch.chdir(tmp_path)
    for var in ("NEWSLETTER_CONFIG", "NEWSLETTER_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        "Error: no config file: --config not given, NEWSLETTER_CONFIG not set, "
        f"no newsletter.toml in {tmp_path} (`newsletter init` writes a starter config)"
    ]
    assert list(tmp_path.iterdir()) == []  # no database, no outbox, nothing


def test_help_needs_no_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    for args in (["-h"], ["run", "-h"], ["subscribers", "import", "--help"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0 and "Usage:" in result.output


def test_run_never_creates_a_sqlite_database(project):
    (project / "news.db").unlink()
    for args in (["run", "--at", "2026-11-30T07:05+05:00"], ["subscribers", "list"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert f"the database {project / 'news.db'} does not exist" in result.output
        assert "`newsletter init` creates it" in result.output
        assert not (project / "news.db").exists()
    # nor does a database URL from the environment that names a missing file
    result = CliRunner().invoke(
        cli, ["run"], env={"NEWSLETTER_DATABASE_URL": f"sqlite:///{project / 'typo.db'}"}
    )
    assert result.exit_code == 2 and not (project / "typo.db").exists()
    # init creates it; then run works
    assert CliRunner().invoke(cli, ["init"]).exit_code == 0
    assert (project / "news.db").exists()
    assert CliRunner().invoke(cli, ["run", "--at", "2026-11-30T07:05+05:00"]).exit_code == 0


def test_json_logs_are_json_lines_only_library_warnings_and_errors_included(project):
    import json
    import subprocess
    import sys

    # a library's warnings.warn() goes through logging: one JSON line
    code = (
        "import sys, warnings\n"
        "from newsletter.cli.common import setup_logging\n"
        "setup_logging('json', 0)\n"
        "warnings.warn('a library complains', UserWarning)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    (line,) = r.stderr.splitlines()
    record = json.loads(line)
    assert record["logger"] == "py.warnings" and "a library complains" in record["message"]
    # an error at the CLI boundary is a JSON line too, not "Error: …"
    (project / "news.db").unlink()
    r = subprocess.run(
        [sys.executable, "-m", "newsletter", "--log-format", "json", "run"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=project,
    )
    assert r.returncode == 2 and r.stdout == ""
    records = [json.loads(x) for x in r.stderr.splitlines()]
    assert [(x["level"], x["event"], x["exit_code"]) for x in records] == [("error", "error", 2)]
    assert "does not exist" in records[0]["message"]


def test_json_logs_carry_a_usage_error_as_a_json_line(project):
    import json
    import subprocess
    import sys

    def json_error(*args: str) -> dict:
        r = subprocess.run(
            [sys.executable, "-m", "newsletter", "--log-format", "json", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=project,
        )
        assert r.returncode == 2 and r.stdout == ""
        (record,) = [json.loads(x) for x in r.stderr.splitlines()]
        assert (record["level"], record["event"], record["exit_code"]) == ("error", "error", 2)
        return record

    record = json_error("run", "--at", "monday")
    assert "'monday' is not an ISO 8601 time" in record["message"]
    assert "--at" in record["message"]
    # a command that does not exist fails before the group's callback has run
    assert "No such command 'rnu'" in json_error("rnu")["message"]
