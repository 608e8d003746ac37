"""Signups per second through `newsletter serve` (uvicorn), on SQLite or PostgreSQL.

    .venv/bin/python benchmarks/signup.py [--signups 5000] [--clients 8] [--db URL] [--workers N]
        [--client raw|httpx]

Starts `newsletter serve` as its own process (file outbox, rate limits set out
of the way) and posts form signups, each for a new address, over
``--clients`` keep-alive connections on 127.0.0.1. Each signup is the whole
path: the client counter, the address counter, the pending subscriber and
subscriptions, the resend claim (one transaction), the 202 page, and then the
confirmation email rendered and written to the outbox. Reports signups/s
answered, and signups/s with every confirmation written. ``--db`` takes a
PostgreSQL URL (a throwaway schema is made in it and dropped); default: a
fresh SQLite file.

The client shares the machine's cores with ``serve``, so what it costs is taken
from what the server gets. ``--client raw`` (the default) is one asyncio thread
writing pre-built requests (the same bytes httpx sends, less its
``User-Agent``/``Accept`` headers) and reading each answer's status line, headers
and body; ``--client httpx`` is the earlier client, an ``httpx.Client`` per
thread, about six times its CPU per signup. The server's work per signup is the
same with either.

serve's CPU is read from /proc just before the first signup is posted and
again when the last confirmation is written, so its startup (imports, the
first renders: about 0.7 s) is reported on its own and not spread over the
signups.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import free_port  # noqa: E402

CONFIG = """
[site]
name = "Bench"
url = "https://bench.example/"
public_url = "https://bench.example/newsletter"
from_email = "digest@bench.example"

[delivery]
backend = "outbox"
outbox_dir = "{outbox}"

[signup]
per_ip = 1000000000
per_address = 1000000000

[webhook]
max_connections = 1000

[[digests]]
name = "weekly"
title = "Weekly digest"
tags = ["Kazakhstan", "Energy"]

[[digests]]
name = "daily"
title = "Daily briefing"
"""


def server_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workers_of(pid: int) -> list[int]:
    """The processes ``serve --workers`` forked."""
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def serve_cpu(pid: int) -> float:
    """CPU seconds of ``serve`` and the worker processes it forked."""
    return server_cpu(pid) + sum(server_cpu(w) for w in workers_of(pid))


def post_raw(port: int, bodies: list[bytes], clients: int) -> int:
    """Post ``bodies`` over ``clients`` keep-alive connections from one asyncio
    thread; returns how many were answered 202."""
    head = (
        f"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: "
    ).encode()
    requests = [head + str(len(b)).encode() + b"\r\n\r\n" + b for b in bodies]

    async def one(part: list[bytes]) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ok = 0
        try:
            for req in part:
                writer.write(req)
                answer = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in answer.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                ok += answer.startswith(b"HTTP/1.1 202 ")
        finally:
            writer.close()
        return ok

    async def run() -> int:
        done = await asyncio.gather(*(one(requests[i::clients]) for i in range(clients)))
        return sum(done)

    return asyncio.run(run())


def post_httpx(base: str, bodies: list[bytes], clients: int) -> int:
    """Post ``bodies`` from ``clients`` threads, an ``httpx.Client`` each."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def worker(part: list[bytes]) -> int:
        ok = 0
        with httpx.Client(base_url=base, timeout=30) as http:
            for body in part:
                ok += http.post("/subscribe", content=body, headers=headers).status_code == 202
        return ok

    with ThreadPoolExecutor(clients) as pool:
        return sum(pool.map(worker, [bodies[i::clients] for i in range(clients)]))


def pg_schema(url: str) -> tuple[str, object]:
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url)
    with admin.begin() as c:
        c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"

    def drop() -> None:
        with admin.begin() as c:
            c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return f"{url}{sep}options=-csearch_path%3D{schema}", drop


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--signups", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--db", default="")
    ap.add_argument("--workers", type=int, default=1, help="serve --workers")
    ap.add_argument(
        "--client", choices=["raw", "httpx"], default="raw", help="the benchmark's own client"
    )
    ap.add_argument("--profile", default="", help="write serve's cProfile stats to this file")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="nl-signup-bench-"))
    drop = None
    if args.db.startswith("postgresql"):
        url, drop = pg_schema(args.db)
    else:
        url = f"sqlite:///{tmp / 'bench.db'}"
    outbox = tmp / "outbox"
    (tmp / "newsletter.toml").write_text(CONFIG.format(outbox=outbox), encoding="utf-8")
    from newsletter.store import open_store

    open_store(url).close()  # as `newsletter init` would: serve creates no database
    port = free_port()
    env = {
        **os.environ,
        "NEWSLETTER_CONFIG": str(tmp / "newsletter.toml"),
        "NEWSLETTER_DATABASE_URL": url,
        "NEWSLETTER_SECRET_KEY": "bench-" + uuid.uuid4().hex,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            *(["-m", "cProfile", "-o", args.profile] if args.profile else []),
            "-m",
            "newsletter",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("serve did not start")
            time.sleep(0.1)

        n, k = args.signups, args.clients
        bodies = [
            f"email=reader{i}%40example.com&digest=weekly&digest=daily&tag=energy".encode()
            for i in range(n)
        ]
        load = os.getloadavg()[0]
        startup_cpu = serve_cpu(proc.pid)
        client_cpu = time.process_time()
        start = time.perf_counter()
        if args.client == "raw":
            accepted = post_raw(port, bodies, k)
        else:
            accepted = post_httpx(base, bodies, k)
        answered = time.perf_counter() - start
        client_cpu = time.process_time() - client_cpu
        box = outbox / "transactional"
        while len(list(box.glob("*.eml"))) < n and time.perf_counter() - start < 600:
            time.sleep(0.05)
        mailed = time.perf_counter() - start
        mails = len(list(box.glob("*.eml")))
        cpu = serve_cpu(proc.pid) - startup_cpu
    finally:
        # uvicorn re-raises SIGTERM after its shutdown, which kills the process
        # before cProfile writes; SIGINT ends as KeyboardInterrupt, which it survives
        proc.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
        proc.wait(30)
        if drop:
            drop()
    engine = "PostgreSQL" if args.db.startswith("postgresql") else "SQLite"
    print(
        f"{engine}, serve --workers {args.workers}: {accepted}/{n} signups accepted by "
        f"{k} {args.client} clients in {answered:.2f} s: "
        f"{accepted / answered:,.0f} signups/s answered; {mails} confirmations written in "
        f"{mailed:.2f} s: {mails / mailed:,.0f} signups/s end to end"
    )
    print(
        f"serve used {cpu:.2f} s of CPU for the signups (and {startup_cpu:.2f} s to start): "
        f"{cpu / max(mails, 1) * 1000:.2f} ms per signup, "
        f"{max(mails, 1) / cpu:,.0f} signups per CPU-second; the clients used "
        f"{client_cpu / max(accepted, 1) * 1000:.2f} ms per signup"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, load average at start {load:.1f}"
    )


if __name__ == "__main__":
    main()
