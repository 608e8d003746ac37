"""`serve` deployable: its systemd unit through systemd-analyze, its Kubernetes
manifests against the Kubernetes schema (offline), probes that reach real routes,
liveness and readiness as they answer, the proxy examples (read, and run by nginx
and Caddy in front of a serve process)."""

from __future__ import annotations

import configparser
import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.store import Store, open_store
from newsletter.store.db import make_engine
from newsletter.tracking.app import create_app
from tests.fakes.event_webhook import LiveApp
from tests.fakes.mail import free_port
from tests.fakes.serve import ServeProcess
from tests.helpers import IN_CI, SECRET, SECRET_ENV, SIGNUP_CONFIG, build_config, self_signed

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


def test_the_ingress_routes_the_public_pages_and_keeps_probes_and_metrics_inside():
    """As ingress-nginx uses the path (use-regex): a case-insensitive location
    anchored at the start, and the rewrite-target built from its groups."""
    import re

    ingress = docs()[2]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/use-regex"] == "true"
    target = annotations["nginx.ingress.kubernetes.io/rewrite-target"]
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]["path"]

    def serve_path(uri: str) -> str | None:
        found = re.match(path, uri, re.IGNORECASE)
        if found is None:
            return None
        return re.sub(r"\$(\d)", lambda m: found.group(int(m[1])) or "", target)

    for public in (
        "/subscribe",
        "/subscribe/confirm/abc.def",
        "/unsubscribe/abc.def",
        "/preferences/abc.def",
        "/webhooks/sendgrid",
    ):
        assert serve_path("/newsletter" + public) == public
    for internal in ("/healthz", "/readyz", "/metrics", "/", ""):
        assert serve_path("/newsletter" + internal) is None, internal


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


# ------------------------------------------------------------------ the proxy examples, run


def require(tool: str) -> str:
    """The path of ``tool`` (scripts/system-deps.sh installs it); skip without it, fail in CI."""
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin")
    if path is None:
        message = f"{tool} is needed to run the proxy example (bash scripts/system-deps.sh)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextlib.contextmanager
def running(argv: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    """``argv`` as a process until the block ends, once it accepts on 127.0.0.1:``port``."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{argv[0]} exited: {proc.stdout.read().decode()}")  # type: ignore[union-attr]
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, f"{argv[0]} did not listen"
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def behind_the_proxy(tmp_path: Path, db_url: str, start_proxy, denied: int) -> None:  # noqa: ANN001
    """serve behind the example ``start_proxy(serve_port, proxy_port)``: the path prefix
    goes, probes stay internal, and the rate limit sees the reader's own address
    (127.0.0.2 here) whatever X-Forwarded-For the reader sent."""
    build_config(
        tmp_path,
        toml=SIGNUP_CONFIG,
        env=SECRET_ENV,
        database=db_url,
        webhook={"trusted_proxies": ["127.0.0.1"]},
    )
    open_store(db_url).close()
    proxy_port = free_port()
    with (
        ServeProcess(tmp_path / "newsletter.toml", db_url, SECRET) as srv,
        start_proxy(srv.port, proxy_port),
        httpx.Client(
            base_url=f"https://127.0.0.1:{proxy_port}/newsletter",
            transport=httpx.HTTPTransport(local_address="127.0.0.2", verify=False),
            headers={"Host": "steppe-ledger.example"},
            timeout=10,
        ) as reader,
    ):
        # Caddy listens before its own CA has issued the certificate
        deadline = time.monotonic() + 30
        while True:
            try:
                form = reader.get("/subscribe")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "no TLS answer from the proxy"
                time.sleep(0.2)
        assert form.status_code == 200 and 'name="digest"' in form.text
        r = reader.post(
            "/subscribe",
            data={"email": "reader@example.com", "digest": "weekly"},
            headers={"X-Forwarded-For": "203.0.113.66"},
        )
        assert r.status_code == 202, r.text
        assert reader.get("/unsubscribe/not-a-token").status_code == 404  # serve's own page
        for probe in ("/healthz", "/readyz", "/metrics"):
            assert reader.get(probe).status_code == denied
    store = open_store(db_url)
    sub = store.get_subscriber("reader@example.com")
    (weekly,) = store.subscriptions_of(sub.id)
    assert weekly.consent_ip == "127.0.0.2"
    store.close()


def test_the_nginx_example_runs_in_front_of_serve(tmp_path, db_url):
    nginx = require("nginx")
    crt, key = self_signed(tmp_path, "steppe-ledger.example")
    site = (CRON / "nginx-serve.conf").read_text("utf-8")
    site = site.replace("/etc/letsencrypt/live/steppe-ledger.example/fullchain.pem", str(crt))
    site = site.replace("/etc/letsencrypt/live/steppe-ledger.example/privkey.pem", str(key))
    (tmp_path / "logs").mkdir()

    @contextlib.contextmanager
    def start(serve_port: int, port: int) -> Iterator[None]:
        text = site.replace("127.0.0.1:8025", f"127.0.0.1:{serve_port}")
        text = text.replace("listen 443 ", f"listen 127.0.0.1:{port} ")
        text = text.replace("listen [::]:443 ssl http2;", "")
        (tmp_path / "site.conf").write_text(text, encoding="utf-8")
        # everything nginx writes in tmp_path, so it runs without root too
        temp = "".join(
            f"  {kind}_temp_path {tmp_path}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (tmp_path / "nginx.conf").write_text(
            f"daemon off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\n"
            f"events {{}}\nhttp {{\n  access_log off;\n{temp}"
            f"  include {tmp_path}/site.conf;\n}}\n",
            encoding="utf-8",
        )
        argv = [nginx, "-e", "stderr", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
        checked = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        with running(argv, port):
            yield

    behind_the_proxy(tmp_path, db_url, start, denied=403)


def test_the_caddy_example_runs_in_front_of_serve(tmp_path, db_url):
    caddy = require("caddy")
    site = (CRON / "Caddyfile.serve").read_text("utf-8")
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }

    @contextlib.contextmanager
    def start(serve_port: int, port: int) -> Iterator[None]:
        # Caddy's own CA for the loopback address, instead of a public certificate
        globals_ = (
            f"{{\n\tadmin off\n\tlocal_certs\n\tskip_install_trust\n\thttp_port {free_port()}\n"
            f"\thttps_port {port}\n\tdefault_sni steppe-ledger.example\n}}\n"
        )
        text = site.replace("127.0.0.1:8025", f"127.0.0.1:{serve_port}")
        (tmp_path / "Caddyfile").write_text(globals_ + text, encoding="utf-8")
        argv = [caddy, "run", "--config", str(tmp_path / "Caddyfile"), "--adapter", "caddyfile"]
        checked = subprocess.run(
            [caddy, "validate", *argv[2:]], capture_output=True, text=True, timeout=60, env=env
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        with running(argv, port, env=env):
            yield

    behind_the_proxy(tmp_path, db_url, start, denied=404)
