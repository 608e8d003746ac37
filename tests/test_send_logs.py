"""`send -vv` (debug logs) names batches and counts, never a recipient's address,
name or unsubscribe token: the real CLI in a subprocess, its real stderr."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.sendgrid import FakeSendGrid

KEY = "SG.test-key-for-the-log-test"


def run_cli(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(project),
        "NEWSLETTER_SECRET_KEY": "test-secret-key-0123456789",
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=project,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def personal_strings(project: Path) -> list[str]:
    with open(project / "subscribers.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = [r["email"] for r in rows] + [r["email"].split("@")[0] for r in rows]
    out += [r["name"] for r in rows if r["name"]]
    return out


@pytest.mark.parametrize("backend", ["sendgrid", "outbox"])
def test_debug_logs_name_batches_and_counts_never_recipients(project, backend):
    env = {}
    toml = project / "newsletter.toml"
    with FakeSendGrid(api_key=KEY) as fake:
        if backend == "sendgrid":
            toml.write_text(
                toml.read_text().replace('backend = "outbox"', 'backend = "sendgrid"'),
                encoding="utf-8",
            )
            env = {"SENDGRID_API_KEY": KEY, "NEWSLETTER_SENDGRID_HOST": fake.url}
        assert run_cli(project, "subscribers", "import", "subscribers.csv", env=env).returncode == 0
        assert run_cli(project, "ingest", env=env).returncode == 0
        out = run_cli(project, "-vv", "send", "--at", "2026-11-30T07:05:00+05:00", env=env)
        assert out.returncode == 0, out.stderr
        if backend == "sendgrid":
            assert fake.sent_requests, "nothing reached the fake SendGrid"
    log = out.stderr
    assert "DEBUG" in log, "no debug output at -vv"
    for secret in personal_strings(project):
        assert secret not in log, f"{secret!r} is in the debug log"
    assert "/unsubscribe/" not in log and "PAYLOAD" not in log and KEY not in log
    assert "batch" in log and "recipient" in log


def test_a_secret_in_a_log_line_or_a_logged_exception_is_hidden(monkeypatch, capsys):
    """Log lines and JSON exceptions go through config.Secrets.redact, the one
    redaction: every secret of the environment, in text and JSON, message and trace."""
    import logging

    from newsletter.cli.common import setup_logging

    secrets = {
        "SENDGRID_API_KEY": "SG.live-key-abcdef",
        "NEWSLETTER_SECRET_KEY": "hmac-secret-0123456789",
        "NEWSLETTER_SMTP_PASSWORD": "smtp-pass-xyz",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        for fmt in ("text", "json"):
            setup_logging(fmt, 1)
            log = logging.getLogger("newsletter.test")
            log.warning("refused: %s", " ".join(secrets.values()))
            try:
                raise RuntimeError(f"with {secrets['SENDGRID_API_KEY']} in it")
            except RuntimeError:
                log.exception("failed")
            err = capsys.readouterr().err
            assert "refused: *** *** ***" in err, err
            assert "with *** in it" in err, err
            assert not any(v in err for v in secrets.values()), err
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        logging.captureWarnings(False)


def test_smtp_answers_that_quote_an_address_stay_out_of_the_logs(project, smtp_servers):
    """Servers quote the recipient in RCPT answers ("451 <a@b>: greylisted"):
    the stored reason keeps it (it is that delivery's row), but the error that
    stops the send, logged and printed, says only how many and why."""
    with open(project / "subscribers.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    refused, deferred = rows[0]["email"], rows[1]["email"]

    class Quoting:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if address == refused:
                return f"550 5.1.1 <{address}>: Recipient address rejected"
            if address == deferred:
                return f"451 4.7.1 <{address}>: Recipient address greylisted"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            return "250 2.0.0 Ok: queued"

    port = smtp_servers.start(Quoting())
    toml = project / "newsletter.toml"
    toml.write_text(
        toml.read_text().replace('backend = "outbox"', 'backend = "smtp"')
        + f'\n[delivery.smtp]\nhost = "127.0.0.1"\nport = {port}\nstarttls = false\n',
        encoding="utf-8",
    )
    assert run_cli(project, "subscribers", "import", "subscribers.csv", env={}).returncode == 0
    assert run_cli(project, "ingest", env={}).returncode == 0
    out = run_cli(project, "-vv", "send", "--at", "2026-11-30T07:05:00+05:00", env={})
    assert out.returncode != 0 and "deferred" in out.stderr, out.stderr[-2000:]
    log = out.stdout + out.stderr
    for secret in personal_strings(project):
        assert secret not in log, f"{secret!r} is in the output"
    assert "/unsubscribe/" not in log
