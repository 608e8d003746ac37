"""Helpers shared by the test modules: the one config builder, sample data, small builders.

Test modules import from here (and fakes from tests/fakes/), never from each other.
See tests/README.md for how the suite is laid out.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tomllib
import typing
from dataclasses import is_dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import Config, default_config, load_config, to_toml
from newsletter.editions.freeze import create_edition, left_out_counts
from newsletter.editions.plan import plan_edition
from newsletter.models import Article, Rendered, Subscriber, Tag
from newsletter.store import Store, open_store
from newsletter.store.deliveries import AudienceRow
from tests.fakes.banks import Banks

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
IN_CI = os.environ.get("CI") == "true"

#: the secret key every test config signs tokens with
SECRET = "test-secret-key-0123456789"
#: env for a config that needs only the secret key (and nothing from os.environ)
SECRET_ENV = {"NEWSLETTER_SECRET_KEY": SECRET}

# --------------------------------------------------------------------------- configs

#: the sample project of the ``project`` fixture (RSS feed, outbox, one weekly digest)
SAMPLE_CONFIG = """
database = "sqlite:///news.db"

[site]
name = "The Steppe Ledger"
url = "https://steppe-ledger.example/"
postal_address = "1 Abai Avenue, Almaty"
from_email = "digest@steppe-ledger.example"
public_url = "https://steppe-ledger.example/newsletter"
unsubscribe_mailto = "unsubscribe@steppe-ledger.example"

[[sources]]
name = "sample"
type = "rss"
url = "feed.xml"

[delivery]
backend = "outbox"
outbox_dir = "outbox"

[[digests]]
name = "weekly"
title = "Weekly digest"
tags = ["kazakhstan", "uzbekistan", "kyrgyzstan", "tajikistan", "turkmenistan"]
schedule = "0 7 * * MON"
timezone = "Asia/Almaty"
min_articles = 1
"""

#: the delivery tests' site: no sources, no digests, outbox backend in batches of 1000
DELIVERY_CONFIG = """
[site]
name = "The Steppe Ledger"
url = "https://steppe-ledger.example/"
from_email = "digest@steppe-ledger.example"
public_url = "https://steppe-ledger.example/newsletter"
unsubscribe_mailto = "unsubscribe@steppe-ledger.example"

[delivery]
backend = "outbox"
batch_size = 1000
outbox_dir = "outbox"
"""

#: the signup tests' site: two digests, an outbox, signup limits and CORS
SIGNUP_CONFIG = """
[site]
name = "The Steppe Ledger"
url = "https://steppe-ledger.example/"
public_url = "https://steppe-ledger.example/newsletter"
from_email = "digest@steppe-ledger.example"

[delivery]
backend = "outbox"
outbox_dir = "outbox"

[signup]
per_ip = 50
per_address = 5
resend_minutes = 10
cors_origins = ["https://steppe-ledger.example"]

[webhook]
trusted_proxies = []

[[digests]]
name = "weekly"
title = "Weekly digest"
tags = ["Kazakhstan", "Uzbekistan", "Energy"]

[[digests]]
name = "daily"
title = "Daily briefing"
tags = ["kazakhstan", "Energy"]
"""


def _merge(into: dict[str, Any], overrides: typing.Mapping[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _set(obj: Any, overrides: typing.Mapping[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and is_dataclass(getattr(obj, key, None)):
            _set(getattr(obj, key), value)
        else:
            setattr(obj, key, value)


def build_config(
    folder: Path | None = None,
    *,
    toml: str | None = None,
    toml_extra: str = "",
    env: typing.Mapping[str, str] | None = None,
    database: str | None = None,
    **section_overrides: dict[str, Any],
) -> Config:
    """The one way a test gets a :class:`Config`.

    With ``folder``: writes ``folder/newsletter.toml`` and loads it with
    :func:`load_config`, as the CLI would. The file is ``toml`` (a whole file, e.g.
    :data:`SAMPLE_CONFIG`) or, when ``toml`` is None, the file already there (or an
    empty one), followed by ``toml_extra``. ``section_overrides`` (``delivery={"batch_size":
    2}``, nested tables as nested dicts) are merged into the file before it is written,
    so they are validated like any setting.

    Without ``folder``: :func:`default_config`, the built-in defaults, with
    ``section_overrides`` set on the loaded sections.

    ``env`` is the environment the config sees (None: ``os.environ``, as the CLI);
    ``database`` is ``--db``.
    """
    if folder is None:
        if toml is not None or toml_extra:
            raise TypeError("build_config: a TOML text needs a folder to be written to")
        cfg = default_config(env=env, database=database)
        _set(cfg, section_overrides)
        return cfg
    path = folder / "newsletter.toml"
    if toml is not None or toml_extra or section_overrides or not path.exists():
        # (a file left as it is is not written again: a sender may be reading it)
        if toml is None:
            toml = path.read_text(encoding="utf-8") if path.exists() else ""
        text = toml + toml_extra
        if section_overrides:
            data = tomllib.loads(text)
            _merge(data, section_overrides)
            text = to_toml(data)
        path.write_text(text, encoding="utf-8")
    return load_config(path, env=env, database=database)


# --------------------------------------------------------------------------- deliveries

#: the delivery tests' clock
NOW = datetime(2026, 11, 30, 2, 5, tzinfo=UTC)

#: a rendered edition with every per-recipient placeholder
RENDER = Rendered(
    subject="Weekly digest for %%name%%",
    html=(
        "<p>Hello %%name%%</p><a href='%%unsubscribe_url%%'>Unsubscribe</a> "
        "<a href='%%preferences_url%%'>Preferences</a>"
    ),
    text="Hello %%name%%\nUnsubscribe: %%unsubscribe_url%%\n",
)


def freeze_audience(store: Store, edition_id: int, variants: dict) -> int:
    """Freeze an explicit audience: variant -> [(subscriber id, email)]."""
    rows = [
        AudienceRow(subscriber_id=sid, email=email, variant=variant)
        for variant, subs in variants.items()
        for sid, email in subs
    ]
    return store.freeze_audience(edition_id, rows, left_out=left_out_counts(store))


def add_subscribers(store: Store, emails: list[str], **kw: Any) -> list[int]:
    ids = []
    with store.begin() as conn:
        for i, email in enumerate(emails):
            name = kw.get("names", {}).get(email, f"Reader {i}")
            sub = Subscriber(email=email, name=name, status=kw.get("status", "active"))
            ids.append(store.upsert_subscriber(sub, conn=conn)[0])
    return ids


def make_edition(store: Store, n: int = 0, *, emails: list[str] | None = None) -> int:
    """An edition of digest "weekly" frozen for ``n`` new active subscribers."""
    emails = emails or [f"reader{i}@example.com" for i in range(n)]
    ids = add_subscribers(store, emails)
    eid, _ = store.create_edition(
        digest="weekly",
        period=f"p{len(store.list_editions())}",
        subject="s",
        window_start=NOW,
        window_end=NOW,
    )
    freeze_audience(store, eid, {"default": list(zip(ids, emails, strict=True))})
    return eid


def statuses(store: Store, eid: int) -> dict[str, int]:
    """Deliveries of an edition by status, all variants together."""
    out: dict[str, int] = {}
    for counts in store.delivery_counts(eid).values():
        for k, v in counts.items():
            out[k] = out.get(k, 0) + v
    return out


def dead_worker() -> str:
    """A worker id (host:pid) of a process that has exited."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return f"{socket.gethostname()}:{proc.stdout.strip()}"


# --------------------------------------------------------------------------- browser


def require_chromium() -> None:
    """Skip (fail in CI) unless Debian's chromium and Playwright are installed."""
    from newsletter.preview.screenshot import CHROMIUM

    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium, or `bash scripts/system-deps.sh`)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("Playwright (pip install -e '.[test]')")
    if missing:
        msg = "browser tests need " + " and ".join(missing)
        if IN_CI:
            pytest.fail(msg + "; in CI they must run")
        pytest.skip(msg)


# --------------------------------------------------------------------------- SendGrid

#: the API key the fake SendGrid of the in-process tests accepts
SENDGRID_KEY = "SG.test-key-abcdef"


def sg_config(folder: Path, fake: Any, *, batch_size: int = 1000, **settings: Any) -> Config:
    """The delivery config sending through ``fake`` (a FakeSendGrid) with these settings."""
    # a generous timeout: a loaded CI machine must not turn a slow answer into an
    # "unknown outcome"; the timeout tests set their own. One worker unless a test
    # asks for more: with several, batch sizes depend on who claims first
    settings = {"backoff": 0.01, "timeout": 10.0, "concurrency": 1, **settings}
    return build_config(
        folder,
        toml=DELIVERY_CONFIG,
        env={**SECRET_ENV, "SENDGRID_API_KEY": SENDGRID_KEY, "NEWSLETTER_SENDGRID_HOST": fake.url},
        delivery={"backend": "sendgrid", "batch_size": batch_size, "sendgrid": settings},
    )


def send(store: Store, cfg: Config, eid: int, renders: dict | None = None) -> Any:
    """Send edition ``eid`` with the backend ``cfg`` names (all variants rendered as RENDER)."""
    from newsletter.delivery.backends import make_backend
    from newsletter.delivery.send import send_edition

    return send_edition(store, cfg, eid, renders or {"default": RENDER}, make_backend(cfg))


# --------------------------------------------------------------------------- send processes

#: the run clock of the sample project's first weekly edition
AT = "2026-11-30T07:05:00+05:00"


def prepare(folder: Path, db_url: str, n: int, *, sendgrid: str = "") -> tuple[int, dict]:
    """A project with ``n`` subscribers and a frozen edition; returns (edition, env)."""
    toml = SAMPLE_CONFIG.replace('backend = "outbox"', 'backend = "sendgrid"\nbatch_size = 10')
    toml += "\n[delivery.sendgrid]\nconcurrency = 1\ntimeout = 5\nbackoff = 0.01\n" + sendgrid
    shutil.copy(ROOT / "newsletter" / "samples" / "feed.xml", folder / "feed.xml")
    rows = ["email,name,tags,timezone,status"]
    rows += [f"p{i}@example.com,Reader {i},,UTC,active" for i in range(n)]
    (folder / "subs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    env = {
        **os.environ,
        "NEWSLETTER_CONFIG": str(folder / "newsletter.toml"),
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_SECRET_KEY": SECRET,
        "SENDGRID_API_KEY": SENDGRID_KEY,
    }
    cfg = build_config(folder, toml=toml, env=env)
    runner = CliRunner()
    for args in (["init"], ["subscribers", "import", str(folder / "subs.csv")], ["ingest"]):
        out = runner.invoke(cli, args, env=env)
        assert out.exit_code == 0, out.output
    store = open_store(db_url)
    now = datetime.fromisoformat(AT)
    plan = plan_edition(store, cfg, cfg.digest(), now)
    eid, created = create_edition(store, cfg, plan, now)
    assert created and store.delivery_counts(eid)["default"] == {"queued": n}
    store.close()
    return eid, env


def sender(env: dict, host: str) -> subprocess.Popen:
    """`newsletter send --at AT` as a process of its own, sending to SendGrid at ``host``."""
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", "--at", AT],
        env={**env, "NEWSLETTER_SENDGRID_HOST": host},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def unfinished(project: Path) -> int:
    """The sample project's first edition, frozen and never sent (its sender died)."""
    alerts = '\n[alerts]\nemail_to = ["editors@steppe-ledger.example"]\nvia = "outbox"\n'
    cfg = build_config(project, toml_extra=alerts)
    runner = CliRunner()
    assert runner.invoke(cli, ["subscribers", "import", "subscribers.csv"]).exit_code == 0
    assert runner.invoke(cli, ["ingest"]).exit_code == 0
    store = open_store(cfg.database_url)
    plan = plan_edition(store, cfg, cfg.digest(), datetime.fromisoformat(AT))
    eid, created = create_edition(store, cfg, plan, datetime.fromisoformat(AT))
    assert created and store.get_edition(eid).status == "sending"
    store.close()
    return eid


# --------------------------------------------------------------------------- rates


def fetch(banks: Banks, name: str, day: date, **kw: object) -> Any:
    """Provider ``name``'s quotes for ``day`` from the loopback central banks."""
    from newsletter.rates.providers import PROVIDERS

    return PROVIDERS[name](banks.config(**kw)).fetch(day)


# --------------------------------------------------------------------------- articles

#: the store tests' clock
STORE_NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def article(n: int, **kw: Any) -> Article:
    """Story ``n`` tagged Kazakhstan and Energy, published ``n`` hours before STORE_NOW."""
    base = dict(
        uid=f"guid-{n}",
        url=f"https://x.example/{n}/",
        title=f"Story {n}",
        published_at=STORE_NOW - timedelta(hours=n),
        tags=[Tag.from_name("Kazakhstan"), Tag.from_name("Energy")],
    )
    base.update(kw)
    return Article(**base)


# --------------------------------------------------------------------------- report

#: the report tests' first event time (Unix seconds)
T0 = 1796000000


def seeded(store: Store) -> Any:
    """A sent edition of six with a webhook's worth of events (the report tests' data)."""
    from newsletter.tracking.webhook import ingest_sendgrid
    from tests.fakes.event_webhook import body_of, sent_edition, sg_event

    emails = [f"r{i}@example.com" for i in range(6)]
    sent = sent_edition(store, emails)
    d, e = sent.deliveries, sent.edition_id
    events = []
    for i in range(5):
        events.append(sg_event("delivered", d[i], e, timestamp=T0 + i * 60))
    events += [
        sg_event("open", d[0], e, timestamp=T0 + 3600),
        sg_event("open", d[1], e, timestamp=T0 + 7200),
        sg_event("click", d[0], e, url="https://news.example/top", timestamp=T0 + 3700),
        sg_event("click", d[0], e, url="https://news.example/top", timestamp=T0 + 3800),
        sg_event("click", d[1], e, url="https://news.example/top", timestamp=T0 + 7300),
        sg_event("click", d[1], e, url="https://news.example/second", timestamp=T0 + 7400),
        sg_event("click", d[2], e, url="javascript:alert(1)", timestamp=T0 + 7500),
        sg_event(
            "bounce",
            d[5],
            e,
            reason="550 5.1.1 <r5@example.com>: Recipient address rejected",
            timestamp=T0 + 30,
        ),
        sg_event("deferred", d[3], e, response="421 <b>try</b> later", timestamp=T0 + 10),
    ]
    ingest_sendgrid(store, build_config(env={}), body_of(events))
    return sent


def self_signed(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` (an IP address or a name, also its
    subject alternative name) and its key, as PEM files in ``folder``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
