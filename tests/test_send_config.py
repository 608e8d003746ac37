"""Delivery settings: each mistake is one error naming the file and the key."""

from __future__ import annotations

import pytest

from newsletter.config import load_config
from newsletter.errors import ConfigError


@pytest.mark.parametrize(
    ("section", "line", "key"),
    [
        ("delivery.sendgrid", 'region = "mars"', "delivery.sendgrid.region"),
        ("delivery.sendgrid", "concurrency = 0", "delivery.sendgrid.concurrency"),
        ("delivery.sendgrid", "timeout = 0", "delivery.sendgrid.timeout"),
        ("delivery.sendgrid", "rate = -1", "delivery.sendgrid.rate"),
        ("delivery.sendgrid", 'ip_pool = "x"', "delivery.sendgrid.ip_pool"),
        ("delivery.sendgrid", "schedule_delay = 300", "delivery.sendgrid.schedule_delay"),
        ("delivery.sendgrid", "schedule_delay = 300000", "delivery.sendgrid.schedule_delay"),
        ("delivery.sendgrid", 'host = "api.sendgrid.com"', "delivery.sendgrid.host"),
        ("delivery.smtp", "batch_size = 0", "delivery.smtp.batch_size"),
        ("delivery.smtp", "port = 70000", "delivery.smtp.port"),
        ("delivery", "lease_seconds = 5", "delivery.lease_seconds"),
    ],
)
def test_bad_delivery_settings_name_file_and_key(tmp_path, section, line, key):
    path = tmp_path / "newsletter.toml"
    path.write_text(f"[{section}]\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value).startswith(f"{path}: {key}: ")


def test_good_delivery_settings_load(tmp_path):
    path = tmp_path / "newsletter.toml"
    path.write_text(
        '[delivery.sendgrid]\nregion = "eu"\nschedule_delay = 900\nrate = 50.5\n'
        "[delivery.smtp]\nssl = true\nport = 465\n",
        encoding="utf-8",
    )
    cfg = load_config(path, env={"NEWSLETTER_SENDGRID_HOST": "http://127.0.0.1:1"})
    assert cfg.delivery.sendgrid.schedule_delay == 900
    assert cfg.delivery.sendgrid.host == "http://127.0.0.1:1"
    assert cfg.delivery.smtp.ssl and cfg.delivery.smtp.port == 465
