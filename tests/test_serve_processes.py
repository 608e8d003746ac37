"""Two `newsletter serve` processes on one database share the signup rate limits."""

import httpx

from newsletter.store import open_store
from tests.fakes.serve import ServeProcess
from tests.helpers import SECRET, SECRET_ENV, SIGNUP_CONFIG, build_config


def test_two_serve_processes_share_the_rate_limits(tmp_path, db_url):
    limits = {"per_ip": 3, "per_address": 2}
    cfg = build_config(tmp_path, toml=SIGNUP_CONFIG, env=SECRET_ENV, database=db_url, signup=limits)
    toml = tmp_path / "newsletter.toml"
    open_store(db_url).close()  # migrate once, before both start
    with ServeProcess(toml, db_url, SECRET) as one, ServeProcess(toml, db_url, SECRET) as two:

        def post(srv, email):
            return httpx.post(
                srv.url("/subscribe"), data={"email": email, "digest": "weekly"}, timeout=10
            ).status_code

        # per address: two in the window, counted across both processes
        assert [post(one, "a@example.com"), post(two, "a@example.com")] == [202, 202]
        assert post(one, "a@example.com") == 429
        # per client: the three above used this client's three
        assert post(two, "b@example.com") == 429
    store = open_store(db_url)
    assert store.get_subscriber("b@example.com") is None
    assert store.get_subscriber("a@example.com").status == "pending"
    store.close()
    assert cfg.signup.per_ip == 3
