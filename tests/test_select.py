"""Selection: tags, window, never repeat, variants, order, min/max, and the CLI view of it."""

import json
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import Config, DigestConfig
from newsletter.editions.plan import plan_edition, selection
from newsletter.editions.variants import variant_key
from newsletter.models import Article, Subscriber, Tag
from tests.helpers import build_config

# before any real clock reading, so "ingested now" is never inside a test's window
NOW = datetime(2026, 11, 23, 7, tzinfo=UTC)


def art(n, hours_ago, *tags, pinned=False):
    return Article(
        uid=f"guid-{n}",
        url=f"https://site.example/{n}/",
        title=f"Story {n}",
        published_at=NOW - timedelta(hours=hours_ago),
        tags=[Tag.from_name(t) for t in tags],
        pinned=pinned,
        source="site",
    )


def digest(**kw):
    base = dict(name="weekly", tags=["kazakhstan", "uzbekistan"], min_articles=1, max_articles=30)
    base.update(kw)
    return DigestConfig(**base)


def titles(arts):
    return [a.title for a in arts]


def send(store, d, at, articles, *, status="sent", variant="default"):
    """Record an edition of ``d`` compiled at ``at`` carrying ``articles``."""
    eid, _ = store.create_edition(
        digest=d.name,
        period=at.isoformat(),
        subject="s",
        window_start=at - timedelta(days=7),
        window_end=at,
        variants={variant: [a.id for a in articles]},
    )
    # through the edition's states, as a real send moves it
    path = {"compiled": [], "sending": ["sending"], "cancelled": ["cancelled"]}
    for step in path.get(status, ["sending", status]):
        store.set_edition_status(eid, step)
    return eid


def test_any_of_the_tags_minus_the_exclude_list(store):
    store.upsert_articles(
        [
            art(1, 1, "Kazakhstan"),
            art(2, 2, "Uzbekistan", "Sport"),
            art(3, 3, "Kyrgyzstan"),
            art(4, 4, "KAZAKHSTAN", "Energy"),
        ]
    )
    got = selection(store, digest(exclude_tags=["Sport"]), NOW)
    assert titles(got.articles) == ["Story 1", "Story 4"]
    assert got.tags == ["kazakhstan", "uzbekistan"]


def test_first_edition_looks_back_lookback_days(store):
    store.upsert_articles([art(1, 24 * 6, "Kazakhstan"), art(2, 24 * 8, "Kazakhstan")])
    assert titles(selection(store, digest(), NOW).articles) == ["Story 1"]
    wider = selection(store, digest(lookback_days=10), NOW)
    assert titles(wider.articles) == ["Story 1", "Story 2"]
    assert wider.window_start == NOW - timedelta(days=10)


def test_window_runs_from_the_previous_sent_edition(store):
    d = digest()
    store.upsert_articles([art(1, 50, "Kazakhstan"), art(2, 10, "Kazakhstan")])
    send(store, d, NOW - timedelta(hours=24), [])
    got = selection(store, d, NOW)
    assert got.window_start == NOW - timedelta(hours=24)
    assert titles(got.articles) == ["Story 2"]
    # a cancelled (or merely compiled) edition is no previous edition
    send(store, d, NOW - timedelta(hours=5), [], status="cancelled")
    assert selection(store, d, NOW).window_start == NOW - timedelta(hours=24)


def test_never_repeat_an_article_across_two_editions(store):
    d = digest()
    cfg = Config()
    store.upsert_articles([art(1, 30, "Kazakhstan"), art(2, 20, "Uzbekistan")])
    first_at = NOW - timedelta(hours=12)
    plan = plan_edition(store, cfg, d, first_at, audience=[Subscriber("a@example.com")])
    sent = plan.variants["default"].articles
    assert titles(sent) == ["Story 2", "Story 1"]
    send(store, d, first_at, sent)
    # Story 1 is republished (updated in place, now dated after the first edition)
    store.upsert_articles([art(1, 2, "Kazakhstan"), art(3, 1, "Kazakhstan")])
    second = plan_edition(store, cfg, d, NOW, audience=[Subscriber("a@example.com")])
    assert titles(second.variants["default"].articles) == ["Story 3"]
    # another digest has its own history
    other = selection(store, digest(name="daily"), NOW)
    assert "Story 1" in titles(other.articles)


def test_an_article_sent_in_one_variant_is_not_sent_again_in_any(store):
    d = digest()
    store.upsert_articles([art(1, 30, "Kazakhstan", "Energy")])
    (a,) = store.find_articles()
    send(store, d, NOW - timedelta(hours=40), [a], variant="energy")
    assert selection(store, d, NOW, since=NOW - timedelta(days=7)).articles == []


def test_variants_per_distinct_tag_set_default_for_no_preference(store):
    d = digest()
    store.upsert_articles(
        [art(1, 1, "Kazakhstan"), art(2, 2, "Uzbekistan"), art(3, 3, "Energy"), art(4, 4, "Sport")]
    )
    audience = [
        Subscriber("a@example.com"),
        Subscriber("b@example.com", tags=["energy"]),
        Subscriber("c@example.com", tags=["Energy"]),
        Subscriber("d@example.com", tags=["sport", "kazakhstan"]),
        Subscriber("e@example.com", tags=["kazakhstan", "sport"]),
    ]
    plan = plan_edition(store, Config(), d, NOW, audience=audience)
    assert {k: (titles(v.articles), v.subscribers) for k, v in plan.variants.items()} == {
        "default": (["Story 1", "Story 2"], 1),
        "energy": (["Story 3"], 2),
        "kazakhstan+sport": (["Story 1", "Story 4"], 2),
    }
    assert variant_key(["Energy", "energy"]) == variant_key(["energy"]) == "energy"
    assert variant_key([]) == "default"


def test_pinned_first_then_newest(store):
    store.upsert_articles(
        [
            art(1, 1, "Kazakhstan"),
            art(2, 5, "Kazakhstan", pinned=True),
            art(3, 3, "Kazakhstan"),
            art(4, 9, "Kazakhstan", pinned=True),
        ]
    )
    assert titles(selection(store, digest(), NOW).articles) == [
        "Story 2",
        "Story 4",
        "Story 1",
        "Story 3",
    ]


def test_max_articles_keeps_the_first_in_order(store):
    store.upsert_articles([art(n, n, "Kazakhstan") for n in range(1, 8)])
    got = selection(store, digest(max_articles=3), NOW)
    assert titles(got.articles) == ["Story 1", "Story 2", "Story 3"]


def test_too_few_articles_skips_the_variant_and_says_why(store):
    store.upsert_articles([art(1, 1, "Kazakhstan"), art(2, 2, "Energy")])
    d = digest(min_articles=2)
    got = selection(store, d, NOW)
    assert not got.enough
    assert got.skip_reason == (
        "variant default: 1 new article (kazakhstan, uzbekistan) since 2026-11-16 07:00 UTC, "
        "fewer than min_articles=2"
    )
    plan = plan_edition(
        store,
        Config(),
        d,
        NOW,
        audience=[Subscriber("a@example.com"), Subscriber("b@example.com", tags=["energy"])],
    )
    assert plan.variants == {}
    assert plan.skipped_subscribers == 2
    assert "variant default: 1 new article" in plan.skip_message
    assert "variant energy: 1 new article (energy)" in plan.skip_message


def test_no_empty_newsletter_even_with_min_articles_zero(store):
    got = selection(store, digest(min_articles=0), NOW)
    assert got.articles == [] and not got.enough
    assert "fewer than min_articles=1" in got.skip_reason


def test_a_late_arrival_is_sent_once(store):
    d = digest()
    now = datetime.now(UTC)
    previous = now - timedelta(minutes=30)
    send(store, d, previous, [])
    # reached the feed after the previous edition, though published before it
    late = Article(
        uid="late",
        url="https://site.example/late/",
        title="Late",
        published_at=previous - timedelta(minutes=20),
        tags=[Tag.from_name("Kazakhstan")],
    )
    ancient = Article(
        uid="old",
        url="https://site.example/old/",
        title="Backfilled archive story",
        published_at=previous - timedelta(days=30),
        tags=[Tag.from_name("Kazakhstan")],
    )
    store.upsert_articles([late, ancient])
    now = datetime.now(UTC)  # the edition is planned after the ingest
    got = selection(store, d, now)
    assert titles(got.articles) == ["Late"]
    assert got.late_since == previous
    send(store, d, now, got.articles)
    assert selection(store, d, now + timedelta(minutes=5)).articles == []


# --------------------------------------------------------------------------- CLI


def test_cli_articles_tag_since_json_is_exactly_the_filter(project):
    assert CliRunner().invoke(cli, ["ingest"]).exit_code == 0
    out = CliRunner().invoke(
        cli, ["articles", "--tag", "Kazakhstan", "--since", "2026-11-23T07:05:00+05:00", "--json"]
    )
    got = json.loads(out.output)
    assert got, out.output
    assert all("kazakhstan" in a["tags"] for a in got)
    assert all(a["published_at"] >= "2026-11-23T02:05:00+00:00" for a in got)
    stamps = [a["published_at"] for a in got if not a["pinned"]]
    assert stamps == sorted(stamps, reverse=True)
    assert {"summary_html", "image_url", "image_alt", "tag_names", "source"} <= set(got[0])


def test_cli_articles_digest_shows_the_next_editions_selection(project):
    CliRunner().invoke(cli, ["ingest"])
    at = "2026-11-30T07:05:00+05:00"
    out = CliRunner().invoke(
        cli, ["articles", "--digest", "weekly", "--tag", "kazakhstan", "--at", at, "--json"]
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["variant"] == "kazakhstan" and data["skip_reason"] is None
    assert data["window_start"] == "2026-11-23T02:05:00+00:00"
    assert all("kazakhstan" in a["tags"] for a in data["articles"])
    # the same as the preview/send path: plan_edition for one kazakhstan subscriber
    from newsletter.store import open_store

    cfg = build_config(project)
    store = open_store(cfg.database_url)
    plan = plan_edition(
        store,
        cfg,
        cfg.digest("weekly"),
        datetime.fromisoformat(at),
        audience=[Subscriber("x@example.com", tags=["kazakhstan"])],
    )
    store.close()
    assert [a["id"] for a in data["articles"]] == [
        a.id for a in plan.variants["kazakhstan"].articles
    ]

    text = CliRunner().invoke(
        cli, ["articles", "--digest", "weekly", "--tag", "nosuchtag", "--at", at]
    )
    assert "would be skipped: variant nosuchtag: 0 new articles (nosuchtag)" in text.output


def test_cli_since_must_be_readable(project):
    out = CliRunner().invoke(cli, ["articles", "--since", "last week"])
    assert out.exit_code == 2
    assert "--since 'last week': use 7d, 12h, 30m or an ISO date" in out.output
