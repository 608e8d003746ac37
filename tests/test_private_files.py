"""Personal data stays private on disk: whatever the umask, the files that hold
addresses and names are created readable by their owner only."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask():
    """The usual 022: files would be world-readable unless the program sees to it."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_database_wal_shm_lock_and_outbox_are_owner_only(project, loose_umask):
    (project / "news.db").unlink()
    invoke("init")
    assert mode(project / "news.db") == 0o600
    invoke("subscribers", "import", "subscribers.csv")
    invoke("run", "--at", "2026-11-30T07:05+05:00")
    for name in ("news.db", "news.db.run.lock"):
        assert mode(project / name) == 0o600, name
    # the WAL and SHM files exist while a connection is open (the last close removes
    # them); SQLite gives them the database file's mode, whatever the umask
    con = sqlite3.connect(project / "news.db")
    con.execute("CREATE TABLE probe (x)")
    con.commit()
    try:
        for name in ("news.db-wal", "news.db-shm"):
            assert mode(project / name) == 0o600, name
    finally:
        con.close()
    outbox = project / "outbox"
    emls = list(outbox.rglob("*.eml"))
    assert emls
    for folder in {outbox, *(e.parent for e in emls)}:
        assert mode(folder) == 0o700, folder
    for eml in emls:
        assert mode(eml) == 0o600, eml


def test_export_to_a_file_is_owner_only(project, loose_umask):
    invoke("subscribers", "import", "subscribers.csv")
    invoke("subscribers", "export", "--out", "export.csv")
    assert mode(project / "export.csv") == 0o600
    assert (project / "export.csv").read_text().startswith("email,name,tags,timezone,status\n")
    # an existing file is tightened too, not just reused with its mode
    (project / "old.csv").write_text("x")
    (project / "old.csv").chmod(0o644)
    invoke("subscribers", "export", "--out", "old.csv")
    assert mode(project / "old.csv") == 0o600


def test_a_preview_of_one_reader_written_to_a_file_is_owner_only(project, loose_umask):
    """With --as, the preview holds that reader's own unsubscribe and preferences links."""
    invoke("ingest")
    invoke("subscribers", "import", "subscribers.csv")
    reader = (project / "subscribers.csv").read_text().splitlines()[1].split(",")[0]
    at = "2026-11-30T07:05:00+05:00"
    (project / "old.html").write_text("x")
    (project / "old.html").chmod(0o644)
    for name in ("preview.html", "old.html"):
        invoke("preview", "--as", reader, "--at", at, "--out", name)
        assert mode(project / name) == 0o600, name
        assert "/unsubscribe/" in (project / name).read_text()
    # a file that cannot be written: one line naming it, no traceback
    result = CliRunner().invoke(cli, ["preview", "--at", at, "--out", "no/such/dir/p.html"])
    assert result.exit_code == 2, result.output
    assert "no/such/dir/p.html" in result.output and "cannot write" in result.output
    assert "Traceback" not in result.output


def test_an_existing_shared_database_is_reported(project):
    (project / "news.db").chmod(0o644)
    output = invoke("subscribers", "list")
    assert "readable by other users (mode 0644); `chmod 600` it" in output


def test_an_alert_that_is_the_outboxs_first_file_leaves_it_owner_only(project, loose_umask):
    # nobody subscribed yet: the first thing written to the outbox is the idle alert
    toml = project / "newsletter.toml"
    toml.write_text(
        toml.read_text().replace('name = "weekly"', 'name = "weekly"\nalert_idle_periods = 1')
        + '\n[alerts]\nemail_to = ["editors@steppe-ledger.example"]\nvia = "outbox"\n'
    )
    result = CliRunner().invoke(cli, ["run", "--at", "2026-11-30T07:05+05:00"])
    assert result.exit_code == 1, result.output
    outbox = project / "outbox"
    (alert,) = (outbox / "alerts").glob("*.eml")
    assert mode(outbox) == mode(outbox / "alerts") == 0o700
    assert mode(alert) == 0o600
    # the editions written later go into that same owner-only folder
    invoke("subscribers", "import", "subscribers.csv")
    invoke("run", "--at", "2026-11-30T07:10+05:00")
    assert mode(outbox) == 0o700
