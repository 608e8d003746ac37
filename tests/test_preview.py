"""Editor preview, preflight and test sends: they show and check, and record nothing."""

import email
import email.policy
import json
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import lxml.html
import pytest
import sqlalchemy as sa
import uvicorn
from click.testing import CliRunner

from newsletter.articles.ingest import ingest
from newsletter.audience.subscribers import import_csv
from newsletter.cli import cli
from newsletter.delivery.backends.base import Backend, BatchResult
from newsletter.errors import NotFoundError, PreflightError
from newsletter.preview.message import preview_message
from newsletter.preview.preflight import preflight
from newsletter.preview.server import make_app
from newsletter.preview.testsend import send_test
from newsletter.store.schema import metadata

AT = "2026-11-30T07:05:00+05:00"
NOW = datetime.fromisoformat(AT)


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def row_counts(store):
    with store.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
        }


@pytest.fixture
def seeded(store, config, project):
    ingest(store, config, config.sources)
    import_csv(store, project / "subscribers.csv")
    return store


# --------------------------------------------------------------------------- library


def test_preview_is_the_message_a_send_builds_and_records_nothing(seeded, config):
    before = row_counts(seeded)
    digest = config.digest()
    p = preview_message(seeded, config, digest, NOW, as_email="aigerim.sadykova@example.com")
    assert row_counts(seeded) == before
    assert p.variant == "energy+kazakhstan" and p.articles >= 1
    assert p.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"<{p.unsubscribe_url}>" in p.headers["List-Unsubscribe"]
    # her own signed link, in both parts, nothing left unfilled
    assert "/unsubscribe/" in p.unsubscribe_url and not p.unsubscribe_url.endswith("PREVIEW")
    assert p.unsubscribe_url in p.text
    doc = lxml.html.document_fromstring(p.html)
    assert p.unsubscribe_url in [a.get("href") for a in doc.iter("a")]
    assert "%%" not in p.html and "%%" not in p.text
    titles = [h.text_content() for h in doc.xpath('//h3[@class="ct"]')]
    assert titles and all(t in p.text for t in titles)


def test_preview_by_tags_and_unknown_subscriber(seeded, config):
    digest = config.digest()
    p = preview_message(seeded, config, digest, NOW, tags=["kyrgyzstan"])
    assert p.variant == "kyrgyzstan"
    assert p.unsubscribe_url.endswith("/unsubscribe/PREVIEW")  # unsubscribes nobody
    assert "because you subscribed to news about Kyrgyzstan." in " ".join(p.text.split())
    with pytest.raises(NotFoundError, match="nobody@example.com: no such subscriber"):
        preview_message(seeded, config, digest, NOW, as_email="nobody@example.com")


def test_preflight_checks_every_variant_and_records_nothing(seeded, config):
    before = row_counts(seeded)
    report = preflight(seeded, config, config.digest(), NOW)
    assert row_counts(seeded) == before
    assert report.ok, [str(f) for f in report.findings]
    assert "default" in report.variants and len(report.variants) > 3
    assert all(v["bytes"] < 100_000 for v in report.variants.values())


def test_preflight_fails_an_empty_edition(store, config):
    report = preflight(store, config, config.digest(), NOW)
    assert not report.ok
    assert [f.code for f in report.errors] == ["empty"]


class RecordingBackend(Backend):
    name = "recording"

    def __init__(self, cfg, refuse=()):
        super().__init__(cfg)
        self.calls = []
        self.refuse = set(refuse)

    def send_batch(self, message, recipients):
        self.calls.append((message, recipients))
        return BatchResult(
            rejected={r.delivery_id: "mailbox full" for r in recipients if r.email in self.refuse}
        )


def test_test_send_goes_to_editors_marked_test_and_records_nothing(seeded, config):
    before = row_counts(seeded)
    backend = RecordingBackend(config, refuse={"boss@example.com"})
    report = send_test(
        seeded,
        config,
        config.digest(),
        NOW,
        ["Ed@Example.com", "boss@example.com"],
        backend=backend,
    )
    assert row_counts(seeded) == before
    ((message, recipients),) = backend.calls
    assert message.test and message.rendered.subject.startswith("The Steppe Ledger")
    assert [r.email for r in recipients] == ["ed@example.com", "boss@example.com"]
    assert all(r.delivery_id < 0 for r in recipients)  # never a real delivery's id
    assert all(r.unsubscribe_url.endswith("/unsubscribe/TEST") for r in recipients)
    assert report.sent == ["ed@example.com"]
    assert report.rejected == {"boss@example.com": "mailbox full"}
    assert report.subject.startswith("[TEST] ")


def test_test_send_of_an_empty_edition_is_refused(store, config):
    with pytest.raises(PreflightError, match="nothing to send"):
        send_test(store, config, config.digest(), NOW, ["ed@example.com"])


# --------------------------------------------------------------------------- command line


def test_preview_command_formats_and_files(project):
    invoke("ingest")
    invoke("subscribers", "import", "subscribers.csv")
    html = invoke("preview", "--at", AT)
    assert html.exit_code == 0 and html.output.startswith("<!doctype html>")
    text = invoke("preview", "--at", AT, "--tags", "kyrgyzstan", "--format", "text")
    assert (
        "Unsubscribe:\nhttps://steppe-ledger.example/newsletter/unsubscribe/PREVIEW\n"
        in text.output
    )
    out = invoke("preview", "--at", AT, "--as", "aigerim.sadykova@example.com", "--out", "she.html")
    assert out.exit_code == 0 and "wrote she.html" in out.output
    # the greeting's first name is filled per recipient, as a send fills it
    assert "Hi Айгерим," in " ".join((project / "she.html").read_text().split())
    assert "Hi there," in " ".join(html.output.split()) and "%%first_name%%" not in html.output
    assert "/unsubscribe/" in (project / "she.html").read_text()
    both = CliRunner().invoke(cli, ["preview", "--as", "a@example.com", "--tags", "x"])
    assert both.exit_code == 2 and "give --as or --tags, not both" in both.output
    assert invoke("status").exit_code != 0  # still no edition


def test_preview_open_writes_a_file_and_opens_it(project, monkeypatch):
    invoke("ingest")
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url))
    result = invoke("preview", "--at", AT, "--format", "text", "--open")
    assert result.exit_code == 0
    (url,) = opened
    assert url.startswith("file://") and url.endswith(".text")
    path = Path(url[len("file://") :])
    assert "Read more:" in path.read_text()
    path.unlink()


def test_check_command_passes_and_fails(project):
    empty = invoke("check", "--at", AT)
    assert empty.exit_code == 1
    assert "the edition would be empty" in empty.output and "FAILED" in empty.output
    invoke("ingest")
    # one reader first: the variant lines count in words that agree with the figures
    rows = (project / "subscribers.csv").read_text().splitlines()
    (project / "one.csv").write_text("\n".join(rows[:2]) + "\n")
    invoke("subscribers", "import", "one.csv")
    one = invoke("check", "--at", AT)
    counted = json.loads(invoke("check", "--at", AT, "--json").output)["variants"].values()
    assert 1 in {v["subscribers"] for v in counted}
    for v in counted:
        n, readers = v["stories"], v["subscribers"]
        assert f"{n} stor{'y' if n == 1 else 'ies'}" in one.output
        assert f"{readers} subscriber{'s' if readers != 1 else ''};" in one.output
    invoke("subscribers", "import", "subscribers.csv")
    ok = invoke("check", "--at", AT)
    assert ok.exit_code == 0, ok.output
    assert "variant default:" in ok.output and "weekly: ok (0 errors" in ok.output
    data = json.loads(invoke("check", "--at", AT, "--json").output)
    assert data["ok"] is True and data["errors"] == []


def test_check_fails_a_template_without_unsubscribe_link_or_alt(project):
    invoke("ingest")
    (project / "tpl" / "partials").mkdir(parents=True)
    (project / "tpl" / "partials" / "footer.mjml.j2").write_text(
        "<mj-section><mj-column><mj-text>Bye. {{ undefined_thing }}</mj-text>"
        "</mj-column></mj-section>\n"
    )
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text() + '\n[render]\ntemplates = "tpl"\n')
    broken = invoke("check", "--at", AT)
    assert broken.exit_code == 1
    assert "footer.mjml.j2:1" in broken.output and "undefined_thing" in broken.output
    (project / "tpl" / "partials" / "footer.mjml.j2").write_text(
        '<mj-section><mj-column><mj-image src="/logo.png" /></mj-column></mj-section>\n'
    )
    data = json.loads(invoke("check", "--at", AT, "--json").output)
    codes = {f["code"] for f in data["errors"]}
    assert {"unsubscribe", "alt", "link"} <= codes


def test_send_test_to_uses_the_outbox_and_records_no_deliveries(project):
    invoke("ingest")
    invoke("subscribers", "import", "subscribers.csv")
    result = invoke("send", "--at", AT, "--test-to", "ed@example.com", "--test-to", "x@example.org")
    assert result.exit_code == 0, result.output
    assert "sent via outbox to: ed@example.com, x@example.org" in result.output
    files = sorted((project / "outbox").rglob("*.eml"))
    assert [f.name for f in files] == ["ed@example.com.eml", "x@example.org.eml"]
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["Subject"].startswith("[TEST] The Steppe Ledger: Weekly digest")
    assert msg["List-Unsubscribe"].startswith(
        "<https://steppe-ledger.example/newsletter/unsubscribe/TEST>"
    )
    assert invoke("status").exit_code != 0  # no edition was created
    # and the real send afterwards reaches every subscriber
    real = json.loads(invoke("run", "--at", AT, "--json").output)
    assert real["digests"][0]["status"] == "sent" and real["digests"][0]["recipients"] == 22
    bad = CliRunner().invoke(cli, ["send", "--at", AT, "--test-to", "not-an-address"])
    assert bad.exit_code == 2 and "invalid email" in bad.output
    dry = CliRunner().invoke(cli, ["send", "--test-to", "ed@example.com", "--dry-run"])
    assert dry.exit_code == 2 and "cannot be combined with --dry-run" in dry.output


# --------------------------------------------------------------------------- live server


@pytest.fixture
def server(seeded, config, project):
    (project / "tpl").mkdir()
    config.render.templates = str(project / "tpl")
    app = make_app(seeded, config, config.digest(), at=NOW)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.02)
    (sock,) = server.servers[0].sockets
    host, port = sock.getsockname()[:2]
    assert host == "127.0.0.1"
    yield f"http://127.0.0.1:{port}", project / "tpl"
    server.should_exit = True
    thread.join(5)


def test_the_preview_server_answers_only_its_own_host_names(server):
    """A DNS-rebinding page reaches 127.0.0.1 with its own name in Host: refused."""
    base, _ = server
    port = base.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", ""):
        for path in ("/", "/message?as=aigerim.sadykova@example.com", "/stamp"):
            r = httpx.get(base + path, headers={"Host": host}, timeout=10)
            assert r.status_code == 400, (host, path)
            assert "unsubscribe" not in r.text and "aigerim" not in r.text
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
        assert httpx.get(base + "/stamp", headers={"Host": host}, timeout=10).status_code == 200


def test_the_preview_server_picks_variants_and_reloads_on_template_change(server):
    base, folder = server
    with httpx.Client(base_url=base, timeout=10) as http:
        page = http.get("/").text
        assert 'value="energy+kazakhstan"' in page and "/stamp" in page
        html = http.get("/message", params={"variant": "kyrgyzstan"}).text
        assert "news about Kyrgyzstan." in " ".join(html.split())
        text = http.get("/message", params={"as": "aigerim.sadykova@example.com", "format": "text"})
        assert text.headers["content-type"].startswith("text/plain")
        # by display name, in the order the digest lists its tags
        assert "news about Kazakhstan and Energy." in " ".join(text.text.split())
        missing = http.get("/message", params={"as": "nobody@example.com"})
        assert missing.status_code == 422 and "no such subscriber" in missing.text

        stamp = http.get("/stamp").json()["stamp"]
        (folder / "partials").mkdir()
        (folder / "partials" / "header.mjml.j2").write_text(
            '<mj-text><h1 class="hd">Edited masthead</h1></mj-text>\n'
        )
        assert http.get("/stamp").json()["stamp"] != stamp
        assert "Edited masthead" in http.get("/message").text
        (folder / "partials" / "header.mjml.j2").write_text("<mj-text>{{ broken </mj-text>\n")
        broken = http.get("/message")
        assert broken.status_code == 422 and "header.mjml.j2" in broken.text
