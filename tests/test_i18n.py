"""Editions in the reader's language: catalogues complete, no template string
outside them, Babel's formats, the language per digest, the reader pages."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from jinja2 import Environment

from newsletter import i18n
from newsletter.config import ConfigError, load_config
from newsletter.render.compile import render
from newsletter.store import open_store
from tests.helpers import build_config
from tests.render_data import load_content

ROOT = Path(__file__).resolve().parents[1]
#: every template a reader sees: the edition's, the archive index, the reader
#: pages (pages/) and the confirmation and welcome emails (mail/). The report
#: (report/) is for editors and stays English (docs/templates.md).
TEMPLATES = sorted(p for p in (ROOT / "templates").rglob("*.j2") if p.parent.name != "report")
#: attributes whose values a reader sees or hears
HUMAN_ATTRIBUTES = ("alt", "title", "aria-label", "placeholder")
MARK = "\x00"


def extracted() -> dict[str, object]:
    """Every string the code and the templates mark for the catalogue, as
    `make messages` extracts them (babel.cfg)."""
    method_map = [("newsletter/**.py", "python"), ("templates/**.j2", "jinja2")]
    options = {"templates/**.j2": {"extensions": "jinja2.ext.i18n"}}
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    out: dict[str, object] = {}
    for _file, _line, message, _comments, _ctx in extract_from_dir(
        str(ROOT), method_map, options, keywords=keywords
    ):
        out[message if isinstance(message, str) else message[0]] = message
    return out


def catalogue(language: str):
    path = i18n.LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as fh:
        return read_po(fh, locale=language)


def fields(text: str) -> set[str]:
    """The %(name)s and {name} fields of a message."""
    named = set(re.findall(r"%\((\w+)\)s", text))
    braced = {f for _, f, _, _ in string.Formatter().parse(text) if f}
    return named | braced


@pytest.mark.parametrize("language", ["en", "ru"])
def test_every_marked_string_is_translated_in_the_catalogue(language):
    wanted = extracted()
    assert len(wanted) > 40
    cat = catalogue(language)
    missing, untranslated, fuzzy, bad_fields = [], [], [], []
    for msgid in wanted:
        m = cat.get(msgid)
        if m is None:
            missing.append(msgid)
            continue
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        if not all(strings):
            untranslated.append(msgid)
        if m.fuzzy:
            fuzzy.append(msgid)
        if any(fields(s) != fields(msgid) for s in strings):
            bad_fields.append(msgid)
    assert missing == [], "not in the catalogue: run `make messages`"
    assert untranslated == [] and fuzzy == [] and bad_fields == []
    stale = [
        m.id for m in cat if m.id and (m.id if isinstance(m.id, str) else m.id[0]) not in wanted
    ]
    assert stale == [], "strings no longer used: run `make messages`"


def skeleton(path: Path) -> str:
    """The template's literal text, every Jinja block and comment replaced by a mark."""
    env = Environment(extensions=["jinja2.ext.i18n"])
    parts = []
    for _line, kind, value in env.lex(path.read_text(encoding="utf-8")):
        parts.append(value if kind == "data" else MARK)
    return re.sub(f"{MARK}+", MARK, "".join(parts))


def words_outside_the_catalogue(path: Path) -> list[str]:
    text = skeleton(path)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)  # comments, Outlook's [if mso]
    text = re.sub(r"<(mj-style|style|mj-attributes)\b.*?</\1>", " ", text, flags=re.S)
    found = []
    for attr in HUMAN_ATTRIBUTES:
        for value in re.findall(rf'\b{attr}="([^"]*)"', text):
            found += re.findall(r"[^\W\d_]{2,}", value.replace(MARK, " "))
    text = re.sub(r"<[^>]*>", " ", text)  # tags (a mark inside one is an attribute value)
    text = re.sub(r"&\w+;|&#\w+;", " ", text)
    return found + re.findall(r"[^\W\d_]{2,}", text.replace(MARK, " "))


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_template_string_escapes_the_catalogue(path):
    assert words_outside_the_catalogue(path) == []


def test_the_moved_reader_templates_are_checked():
    names = {str(p.relative_to(ROOT / "templates")) for p in TEMPLATES}
    assert {"pages/page.html.j2", "mail/confirm.html.j2", "mail/confirm.txt.j2"} <= names
    assert {"mail/welcome.html.j2", "mail/welcome.txt.j2", "archive/index.html.j2"} <= names


def test_the_check_catches_a_string_outside_the_catalogue(tmp_path):
    bad = tmp_path / "bad.mjml.j2"
    bad.write_text(
        '<p>{{ _("Read more") }} Click here</p><img alt="Logo of {{ site }}">'
        '{# a comment is fine #}<a aria-label="{{ x }}">{{ y }}</a>',
        encoding="utf-8",
    )
    assert words_outside_the_catalogue(bad) == ["Logo", "of", "Click", "here"]


def test_an_edition_in_russian():
    c = load_content(8)
    c.digest.language = "ru"
    r = render(c)
    assert '<html lang="ru"' in r.html
    for text in ("Здравствуйте, %%first_name%%!", "В этом выпуске", "Читать дальше", "Отписаться"):
        assert text in r.html, text
    assert "Read more" not in r.html and "Unsubscribe<" not in r.html
    assert r.fallbacks == {"%%first_name%%": "читатель"}
    # Babel's formats: dates, a no-break space before the percent sign, comma decimals
    assert "ноября 2026" in r.text and "0,001966" in r.text and "+0,31\u00a0%" in r.text
    # (an attribute's whitespace is folded to spaces: mjattr)
    assert 'aria-label="тенге крепче на 0,31 %"' in r.html


def test_the_edition_date_is_written_in_the_digests_language(project):
    from datetime import datetime

    from newsletter.editions.plan import plan_edition

    toml = (project / "newsletter.toml").read_text()
    cfg = build_config(
        project, toml=toml.replace("[[digests]]\n", '[[digests]]\nlanguage = "ru"\n', 1)
    )
    store = open_store(cfg.database_url)
    try:
        plan = plan_edition(
            store, cfg, cfg.digest(), datetime.fromisoformat("2026-11-30T07:05+05:00")
        )
    finally:
        store.close()
    assert plan.edition_date == "30 ноября 2026"


@pytest.mark.parametrize(
    "extra, key, message",
    [
        ('[site]\nlanguage = "kk"', "site.language", "no catalogue for 'kk' (available: en, ru)"),
        ('[site]\nlanguage = "xx-yy"', "site.language", "unknown language"),
        ('[[digests]]\nname = "w"\nlanguage = "de"', "digests[0].language", "no catalogue"),
    ],
)
def test_a_language_without_a_catalogue_is_refused(tmp_path, extra, key, message):
    (tmp_path / "n.toml").write_text(extra + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "n.toml", env={})
    assert key in str(err.value) and message in str(err.value)


def test_a_stale_compiled_catalogue_is_never_used(tmp_path, monkeypatch):
    """A .mo older than its .po is ignored: the .po is compiled in memory."""
    import os
    import shutil

    folder = tmp_path / "ru" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    po = folder / "messages.po"
    shutil.copy(i18n.LOCALE_DIR / "ru" / "LC_MESSAGES" / "messages.po", po)
    (folder / "messages.mo").write_bytes(b"stale, not even a catalogue")
    os.utime(folder / "messages.mo", (1, 1))
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    i18n.translations.cache_clear()
    try:
        assert i18n.translations("ru").gettext("In this issue") == "В этом выпуске"
    finally:
        i18n.translations.cache_clear()


def test_preflight_findings_speak_the_editions_language():
    from newsletter.render.check import check_message

    message = dict(
        subject="s",
        html="<p>no link</p>",
        text="no link",
        headers={},
        unsubscribe_url="https://x.example/u",
        articles=1,
        max_bytes=100_000,
    )
    english = {f.message for f in check_message(**message)}
    russian = {f.message for f in check_message(**message, language="ru")}
    assert "the HTML part has no unsubscribe link" in english
    assert "в HTML-части нет ссылки для отписки" in russian
    assert len(russian) == len(english) >= 3
    assert all(re.search("[а-я]", m) for m in russian), russian


READER_SITE = """
[site]
name = "The Steppe Ledger"
url = "https://steppe-ledger.example/"
public_url = "https://steppe-ledger.example/newsletter"
from_email = "digest@steppe-ledger.example"

[delivery]
backend = "outbox"
outbox_dir = "outbox"

[[digests]]
name = "weekly"
title = "Weekly digest"
tags = ["Kazakhstan"]

[[digests]]
name = "weekly-ru"
title = "Еженедельный дайджест"
language = "ru"
tags = ["Kazakhstan"]
"""


def test_a_reader_page_and_its_mail_speak_the_digests_language(tmp_path):
    """Over real HTTP: the unsubscribe page of a Russian digest, the signup's
    confirmation mail and the confirmed page in Russian, from the ru catalogue;
    the English digest's page and the signup form (the site's language) in English."""
    import email
    import email.header
    import email.policy
    from urllib.parse import urlencode

    import httpx

    from newsletter.delivery.message import unsubscribe_url
    from newsletter.tracking.app import create_app
    from tests.fakes.event_webhook import LiveApp, sent_edition
    from tests.fakes.mail import headers, links, outbox_mails, wait_for

    cfg = build_config(
        tmp_path,
        toml=READER_SITE,
        env={"NEWSLETTER_SECRET_KEY": "test-secret-key-0123456789"},
        database=f"sqlite:///{tmp_path / 'r.db'}",
    )
    store = open_store(cfg.database_url)
    sent = sent_edition(store, ["aigerim@example.com"], digest="weekly-ru")
    sid = sent.deliveries[0].subscriber_id
    ru = i18n.translations("ru").gettext
    try:
        with LiveApp(create_app(cfg, store)) as srv:

            def get(digest):
                url = unsubscribe_url(cfg, sid, digest).removeprefix(cfg.site.public_url)
                return httpx.get(srv.url(url)).text

            page = get("weekly-ru")
            assert '<html lang="ru"' in page
            assert "<h1>Отписаться от «Еженедельный дайджест»?</h1>" in page
            assert f"<title>{ru('Unsubscribe')} · The Steppe Ledger</title>" in page
            for english in ("Unsubscribe from", "Newsletters", "Save my choices"):
                assert english not in page, english
            for msgid in ("Newsletters", "Save my choices", "Unsubscribe from everything"):
                assert ru(msgid) != msgid and ru(msgid) in page, msgid
            # the English digest's page, and the signup form, in the site's language
            english = get("weekly")
            assert '<html lang="en"' in english and "Unsubscribe from Weekly digest?" in english
            form = httpx.get(srv.url("/subscribe")).text
            assert '<html lang="en"' in form and "Email address" in form

            # a signup for the Russian digest: the confirmation mail in Russian
            r = httpx.post(
                srv.url("/subscribe"),
                content=urlencode([("email", "olmas@example.org"), ("digest", "weekly-ru")]),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert r.status_code == 202
            box = cfg.resolve("outbox")
            wait_for(lambda: len(outbox_mails(box)), 1)
            (raw,) = outbox_mails(box)
            subject = next(
                line.split(b":", 1)[1].strip()
                for line in headers(raw).replace(b"\r\n ", b" ").replace(b"\n ", b" ").splitlines()
                if line.startswith(b"Subject:")
            )
            decoded = str(
                email.header.make_header(email.header.decode_header(subject.decode("ascii")))
            )
            assert decoded == "Подтвердите подписку на The Steppe Ledger"
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            text = msg.get_body(("plain",)).get_content()
            html = msg.get_body(("html",)).get_content()
            assert (
                "Кто-то, вероятно вы, хочет получать на этот адрес: Еженедельный дайджест." in text
            )
            assert '<html lang="ru"' in html and "Подтвердить подписку" in html
            assert "Confirm my subscription" not in html and "Someone" not in text
            (confirm,) = {u for u in links(raw) if "/subscribe/confirm/" in u}
            done = httpx.post(srv.url(confirm.removeprefix(cfg.site.public_url)))
            assert done.status_code == 200 and '<html lang="ru"' in done.text
            assert "Спасибо! Вы подписаны: Еженедельный дайджест." in done.text
            wait_for(lambda: len(outbox_mails(box)), 2)
            welcome = email.message_from_bytes(outbox_mails(box)[1], policy=email.policy.default)
            assert welcome["Subject"] == "Добро пожаловать в The Steppe Ledger"
            assert "Подписка подтверждена. Вы получаете: Еженедельный дайджест." in (
                welcome.get_body(("plain",)).get_content()
            )
    finally:
        store.close()


def test_the_signup_forms_errors_speak_the_sites_language(tmp_path):
    """The form page's error in the site's language; the JSON API's stays English."""
    from urllib.parse import urlencode

    import httpx

    from newsletter.tracking.app import create_app
    from tests.fakes.event_webhook import LiveApp

    cfg = build_config(
        tmp_path,
        toml=READER_SITE.replace("[site]\n", '[site]\nlanguage = "ru"\n'),
        env={"NEWSLETTER_SECRET_KEY": "test-secret-key-0123456789"},
        database=f"sqlite:///{tmp_path / 'f.db'}",
    )
    store = open_store(cfg.database_url)
    try:
        with LiveApp(create_app(cfg, store)) as srv:
            r = httpx.post(
                srv.url("/subscribe"),
                content=urlencode([("email", ""), ("digest", "weekly")]),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert r.status_code == 422 and '<html lang="ru"' in r.text
            assert (
                '<p class="error" role="alert" id="error">введите адрес электронной почты</p>'
                in r.text
            )
            r = httpx.post(
                srv.url("/subscribe"),
                content=urlencode([("email", "a@example.com"), ("digest", "monthly")]),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert r.status_code == 422 and "нет рассылки с именем &#39;monthly&#39;" in r.text
            j = httpx.post(srv.url("/subscribe"), json={"email": "", "digests": ["weekly"]})
            assert j.json() == {"error": "enter your email address", "field": "email"}
    finally:
        store.close()
