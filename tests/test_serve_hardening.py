"""`newsletter serve` on the open internet: real slow sockets on loopback.

Before: idle sockets and bodies sent a byte every 2 s stayed open for over 70 s.
"""

import socket
import time

import httpx
import pytest

from newsletter.store import open_store
from tests.fakes.serve import ServeProcess
from tests.helpers import SECRET, SECRET_ENV, SIGNUP_CONFIG, build_config

LIMITS = """
header_timeout = 1
body_timeout = 1
keep_alive_timeout = 1
max_connections = 8
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("harden")
    db = f"sqlite:///{tmp / 'h.db'}"
    limited = SIGNUP_CONFIG.replace("[webhook]\n", "[webhook]\n" + LIMITS)
    build_config(tmp, toml=limited, env=SECRET_ENV, database=db)
    toml = tmp / "newsletter.toml"
    open_store(db).close()  # as `newsletter init` would: serve creates no database
    with ServeProcess(toml, db, SECRET) as srv:
        yield srv


def connect(srv) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    return s


def trickle(s: socket.socket, seconds: float = 8) -> bytes:
    """Send a body a byte at a time (one every 0.3 s at most) until the server
    closes or ``seconds`` pass; returns what it answered meanwhile. Closes ``s``."""
    start = time.monotonic()
    answer = b""
    s.settimeout(0.3)
    try:
        while time.monotonic() - start < seconds:
            try:
                s.sendall(b"e")
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                break
            answer += chunk
    finally:
        s.close()
    return answer


def closed_after(s: socket.socket, limit: float) -> float:
    """Seconds until the server closed ``s`` (reading whatever it answered)."""
    start = time.monotonic()
    s.settimeout(limit)
    try:
        while s.recv(4096):
            pass
    except TimeoutError:
        pytest.fail(f"still open after {limit} s")
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def test_a_silent_connection_is_closed_after_the_header_timeout(server):
    s = connect(server)
    assert closed_after(s, 6) < 4
    s.close()


def test_headers_sent_a_byte_at_a_time_do_not_keep_a_connection_open(server):
    s = connect(server)
    start = time.monotonic()
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    try:
        for byte in head:
            s.sendall(bytes([byte]))
            time.sleep(0.3)
            if time.monotonic() - start > 8:
                pytest.fail("still open after 8 s")
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert time.monotonic() - start < 4
    s.close()


def test_a_slow_body_is_answered_408_then_closed(server):
    s = connect(server)
    s.sendall(
        b"POST /subscribe HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
    )
    start = time.monotonic()
    answer = trickle(s)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert time.monotonic() - start < 5


def test_an_idle_keep_alive_connection_is_closed(server):
    s = connect(server)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    assert closed_after(s, 6) < 4
    s.close()


def test_connections_over_the_cap_are_refused_at_once_and_service_resumes(server):
    held = [connect(server) for _ in range(8)]
    time.sleep(0.2)
    extra = connect(server)
    extra.settimeout(3)
    answer = extra.recv(4096)
    assert answer.startswith(b"HTTP/1.1 503"), answer
    extra.close()
    for s in held:
        s.close()
    time.sleep(0.3)
    assert httpx.get(server.url("/healthz"), timeout=5).text == "ok"


def test_serve_runs_the_guarded_httptools_protocol_on_uvloop(tmp_path):
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from newsletter.tracking.server import uvicorn_settings

    settings = uvicorn_settings(build_config(tmp_path, toml=SIGNUP_CONFIG, env=SECRET_ENV))
    assert issubclass(settings["http"], HttpToolsProtocol)
    assert settings["loop"] == "uvloop"


def test_a_request_head_over_the_cap_is_refused_however_fast_it_comes(server):
    s = connect(server)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    s.settimeout(5)
    answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert closed_after(s, 3) < 2
    s.close()


def test_a_header_line_that_never_ends_is_refused_at_the_cap(server):
    s = connect(server)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent, answer = 0, b""
    s.settimeout(0.02)
    try:
        while sent < 1_000_000 and not answer:
            s.sendall(b"a" * 8192)
            sent += 8192
            try:
                answer = s.recv(4096)
            except TimeoutError:
                continue
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        s.close()
    # answered as soon as the head passes 16 KB: not held in memory until the
    # header deadline (1 s here) closes the connection without a word
    assert answer.startswith(b"HTTP/1.1 400"), (sent, answer[:80])
    assert sent < 200_000


def test_a_slow_body_to_a_route_that_never_reads_it_is_closed(server):
    s = connect(server)
    s.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    start = time.monotonic()
    answer = trickle(s)
    assert answer.startswith(b"HTTP/1.1 405"), answer[:80]
    # body_timeout (1 s) + the grace (2 s), not as long as bytes keep coming
    assert time.monotonic() - start < 5


def test_keep_alive_and_pipelined_requests_are_answered_in_order(server):
    s = connect(server)
    s.settimeout(5)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    s.sendall(request)
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    time.sleep(0.5)  # within header_timeout: the connection is still there
    s.sendall(request + b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
    answers = b""
    while answers.count(b"HTTP/1.1 ") < 2:
        chunk = s.recv(4096)
        assert chunk, answers
        answers += chunk
    first, second = answers.split(b"HTTP/1.1 ")[1:3]
    assert first.startswith(b"200") and second.startswith(b"404")
    s.close()
