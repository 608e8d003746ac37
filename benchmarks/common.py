"""What several benchmarks share: a scratch database, a free port, the fake
SendGrid in a process of its own, and a process's peak memory.

The benchmarks import nothing from tests/ but the loopback fakes, so they never
depend on pytest or the suite's fixtures.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def scratch_database(url: str, folder: Path) -> Iterator[str]:
    """A fresh SQLite file, or a throwaway schema in the PostgreSQL database at ``url``."""
    if not url:
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextlib.contextmanager
def kept_database(url: str, folder: Path) -> Iterator[str]:
    """Like :func:`scratch_database`, but kept for a later run: the SQLite file in
    ``folder``, or a PostgreSQL schema whose name is written to ``folder/pg-schema``."""
    if not url:
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    import sqlalchemy as sa

    name = folder / "pg-schema"
    if name.exists():
        schema = name.read_text().strip()
    else:
        schema = f"bench_kept_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(url)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        name.write_text(schema)
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3D{schema}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fake(api_key: str) -> tuple[subprocess.Popen, int]:
    """The loopback SendGrid fake in its own process; returns it and its port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.sendgrid", "--validator", "fast", "--api-key", api_key],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline().split()[1])


def vm_hwm_kb(pid: str = "self") -> int:
    """Peak RSS of a process (VmHWM). Not ru_maxrss: Linux carries that across exec."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


#: the [site] table of the benchmarks' configs (scale.py adds a postal address)
SITE_TOML = """[site]
name = "The Steppe Ledger"
url = "https://steppe-ledger.example/"
from_email = "digest@steppe-ledger.example"
public_url = "https://steppe-ledger.example/newsletter"
unsubscribe_mailto = "unsubscribe@steppe-ledger.example"
"""


def every_digest_rows(subscriber_ids: range, now: object) -> list[dict]:
    """``subscriptions`` rows putting each subscriber on every digest ("*"), as an
    import or the subscriptions migration makes them (scripts that seed tables
    directly need them, or every claim finds its readers gone)."""
    return [
        {
            "subscriber_id": i,
            "digest": "*",
            "status": "active",
            "created_at": now,
            "updated_at": now,
            "consent_source": "import",
        }
        for i in subscriber_ids
    ]
