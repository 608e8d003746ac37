"""`newsletter send` output: one line per batch off a terminal, a progress bar on one."""

from __future__ import annotations

import io
import json
import re

from click.testing import CliRunner
from rich.console import Console

from newsletter.cli import cli
from newsletter.cli.send import BatchOutput
from newsletter.config import load_config
from newsletter.delivery.send import BatchProgress
from tests.fakes.sendgrid import FakeSendGrid

AT = "2026-11-30T07:05:00+05:00"
KEY = "SG.cli-test-key"


def use_sendgrid(project, fake, monkeypatch, batch_size=5):
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", fake.url)
    toml = project / "newsletter.toml"
    toml.write_text(
        toml.read_text().replace(
            'backend = "outbox"', f'backend = "sendgrid"\nbatch_size = {batch_size}'
        )
        + "\n[delivery.sendgrid]\nconcurrency = 1\n"
    )


def test_send_prints_a_line_per_batch_and_the_left_out_count(project, monkeypatch):
    runner = CliRunner()
    with FakeSendGrid(api_key=KEY) as fake:
        use_sendgrid(project, fake, monkeypatch)
        assert runner.invoke(cli, ["subscribers", "import", "subscribers.csv"]).exit_code == 0
        assert runner.invoke(cli, ["ingest"]).exit_code == 0
        out = runner.invoke(cli, ["send", "--at", AT])
        assert out.exit_code == 0, out.output
        assert fake.stats()["accepted"] == 22
    lines = [x for x in out.output.splitlines() if x.startswith("batch ")]
    # 22 recipients in batches of 5, per variant: one line for each batch
    assert len(lines) == fake.stats()["requests"] >= 5
    assert all(
        re.fullmatch(r"batch [0-9a-f]{32} \S+: \d+ accepted, 0 failed \(\d+/22, [\d,]+/s\)", x)
        for x in lines
    ), lines
    assert lines[-1].split("(")[1].startswith("22/22")
    # the sample audience has one unsubscribed and one bounced subscriber
    assert "left out: 1 bounced, 1 unsubscribed" in out.output
    status = json.loads(runner.invoke(cli, ["status", "--json"]).output)
    assert status["counts"]["accepted"] == 22 and status["status"] == "sent"


def test_send_json_reports_the_send(project, monkeypatch):
    runner = CliRunner()
    with FakeSendGrid(api_key=KEY) as fake:
        use_sendgrid(project, fake, monkeypatch)
        runner.invoke(cli, ["subscribers", "import", "subscribers.csv"])
        runner.invoke(cli, ["ingest"])
        out = runner.invoke(cli, ["send", "--at", AT, "--json"])
    data = json.loads(out.output)
    send = data["digests"][0]["send"]
    assert send["accepted"] == 22 and send["unresolved"] == 0
    assert send["left_out"] == {"unsubscribed": 1, "bounced": 1}


def test_a_terminal_gets_a_progress_bar():
    buf = io.StringIO()
    out = BatchOutput(tty=True, console=Console(file=buf, force_terminal=True, width=80))
    out(BatchProgress("b1", "default", 10, 10, 0, 0, 10, 40, 0.5))
    out(BatchProgress("b2", "default", 10, 10, 0, 0, 20, 40, 1.0))
    out.progress.refresh()
    out.close()
    task = out.progress.tasks[0]
    assert (task.completed, task.total) == (20, 40)
    assert "20/40" in buf.getvalue()


def test_starter_config_documents_every_delivery_key(tmp_path):
    from pathlib import Path

    starter = Path(__file__).parent.parent / "newsletter" / "samples" / "starter.toml"
    cfg = load_config(starter, env={})
    text = starter.read_text()
    for section, obj in (
        ("delivery", cfg.delivery),
        ("delivery.sendgrid", cfg.delivery.sendgrid),
        ("delivery.smtp", cfg.delivery.smtp),
    ):
        for key in vars(obj):
            if key in ("sendgrid", "smtp"):
                continue
            assert re.search(rf"^#?\s*{key}\s*=", text, re.M), f"{section}.{key} undocumented"
