"""The deployment files in cron/, run or checked as the real tools see them.

The crontab's line runs under `env -i /bin/sh -c` with the environment cron gives it and
the env file docs/deploy.md describes; the systemd units go through `systemd-analyze
verify` with a real ExecStart; the Kubernetes manifests are validated against the
Kubernetes JSON schema (kubernetes-validate ships it: no network); the Dockerfile's build
context is computed with docker's own .dockerignore rules (the docker package).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest
import yaml
from croniter import croniter

from newsletter.cli import cli
from newsletter.config import load_config
from newsletter.store import open_store
from tests.helpers import SAMPLE_CONFIG

ROOT = Path(__file__).parent.parent
CRON = ROOT / "cron"
NEWSLETTER_EXE = Path(sys.executable).parent / "newsletter"


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
    # what the job creates (SQLite database, lock, outbox, exports) is the owner's only
    assert service["Service"]["UMask"] == "0077"
    exec_start = shlex.split(service["Service"]["ExecStart"])
    assert exec_start[0].endswith("/newsletter")
    assert accepts(exec_start[1:]) == "run"
    assert timer["Timer"]["Unit"] == "newsletter.service"
    assert timer["Timer"]["Persistent"] == "yes"
    assert timer["Install"]["WantedBy"] == "timers.target"
    assert "OnCalendar" in timer["Timer"]


def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    # scripts/system-deps.sh installs it; a missing analyzer is a broken test machine
    assert shutil.which("systemd-analyze"), "systemd-analyze missing: run make system-deps"
    # verify insists that ExecStart exists: point it at this checkout's entry point,
    # everything else is checked as shipped
    exe = str(NEWSLETTER_EXE)
    assert os.access(exe, os.X_OK), exe
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


def crontab() -> tuple[dict[str, str], str]:
    """The crontab's environment lines (as cron sets them) and its one job's command."""
    env: dict[str, str] = {}
    jobs = []
    for line in (CRON / "crontab.example").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head = line.split(None, 1)[0]
        if "=" in head and not head[0].isdigit() and not head.startswith("*"):
            name, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]  # cron strips one pair of quotes
            env[name.strip()] = value
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, line
        assert croniter.is_valid(" ".join(fields[:5])), line
        jobs.append(fields[5])
    (command,) = jobs
    assert "%" not in command  # cron would turn it into a newline
    return env, command


def docs_env_file() -> str:
    """The env file exactly as docs/deploy.md shows it."""
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    after = text.split("`/etc/newsletter/env` holds", 1)[1]
    block = re.search(r"```sh\n(.*?)```", after, re.S)
    assert block, "docs/deploy.md shows no env file"
    return block.group(1)


def run_crontab_line(
    tmp_path: Path, exe: str, env_file: str | None, config: str
) -> subprocess.CompletedProcess:
    """The crontab's job as cron runs it: /bin/sh -c, an environment of the crontab's
    lines only (env -i), the shipped paths moved into ``tmp_path``. ``env_file`` None:
    there is none."""
    cron_env, command = crontab()
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    if env_file is not None:
        (etc / "env").write_text(env_file, encoding="utf-8")
    (etc / "newsletter.toml").write_text(config, encoding="utf-8")
    (tmp_path / "log").mkdir(exist_ok=True)
    moved = {
        "/opt/newsletter/.venv/bin/newsletter": exe,
        "/etc/newsletter/": f"{etc}/",
        "/var/log/newsletter/": f"{tmp_path / 'log'}/",
    }
    for old, new in moved.items():
        assert old in command or old in "".join(cron_env.values()), old
        command = command.replace(old, new)
        cron_env = {k: v.replace(old, new) for k, v in cron_env.items()}
    # cron itself adds HOME and LOGNAME; SHELL is the crontab's (cron would use it)
    cron_env |= {"HOME": str(tmp_path), "LOGNAME": "newsletter"}
    shell = cron_env.get("SHELL", "/bin/sh")
    args = ["env", "-i", *(f"{k}={v}" for k, v in cron_env.items()), shell, "-c", command]
    return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_crontab_job_is_a_command_the_cli_accepts():
    _env, command = crontab()
    exe = "/opt/newsletter/.venv/bin/newsletter"
    words = shlex.split(command.split(exe, 1)[1].split(";", 1)[0])
    assert accepts(words) == "run"


def test_crontab_job_sees_every_variable_of_the_env_file(tmp_path):
    # the job replaced by a probe that prints the environment it was given
    probe = tmp_path / "probe"
    probe.write_text("#!/bin/sh\nexec /usr/bin/env\n", encoding="utf-8")
    probe.chmod(0o755)
    env_file = docs_env_file()
    expected = {}
    for line in env_file.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]  # sh and systemd's EnvironmentFile: verbatim inside
            expected[name] = value
    assert {"NEWSLETTER_SECRET_KEY", "NEWSLETTER_DATABASE_URL"} <= set(expected)
    # the docs show a value that only single quotes keep whole under /bin/sh
    assert any(set(v) & set("$&; ") for v in expected.values())
    result = run_crontab_line(tmp_path, str(probe), env_file, "")
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""  # everything goes to the log file
    seen = dict(
        line.split("=", 1)
        for line in (tmp_path / "log" / "run.log").read_text().splitlines()
        if "=" in line
    )
    for name, value in expected.items():
        assert seen.get(name) == value, name
    assert seen["NEWSLETTER_CONFIG"] == str(tmp_path / "etc" / "newsletter.toml")


def test_crontab_job_without_its_env_file_stops_and_says_so_in_the_log(tmp_path):
    probe = tmp_path / "probe"
    probe.write_text("#!/bin/sh\necho the job ran\n", encoding="utf-8")
    probe.chmod(0o755)
    result = run_crontab_line(tmp_path, str(probe), None, "")
    assert result.returncode != 0
    assert result.stdout == result.stderr == ""
    # one line from the shell (docs/deploy.md quotes dash's); the job never started
    (line,) = (tmp_path / "log" / "run.log").read_text().splitlines()
    assert str(tmp_path / "etc" / "env") in line and "No such file" in line, line


def test_crontab_job_runs_the_real_job_with_the_env_files_database(tmp_path):
    db = tmp_path / "from-env.db"
    config = (
        SAMPLE_CONFIG.replace(
            'database = "sqlite:///news.db"', 'database = "sqlite:///fallback.db"'
        )
        .replace('url = "feed.xml"', f'url = "{ROOT / "newsletter" / "samples" / "feed.xml"}"')
        .replace('outbox_dir = "outbox"', f'outbox_dir = "{tmp_path / "outbox"}"')
    )
    open_store(f"sqlite:///{db}").close()
    env_file = docs_env_file().replace(
        "postgresql://newsletter@localhost/newsletter", f"sqlite:///{db}"
    )
    result = run_crontab_line(tmp_path, str(NEWSLETTER_EXE), env_file, config)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "log" / "run.log").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # JSON lines only
    (summary,) = [r for r in records if r.get("event") == "run.summary"]
    assert summary["summary"]["exit_code"] == 0, lines
    # the database is the env file's; the config's own was never created
    assert not (tmp_path / "etc" / "fallback.db").exists()
    assert not (tmp_path / "fallback.db").exists()
    assert db.stat().st_size > 0


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


def test_kubernetes_send_job_shares_one_edition_between_pods():
    """cron/kubernetes/send-job.yaml: N pods of `newsletter send` on the digest, with the
    ConfigMap and Secret of newsletter.yaml mounted as the CronJob mounts them."""
    (job,) = [
        d
        for d in yaml.safe_load_all((CRON / "kubernetes" / "send-job.yaml").read_text("utf-8"))
        if d
    ]
    main = {
        d["kind"]: d
        for d in yaml.safe_load_all((CRON / "kubernetes" / "newsletter.yaml").read_text("utf-8"))
        if d
    }
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    spec = job["spec"]
    assert spec["parallelism"] >= 2 and spec["completions"] == spec["parallelism"]
    assert spec["backoffLimit"] == 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    args = container["args"]
    assert accepts(args) == "send"
    digest = args[args.index("--digest") + 1]
    cfg_pod = main["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["volumes"] == cfg_pod["volumes"]
    assert container["volumeMounts"] == cfg_pod["containers"][0]["volumeMounts"]
    assert container["envFrom"] == cfg_pod["containers"][0]["envFrom"]
    assert container["image"] == cfg_pod["containers"][0]["image"]
    toml = main["ConfigMap"]["data"]["newsletter.toml"]
    assert f'name = "{digest}"' in toml


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


def test_kubernetes_manifests_match_the_kubernetes_schema():
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    files = sorted((CRON / "kubernetes").glob("*.yaml"))
    assert files
    checked = 0
    for path in files:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc:
                continue
            # strict: an unknown or misspelt field is an error, as `kubectl apply` says
            kubernetes_validate.validate(doc, version, strict=True)
            checked += 1
    assert checked >= 3


def test_kubernetes_schema_check_catches_a_misplaced_field():
    import kubernetes_validate

    docs = list(yaml.safe_load_all((CRON / "kubernetes" / "newsletter.yaml").read_text("utf-8")))
    cron = next(d for d in docs if d and d["kind"] == "CronJob")
    cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["envfrom"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cron, kubernetes_validate.latest_version(), strict=True)


def build_context() -> set[str]:
    """The files `docker build -f cron/Dockerfile .` sends, by docker's .dockerignore rules."""
    from docker.utils.build import exclude_paths

    ignore = ROOT / ".dockerignore"
    assert ignore.exists(), ".dockerignore missing beside the build context"
    patterns = [
        line.strip()
        for line in ignore.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    return set(exclude_paths(str(ROOT), patterns, dockerfile="cron/Dockerfile"))


def test_docker_build_context_holds_what_the_image_needs_and_nothing_private():
    files = build_context()
    # every COPY source of the Dockerfile is in the context
    for line in (CRON / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith("COPY") and "--from" not in line:
            *sources, _dest = line.split()[1:]
            for src in sources:
                assert src in files or any(f.startswith(src.rstrip("/") + "/") for f in files), src
    assert "newsletter/__init__.py" in files
    assert any(f.startswith("templates/") for f in files)
    # nothing of the developer's machine, nor anything with subscribers' data in it
    for f in files:
        top = f.split("/", 1)[0]
        assert top not in {".venv", ".demo", ".git", "tests", "outbox", "subscribers"}, f
        assert not f.endswith((".db", ".db-wal", ".pyc", ".eml", ".csv")), f
        assert "__pycache__" not in f, f
