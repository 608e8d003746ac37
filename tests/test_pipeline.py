"""The walking skeleton end to end: ingest → rates → compile → send → record."""

import email
import email.policy
import json
from datetime import datetime

from click.testing import CliRunner

from newsletter.cli import cli

AT = "2026-11-30T07:05:00+05:00"


def invoke(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def test_run_fills_the_outbox_once_per_period(project):
    assert invoke("subscribers", "import", "subscribers.csv").exit_code == 0
    first = invoke("run", "--at", AT, "--json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.output)
    (digest,) = report["digests"]
    assert digest["status"] == "sent"
    # 24 sample subscribers: one unsubscribed and one bounced are left out
    assert digest["recipients"] == 22
    emls = sorted((project / "outbox" / f"edition-{digest['edition_id']}").glob("*.eml"))
    assert len(emls) == 22

    msg = email.message_from_bytes(emls[0].read_bytes(), policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsub = msg["List-Unsubscribe"]
    assert "<https://steppe-ledger.example/newsletter/unsubscribe/" in unsub
    assert "mailto:unsubscribe@steppe-ledger.example" in unsub
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    url = unsub.split("<", 1)[1].split(">", 1)[0]
    assert url in text and url in html
    assert "%%" not in text and "%%" not in html
    assert "KZT/USD" in text and "KZT/USD" in html

    preview = (project / "outbox" / f"edition-{digest['edition_id']}" / "preview.html").read_text()
    assert "%%" not in preview and "/unsubscribe/PREVIEW" in preview

    second = invoke("run", "--at", AT, "--json")
    assert json.loads(second.output)["digests"][0]["status"] == "already-sent"
    assert len(list((project / "outbox").rglob("*.eml"))) == 22

    status = json.loads(invoke("status", "--json").output)
    assert status["counts"]["accepted"] == 22
    assert status["status"] == "sent"


def test_articles_of_an_edition_are_never_sent_again(project):
    invoke("subscribers", "import", "subscribers.csv")
    invoke("run", "--at", AT)
    # a week later the window starts at the previous edition: the old stories are gone
    nxt = invoke("run", "--at", "2026-12-07T07:05:00+05:00", "--json")
    d = json.loads(nxt.output)["digests"][0]
    assert d["status"] == "too-few-articles"


def test_first_edition_takes_the_last_seven_days(project):
    invoke("ingest")
    out = json.loads(invoke("articles", "--since", "2026-11-23T07:05:00+05:00", "--json").output)
    at = datetime.fromisoformat(AT)
    invoke("subscribers", "add", "reader@example.com")
    invoke("run", "--at", AT)
    eml = next((project / "outbox").rglob("*.eml"))
    text = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    body = text.get_body(("plain",)).get_content()
    wanted = [
        a
        for a in out
        if datetime.fromisoformat(a["published_at"]) < at
        and {"kazakhstan", "uzbekistan", "kyrgyzstan", "tajikistan", "turkmenistan"}
        & set(a["tags"])
    ]
    assert wanted
    for a in wanted:
        assert a["url"] in body
