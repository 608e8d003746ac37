"""Events per second through the real webhook: `newsletter serve` (uvicorn).

    .venv/bin/python benchmarks/webhook.py [--events 100000] [--batch 1000] [--clients 1]
        [--db postgresql+psycopg://postgres@127.0.0.1:5432/test] [--py-spy stacks.txt]

Seeds a database (a fresh SQLite file, or a throwaway schema in the PostgreSQL
database given with --db) with one sent edition, starts `newsletter serve` as a
separate process with a freshly generated signing key, then posts signed
batches of SendGrid events (a realistic mix, each matched to a delivery) over
HTTP and reports events/s. Signing happens before the clock starts: the
figure is the server's (verify, parse, store, apply precedence, commit).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.models import Subscriber
from newsletter.store import open_store
from newsletter.store.deliveries import AudienceRow

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import free_port, scratch_database  # noqa: E402

MIX = [
    ("processed", 0.25),
    ("delivered", 0.35),
    ("open", 0.22),
    ("click", 0.08),
    ("deferred", 0.05),
    ("bounce", 0.03),
    ("unsubscribe", 0.01),
    ("spamreport", 0.01),
]


def seed(url: str, recipients: int) -> tuple[int, list[tuple[int, str]]]:
    store = open_store(url)
    emails = [f"reader{i}@example.com" for i in range(recipients)]
    for i in range(0, recipients, 1000):
        store.upsert_subscribers([Subscriber(email=e) for e in emails[i : i + 1000]])
    eid, _ = store.create_edition(
        digest="weekly", period="bench", subject="Bench", window_start=None, window_end=None
    )
    ids = {s.email: s.id for s in store.iter_subscribers()}
    store.freeze_audience(eid, (AudienceRow(ids[e], e, "default") for e in emails))
    while (b := store.claim_batch(eid, backend="sendgrid", limit=1000)) is not None:
        store.finish_batch(b.id, message_id=f"msg-{b.id}")
    out = [(d.id, d.email) for d in store.list_deliveries(eid)]
    store.close()
    return eid, out


def make_batches(eid, deliveries, total, size, key):
    rnd = random.Random(7)
    kinds, weights = zip(*MIX, strict=True)
    batches = []
    n = 0
    while n < total:
        events = []
        for _ in range(min(size, total - n)):
            did, email = rnd.choice(deliveries)
            kind = rnd.choices(kinds, weights)[0]
            ev = {
                "email": email,
                "timestamp": 1796000000 + n,
                "event": kind,
                "sg_event_id": f"bench-{n}",
                "sg_message_id": f"x.filter.{n}",
                "newsletter_delivery_id": str(did),
                "newsletter_edition_id": str(eid),
            }
            if kind == "click":
                ev["url"] = f"https://news.example/{rnd.randint(1, 30)}"
            if kind in ("bounce", "deferred"):
                ev["reason"] = "550 5.1.1 user unknown"
            events.append(ev)
            n += 1
        body = json.dumps(events).encode()
        batches.append((body, len(events)))
    return batches


def signed(key, body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    sig = key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": ts,
        "Content-Type": "application/json",
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--recipients", type=int, default=20_000)
    ap.add_argument("--db", default="", help="a PostgreSQL URL (default: a SQLite file)")
    ap.add_argument(
        "--py-spy",
        help="sample the server with py-spy (if installed) while events are posted; "
        "collapsed stacks to this file",
    )
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="nl-webhook-bench-"))
    with scratch_database(args.db, tmp) as url:
        run(args, tmp, url)


def run(args: argparse.Namespace, tmp: Path, url: str) -> None:
    t = time.perf_counter()
    eid, deliveries = seed(url, args.recipients)
    print(f"seeded {len(deliveries)} accepted deliveries in {time.perf_counter() - t:.1f} s")

    key = ec.generate_private_key(ec.SECP256R1())
    pub = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    port = free_port()
    (tmp / "newsletter.toml").write_text(
        f'database = "{url}"\n[webhook]\nport = {port}\nmax_body_bytes = 50000000\n'
    )
    env = {
        **os.environ,
        "NEWSLETTER_SECRET_KEY": "bench-secret-key-0123456789",
        "NEWSLETTER_SENDGRID_WEBHOOK_KEY": pub,
        "NEWSLETTER_CONFIG": str(tmp / "newsletter.toml"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve"],
        env=env,
        cwd=tmp,
        stderr=(tmp / "serve.log").open("wb"),  # a pipe nobody reads could fill up
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit("server did not start: " + (tmp / "serve.log").read_text())
        batches = make_batches(eid, deliveries, args.events, args.batch, key)
        requests = [(body, signed(key, body), n) for body, n in batches]

        answers: list[dict[str, int]] = []

        def post_all(part):
            with httpx.Client(timeout=60) as http:
                for body, headers, _ in part:
                    r = http.post(base + "/webhooks/sendgrid", content=body, headers=headers)
                    r.raise_for_status()
                    answers.append(r.json())

        parts = [requests[i :: args.clients] for i in range(args.clients)]
        spy = None
        if args.py_spy:
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("py-spy")),
                    *("record", "--format", "raw", "--rate", "200", "--nonblocking"),
                    *("-p", str(server.pid), "-o", str(Path(args.py_spy).resolve())),
                ]
            )
            time.sleep(1)
        cpu = cpu_seconds(server.pid)
        t = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(post_all, parts))
        elapsed = time.perf_counter() - t
        cpu = cpu_seconds(server.pid) - cpu
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # stops sampling and writes the file
            spy.wait(60)
        total = sum(n for _, _, n in requests)
        print(
            f"{total} events in {len(requests)} signed requests of {args.batch}, "
            f"{args.clients} client(s): {elapsed:.2f} s, {total / elapsed:,.0f} events/s"
        )
        print(
            f"server CPU {cpu:.2f} s, {cpu / total * 1e6:.0f} µs per event "
            "(the database's not included)"
        )
        counts = {k: sum(a[k] for a in answers) for k in answers[0]}
        print("answers added up:", ", ".join(f"{k} {v}" for k, v in counts.items()))
        answers.clear()
        # the same requests again: every event is a duplicate
        t = time.perf_counter()
        post_all(requests[: max(1, len(requests) // 5)])
        dup = sum(n for _, _, n in requests[: max(1, len(requests) // 5)])
        elapsed = time.perf_counter() - t
        print(f"replayed {dup} duplicate events: {dup / elapsed:,.0f} events/s")
    finally:
        server.terminate()
        server.wait(30)
    engine = "PostgreSQL" if url.startswith("postgresql") else "SQLite WAL synchronous=FULL"
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {engine}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
