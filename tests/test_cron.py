"""The deployment files in cron/: each parses, and each runs a command the CLI accepts.

systemd units go through `systemd-analyze verify` where it is installed, and always
through a parse check; the crontab's times through croniter; the Kubernetes manifest
through yaml.safe_load, with its ConfigMap loaded by our own config loader.
"""

from __future__ import annotations

import configparser
import json
import shlex
import shutil
import subprocess
import warnings
from pathlib import Path

import click
import pytest
import yaml
from croniter import croniter

from newsletter.cli import cli
from newsletter.config import load_config

CRON = Path(__file__).parent.parent / "cron"


def accepts(args: list[str]) -> str:
    """Parse ``args`` (after the program name) as the CLI would; return the command name."""
    ctx = cli.make_context("newsletter", list(args), resilient_parsing=False)
    with warnings.catch_warnings():  # click 8.2 renamed protected_args; both work for now
        warnings.simplefilter("ignore", DeprecationWarning)
        words = [*ctx.protected_args, *ctx.args]
    name, cmd, rest = cli.resolve_command(ctx, words)
    assert cmd is not None
    cmd.make_context(name, rest, parent=ctx)
    return name


def test_accepts_rejects_what_the_cli_rejects():
    assert accepts(["--log-format", "json", "run", "--wait", "5"]) == "run"
    with pytest.raises(click.UsageError):
        accepts(["run", "--no-such-option"])


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser


def test_systemd_units_parse_and_run_the_job():
    service = unit(CRON / "newsletter.service")
    timer = unit(CRON / "newsletter.timer")
    assert service["Service"]["Type"] == "oneshot"
    exec_start = shlex.split(service["Service"]["ExecStart"])
    assert exec_start[0].endswith("/newsletter")
    assert accepts(exec_start[1:]) == "run"
    assert timer["Timer"]["Unit"] == "newsletter.service"
    assert timer["Timer"]["Persistent"] == "yes"
    assert timer["Install"]["WantedBy"] == "timers.target"
    assert "OnCalendar" in timer["Timer"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="parse check above covers it")
def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    # verify insists that ExecStart exists: point it at this checkout's entry point,
    # everything else is checked as shipped
    exe = shutil.which("newsletter") or str(Path(__file__).parent.parent / ".venv/bin/newsletter")
    for name in ("newsletter.service", "newsletter.timer"):
        text = (CRON / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(
            text.replace("/opt/newsletter/.venv/bin/newsletter", exe), encoding="utf-8"
        )
    result = subprocess.run(
        ["systemd-analyze", "verify", "newsletter.service", "newsletter.timer"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # a bad setting is often "ignored" with exit 0 and a message: both must be clean
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    calendar = unit(CRON / "newsletter.timer")["Timer"]["OnCalendar"]
    check = subprocess.run(
        ["systemd-analyze", "calendar", calendar], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0 and "*-*-* *:00/5:00" in check.stdout


def test_crontab_lines_parse_and_run_the_job():
    jobs = []
    for line in (CRON / "crontab.example").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head = line.split(None, 1)[0]
        if "=" in head and not head[0].isdigit() and not head.startswith("*"):
            continue  # an environment line
        fields = line.split(None, 5)
        assert len(fields) == 6, line
        assert croniter.is_valid(" ".join(fields[:5])), line
        jobs.append(fields[5])
    (command,) = jobs
    words = shlex.split(command.split("&&", 1)[1].split(">>", 1)[0])
    assert words[0].endswith("/newsletter")
    assert accepts(words[1:]) == "run"


def test_kubernetes_manifest(tmp_path):
    docs = list(yaml.safe_load_all((CRON / "kubernetes" / "newsletter.yaml").read_text("utf-8")))
    by_kind = {d["kind"]: d for d in docs if d}
    assert set(by_kind) == {"ConfigMap", "Secret", "CronJob"}
    cron = by_kind["CronJob"]
    assert cron["apiVersion"] == "batch/v1"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert croniter.is_valid(cron["spec"]["schedule"])
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert accepts(container["args"]) == "run"

    # the config comes from the ConfigMap, mounted where --config points
    config_name = by_kind["ConfigMap"]["metadata"]["name"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (cfg_volume,) = [n for n, v in volumes.items() if v.get("configMap", {}).get("name")]
    assert volumes[cfg_volume]["configMap"]["name"] == config_name
    config_arg = container["args"][container["args"].index("--config") + 1]
    (toml_name,) = by_kind["ConfigMap"]["data"]
    assert config_arg == f"{mounts[cfg_volume]}/{toml_name}"

    # the secrets come from the Secret, as environment variables
    secret = by_kind["Secret"]
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    keys = set(secret["stringData"])
    assert {"NEWSLETTER_SECRET_KEY", "NEWSLETTER_DATABASE_URL"} <= keys
    assert secret["stringData"]["NEWSLETTER_DATABASE_URL"].startswith("postgresql://")

    # the ConfigMap's newsletter.toml is a valid config, with no secret in it
    path = tmp_path / toml_name
    path.write_text(by_kind["ConfigMap"]["data"][toml_name], encoding="utf-8")
    env = {k: v for k, v in secret["stringData"].items()}
    cfg = load_config(path, env=env)
    assert cfg.database.startswith("postgresql://")
    assert all(v not in path.read_text() for v in env.values())
    # the config folder is read-only in the pod: written files must go elsewhere
    assert cfg.resolve(cfg.delivery.outbox_dir).is_relative_to(mounts["work"])


def test_dockerfile_builds_from_the_repository_and_runs_the_job():
    lines = [
        line.strip()
        for line in (CRON / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    known = {"FROM", "WORKDIR", "COPY", "RUN", "USER", "ENV", "ENTRYPOINT", "CMD", "ARG"}
    continued = False
    root = CRON.parent
    for line in lines:
        if not continued:
            word = line.split(None, 1)[0]
            assert word in known, line
            if word == "COPY" and "--from" not in line:
                *sources, _dest = line.split()[1:]
                for src in sources:
                    assert (root / src).exists(), src
        continued = line.endswith("\\")
    assert lines[0].startswith("FROM python:3.11")
    entry = next(x for x in lines if x.startswith("ENTRYPOINT"))
    cmd = next(x for x in lines if x.startswith("CMD"))
    assert json.loads(entry.split(None, 1)[1]) == ["newsletter"]
    assert accepts(json.loads(cmd.split(None, 1)[1])) == "run"
