"""Shared fixtures: both database engines, a config on disk, loopback servers."""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.config import Config
from newsletter.store import Store, open_store
from tests.fakes.banks import Banks
from tests.fakes.mail import SmtpServers
from tests.fakes.sendgrid import FakeSendGrid
from tests.helpers import IN_CI, ROOT, SAMPLE_CONFIG, SECRET, SENDGRID_KEY, build_config

PG_URL = os.environ.get(
    "NEWSLETTER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

_pg_ok: bool | None = None


def pg_available() -> bool:
    global _pg_ok
    if _pg_ok is None:
        try:
            eng = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
            with eng.connect() as c:
                c.execute(sa.text("select 1"))
            eng.dispose()
            _pg_ok = True
        except Exception:
            _pg_ok = False
    return _pg_ok


def require_pg() -> None:
    if pg_available():
        return
    msg = (
        f"PostgreSQL not reachable at {PG_URL}. Start it (trust auth, database `test`) "
        "or set NEWSLETTER_TEST_PG_URL to run the PostgreSQL tests."
    )
    if IN_CI:
        pytest.fail(msg + " In CI these tests must run.")
    pytest.skip(msg)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema in the test database, dropped afterwards."""
    require_pg()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'test.db'}")
    yield s
    s.close()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with newsletter.toml, the sample feed and subscribers; cwd set to it."""
    (tmp_path / "newsletter.toml").write_text(SAMPLE_CONFIG, encoding="utf-8")
    shutil.copy(ROOT / "newsletter" / "samples" / "feed.xml", tmp_path / "feed.xml")
    shutil.copy(ROOT / "subscribers" / "sample.csv", tmp_path / "subscribers.csv")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    for var in ("NEWSLETTER_CONFIG", "NEWSLETTER_DATABASE_URL", "SENDGRID_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    # as `newsletter init` would: the CLI never creates a database on its own
    open_store(f"sqlite:///{tmp_path / 'news.db'}").close()
    return tmp_path


@pytest.fixture
def config(project: Path) -> Config:
    """The sample project's config, as the CLI run in it would load it."""
    return build_config(project)


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    """:func:`tests.helpers.build_config` bound to ``tmp_path``.

    ``make_config(toml=SAMPLE_CONFIG, delivery={"batch_size": 2})``
    """
    return functools.partial(build_config, tmp_path)


@pytest.fixture(scope="session")
def bank_server() -> Iterator[Banks]:
    """The loopback central banks; one server for all rates tests (stopping one is slow)."""
    with Banks() as b:
        yield b


@pytest.fixture
def banks(bank_server: Banks) -> Banks:
    """The bank server, reset to its recorded answers."""
    bank_server.reset()
    return bank_server


@pytest.fixture
def sg() -> Iterator[FakeSendGrid]:
    """A fake SendGrid on loopback that takes SENDGRID_KEY (see ``sg_config``)."""
    with FakeSendGrid(api_key=SENDGRID_KEY) as fake:
        yield fake


@pytest.fixture
def smtp_servers() -> Iterator[SmtpServers]:
    """Real aiosmtpd servers, started by the test (``smtp_servers.start(handler)``)."""
    servers = SmtpServers()
    yield servers
    servers.stop()
