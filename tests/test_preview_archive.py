"""The web archive: a static page per sent edition, without personal data, and indexes."""

import email
import email.policy
import json
from datetime import datetime

import lxml.html
import pytest
from click.testing import CliRunner

from newsletter.articles.ingest import ingest
from newsletter.audience.subscribers import import_csv
from newsletter.cli import cli
from newsletter.editions.archive import publish, render_web
from newsletter.jobs.run import run_digest

AT = "2026-11-30T07:05:00+05:00"
NEXT = "2026-12-07T07:05:00+05:00"


WEEK_TWO = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>The Steppe Ledger</title>
<link>https://steppe-ledger.example/</link><description>news</description>
<item><title>Astana Opens a Second Metro Line</title>
<link>https://steppe-ledger.example/astana-second-metro-line/</link>
<pubDate>Thu, 03 Dec 2026 10:00:00 +0500</pubDate><category>Kazakhstan</category>
<guid isPermaLink="false">https://steppe-ledger.example/?p=50001</guid>
<description>The city opened the line on Thursday.</description></item>
</channel></rss>
"""


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def archived(project):
    cfg = project / "newsletter.toml"
    text = cfg.read_text().replace(
        'unsubscribe_mailto = "unsubscribe@steppe-ledger.example"',
        'unsubscribe_mailto = "unsubscribe@steppe-ledger.example"\n'
        'archive_url = "https://steppe-ledger.example/archive"',
    )
    cfg.write_text(text + '\n[archive]\ndir = "public/archive"\n')
    invoke("subscribers", "import", "subscribers.csv")
    return project


def test_a_sent_edition_is_archived_without_personal_data(archived):
    report = json.loads(invoke("run", "--at", AT, "--json").output)
    (d,) = report["digests"]
    assert d["status"] == "sent"
    folder = archived / "public" / "archive"
    page = folder / "weekly" / f"{d['edition_id']}.html"
    html = page.read_text()
    doc = lxml.html.document_fromstring(html)
    # every story of every variant, once
    eml_titles = set()
    for eml in (archived / "outbox").rglob("*.eml"):
        msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        part = lxml.html.document_fromstring(msg.get_body(("html",)).get_content())
        # whitespace as a reader sees it: the message's HTML lines are broken at
        # spaces (delivery/mime.py short_lines), which HTML shows as spaces
        eml_titles |= {" ".join(h.text_content().split()) for h in part.xpath('//h3[@class="ct"]')}
        # the email's "view in browser" link is this page
        links = {a.text_content(): a.get("href") for a in part.iter("a")}
        assert links["View in browser"] == (
            f"https://steppe-ledger.example/archive/weekly/{d['edition_id']}.html"
        )
    titles = [h.text_content() for h in doc.xpath('//h3[@class="ct"]')]
    assert sorted(titles) == sorted(eml_titles) and len(titles) == len(set(titles))
    # nothing personal: no names, addresses, tokens or placeholders
    csv = (archived / "subscribers.csv").read_text(encoding="utf-8").splitlines()[1:]
    for line in csv:
        email_addr, name = line.split(",")[:2]
        assert email_addr not in html and (not name or name not in html)
    assert "unsubscribe" not in html.lower() and "%%" not in html
    # indexes
    manifest = json.loads((folder / "editions.json").read_text())
    assert manifest == [
        {
            "digest": "weekly",
            "id": d["edition_id"],
            "subject": manifest[0]["subject"],
            "edition_date": "30 November 2026",
            "sent_at": manifest[0]["sent_at"],
            "path": f"weekly/{d['edition_id']}.html",
        }
    ]
    top = lxml.html.document_fromstring((folder / "index.html").read_text())
    assert [a.get("href") for a in top.xpath("//li/a")] == [f"weekly/{d['edition_id']}.html"]
    mine = lxml.html.document_fromstring((folder / "weekly" / "index.html").read_text())
    assert [a.get("href") for a in mine.xpath("//li/a")] == [f"{d['edition_id']}.html"]


def test_the_index_lists_editions_newest_first_and_republishing_is_idempotent(archived):
    first = json.loads(invoke("run", "--at", AT, "--json").output)["digests"][0]["edition_id"]
    (archived / "feed.xml").write_text(WEEK_TWO)
    second = json.loads(invoke("run", "--at", NEXT, "--json").output)["digests"][0]
    assert second["status"] == "sent"
    folder = archived / "public" / "archive"
    ids = [e["id"] for e in json.loads((folder / "editions.json").read_text())]
    assert ids == [second["edition_id"], first]
    again = invoke("archive", "--all")
    assert again.exit_code == 0 and len(again.output.split()) == 2
    assert [e["id"] for e in json.loads((folder / "editions.json").read_text())] == ids


def test_archive_command_errors(project):
    no_dir = CliRunner().invoke(cli, ["archive"])
    assert no_dir.exit_code == 2 and "[archive] dir is not set" in no_dir.output
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text() + '\n[archive]\ndir = "arch"\n')
    none = CliRunner().invoke(cli, ["archive"])
    assert none.exit_code == 1 and "no sent edition to archive" in none.output
    missing = CliRunner().invoke(cli, ["archive", "42"])
    assert missing.exit_code == 1 and "no such edition" in missing.output


def test_an_archive_failure_does_not_fail_the_send(archived):
    (archived / "public").write_text("a file where the folder should be")
    result = invoke("run", "--at", AT, "--json")
    report = json.loads(result.stdout)
    assert report["digests"][0]["status"] == "sent"
    assert "not archived" in result.stderr and "cannot write the web archive" in result.stderr


def test_the_web_page_has_every_variant_story(store, config, tmp_path):
    ingest(store, config, config.sources)
    import_csv(store, config.base_dir / "subscribers.csv")
    config.archive.dir = str(tmp_path / "arch")
    out = run_digest(store, config, config.digest(), datetime.fromisoformat(AT), force=True)
    details = store.edition_details(out.edition_id)
    ids = {a for v in details.variants.values() for a in v}
    web = render_web(store, config, out.edition_id)
    doc = lxml.html.document_fromstring(web.html)
    titles = [h.text_content() for h in doc.xpath('//h3[@class="ct"]')]
    assert sorted(titles) == sorted(a.title for a in store.get_articles(sorted(ids)))
    assert web.overflow == 0
    page = publish(store, config, out.edition_id)
    assert page == tmp_path / "arch" / "weekly" / f"{out.edition_id}.html"
    assert page.read_text() == web.html
