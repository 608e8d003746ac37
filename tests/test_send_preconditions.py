"""Preconditions before state, and a failed preflight never sends.

A missing secret key, backend credentials or template stops ``send`` and ``run``
before an edition row exists. The preflight (``newsletter check``) runs on every
variant before the first batch: any error stops the digest (exit 1, the errors
listed, the alert sent) unless ``--skip-check REASON``, recorded on the edition.
"""

from __future__ import annotations

import email
import email.policy
import json

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.store import open_store

AT = "2026-11-30T07:05:00+05:00"


def prepared(project, extra: str = "") -> CliRunner:
    toml = project / "newsletter.toml"
    toml.write_text(
        toml.read_text()
        + '\n[alerts]\nemail_to = ["editors@steppe-ledger.example"]\nvia = "outbox"\n'
        + extra
    )
    runner = CliRunner()
    assert runner.invoke(cli, ["subscribers", "import", "subscribers.csv"]).exit_code == 0
    assert runner.invoke(cli, ["ingest"]).exit_code == 0
    return runner


def nothing_stored(project) -> None:
    store = open_store(f"sqlite:///{project / 'news.db'}")
    try:
        assert store.list_editions() == []
    finally:
        store.close()
    assert not list((project / "outbox").glob("edition-*"))


def alerts(project) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted((project / "outbox" / "alerts").glob("*.eml"))
    ]


def test_without_the_secret_key_no_edition_is_created(project, monkeypatch):
    runner = prepared(project)
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    out = runner.invoke(cli, ["send", "--at", AT])
    assert out.exit_code == 2
    assert out.output.strip() == (
        "Error: NEWSLETTER_SECRET_KEY is not set: unsubscribe links cannot be signed "
        "(export it before sending; nothing was stored)"
    )
    nothing_stored(project)
    out = runner.invoke(cli, ["run", "--at", AT, "--no-ingest"])
    assert out.exit_code == 1
    assert "NEWSLETTER_SECRET_KEY is not set" in out.output
    nothing_stored(project)
    (alert,) = alerts(project)
    assert "NEWSLETTER_SECRET_KEY is not set" in alert.get_content()


def test_without_backend_credentials_no_edition_is_created(project, monkeypatch):
    toml = project / "newsletter.toml"
    toml.write_text(toml.read_text().replace('backend = "outbox"', 'backend = "sendgrid"'))
    runner = prepared(project)
    out = runner.invoke(cli, ["send", "--at", AT])
    assert out.exit_code == 2, out.output
    assert out.output.count("\n") == 1 and "SENDGRID_API_KEY is not set" in out.output
    nothing_stored(project)


@pytest.mark.parametrize(
    "name, body, said",
    [
        ("digest.mjml.j2", "<mjml>{% if %}</mjml>", "template error"),
        ("digest.txt.j2", "{{ unclosed ", "template error"),
    ],
)
def test_a_broken_template_stops_before_the_edition_exists(project, name, body, said):
    (project / "tpl").mkdir()
    (project / "tpl" / name).write_text(body)
    runner = prepared(project, '\n[render]\ntemplates = "tpl"\n')
    out = runner.invoke(cli, ["send", "--at", AT])
    assert out.exit_code == 2, out.output
    assert out.output.count("\n") == 1 and said in out.output and name in out.output
    nothing_stored(project)


def test_a_missing_template_stops_before_the_edition_exists(project):
    toml = project / "newsletter.toml"
    toml.write_text(
        toml.read_text().replace("min_articles = 1", 'min_articles = 1\ntemplate = "nope"')
    )
    runner = prepared(project)
    out = runner.invoke(cli, ["send", "--at", AT])
    assert out.exit_code == 2, out.output
    assert "template nope.mjml.j2 not found" in out.output
    nothing_stored(project)


# a text part without the unsubscribe URL: `newsletter check` reports an error
NO_UNSUBSCRIBE = "{{ subject }}\n\nNo way out of this list.\n"


@pytest.mark.parametrize("command", ["send", "run"])
def test_a_failed_preflight_never_sends(project, command):
    (project / "tpl").mkdir()
    (project / "tpl" / "digest.txt.j2").write_text(NO_UNSUBSCRIBE)
    runner = prepared(project, '\n[render]\ntemplates = "tpl"\n')
    check = runner.invoke(cli, ["check", "--at", AT])
    assert check.exit_code == 1
    args = [command, "--at", AT] + (["--no-ingest"] if command == "run" else [])
    out = runner.invoke(cli, args)
    assert out.exit_code == 1, out.output
    assert "preflight: " in out.output and "nothing was sent or stored" in out.output
    assert "error: [" in out.output and "the text part has no unsubscribe URL" in out.output
    assert "--skip-check REASON" in out.output
    nothing_stored(project)
    (alert,) = alerts(project)
    assert "failed" in alert["Subject"]
    assert "the text part has no unsubscribe URL" in alert.get_content()


def test_skip_check_sends_anyway_and_records_why(project):
    (project / "tpl").mkdir()
    (project / "tpl" / "digest.txt.j2").write_text(NO_UNSUBSCRIBE)
    runner = prepared(project, '\n[render]\ntemplates = "tpl"\n')
    blank = runner.invoke(cli, ["send", "--at", AT, "--skip-check", " "])
    assert blank.exit_code == 2 and "--skip-check needs a reason" in blank.output
    nothing_stored(project)
    out = runner.invoke(cli, ["send", "--at", AT, "--skip-check", "links fixed by the relay"])
    assert out.exit_code == 0, out.output
    store = open_store(f"sqlite:///{project / 'news.db'}")
    (edition,) = store.list_editions()
    info = store.edition_details(edition.id).info
    assert info["skip_check"]["reason"] == "links fixed by the relay"
    assert store.delivery_counts(edition.id)
    store.close()
    assert len(list((project / "outbox" / f"edition-{edition.id}").glob("*.eml"))) == 22
    data = json.loads(runner.invoke(cli, ["status", "--json"]).output)
    assert data["status"] == "sent"
