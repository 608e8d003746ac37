"""A reader in Chromium: subscribe → confirmation mail → confirm → welcome →
preferences → leave one digest → undo → leave everything (outbox and aiosmtpd);
the embeddable WordPress form of docs/subscribe.md, posted from another site."""

import pytest

from newsletter.store import open_store
from newsletter.tracking.app import create_app
from tests.fakes.event_webhook import LiveApp
from tests.fakes.mail import SmtpServer, links, outbox_mails, wait_for
from tests.helpers import SECRET_ENV, SIGNUP_CONFIG, build_config, require_chromium

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def walk(cfg, store, srv, mails):
    """The whole journey; ``mails()`` returns the raw messages sent so far."""
    from playwright.sync_api import sync_playwright

    def local(url):
        return srv.url(url.removeprefix(cfg.site.public_url))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page()
        page.goto(srv.url("/subscribe"))
        assert page.title().startswith("Subscribe")
        page.fill("#email", "reader@example.com")
        page.check("input[name=digest][value=weekly]")
        page.check("input[name=digest][value=daily]")
        page.check("input[name=tag][value=energy]")
        page.click("#submit")
        page.wait_for_load_state()
        assert "Check your inbox" in page.content()
        wait_for(lambda: len(mails()), 1)
        (confirm,) = {u for u in links(mails()[0]) if "/subscribe/confirm/" in u}

        page.goto(local(confirm))
        page.click("#confirm")
        page.wait_for_load_state()
        assert "You are subscribed" in page.content()
        wait_for(lambda: len(mails()), 2)
        (prefs,) = {u for u in links(mails()[1]) if "/preferences/" in u}
        assert {s.email for s in store.iter_audience("weekly")} == {"reader@example.com"}

        page.goto(local(prefs))
        assert page.is_checked("input[name=digest][value=weekly]")
        assert page.is_checked("input[name=tag][value=energy]")
        page.uncheck("input[name=digest][value=weekly]")
        page.click("#save")
        page.wait_for_load_state()
        assert "You get Daily briefing" in page.content()
        assert list(store.iter_audience("weekly")) == []

        # the daily's own unsubscribe link, as in its emails
        from newsletter.delivery.message import unsubscribe_url

        sid = store.get_subscriber("reader@example.com").id
        page.goto(local(unsubscribe_url(cfg, sid, "daily")))
        page.click("#unsubscribe")
        page.wait_for_load_state()
        assert "You are unsubscribed from Daily briefing" in page.content()
        assert list(store.iter_audience("daily")) == []
        page.click("#undo")
        page.wait_for_load_state()
        assert "You get Daily briefing again" in page.content()
        assert [s.email for s in store.iter_audience("daily")] == ["reader@example.com"]

        page.goto(local(prefs))
        page.click("#everything")
        page.wait_for_load_state()
        assert "You are unsubscribed from everything" in page.content()
        for digest in ("weekly", "daily", "a-later-one"):
            assert list(store.iter_audience(digest)) == []
        assert page.context.cookies() == []
        browser.close()


@pytest.mark.browser
def test_a_reader_signs_up_and_leaves_in_chromium_through_the_outbox(tmp_path):
    require_chromium()
    cfg = build_config(
        tmp_path, toml=SIGNUP_CONFIG, env=SECRET_ENV, database=f"sqlite:///{tmp_path / 'b.db'}"
    )
    store = open_store(cfg.database_url)
    with LiveApp(create_app(cfg, store)) as srv:
        walk(cfg, store, srv, lambda: outbox_mails(cfg.resolve("outbox")))
    store.close()


@pytest.mark.browser
def test_a_reader_signs_up_in_chromium_with_mail_over_smtp(tmp_path, db_url):
    require_chromium()
    with SmtpServer() as smtp:
        smtp_settings = {"host": "127.0.0.1", "port": smtp.port, "starttls": False}
        cfg = build_config(
            tmp_path,
            toml=SIGNUP_CONFIG,
            env=SECRET_ENV,
            database=db_url,
            delivery={"backend": "smtp", "smtp": smtp_settings},
        )
        store = open_store(cfg.database_url)
        with LiveApp(create_app(cfg, store)) as srv:
            walk(cfg, store, srv, lambda: [raw for _, raw in smtp.box.messages])
        store.close()


def wordpress_form(public_url: str, serve_url: str) -> str:
    """The Custom HTML block of docs/subscribe.md, pointed at the live serve."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "subscribe.md").read_text("utf-8")
    section = doc.split("## Embedding the form in WordPress", 1)[1]
    (block,) = re.findall(r"```html\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    action = f"{public_url}/subscribe"
    assert f'action="{action}"' in block, "the example posts to site.public_url/subscribe"
    return block.replace(f'action="{action}"', f'action="{serve_url}/subscribe"')


@pytest.mark.browser
def test_the_wordpress_form_of_the_docs_signs_a_reader_up_from_another_site(tmp_path):
    """The block pasted into a page of another origin (the news site), as a reader
    fills it in: a form post across sites, no CORS, the honeypot left empty."""
    from playwright.sync_api import sync_playwright

    from tests.fakes.http import LoopbackServer, Reply

    require_chromium()
    cfg = build_config(
        tmp_path, toml=SIGNUP_CONFIG, env=SECRET_ENV, database=f"sqlite:///{tmp_path / 'w.db'}"
    )
    store = open_store(cfg.database_url)
    with LiveApp(create_app(cfg, store)) as srv:
        block = wordpress_form(cfg.site.public_url, srv.url("").rstrip("/"))
        html = f"<!doctype html><html><body><h1>A news site</h1>{block}</body></html>"
        reply = Reply(body=html.encode(), headers={"Content-Type": "text/html; charset=utf-8"})
        with LoopbackServer(lambda _req: reply) as wordpress, sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page()
            page.goto(wordpress.url("/a-page"))
            page.fill("#nl-email", "Reader@Example.com")
            page.check("input[name=digest][value=daily]")
            page.click("button[type=submit]")
            page.wait_for_load_state()
            assert "Check your inbox" in page.content()
            browser.close()
        wait_for(lambda: len(outbox_mails(cfg.resolve("outbox"))), 1)
        sub = store.get_subscriber("reader@example.com")
        assert sub is not None and sub.status == "pending"
        subs = {s.digest: s for s in store.subscriptions_of(sub.id)}
        assert sorted(subs) == ["daily", "weekly"]
        assert {s.status for s in subs.values()} == {"pending"}
        assert subs["weekly"].consent_source == "form"
    store.close()
