"""One Jinja environment (render/env.py) for everything a reader or an editor
sees: a newsroom's `[render] templates` folder re-brands the reader pages of
`newsletter serve` (over real HTTP), the report and the archive index."""

import json

import httpx
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.delivery.message import unsubscribe_url
from newsletter.store import open_store
from newsletter.tracking.app import create_app
from tests.fakes.event_webhook import LiveApp, sent_edition
from tests.helpers import build_config, seeded

KEY = "test-secret-key-0123456789"
AT = "2026-11-30T07:05:00+05:00"

SITE = """
[site]
name = "The Steppe Ledger"
url = "https://steppe-ledger.example/"
public_url = "https://steppe-ledger.example/newsletter"

[render]
templates = "{templates}"

[[digests]]
name = "weekly"
title = "Weekly digest"
tags = ["Kazakhstan", "Energy"]
"""

#: a page that extends nothing: the bundled one is not used at all
PAGE = """<!doctype html><html lang="{{ language }}"><body class="steppe-brand">
<h1>{{ title }}</h1><p id="mode">{{ mode }} · {{ digest_title }}</p></body></html>
"""


def brand(folder):
    (folder / "pages").mkdir(parents=True)
    (folder / "pages" / "page.html.j2").write_text(PAGE, encoding="utf-8")
    return folder


def test_a_template_folder_rebrands_the_reader_pages(tmp_path):
    brand(tmp_path / "my-templates")
    cfg = build_config(
        tmp_path,
        toml=SITE.format(templates="my-templates"),
        env={"NEWSLETTER_SECRET_KEY": KEY},
        database=f"sqlite:///{tmp_path / 'p.db'}",
    )
    store = open_store(cfg.database_url)
    sent = sent_edition(store, ["aigerim@example.com"])
    (sid,) = [d.subscriber_id for d in sent.deliveries]
    link = unsubscribe_url(cfg, sid, "weekly").removeprefix(cfg.site.public_url)
    try:
        with LiveApp(create_app(cfg, store)) as srv:
            page = httpx.get(srv.url(link))
            assert page.status_code == 200
            assert '<body class="steppe-brand">' in page.text
            assert '<p id="mode">confirm · Weekly digest</p>' in page.text
            assert "<h1>Unsubscribe</h1>" in page.text
            # every reader page goes through it: the invalid link's too
            bad = httpx.get(srv.url("/unsubscribe/not-a-token"))
            assert bad.status_code == 404 and '<p id="mode">invalid · </p>' in bad.text
            # the one-click POST still works and answers with the newsroom's page
            left = httpx.post(
                srv.url(link),
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert left.status_code == 200 and '<p id="mode">left · </p>' in left.text
    finally:
        store.close()


def test_a_template_folder_rebrands_the_report(project):
    folder = project / "my-templates" / "report"
    folder.mkdir(parents=True)
    (folder / "report.html.j2").write_text(
        "<p class=steppe-report>{{ s.sent }} sent, {{ s.rates.delivery | pct }} delivered</p>\n",
        encoding="utf-8",
    )
    cfg = build_config(project, toml_extra='\n[render]\ntemplates = "my-templates"\n')
    store = open_store(cfg.database_url)
    sent = seeded(store)
    store.close()
    r = CliRunner().invoke(cli, ["report", str(sent.edition_id), "--out", "out.html"])
    assert r.exit_code == 0, r.output
    assert (project / "out.html").read_text() == (
        "<p class=steppe-report>6 sent, 83.3% delivered</p>\n"
    )


def test_a_template_folder_rebrands_the_archive_index(project):
    folder = project / "my-templates" / "archive"
    folder.mkdir(parents=True)
    (folder / "index.html.j2").write_text(
        "<ul class=steppe-archive>{% for e in entries %}<li>{{ e.path }}</li>{% endfor %}</ul>\n",
        encoding="utf-8",
    )
    toml = project / "newsletter.toml"
    toml.write_text(
        toml.read_text() + '\n[archive]\ndir = "public/archive"\n'
        '\n[render]\ntemplates = "my-templates"\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    assert runner.invoke(cli, ["subscribers", "import", "subscribers.csv"]).exit_code == 0
    report = json.loads(runner.invoke(cli, ["run", "--at", AT, "--json"]).output)
    (d,) = report["digests"]
    index = (project / "public" / "archive" / "index.html").read_text()
    assert index == f"<ul class=steppe-archive><li>weekly/{d['edition_id']}.html</li></ul>\n"


def test_the_confirmation_link_is_written_in_right_whatever_the_template_does(tmp_path):
    """The confirmation is rendered once with a stand-in for its link; a template
    that only prints the link gets it written in (escaped in HTML), one that does
    more with it (a filter, a slice) is rendered in full: both equal a full render."""
    from newsletter.tracking.signup import render_mail

    (tmp_path / "tpl" / "mail").mkdir(parents=True)
    mail = tmp_path / "tpl" / "mail"
    (mail / "confirm.html.j2").write_text('<a href="{{ confirm_url }}">{{ site }}</a>\n')
    (mail / "confirm.txt.j2").write_text("{{ confirm_url }}\n")
    (mail / "welcome.html.j2").write_text("<p>{{ confirm_url | upper }}</p>\n")
    (mail / "welcome.txt.j2").write_text("{{ confirm_url[:30] }}|{{ confirm_url | length }}\n")
    cfg = build_config(tmp_path, toml=SITE.format(templates=tmp_path / "tpl"), env={})
    for link in ("https://x.example/a?b=1&c=<d>'e\"", "https://x.example/other/x.y"):
        for kind in ("confirm", "welcome"):
            values = {"confirm_url": link, "digests": ["Weekly digest"], "hours": "48"}
            once = render_mail(cfg, kind, dict(values), "en", link_key="confirm_url")
            full = render_mail(cfg, kind, dict(values), "en")
            assert once == full
    html, text = render_mail(
        cfg, "confirm", {"confirm_url": "https://x.example/?a=1&b=2"}, "en", "confirm_url"
    )
    assert html == '<a href="https://x.example/?a=1&amp;b=2">The Steppe Ledger</a>\n'
    assert text == "https://x.example/?a=1&b=2\n"
