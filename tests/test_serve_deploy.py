"""`serve` deployable: its systemd unit through systemd-analyze, its Kubernetes
manifests against the Kubernetes schema (offline), probes that reach real routes,
liveness and readiness as they answer, the proxy examples."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.store import Store
from newsletter.store.db import make_engine
from newsletter.tracking.app import create_app
from tests.fakes.event_webhook import LiveApp
from tests.helpers import build_config

CRON = Path(__file__).parent.parent / "cron"
UNIT = CRON / "newsletter-serve.service"
MANIFEST = CRON / "kubernetes" / "serve.yaml"


def docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text("utf-8")) if d]


def cli_accepts(args: list[str]) -> None:
    """The CLI parses ``args`` (an unknown option or command fails) without running it."""
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "serve [OPTIONS]" in result.output


def config(tmp_path: Path):  # noqa: ANN201
    return build_config(
        tmp_path, toml='[site]\nname = "Test"\n', env={"NEWSLETTER_SECRET_KEY": "k" * 20}
    )


def test_systemd_analyze_verify_accepts_the_serve_unit(tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze is needed (scripts/system-deps.sh)"
    exe = shutil.which("newsletter") or str(Path(__file__).parent.parent / ".venv/bin/newsletter")
    text = UNIT.read_text("utf-8").replace("/opt/newsletter/.venv/bin/newsletter", exe)
    (tmp_path / UNIT.name).write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", UNIT.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # a misspelt setting is "ignored" with exit 0 and a message: none may appear
    assert result.stderr.strip() == "", result.stderr


def test_systemd_analyze_catches_a_broken_unit(tmp_path):
    text = UNIT.read_text("utf-8").replace("RestartSec=2", "RestartSecs=2")
    (tmp_path / UNIT.name).write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", UNIT.name], cwd=tmp_path, capture_output=True, text=True
    )
    assert "RestartSecs" in result.stderr


def test_the_unit_runs_a_serve_command_the_cli_accepts():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text("utf-8"))
    service = parser["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/newsletter") and "serve" in argv
    cli_accepts(argv[1:])
    assert service["Restart"] == "on-failure"
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_the_serve_manifests_match_the_kubernetes_schema():
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    kinds = []
    for doc in docs():
        # strict: an unknown or misspelt field is an error, as `kubectl apply` says
        kubernetes_validate.validate(doc, version, strict=True)
        kinds.append(doc["kind"])
    assert kinds == ["Deployment", "Service", "Ingress"]


def test_the_schema_check_catches_a_misplaced_probe():
    import kubernetes_validate

    deployment = docs()[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["timeoutSeconds"] = 3  # belongs one level up
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_probes_and_service_reach_the_real_routes_and_port(tmp_path):
    deployment, service, ingress = docs()
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    cli_accepts(container["args"])
    assert container["args"][container["args"].index("--port") + 1] == "8025"
    assert container["ports"] == [{"name": "http", "containerPort": 8025, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    app = create_app(config(tmp_path), Store(make_engine("sqlite://")))
    paths = {r.path for r in app.routes}  # type: ignore[attr-defined]
    assert {"/healthz", "/readyz", "/subscribe", "/unsubscribe/{token}"} <= paths


def test_readiness_follows_the_database_and_liveness_does_not(tmp_path):
    cfg = config(tmp_path)
    # a PostgreSQL that is not there: nothing listens on port 1
    down = Store(make_engine("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2"))
    with LiveApp(create_app(cfg, down)) as srv:
        assert httpx.get(srv.url("/healthz"), timeout=10).status_code == 200
        r = httpx.get(srv.url("/readyz"), timeout=10)
        assert (r.status_code, r.text) == (503, "database unavailable")
    up = Store(make_engine(f"sqlite:///{tmp_path / 'up.db'}"))
    up.migrate()
    with LiveApp(create_app(cfg, up)) as srv:
        assert httpx.get(srv.url("/readyz"), timeout=10).text == "ok"


def test_the_proxy_examples_overwrite_x_forwarded_for_and_reach_serve(tmp_path):
    nginx = (CRON / "nginx-serve.conf").read_text("utf-8")
    assert "server 127.0.0.1:8025;" in nginx
    # $proxy_add_x_forwarded_for would pass on what the client sent
    assert nginx.count("proxy_set_header X-Forwarded-For $remote_addr;") == 2
    assert "proxy_add_x_forwarded_for" not in nginx
    caddy = (CRON / "Caddyfile.serve").read_text("utf-8")
    assert "reverse_proxy 127.0.0.1:8025" in caddy
    assert "header_up X-Forwarded-For {remote_host}" in caddy
    assert config(tmp_path).webhook.port == 8025
