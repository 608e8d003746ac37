"""The [articles] and [[sources]] settings this feature adds: validated, file and key named."""

import pytest

from newsletter.config import load_config
from newsletter.errors import ConfigError


@pytest.mark.parametrize(
    "toml, key, message",
    [
        (
            '[[sources]]\nurl = "f.xml"\nper_page = 101\n',
            "sources[0].per_page",
            "between 1 and 100",
        ),
        ('[[sources]]\nurl = "f.xml"\nmax_pages = 0\n', "sources[0].max_pages", "at least 1"),
        (
            '[[sources]]\nurl = "f.xml"\nbackfill_days = 0\n',
            "sources[0].backfill_days",
            "at least 1",
        ),
        ('[[sources]]\nurl = "f.xml"\ntimeout = 0\n', "sources[0].timeout", "more than 0"),
        (
            '[[sources]]\nurl = "f.xml"\ntype = "atom"\n',
            "sources[0].type",
            "rss, wordpress or json",
        ),
        ("[articles]\nsummary_length = 5\n", "articles.summary_length", "at least 20"),
        ("[articles]\nmax_feed_bytes = 10\n", "articles.max_feed_bytes", "at least 1000"),
        ('[articles]\npinned_tags = "featured"\n', "articles.pinned_tags", "expected a list"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path, toml, key, message):
    path = tmp_path / "newsletter.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(path) in str(err.value) and key in str(err.value) and message in str(err.value)


def test_new_keys_load(tmp_path):
    path = tmp_path / "newsletter.toml"
    path.write_text(
        '[articles]\npinned_tags = ["top"]\nstrip_query_params = ["ref"]\n\n'
        '[[sources]]\ntype = "wordpress"\nurl = "https://s.example/"\ntags = ["kz"]\n'
        'per_page = 50\nmax_pages = 3\nbackfill_days = 7\nadd_tags = ["Kazakhstan"]\n'
    )
    cfg = load_config(path, env={})
    (s,) = cfg.sources
    assert (s.per_page, s.max_pages, s.backfill_days, s.add_tags) == (50, 3, 7, ["Kazakhstan"])
    assert cfg.articles.pinned_tags == ["top"] and cfg.articles.strip_query_params == ["ref"]
