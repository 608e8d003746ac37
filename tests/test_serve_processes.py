"""Two `newsletter serve` processes on one database share the signup rate limits;
`serve --workers N` runs N of them on one port."""

import os
import signal
import time
from pathlib import Path

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


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_serve_workers_answer_on_one_port_and_stop_together(tmp_path, db_url):
    limits = {"per_ip": 5, "per_address": 2}
    build_config(tmp_path, toml=SIGNUP_CONFIG, env=SECRET_ENV, database=db_url, signup=limits)
    open_store(db_url).close()
    with ServeProcess(tmp_path / "newsletter.toml", db_url, SECRET, args=("--workers", "3")) as srv:
        workers = children(srv.proc.pid)
        assert len(workers) == 3

        def post(email):
            # a new connection each time: any of the workers may answer
            return httpx.post(
                srv.url("/subscribe"), data={"email": email, "digest": "weekly"}, timeout=10
            ).status_code

        # the limits hold across the workers: five per client, two per address
        codes = [post(f"r{i}@example.com") for i in range(4)] + [post("r0@example.com")]
        assert codes == [202] * 5
        assert post("r5@example.com") == 429
        srv.proc.terminate()
        assert srv.proc.wait(20) == 0
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(Path(f"/proc/{w}").exists() for w in workers)
    store = open_store(db_url)
    assert store.get_subscriber("r5@example.com") is None
    assert store.get_subscriber("r3@example.com").status == "pending"
    store.close()


def test_a_worker_that_dies_stops_serve(tmp_path, db_url):
    build_config(tmp_path, toml=SIGNUP_CONFIG, env=SECRET_ENV, database=db_url)
    open_store(db_url).close()
    with ServeProcess(tmp_path / "newsletter.toml", db_url, SECRET, args=("--workers", "2")) as srv:
        first, second = children(srv.proc.pid)
        os.kill(first, signal.SIGKILL)
        assert srv.proc.wait(20) == 1
        deadline = time.monotonic() + 10
        while Path(f"/proc/{second}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{second}").exists()


def test_the_workers_socket_answers_without_nagles_delay():
    """asyncio turns Nagle's algorithm off only on sockets that say they are TCP:
    the connections the workers accept on the shared socket must have TCP_NODELAY,
    or each answer waits ~40 ms for a delayed ACK."""
    import asyncio
    import socket

    from newsletter.tracking.app import listening_socket

    async def accepted_nodelay() -> int:
        sock = listening_socket("127.0.0.1", 0)
        got: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):  # noqa: ANN001, ANN202
                s = transport.get_extra_info("socket")
                got.set_result(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        port = sock.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(got, 5)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(accepted_nodelay()) != 0
