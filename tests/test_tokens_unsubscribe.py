"""Unsubscribe pages: RFC 8058 one-click leaves one digest, everything, undo,
preferences by display name, forged links, a real browser."""

import re
import shutil

import httpx
import pytest
import sqlalchemy as sa

from newsletter.delivery.message import list_id, unsubscribe_url
from newsletter.store import open_store
from newsletter.tracking.app import create_app
from tests.fakes.event_webhook import LiveApp, sent_edition
from tests.helpers import build_config

KEY = "test-secret-key-0123456789"
ONE_CLICK = {
    "content": b"List-Unsubscribe=One-Click",
    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
}


def make_site(db_url, tmp_path):
    cfg = build_config(
        tmp_path,
        toml="""
[site]
name = "The Steppe Ledger"
url = "https://steppe-ledger.example/"
public_url = "https://steppe-ledger.example/newsletter"
unsubscribe_mailto = "unsubscribe@steppe-ledger.example"

[[digests]]
name = "weekly"
title = "Weekly digest"
tags = ["Kazakhstan", "Uzbekistan", "Kyrgyzstan", "Tajikistan", "Energy"]

[[digests]]
name = "daily"
title = "Daily briefing"
tags = ["kazakhstan", "Energy", "Oil and Gas"]
""",
        env={"NEWSLETTER_SECRET_KEY": KEY},
        database=db_url,
    )
    store = open_store(cfg.database_url)
    sent = sent_edition(store, ["aigerim@example.com", "olmas@example.org"])
    with LiveApp(create_app(cfg, store)) as srv:

        def link(subscriber_id, digest="weekly"):
            url = unsubscribe_url(cfg, subscriber_id, digest)
            return srv.url(url.removeprefix(cfg.site.public_url))

        yield cfg, store, sent, srv, link
    store.close()


@pytest.fixture
def site(db_url, tmp_path):
    """On both engines."""
    yield from make_site(db_url, tmp_path)


@pytest.fixture
def lite_site(tmp_path):
    """SQLite only, for checks that do not depend on the engine."""
    yield from make_site(f"sqlite:///{tmp_path / 'lite.db'}", tmp_path)


def events(store):
    with store.engine.connect() as c:
        return c.execute(
            sa.text("select provider, provider_event_id, type, delivery_id from events")
        ).all()


def delivery_status(store, did):
    with store.engine.connect() as c:
        return c.execute(
            sa.text("select status from deliveries where id = :i"), {"i": did}
        ).scalar_one()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def audience(store, digest):
    return [s.email for s in store.iter_audience(digest)]


def test_get_shows_the_confirmation_and_changes_nothing(site):
    cfg, store, sent, srv, link = site
    d = sent.deliveries[0]
    r = httpx.get(link(d.subscriber_id))
    assert r.status_code == 200
    assert "Unsubscribe from Weekly digest?" in r.text
    assert "You keep getting Daily briefing." in r.text
    assert "a••••@example.com" in r.text and "aigerim@example.com" not in r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in r.headers
    assert store.get_subscriber("aigerim@example.com").status == "active"
    assert events(store) == []


def test_the_preferences_list_digests_and_topics_by_name_once_each_in_config_order(site):
    cfg, store, sent, srv, link = site
    page = httpx.get(link(sent.deliveries[0].subscriber_id)).text
    digests = re.findall(r'name="digest" value="([^"]+)"( checked)?> ([^<]+)<', page)
    assert [(v, bool(c), n.strip()) for v, c, n in digests] == [
        ("weekly", True, "Weekly digest"),
        ("daily", True, "Daily briefing"),
    ]
    topics = re.findall(r'name="tag" value="([^"]+)"( checked)?> ([^<]+)<', page)
    assert [(v, n.strip()) for v, _, n in topics] == [
        ("kazakhstan", "Kazakhstan"),
        ("uzbekistan", "Uzbekistan"),
        ("kyrgyzstan", "Kyrgyzstan"),
        ("tajikistan", "Tajikistan"),
        ("energy", "Energy"),
        ("oil-and-gas", "Oil and Gas"),
    ]
    assert not any(c for _, c, _ in topics)  # no topic chosen: everything


def test_one_click_post_leaves_that_digest_only_and_repeating_it_changes_nothing(site):
    cfg, store, sent, srv, link = site
    d, other = sent.deliveries
    url = link(d.subscriber_id)
    first = httpx.post(url, **ONE_CLICK)
    assert first.status_code == 200
    assert "You are unsubscribed from Weekly digest" in first.text
    assert "You keep getting Daily briefing." in first.text
    assert 'id="undo"' in first.text and 'id="everything"' in first.text
    assert "set-cookie" not in first.headers
    assert store.get_subscriber("aigerim@example.com").status == "active"
    assert audience(store, "weekly") == ["olmas@example.org"]
    assert audience(store, "daily") == ["aigerim@example.com", "olmas@example.org"]
    assert delivery_status(store, d.delivery_id) == "unsubscribed"
    assert events(store) == [
        ("newsletter", f"unsubscribe:{d.delivery_id}", "unsubscribed", d.delivery_id)
    ]
    second = httpx.post(url, **ONE_CLICK)
    assert second.status_code == 200 and "You are unsubscribed from Weekly digest" in second.text
    assert len(events(store)) == 1
    assert audience(store, "daily") == ["aigerim@example.com", "olmas@example.org"]
    assert delivery_status(store, other.delivery_id) == "accepted"
    # the page now says so
    assert "You are unsubscribed" in httpx.get(url).text


def test_undo_then_everything_then_undo_again(site):
    cfg, store, sent, srv, link = site
    url = link(sent.deliveries[0].subscriber_id)
    httpx.post(url, **ONE_CLICK)
    r = httpx.post(url, content=b"action=undo&digest=weekly", headers=FORM)
    assert r.status_code == 200 and "You get Weekly digest again" in r.text
    assert "aigerim@example.com" in audience(store, "weekly")
    r = httpx.post(url, content=b"action=everything", headers=FORM)
    assert "You are unsubscribed from everything" in r.text
    for digest in ("weekly", "daily", "added-later"):
        assert audience(store, digest) == ["olmas@example.org"]
    undo = re.findall(r'name="digest" value="([^"]+)"', r.text)
    assert sorted(undo) == ["*", "daily", "weekly"]
    body = "&".join(["action=undo", *(f"digest={x}" for x in undo)]).replace("*", "%2A")
    r = httpx.post(url, content=body.encode(), headers=FORM)
    assert "You get Weekly digest, Daily briefing again" in r.text
    for digest in ("weekly", "daily", "added-later"):
        assert audience(store, digest) == ["aigerim@example.com", "olmas@example.org"]


def test_a_post_of_any_body_or_type_is_the_one_click(lite_site):
    cfg, store, sent, srv, link = lite_site
    d = sent.deliveries[0]
    r = httpx.post(link(d.subscriber_id), files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200
    assert audience(store, "weekly") == ["olmas@example.org"]


def test_a_stronger_suppression_survives_an_unsubscribe(lite_site):
    cfg, store, sent, srv, link = lite_site
    store.set_subscriber_status("aigerim@example.com", "complained", "spam report")
    httpx.post(link(sent.deliveries[0].subscriber_id), **ONE_CLICK)
    httpx.post(link(sent.deliveries[0].subscriber_id), content=b"action=undo&digest=weekly")
    assert store.get_subscriber("aigerim@example.com").status == "complained"
    assert audience(store, "weekly") == ["olmas@example.org"]


def test_preferences_keep_the_chosen_digests_with_offered_topics_only(site):
    cfg, store, sent, srv, link = site
    d = sent.deliveries[0]
    r = httpx.post(
        link(d.subscriber_id),
        content=b"action=preferences&digest=daily&tag=Uzbekistan&tag=kazakhstan&tag=not-offered",
        headers=FORM,
    )
    assert r.status_code == 200 and "Your choices are saved" in r.text
    assert "You get Daily briefing, with stories about: Kazakhstan, Uzbekistan" in r.text
    assert audience(store, "weekly") == ["olmas@example.org"]
    daily = {s.email: s.tags for s in store.iter_audience("daily")}
    assert daily["aigerim@example.com"] == ["kazakhstan", "uzbekistan"]
    page = httpx.get(srv.url("/preferences/" + unsub_token(cfg, d.subscriber_id))).text
    assert re.search(r'value="uzbekistan" checked', page)
    assert re.search(r'value="weekly"> Weekly digest', page)
    r = httpx.post(link(d.subscriber_id), content=b"action=preferences&digest=daily", headers=FORM)
    assert "all the stories each covers" in r.text
    assert {s.email: s.tags for s in store.iter_audience("daily")}["aigerim@example.com"] == []


def unsub_token(cfg, subscriber_id):
    from newsletter.tracking.unsubscribe import preferences_url

    return preferences_url(cfg, subscriber_id).rsplit("/", 1)[1]


def test_forged_links_get_the_same_404_whether_or_not_the_subscriber_exists(lite_site):
    cfg, store, sent, srv, link = lite_site
    real = sent.deliveries[0].subscriber_id
    other_cfg = build_config(env={"NEWSLETTER_SECRET_KEY": "a-different-secret-key-xyz"})
    other_cfg.site = cfg.site
    forged_existing = unsubscribe_url(other_cfg, real, "weekly").rsplit("/", 1)[1]
    forged_missing = unsubscribe_url(other_cfg, 99999, "weekly").rsplit("/", 1)[1]
    good = link(real).rsplit("/", 1)[1]
    altered = good[:-1] + ("A" if good[-1] != "A" else "B")
    answers = set()
    for token in (forged_existing, forged_missing, altered, "garbage", "x.y"):
        for method in ("GET", "POST"):
            r = httpx.request(method, srv.url(f"/unsubscribe/{token}"), **ONE_CLICK)
            assert r.status_code == 404
            answers.add(r.text)
    assert len(answers) == 1
    assert "unsubscribe@steppe-ledger.example" in answers.pop()
    assert store.get_subscriber("aigerim@example.com").status == "active"
    assert events(store) == []


def test_a_genuine_token_for_a_list_not_sent_here_is_refused(lite_site):
    cfg, store, sent, srv, link = lite_site
    from newsletter.audience.tokens import make_token

    token = make_token(KEY, sent.deliveries[0].subscriber_id, "daily.elsewhere.example")
    assert list_id(cfg, "weekly") != "daily.elsewhere.example"
    assert httpx.post(srv.url(f"/unsubscribe/{token}"), **ONE_CLICK).status_code == 404
    assert store.get_subscriber("aigerim@example.com").status == "active"


def test_a_removed_subscriber_gets_the_same_answer_as_an_unsubscribed_one(lite_site):
    cfg, store, sent, srv, link = lite_site
    from newsletter.models import Subscriber

    ((sid, _),) = store.upsert_subscribers([Subscriber(email="gone@example.net")])
    url = link(sid)
    store.remove_subscriber("gone@example.net")
    assert store.get_subscriber("gone@example.net") is None
    for method in ("GET", "POST"):
        r = httpx.request(method, url, **ONE_CLICK)
        assert r.status_code == 200 and "You are unsubscribed" in r.text


def test_the_confirmation_form_is_too_large_to_abuse(lite_site):
    cfg, store, sent, srv, link = lite_site
    r = httpx.post(link(sent.deliveries[0].subscriber_id), content=b"x" * 100_000)
    assert r.status_code == 413
    assert store.get_subscriber("aigerim@example.com").status == "active"


def test_serve_refuses_to_start_without_the_secret_key(tmp_path):
    from newsletter.errors import ConfigError

    cfg = build_config(env={}, database=f"sqlite:///{tmp_path / 'x.db'}")
    store = open_store(cfg.database_url)
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY"):
        create_app(cfg, store)
    store.close()


@pytest.mark.browser
def test_a_reader_changes_topics_then_unsubscribes_in_a_real_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    assert shutil.which("chromium") or shutil.os.path.exists("/usr/bin/chromium")
    cfg = build_config(
        env={"NEWSLETTER_SECRET_KEY": KEY},
        database=f"sqlite:///{tmp_path / 'b.db'}",
    )
    cfg.digests[0].tags = ["kazakhstan", "uzbekistan"]
    store = open_store(cfg.database_url)
    sent = sent_edition(store, ["reader@example.com"])
    sid = sent.deliveries[0].subscriber_id
    with LiveApp(create_app(cfg, store)) as srv, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page()
        url = srv.url(unsubscribe_url(cfg, sid, "weekly").removeprefix(cfg.site.public_url))
        page.goto(url)
        assert page.title().startswith("Unsubscribe")
        page.check("input[value=uzbekistan]")
        page.click("#save")
        page.wait_for_load_state()
        assert "Your choices are saved" in page.content()
        assert [s.tags for s in store.iter_audience("weekly")] == [["uzbekistan"]]
        page.goto(url)
        assert page.is_checked("input[value=uzbekistan]")
        page.click("#unsubscribe")
        page.wait_for_load_state()
        assert "You are unsubscribed" in page.content()
        assert page.context.cookies() == []
        browser.close()
    assert list(store.iter_audience("weekly")) == []
    store.close()
