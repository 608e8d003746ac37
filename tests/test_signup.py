"""Signup with double opt-in over real HTTP: the form and JSON, the confirmation
mail as it leaves (outbox file, aiosmtpd), expired/forged/reused links, the
honeypot, rate limits, no oracle, bad input."""

import json
import quopri
import re
import time

import httpx
import pytest
import sqlalchemy as sa

from newsletter.audience.tokens import make_confirm_token
from newsletter.models import Subscriber
from newsletter.store import open_store
from newsletter.tracking.app import create_app
from newsletter.tracking.signup import client_ip
from tests.fakes.event_webhook import LiveApp
from tests.fakes.mail import SmtpServer, headers, links, outbox_mails, wait_for
from tests.helpers import SECRET, SECRET_ENV, SENDGRID_KEY, SIGNUP_CONFIG, build_config

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Site:
    def __init__(self, cfg, store, srv):
        self.cfg, self.store, self.srv = cfg, store, srv
        self.outbox = cfg.resolve("outbox")

    def url(self, path):
        return self.srv.url(path)

    def local(self, link):
        return self.srv.url(link.removeprefix(self.cfg.site.public_url))

    def mails(self):
        return outbox_mails(self.outbox)

    def subscribe(self, email, digests=("weekly",), topics=(), **extra):
        fields = [("email", email), *(("digest", d) for d in digests)]
        fields += [("tag", t) for t in topics] + list(extra.items())
        return httpx.post(self.url("/subscribe"), content=dict_list(fields), headers=FORM)


def dict_list(pairs):
    from urllib.parse import urlencode

    return urlencode(pairs)


def make_site(tmp_path, db_url, **kw):
    cfg = build_config(tmp_path, toml=SIGNUP_CONFIG, env=SECRET_ENV, database=db_url, **kw)
    store = open_store(cfg.database_url)
    with LiveApp(create_app(cfg, store)) as srv:
        yield Site(cfg, store, srv)
    store.close()


@pytest.fixture
def site(tmp_path, db_url):
    yield from make_site(tmp_path, db_url)


@pytest.fixture
def lite(tmp_path):
    yield from make_site(
        tmp_path, f"sqlite:///{tmp_path / 'lite.db'}", signup={"per_ip": 4, "per_address": 3}
    )


def count(store, table):
    with store.engine.connect() as c:
        return c.execute(sa.text(f"select count(*) from {table}")).scalar_one()


def test_subscribe_confirm_welcome_through_the_outbox(site):
    page = httpx.get(site.url("/subscribe"))
    assert page.status_code == 200
    assert re.findall(r'name="digest" value="(\w+)"', page.text) == ["weekly", "daily"]
    r = site.subscribe("Aigerim@Example.com", ["weekly", "daily"], ["Energy"], name="Aigerim")
    assert r.status_code == 202 and "Check your inbox" in r.text
    wait_for(lambda: len(site.mails()), 1)
    (raw,) = site.mails()
    head = headers(raw)
    assert b"To: Aigerim <aigerim@example.com>" in head
    assert b"Subject: Confirm your subscription to The Steppe Ledger" in head
    assert b"List-Unsubscribe" not in head and b"X-Newsletter-Delivery" not in head
    (confirm,) = {u for u in links(raw) if "/subscribe/confirm/" in u}
    sub = site.store.get_subscriber("aigerim@example.com")
    assert sub.status == "pending" and sub.name == "Aigerim"
    assert list(site.store.iter_audience("weekly")) == []
    # a GET (a mail scanner following links) only shows the button
    shown = httpx.get(site.local(confirm))
    assert shown.status_code == 200 and 'id="confirm"' in shown.text
    assert site.store.get_subscriber("aigerim@example.com").status == "pending"
    done = httpx.post(site.local(confirm))
    assert done.status_code == 200 and "you get Weekly digest, Daily briefing" in done.text
    wait_for(lambda: len(site.mails()), 2)
    welcome = site.mails()[1]
    assert b"Subject: Welcome to The Steppe Ledger" in headers(welcome)
    (prefs,) = {u for u in links(welcome) if "/preferences/" in u}
    assert [(s.email, s.tags) for s in site.store.iter_audience("daily")] == [
        ("aigerim@example.com", ["energy"])
    ]
    subs = {s.digest: s for s in site.store.subscriptions_of(sub.id)}
    assert subs["weekly"].consent_source == "form"
    assert subs["weekly"].consent_ip == "127.0.0.1"
    assert subs["weekly"].consent_text == "v1"
    page = httpx.get(site.local(prefs)).text
    assert re.search(r'value="energy" checked', page)
    # reused: the page says so, nothing changes, no second welcome
    again = httpx.post(site.local(confirm))
    assert again.status_code == 200 and "Already confirmed" in again.text
    time.sleep(0.3)
    assert len(site.mails()) == 2


def test_the_confirmation_goes_through_smtp(tmp_path):
    with SmtpServer() as smtp:
        smtp_settings = {"host": "127.0.0.1", "port": smtp.port, "starttls": False, "timeout": 5.0}
        delivery = {"backend": "smtp", "smtp": smtp_settings}
        gen = make_site(tmp_path, f"sqlite:///{tmp_path / 's.db'}", delivery=delivery)
        site = next(gen)
        try:
            assert site.subscribe("olmas@example.org").status_code == 202
            wait_for(lambda: len(smtp.box.messages), 1)
            rcpt, raw = smtp.box.messages[0]
            assert rcpt == ["olmas@example.org"]
            (confirm,) = {u for u in links(raw) if "/subscribe/confirm/" in u}
            assert httpx.post(site.local(confirm)).status_code == 200
            wait_for(lambda: len(smtp.box.messages), 2)
            assert b"Welcome to The Steppe Ledger" in headers(smtp.box.messages[1][1])
            assert [s.email for s in site.store.iter_audience("weekly")] == ["olmas@example.org"]
        finally:
            gen.close()


def test_the_confirmation_and_the_welcome_go_through_sendgrid(tmp_path, sg):
    """As the request reaches SendGrid: no unsubscribe group, no List-Unsubscribe,
    no delivery id (the one message the reader asked for), the signed link."""
    env = {**SECRET_ENV, "SENDGRID_API_KEY": SENDGRID_KEY, "NEWSLETTER_SENDGRID_HOST": sg.url}
    cfg = build_config(
        tmp_path,
        toml=SIGNUP_CONFIG,
        env=env,
        database=f"sqlite:///{tmp_path / 'sg.db'}",
        delivery={"backend": "sendgrid", "sendgrid": {"asm_group_id": 42, "timeout": 10.0}},
    )
    store = open_store(cfg.database_url)
    with LiveApp(create_app(cfg, store)) as srv:
        r = httpx.post(
            srv.url("/subscribe"), json={"email": "Olmas@Example.org", "digests": ["daily"]}
        )
        assert r.status_code == 202
        wait_for(lambda: len(sg.bodies), 1)
        (body,) = sg.bodies
        assert [t["email"] for p in body["personalizations"] for t in p["to"]] == [
            "olmas@example.org"
        ]
        assert body["subject"] == "Confirm your subscription to The Steppe Ledger"
        assert "asm" not in body and "List-Unsubscribe" not in body.get("headers", {})
        assert "newsletter_delivery_id" not in json.dumps(body)
        html = next(c["value"] for c in body["content"] if c["type"] == "text/html")
        (confirm,) = set(re.findall(r'href="([^"]*/subscribe/confirm/[^"]+)"', html))
        done = httpx.post(srv.url(confirm.removeprefix(cfg.site.public_url)))
        assert done.status_code == 200
        wait_for(lambda: len(sg.bodies), 2)
        welcome = sg.bodies[1]
        assert welcome["subject"] == "Welcome to The Steppe Ledger" and "asm" not in welcome
        assert "/preferences/" in next(c["value"] for c in welcome["content"])
    assert [s.email for s in store.iter_audience("daily")] == ["olmas@example.org"]
    store.close()


def test_expired_forged_and_altered_links_confirm_nothing(lite):
    lite.subscribe("a@example.com")
    wait_for(lambda: len(lite.mails()), 1)
    sid = lite.store.get_subscriber("a@example.com").id
    old = make_confirm_token(SECRET, sid, int((time.time() - 49 * 3600) * 1000))
    for method in ("GET", "POST"):
        r = httpx.request(method, lite.url(f"/subscribe/confirm/{old}"))
        assert r.status_code == 410 and "This link has expired" in r.text
    forged = make_confirm_token("another-secret-key-abcdefgh", sid, int(time.time() * 1000))
    (good,) = {u for u in links(lite.mails()[0]) if "/subscribe/confirm/" in u}
    token = good.rsplit("/", 1)[1]
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    # an unsubscribe token is no confirmation token
    from newsletter.audience.tokens import make_token

    other_kind = make_token(SECRET, sid, "weekly.steppe-ledger.example")
    for bad in (forged, altered, other_kind, "garbage"):
        r = httpx.post(lite.url(f"/subscribe/confirm/{bad}"))
        assert r.status_code == 404
    assert lite.store.get_subscriber("a@example.com").status == "pending"
    assert list(lite.store.iter_audience("weekly")) == []


def test_the_answer_is_the_same_whoever_the_address_belongs_to(lite):
    store = lite.store
    store.upsert_subscriber(Subscriber(email="active@example.com"))
    store.upsert_subscriber(Subscriber(email="bounced@example.com"))
    store.set_subscriber_status("bounced@example.com", "bounced", "hard bounce")
    answers = set()
    for email in ("new@example.com", "active@example.com", "bounced@example.com"):
        r = lite.subscribe(email)
        answers.add((r.status_code, r.text))
    assert len(answers) == 1
    wait_for(lambda: len(lite.mails()), 1)
    time.sleep(0.3)
    # only the new address gets mail: the subscribed one has nothing to confirm,
    # the bounced one gets nothing at all
    assert [b"new@example.com" in headers(m) for m in lite.mails()] == [True]
    assert store.get_subscriber("bounced@example.com").status == "bounced"


def test_a_confirmation_is_sent_at_most_once_per_interval(lite):
    for _ in range(3):
        assert lite.subscribe("same@example.com").status_code == 202
    time.sleep(0.5)
    assert len(lite.mails()) == 1


def test_the_honeypot_answers_as_usual_and_stores_and_sends_nothing(lite):
    r = lite.subscribe("bot@example.com", website="http://spam.example")
    assert r.status_code == 202 and "Check your inbox" in r.text
    time.sleep(0.3)
    assert lite.store.get_subscriber("bot@example.com") is None
    assert lite.mails() == []


def test_rate_limits_per_client_and_per_address(lite):
    # per address: 3 in the window, whatever the client
    codes = [lite.subscribe("x@example.com").status_code for _ in range(4)]
    assert codes == [202, 202, 202, 429]
    # per client: 4 in the window (the four above already count)
    r = lite.subscribe("y@example.com")
    assert r.status_code == 429 and "Retry-After" in r.headers
    assert "too many signups" in r.text
    assert lite.store.get_subscriber("y@example.com") is None


@pytest.mark.parametrize(
    "fields, field, message",
    [
        ({"email": "not-an-address", "digest": "weekly"}, "email", "not a valid email address"),
        ({"email": "a@@example.com", "digest": "weekly"}, "email", "not a valid email address"),
        ({"email": "", "digest": "weekly"}, "email", "enter your email address"),
        ({"email": "a@example.com"}, "digests", "choose at least one newsletter"),
        ({"email": "a@example.com", "digest": "monthly"}, "digests", "no newsletter named"),
        ({"email": "a@example.com", "digest": "weekly", "tag": "sport"}, "topics", "no topic"),
        ({"email": "a@example.com", "digest": "weekly", "name": "x" * 300}, "name", "longer"),
    ],
)
def test_bad_input_is_refused_with_the_field_named_and_nothing_stored(lite, fields, field, message):
    r = httpx.post(lite.url("/subscribe"), data=fields)
    assert r.status_code == 422 and message in r.text
    assert 'role="alert"' in r.text
    body = {
        "email": fields.get("email", ""),
        "name": fields.get("name", ""),
        "digests": [fields["digest"]] if "digest" in fields else [],
        "topics": [fields["tag"]] if "tag" in fields else [],
    }
    j = httpx.post(lite.url("/subscribe"), json=body)
    assert j.status_code == 422
    assert j.json()["field"] == field and message in j.json()["error"]
    assert count(lite.store, "subscribers") == 0
    assert count(lite.store, "subscriptions") == 0


@pytest.fixture
def roomy(tmp_path):
    yield from make_site(tmp_path, f"sqlite:///{tmp_path / 'roomy.db'}")


def test_malformed_and_oversized_json_bodies(roomy):
    lite = roomy
    bad = [
        (b"{not json", 400, "body"),
        (b"[1, 2]", 400, "body"),
        (b'{"email": 5}', 422, "email"),
        (b'{"email": "a@example.com", "digests": "weekly"}', 422, "digests"),
        (b'{"email": "a@example.com", "digests": ["weekly"], "admin": true}', 422, "admin"),
        (b'{"email": "' + b"a" * 20_000 + b'"}', 413, "body"),
    ]
    for body, status, field in bad:
        r = httpx.post(
            lite.url("/subscribe"), content=body, headers={"Content-Type": "application/json"}
        )
        assert (r.status_code, r.json()["field"]) == (status, field), body[:40]
    assert count(lite.store, "subscribers") == 0


def test_json_signup_with_cors_for_the_allowed_site_only(lite):
    allowed = {"Origin": "https://steppe-ledger.example"}
    pre = httpx.options(
        lite.url("/subscribe"),
        headers={**allowed, "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "https://steppe-ledger.example"
    assert "Content-Type" in pre.headers["access-control-allow-headers"]
    other = {"Origin": "https://evil.example"}
    assert httpx.options(lite.url("/subscribe"), headers=other).status_code == 403
    r = httpx.post(
        lite.url("/subscribe"),
        json={"email": "j@example.com", "digests": ["daily"], "topics": ["energy"]},
        headers=allowed,
    )
    assert r.status_code == 202 and r.json()["status"] == "check your inbox"
    assert r.headers["access-control-allow-origin"] == "https://steppe-ledger.example"
    r = httpx.post(lite.url("/subscribe"), json={"email": "k@example.com"}, headers=other)
    assert r.status_code == 403
    assert lite.store.get_subscriber("k@example.com") is None


def test_forwarded_headers_count_only_from_trusted_proxies(tmp_path):
    trusting = {"trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]}
    cfg = build_config(
        tmp_path, toml=SIGNUP_CONFIG, env=SECRET_ENV, database="sqlite://", webhook=trusting
    )
    assert client_ip(cfg, "127.0.0.1", "203.0.113.7") == "203.0.113.7"
    # a client's own X-Forwarded-For entries are read past: the nearest untrusted hop
    assert client_ip(cfg, "127.0.0.1", "1.2.3.4, 203.0.113.7, 10.1.1.1") == "203.0.113.7"
    assert client_ip(cfg, "198.51.100.1", "203.0.113.7") == "198.51.100.1"
    assert client_ip(cfg, "127.0.0.1", "") == "127.0.0.1"
    assert client_ip(cfg, "127.0.0.1", "garbage") == "127.0.0.1"
    untrusting = build_config(tmp_path, toml=SIGNUP_CONFIG, env=SECRET_ENV, database="sqlite://")
    assert client_ip(untrusting, "127.0.0.1", "203.0.113.7") == "127.0.0.1"


def test_behind_a_trusted_proxy_each_client_has_its_own_limit(tmp_path):
    gen = make_site(
        tmp_path,
        f"sqlite:///{tmp_path / 'p.db'}",
        signup={"per_ip": 2},
        webhook={"trusted_proxies": ["127.0.0.1"]},
    )
    site = next(gen)
    try:

        def post(email, client):
            return httpx.post(
                site.url("/subscribe"),
                data={"email": email, "digest": "weekly"},
                headers={"X-Forwarded-For": client},
            ).status_code

        assert [post(f"a{i}@example.com", "203.0.113.1") for i in range(3)] == [202, 202, 429]
        assert post("b@example.com", "203.0.113.2") == 202
        subs = site.store.subscriptions_of(site.store.get_subscriber("b@example.com").id)
        assert subs[0].consent_ip == "203.0.113.2"
    finally:
        gen.close()


def test_after_the_interval_a_confirmation_is_sent_again(tmp_path):
    gen = make_site(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    site = next(gen)
    try:
        site.cfg.signup.resend_minutes = 0.01  # 0.6 s
        assert site.subscribe("again@example.com").status_code == 202
        assert site.subscribe("again@example.com").status_code == 202
        wait_for(lambda: len(site.mails()), 1)
        time.sleep(0.8)
        assert site.subscribe("again@example.com").status_code == 202
        wait_for(lambda: len(site.mails()), 2)
        first, second = ({u for u in links(m) if "/confirm/" in u} for m in site.mails())
        assert first != second
        # the first link still confirms: the request it was sent for came before it
        (link,) = first
        assert "You are subscribed" in httpx.post(site.local(link)).text
    finally:
        gen.close()


def test_the_welcome_email_template_can_be_overridden(tmp_path):
    gen = make_site(tmp_path, f"sqlite:///{tmp_path / 'w.db'}")
    site = next(gen)
    try:
        folder = tmp_path / "my-templates"
        folder.mkdir()
        (folder / "welcome.txt.j2").write_text(
            "Salem! You get {{ digests | join(' and ') }}. Manage: {{ preferences_url }}\n",
            encoding="utf-8",
        )
        site.cfg.render.templates = str(folder)
        site.subscribe("w@example.com", ["weekly", "daily"])
        wait_for(lambda: len(site.mails()), 1)
        (link,) = {u for u in links(site.mails()[0]) if "/confirm/" in u}
        httpx.post(site.local(link))
        wait_for(lambda: len(site.mails()), 2)
        body = quopri.decodestring(site.mails()[1])
        assert b"Salem! You get Weekly digest and Daily briefing." in body
        # the HTML part is still the bundled one
        assert b"Choose your newsletters and topics" in body
    finally:
        gen.close()


def test_no_thanks_on_the_confirmation_page_deletes_what_the_signup_stored(lite):
    lite.subscribe("notme@example.com", ["weekly", "daily"])
    wait_for(lambda: len(lite.mails()), 1)
    (link,) = {u for u in links(lite.mails()[0]) if "/subscribe/confirm/" in u}
    assert 'id="decline"' in httpx.get(lite.local(link)).text
    r = httpx.post(lite.local(link), content=b"action=decline", headers=FORM)
    assert r.status_code == 200 and "You are not subscribed" in r.text
    assert lite.store.get_subscriber("notme@example.com") is None
    assert count(lite.store, "subscriptions") == 0
    # the link confirms nothing afterwards
    assert "Already confirmed" in httpx.post(lite.local(link)).text
    assert list(lite.store.iter_audience("weekly")) == []


@pytest.mark.parametrize(
    "name",
    [
        "=?utf-8?q?Evil=0D=0ABcc:_v4@evil.example?=",
        "=?utf-8?b?RXZpbA0KQmNjOiB2NEBldmlsLmV4YW1wbGU=?=",
        "Joe =?utf-8?q?=0D=0ABcc:_v4@evil.example?= Bloggs",
    ],
)
def test_an_encoded_word_in_the_name_is_neutralised_at_signup(lite, name):
    """CVE-2024-6923 through the public form: stored as text (as an import stores
    it), and the confirmation's raw To header carries no encoded-word of the input."""
    assert lite.subscribe("victim@example.com", name=name).status_code == 202
    wait_for(lambda: len(lite.mails()), 1)
    stored = lite.store.get_subscriber("victim@example.com").name
    assert "=?" not in stored and stored.replace(" ", "") == name.replace(" ", "")
    (raw,) = lite.mails()
    head = headers(raw)
    assert b"\nBcc" not in head and b"=?utf-8?q?Evil" not in head and b"=?utf-8?b?RXZp" not in head
    (to,) = [line for line in head.split(b"\r\n") if line.startswith(b"To: ")]
    assert to.endswith(b"<victim@example.com>") and b"=?" not in to


@pytest.mark.parametrize("name", ["Bell\x07", "Del\x7fete", "Csi\x9b31m", "Rlo\u202eevil"])
def test_control_characters_in_the_name_are_refused_at_signup(lite, name):
    r = httpx.post(lite.url("/subscribe"), data={"email": "a@example.com", "name": name})
    assert r.status_code == 422 and "control characters" in r.text
    assert count(lite.store, "subscribers") == 0


def test_an_address_erased_on_request_may_sign_up_again_and_confirming_lifts_the_marker(site):
    from newsletter.audience.privacy import forget
    from newsletter.audience.tokens import address_hash

    store = site.store
    store.upsert_subscriber(Subscriber(email="back@example.com", name="Old Name"))
    forget(store, SECRET, "back@example.com")
    marker = address_hash(SECRET, "back@example.com")
    assert store.forgotten_among([marker]) == {marker}
    assert site.subscribe("Back@Example.com", ["daily"]).status_code == 202
    wait_for(lambda: len(site.mails()), 1)
    # asked, not yet confirmed: still erased for an import or `subscribers add`
    assert store.forgotten_among([marker]) == {marker}
    assert store.get_subscriber("back@example.com").status == "pending"
    (confirm,) = {u for u in links(site.mails()[0]) if "/subscribe/confirm/" in u}
    assert httpx.post(site.local(confirm)).status_code == 200
    assert store.forgotten_among([marker]) == set()
    again = store.get_subscriber("back@example.com")
    assert (again.status, again.name) == ("active", "")  # nothing of the old record
    assert [s.email for s in store.iter_audience("daily")] == ["back@example.com"]
    assert list(store.iter_audience("weekly")) == []
