from pathlib import Path

import pytest

from newsletter.config import default_config, load_config
from newsletter.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "newsletter.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = default_config(env={})
    assert cfg.delivery.backend == "outbox"
    assert cfg.digests[0].name == "weekly"
    assert cfg.database_url == f"sqlite:///{tmp_path / 'newsletter.db'}"


def test_no_config_file_anywhere_is_an_error_naming_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(env={})
    assert err.value.exit_code == 2
    assert "--config not given" in str(err.value)
    assert "NEWSLETTER_CONFIG not set" in str(err.value)
    assert f"no newsletter.toml in {tmp_path}" in str(err.value)


def test_relative_sqlite_path_is_relative_to_the_config_file(tmp_path):
    sub = tmp_path / "conf"
    sub.mkdir()
    cfg = load_config(write(sub, 'database = "sqlite:///data/n.db"\n'), env={})
    assert cfg.database_url == f"sqlite:///{sub / 'data' / 'n.db'}"


@pytest.mark.parametrize(
    "text, where, what",
    [
        (
            "[[digests]]\nname='w'\nmax_articles='ten'\n",
            "digests[0].max_articles",
            "expected an integer",
        ),
        ("[delivery]\nbackend='pigeon'\n", "delivery.backend", "outbox, sendgrid or smtp"),
        ("[site]\nnmae='x'\n", "site.nmae", "unknown key"),
        ("[[digests]]\nname='w'\nschedule='every monday'\n", "digests[0].schedule", "cron"),
        ("[[digests]]\nname='w'\ntimezone='Mars/Olympus'\n", "digests[0].timezone", "time zone"),
        (
            "[delivery.sendgrid]\napi_key='SG.x'\n",
            "delivery.sendgrid.api_key",
            "secrets do not belong",
        ),
        ("database = \n", "newsletter.toml", "not valid TOML"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path, text, where, what):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    message = str(exc.value)
    assert str(path) in message
    assert where in message
    assert what in message
    assert "\n" not in message


def test_environment_overrides_and_secrets(tmp_path):
    path = write(tmp_path, "")
    cfg = load_config(
        path,
        env={
            "NEWSLETTER_DATABASE_URL": "postgresql://db/x",
            "SENDGRID_API_KEY": "SG.secret-value-123",
            "NEWSLETTER_SENDGRID_HOST": "http://127.0.0.1:9",
        },
    )
    assert cfg.database == "postgresql://db/x"
    assert cfg.delivery.sendgrid.host == "http://127.0.0.1:9"
    assert "secret-value" not in repr(cfg)
    assert cfg.secrets.redact("key SG.secret-value-123 leaked") == "key *** leaked"
    assert load_config(path, env={}, database="sqlite:///o.db").database == "sqlite:///o.db"


def test_config_env_var_chooses_the_file(tmp_path):
    path = write(tmp_path, "[site]\nname = 'From env'\n")
    assert load_config(env={"NEWSLETTER_CONFIG": str(path)}).site.name == "From env"
