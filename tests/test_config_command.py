"""`newsletter config`: the effective configuration, secrets hidden, idle settings named."""

from __future__ import annotations

import json
import tomllib

from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import effective_config, load_config

SECRETS = {
    "NEWSLETTER_SECRET_KEY": "s3cret-signing-key-0123",
    "SENDGRID_API_KEY": "SG.very-secret-api-key",
    "NEWSLETTER_SMTP_PASSWORD": "smtp-pass-word-42",
}


def run(*args, env=None):
    return CliRunner().invoke(cli, list(args), env={**SECRETS, **(env or {})})


def test_prints_the_effective_config_that_loads_back_the_same(project, tmp_path):
    result = run("config", env={"NEWSLETTER_DATABASE_URL": f"sqlite:///{project / 'news.db'}"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    for value in SECRETS.values():
        assert value not in result.output
    assert "# NEWSLETTER_SECRET_KEY: set" in out and "# database from: --db" in out
    # what it prints is a config: loaded back, it is the same configuration
    again = tmp_path / "again" / "newsletter.toml"
    again.parent.mkdir()
    again.write_text(out, encoding="utf-8")
    first = effective_config(load_config(project / "newsletter.toml", env=SECRETS))
    second = effective_config(load_config(again, env=SECRETS))
    # relative paths resolve against each file's folder; the rest must be equal
    first["database"] = second["database"] = ""
    assert second == first
    assert tomllib.loads(out)["digests"][0]["name"] == "weekly"


def test_a_database_password_is_hidden(project):
    url = "postgresql://news:hunter2-pw@db.example:5432/news"
    result = run("config", "--json", env={"NEWSLETTER_DATABASE_URL": url})
    data = json.loads(result.stdout)
    assert data["config"]["database"] == "postgresql://news:***@db.example:5432/news"
    assert "hunter2-pw" not in result.output
    assert data["secrets"] == {
        "SENDGRID_API_KEY": "set",
        "NEWSLETTER_SECRET_KEY": "set",
        "NEWSLETTER_SMTP_PASSWORD": "set",
    }


def test_the_starter_config_has_no_idle_setting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    assert run("init").exit_code == 0
    result = run("config", "--strict")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""


def test_settings_with_no_effect_are_warned_about(project):
    toml = project / "newsletter.toml"
    toml.write_text(
        toml.read_text()
        + """
[rates]
providers = ["snapshot"]
currencies = ["KZT", "UZS"]
[rates.pairs.KZT]
providers = ["nbk"]
[rates.pairs.UZS]
providers = ["cbu"]

[delivery.sendgrid]
ip_pool = "news"

[delivery.smtp]
ssl = true
starttls = false

[alerts]
via = "smtp"
""",
        encoding="utf-8",
    )
    result = run("config")
    assert result.exit_code == 0
    where = f"warning: {toml}: "
    assert result.stderr.splitlines() == [
        where + "rates.providers: no effect: every pair in rates.currencies sets its own providers",
        where + "delivery.sendgrid: no effect: delivery.backend is 'outbox'",
        where + "delivery.smtp: no effect: delivery.backend is 'outbox' and no alert goes by SMTP",
        where + "delivery.smtp.starttls: no effect: ssl = true (implicit TLS) ignores it",
        where + "alerts.via: no effect: alerts.email_to is empty: no alert is sent",
    ]
    assert run("config", "--strict").exit_code == 1
    # the environment overriding the file's database is idle too
    result = run("config", env={"NEWSLETTER_DATABASE_URL": f"sqlite:///{project / 'news.db'}"})
    assert "database: no effect: --db overrides it" in result.stderr
