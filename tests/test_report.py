"""`newsletter report`: one self-contained HTML page an editor can read at a glance."""

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.tracking.report import (
    build_report,
    chart_svg,
    group_reasons,
    render_report,
    timeline,
)
from tests.helpers import build_config, seeded


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_the_page_has_the_funnel_chart_links_and_bounces(store):
    sent = seeded(store)
    html = render_report(build_report(store, sent.edition_id))
    # funnel: 6 sent, 5 delivered (the bounce is not), 3 opened (a click implies an open), 3 clicked
    assert re.search(r"Delivered</div>.*?5 · 83.3%", html, re.S)
    assert re.search(r"Opened</div>.*?3 · 50.0%", html, re.S)
    assert re.search(r"Clicked</div>.*?3 · 50.0%", html, re.S)
    # links: by people, then clicks
    links = re.findall(
        r'<td class="url">(.*?)</td>\s*<td class="num">(\d+)</td><td class="num">(\d+)', html
    )
    assert links[0] == (
        '<a href="https://news.example/top" rel="noreferrer noopener">https://news.example/top</a>',
        "2",
        "3",
    )
    # a hostile URL is shown, never linked
    assert "javascript:alert(1)" in html and 'href="javascript' not in html
    # bounces grouped with the address blanked, text escaped
    assert "550 5.1.1 &lt;address&gt;: Recipient address rejected" in html
    assert "r5@example.com" not in html
    assert "421 &lt;b&gt;try&lt;/b&gt; later" in html
    # an inline chart with one line per kind of event
    assert html.count("<polyline") == 4
    parser = Collect()
    parser.feed(html)
    assert not [t for t, a in parser.tags if t in ("script", "link", "img", "iframe")]
    assert not [a for t, a in parser.tags if "src" in a]


def test_timeline_buckets_fit_the_span():
    t = datetime(2026, 12, 1, 7, tzinfo=UTC)
    items = [
        ("delivered", t),
        ("delivered", t + timedelta(minutes=3)),
        ("opened", t + timedelta(hours=2)),
    ]
    tl = timeline(items)
    assert tl["bucket"] == timedelta(minutes=5)
    assert sum(tl["series"]["delivered"]) == 2 and sum(tl["series"]["opened"]) == 1
    week = timeline([("clicked", t), ("clicked", t + timedelta(days=7))])
    assert week["bucket"] == timedelta(hours=3)
    assert len(week["series"]["clicked"]) <= 96
    assert "No events" in chart_svg(timeline([]))


def test_reasons_group_across_addresses():
    rows = [
        ("bounced", "550 <a@x.org> unknown", 2),
        ("bounced", "550 <b@y.org> unknown", 3),
        ("dropped", "Bounced Address", 1),
    ]
    assert group_reasons(rows) == [
        {"kind": "bounced", "reason": "550 <address> unknown", "count": 5},
        {"kind": "dropped", "reason": "Bounced Address", "count": 1},
    ]


def test_the_cli_writes_the_page(project):
    from newsletter.store import open_store

    store = open_store(build_config(project).database_url)
    sent = seeded(store)
    store.close()
    r = CliRunner().invoke(cli, ["report", str(sent.edition_id), "--out", "out.html"])
    assert r.exit_code == 0 and r.output == "wrote out.html\n"
    assert "<svg" in (project / "out.html").read_text(encoding="utf-8")
    r = CliRunner().invoke(cli, ["report", "999", "--out", "x.html"])
    assert r.exit_code == 1 and "no edition 999" in r.output
    r = CliRunner().invoke(cli, ["report", str(sent.edition_id), "--out", "missing/dir/x.html"])
    assert r.exit_code == 2 and "missing/dir/x.html: cannot write" in r.output


def test_a_backend_without_delivery_events_shows_accepted_not_zero_percent(project):
    """SMTP and the outbox only tell that a message was accepted: the page says so,
    as `status` does, instead of a funnel that reads "Delivered 0 · 0.0%"."""
    assert CliRunner().invoke(cli, ["subscribers", "import", "subscribers.csv"]).exit_code == 0
    assert CliRunner().invoke(cli, ["run", "--at", "2026-11-30T07:05+05:00"]).exit_code == 0
    r = CliRunner().invoke(cli, ["report", "1", "--out", "out.html"])
    assert r.exit_code == 0, r.output
    html = (project / "out.html").read_text(encoding="utf-8")
    assert re.search(r"Sent</div>.*?22 · 100.0%", html, re.S)
    for step in ("Delivered", "Opened", "Clicked"):
        assert re.search(step + r"</div>.*?not known</div>", html, re.S), step
    assert not re.search(r"(?<![\d.])0\.0%", html)
    assert (
        "outbox: no delivery events; delivered, opened, clicked and bounced are not known" in html
    )
