"""N subscribers end to end, every stage through the real program, on SQLite or PostgreSQL.

    .venv/bin/python benchmarks/scale.py [--subscribers 100000] [--db URL] [--events N]
                                         [--concurrency 4] [--workers 1] [--skip-webhook]
                                         [--stages import,freeze,send,webhook] [--workdir DIR]

Stages, each in a process of its own so its peak RSS (VmHWM) is its own:

1. import: `newsletter subscribers import` of a generated CSV (several topic mixes,
   50 time zones, 1 row in 500 unsubscribed);
2. compile: the edition's plan (``plan_edition``: variants and their articles for
   the audience), then freeze: its deliveries (``create_edition`` →
   ``freeze_audience``), timed apart, in one process;
3. send: `newsletter send` of that edition (render, claim, SendGrid requests,
   finish) to the fake SendGrid (tests/fakes/sendgrid.py), which runs in its
   own process and validates every body with fastjsonschema;
4. bare loop: the same number of requests of the same shape (1000
   personalizations of one ~90 KB variant, each with an HMAC-signed unsubscribe
   URL, a List-Unsubscribe header and custom args) built with ``json.dumps`` and
   posted to the same fake with the same concurrency, in a child process: the
   reference the send is compared with;
5. webhook: signed SendGrid event batches of 1000 (a delivered/open/click/bounce
   mix, every event matched to a delivery) posted to `newsletter serve`
   (``--events``, default 3 per subscriber).

Untimed set-up: `newsletter init`, `newsletter ingest` of the bundled sample feed.
``--stages`` runs only some stages (``freeze`` is compile + freeze; ``send`` includes
the bare loop). ``--workdir DIR`` keeps the folder and its database (for PostgreSQL a
schema whose name is kept in the folder): a later run with the same folder and
``--subscribers`` skips set-up and import, and drops the editions of earlier runs
(their deliveries, batches and events) before it compiles, so 1,000,000 subscribers
are imported once for many freezes.
Prints one line per stage (wall time, rate, peak RSS) and the ratio send / bare loop;
``--json FILE`` also writes them.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    free_port,
    kept_database,
    scratch_database,
    start_fake,
    vm_hwm_kb,
)

API_KEY = "SG.benchmark-key"
SECRET = "benchmark-secret-key-0123456789"
AT = "2026-11-30T07:05:00+05:00"
#: (tags, weight): the topic mixes of the audience; each mix is one variant
MIXES = [
    ("", 30),
    ("kazakhstan", 20),
    ("uzbekistan", 15),
    ("kazakhstan;energy", 12),
    ("kyrgyzstan;tajikistan", 10),
    ("uzbekistan;economy;water", 8),
    ("azerbaijan", 5),
]
ZONES = [
    "Asia/Almaty", "Asia/Tashkent", "Asia/Bishkek", "Asia/Dushanbe", "Asia/Ashgabat",
    "Asia/Baku", "Asia/Tbilisi", "Asia/Yerevan", "Europe/Moscow", "Europe/Istanbul",
    "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Europe/Rome",
    "Europe/Warsaw", "Europe/Kyiv", "Europe/Helsinki", "Europe/Stockholm", "Europe/Athens",
    "Asia/Dubai", "Asia/Karachi", "Asia/Kolkata", "Asia/Dhaka", "Asia/Bangkok",
    "Asia/Shanghai", "Asia/Seoul", "Asia/Tokyo", "Asia/Singapore", "Asia/Jakarta",
    "Asia/Manila", "Asia/Novosibirsk", "Asia/Omsk", "Asia/Yekaterinburg", "Asia/Aqtobe",
    "Asia/Qyzylorda", "Asia/Samarkand", "Australia/Sydney", "Australia/Perth",
    "Pacific/Auckland", "America/New_York", "America/Chicago", "America/Denver",
    "America/Los_Angeles", "America/Toronto", "America/Sao_Paulo", "America/Mexico_City",
    "Africa/Cairo", "Africa/Lagos", "Africa/Johannesburg",
]  # fmt: skip
STAGES = ("import", "freeze", "send", "webhook")
EVENT_MIX = [("delivered", 0.55), ("open", 0.3), ("click", 0.1), ("bounce", 0.05)]


# --------------------------------------------------------------------------- helpers


def measured(out: str, argv: list[str]) -> None:
    """Run the newsletter CLI in this process and write its peak RSS and CPU at exit."""

    inner: dict[str, float] = {}

    def report() -> None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        Path(out).write_text(
            json.dumps(
                {
                    "peak_kb": vm_hwm_kb(),
                    "cpu": ru.ru_utime + ru.ru_stime,
                    # helper processes of `send --workers`
                    "children_cpu": children.ru_utime + children.ru_stime,
                    **inner,
                }
            ),
            encoding="utf-8",
        )

    sys.argv = ["newsletter", *argv]
    from newsletter.cli import main

    if argv[0] == "send":
        # the CPU of send_edition alone (this process, all its threads): no start-up,
        # no compile; the rendering of the variants is in it
        import newsletter.jobs.run as jobs

        real = jobs.send_edition

        def timed(*a, **k):  # noqa: ANN202
            t = time.process_time()
            try:
                return real(*a, **k)
            finally:
                inner["send_cpu"] = time.process_time() - t

        jobs.send_edition = timed
    profile = os.environ.get("SCALE_PROFILE")
    if profile and argv[0] == "send":
        # SCALE_PROFILE=FILE: cProfile of the send command, written to FILE (pstats)
        import cProfile

        prof = cProfile.Profile()
        atexit.register(lambda: prof.dump_stats(profile))
        prof.enable()
    atexit.register(report)
    main()


def run_stage(tmp: Path, env: dict, args: list[str], *, ok=(0,)) -> dict:
    """One child process; returns wall, CPU, peak RSS and its stdout."""
    out = tmp / f"m-{uuid.uuid4().hex}.json"
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--measure", str(out), "--", *args],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(args[:2])} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    m = json.loads(out.read_text())
    return {**m, "wall": wall, "peak_mb": m["peak_kb"] / 1024, "out": proc.stdout}


def fake_stats(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/_fake/stats")
    return json.loads(conn.getresponse().read())


def write_csv(path: Path, n: int) -> None:
    rnd = random.Random(n)
    mixes = [m for m, _ in MIXES]
    weights = [w for _, w in MIXES]
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("email,name,tags,timezone,status\n")
        for i in range(n):
            tags = rnd.choices(mixes, weights)[0]
            name = "Tom & Jerry" if i % 97 == 5 else f"Reader {i}"
            status = "unsubscribed" if i % 500 == 7 else "active"
            fh.write(f"reader{i}@example.com,{name},{tags},{ZONES[i % len(ZONES)]},{status}\n")


def write_config(
    folder: Path, db: str, sg_port: int, web_port: int, concurrency: int, local_time: bool = False
) -> Path:
    path = folder / "newsletter.toml"
    path.write_text(
        f"""
database = "{db}"
[site]
name = "The Steppe Ledger"
url = "https://steppe-ledger.example/"
postal_address = "Example Media LLC, 1 Abai Avenue, Almaty 050000, Kazakhstan"
from_email = "digest@steppe-ledger.example"
public_url = "https://steppe-ledger.example/newsletter"
unsubscribe_mailto = "unsubscribe@steppe-ledger.example"
[[sources]]
name = "sample feed"
type = "rss"
url = "{ROOT / "newsletter" / "samples" / "feed.xml"}"
[rates]
providers = ["snapshot"]
[delivery]
backend = "sendgrid"
[delivery.sendgrid]
host = "http://127.0.0.1:{sg_port}"
concurrency = {concurrency}
[webhook]
port = {web_port}
max_body_bytes = 50000000
[[digests]]
name = "weekly"
title = "Weekly digest"
tags = ["kazakhstan", "uzbekistan", "kyrgyzstan", "tajikistan", "azerbaijan", "energy"]
schedule = "0 7 * * MON"
timezone = "Asia/Almaty"
min_articles = 1
max_articles = 30
local_time = {"true" if local_time else "false"}
""",
        encoding="utf-8",
    )
    return path


# --------------------------------------------------------------------------- compile + freeze


def compile_and_freeze(out: str) -> None:
    """Child: plan the current period's edition (compile), then create it (freeze)."""
    from datetime import datetime

    import newsletter.editions.freeze as freeze_mod
    from newsletter.config import load_config
    from newsletter.editions.plan import plan_edition
    from newsletter.schedule import current_period
    from newsletter.store import open_store

    cfg = load_config(os.environ["NEWSLETTER_CONFIG"])
    store = open_store(cfg.database_url)
    digest = cfg.digest(None)
    now = datetime.fromisoformat(AT)
    timings: dict = {}
    cpu0 = time.process_time()
    t = time.perf_counter()
    plan = plan_edition(store, cfg, digest, now)
    plan.period = current_period(digest, now, []).key
    timings["compile"] = time.perf_counter() - t
    timings["compile_cpu"] = time.process_time() - cpu0
    timings["variants"] = len(plan.variants)
    timings["compile_peak_kb"] = vm_hwm_kb()
    original = freeze_mod.freeze_audience

    def timed(*a, **k):  # noqa: ANN202
        t = time.perf_counter()
        c = time.process_time()
        n = original(*a, **k)
        timings["freeze"] = time.perf_counter() - t
        timings["freeze_cpu"] = time.process_time() - c
        timings["frozen"] = n
        return n

    freeze_mod.freeze_audience = timed
    t = time.perf_counter()
    eid, _ = freeze_mod.create_edition(store, cfg, plan, now)
    timings["create"] = time.perf_counter() - t
    timings["edition"] = eid
    timings["peak_kb"] = vm_hwm_kb()
    store.close()
    Path(out).write_text(json.dumps(timings), encoding="utf-8")


# --------------------------------------------------------------------------- bare loop


def bare_loop(port: int, requests_: int, per_request: int, last: int, concurrency: int) -> None:
    """Child: ``requests_`` mail/send bodies built with json.dumps, posted over keep-alive
    connections by ``concurrency`` threads; prints seconds and CPU seconds."""
    html = "<html><body>" + ("<p>%%name%% " + "x" * 900 + "</p>") * 90 + "%%unsubscribe_url%%"
    text = "Hello %%name%%\n" + "y" * 20_000 + "\n%%unsubscribe_url%%\n"
    mac = hmac.new(SECRET.encode(), digestmod=hashlib.sha256)
    prefix = "https://steppe-ledger.example/newsletter/unsubscribe/"
    counter = iter(range(requests_))
    lock = threading.Lock()
    done = [0]

    def url(sid: int) -> str:
        payload = base64.urlsafe_b64encode(b"%d:weekly.steppe-ledger.example" % sid).rstrip(b"=")
        m = mac.copy()
        m.update(payload)
        sig = base64.urlsafe_b64encode(m.digest()[:16]).rstrip(b"=")
        return prefix + (payload + b"." + sig).decode()

    def work() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        while True:
            with lock:
                r = next(counter, None)
            if r is None:
                break
            n = last if r == requests_ - 1 else per_request
            ps = []
            for k in range(n):
                sid = r * per_request + k + 1
                u = url(sid)
                ps.append(
                    {
                        "to": [{"email": f"reader{sid}@example.com", "name": f"Reader {sid}"}],
                        "custom_args": {
                            "newsletter_delivery_id": str(sid),
                            "newsletter_edition_id": "1",
                        },
                        "headers": {
                            "List-Unsubscribe": f"<{u}>, "
                            "<mailto:unsubscribe@steppe-ledger.example?subject=unsubscribe>"
                        },
                        "substitutions": {"%%unsubscribe_url%%": u, "%%name%%": f"Reader {sid}"},
                    }
                )
            body = {
                "personalizations": ps,
                "from": {"email": "digest@steppe-ledger.example", "name": "The Steppe Ledger"},
                "subject": "The Steppe Ledger: weekly digest",
                "content": [
                    {"type": "text/plain", "value": text},
                    {"type": "text/html", "value": html},
                ],
                "headers": {
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                    "List-Id": "<weekly.steppe-ledger.example>",
                },
                "categories": ["weekly", "edition-1"],
            }
            data = json.dumps(body).encode()
            conn.request(
                "POST",
                "/v3/mail/send",
                body=data,
                headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            resp.read()
            if resp.status != 202:
                raise SystemExit(f"bare loop: {resp.status}")
            with lock:
                done[0] += n
        conn.close()

    cpu0 = time.process_time()
    t = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    took = time.perf_counter() - t
    print(json.dumps({"seconds": took, "cpu": time.process_time() - cpu0, "recipients": done[0]}))


# --------------------------------------------------------------------------- webhook


def webhook_stage(tmp: Path, env: dict, db: str, edition: int, events: int, clients: int) -> dict:
    import httpx
    import sqlalchemy as sa
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    engine = sa.create_engine(db)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, email FROM deliveries WHERE edition_id = :e AND status = 'accepted'"
            ),
            {"e": edition},
        ).all()
    engine.dispose()
    key = ec.generate_private_key(ec.SECP256R1())
    pub = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    port = int(json.loads((tmp / "ports.json").read_text())["web"])
    server = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve"],
        env={**env, "NEWSLETTER_SENDGRID_WEBHOOK_KEY": pub},
        cwd=tmp,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    kinds, weights = zip(*EVENT_MIX, strict=True)
    size = 1000
    nbatches = (events + size - 1) // size
    counter = iter(range(nbatches))
    lock = threading.Lock()

    def batch(b: int) -> tuple[bytes, dict]:
        rnd = random.Random(b)
        evs = []
        for k in range(min(size, events - b * size)):
            n = b * size + k
            did, email = rows[rnd.randrange(len(rows))]
            kind = rnd.choices(kinds, weights)[0]
            ev = {
                "email": email,
                "timestamp": 1796000000 + n,
                "event": kind,
                "sg_event_id": f"scale-{n}",
                "sg_message_id": f"x.filter.{n}",
                "newsletter_delivery_id": str(did),
                "newsletter_edition_id": str(edition),
            }
            if kind == "click":
                ev["url"] = f"https://steppe-ledger.example/{n % 30}/"
            if kind == "bounce":
                ev["reason"] = "550 5.1.1 user unknown"
                ev["type"] = "bounce"
            evs.append(ev)
        body = json.dumps(evs).encode()
        ts = str(int(time.time()))
        sig = key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return body, {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": ts,
            "Content-Type": "application/json",
        }

    client_cpu = [0.0]

    def post_all() -> None:
        with httpx.Client(timeout=300) as http:
            while True:
                with lock:
                    b = next(counter, None)
                if b is None:
                    return
                c = time.thread_time()
                body, headers = batch(b)
                with lock:
                    client_cpu[0] += time.thread_time() - c
                r = http.post(base + "/webhooks/sendgrid", content=body, headers=headers)
                r.raise_for_status()

    try:
        for _ in range(200):
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit("newsletter serve did not start")
        t = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            for f in [pool.submit(post_all) for _ in range(clients)]:
                f.result()
        took = time.perf_counter() - t
        peak = vm_hwm_kb(str(server.pid))
    finally:
        server.terminate()
        server.wait(30)
    return {
        "wall": took,
        "events": events,
        "peak_mb": peak / 1024,
        "client_cpu": client_cpu[0],
        "matched_to": len(rows),
    }


# --------------------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--measure":
        measured(sys.argv[2], sys.argv[4:])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--compile":
        compile_and_freeze(sys.argv[2])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--bare":
        bare_loop(*map(int, sys.argv[2:7]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=100_000)
    ap.add_argument("--db", default="", help="a PostgreSQL URL (a throwaway schema in it)")
    ap.add_argument("--events", type=int, help="webhook events (default: 3 per subscriber)")
    ap.add_argument("--clients", type=int, default=2, help="webhook clients")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1, help="newsletter send --workers N")
    ap.add_argument("--skip-webhook", action="store_true")
    ap.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"comma-separated, of {','.join(STAGES)} (freeze = compile + freeze)",
    )
    ap.add_argument(
        "--local-time", action="store_true", help="the digest releases at each reader's 07:00"
    )
    ap.add_argument("--workdir", help="keep the folder and database here, and reuse them")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    stages_wanted = set(args.stages.split(","))
    if stages_wanted - set(STAGES):
        ap.error(f"unknown stages: {', '.join(sorted(stages_wanted - set(STAGES)))}")
    n = args.subscribers
    events = args.events if args.events is not None else 3 * n
    fake, sg_port = start_fake(API_KEY)
    results: dict = {
        "subscribers": n,
        "engine": "postgresql" if args.db else "sqlite",
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}",
        "stages": {},
    }
    stages = results["stages"]

    def line(name: str, wall: float, count: int, unit: str, peak: float, extra: str = "") -> None:
        stages[name] = {"wall": round(wall, 2), "count": count, "rate": round(count / wall),
                        "peak_rss_mb": round(peak)}  # fmt: skip
        print(
            f"{name:<8} {wall:8.2f} s  {count / wall:>10,.0f} {unit}/s  peak RSS {peak:5.0f} MB"
            + (f"  {extra}" if extra else ""),
            flush=True,
        )

    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        folder: contextlib.AbstractContextManager[str] = contextlib.nullcontext(
            str(Path(args.workdir).resolve())
        )
    else:
        folder = tempfile.TemporaryDirectory(prefix="nl-scale-")
    try:
        with folder as tmp_:
            tmp = Path(tmp_)
            keep = kept_database if args.workdir else scratch_database
            with keep(args.db, tmp) as db:
                run_stages(args, tmp, db, n, events, sg_port, stages_wanted, results, line)
    finally:
        fake.terminate()
        fake.wait()
    results["load_average_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")


def reset_editions(db: str) -> None:
    """Drop the editions of earlier runs on a kept database (its subscribers stay)."""
    import sqlalchemy as sa

    engine = sa.create_engine(db)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                sa.text("TRUNCATE events, deliveries, batches, edition_articles, editions")
            )
        else:
            for table in ("events", "deliveries", "batches", "edition_articles", "editions"):
                conn.execute(sa.text(f"DELETE FROM {table}"))
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM")
    engine.dispose()


def run_stages(args, tmp, db, n, events, sg_port, wanted, results, line) -> None:  # noqa: ANN001, PLR0913
    """Set-up (or reuse), then the stages in ``wanted``, each line printed as it ends."""
    stages = results["stages"]
    ready = tmp / f"imported-{n}"
    ports = tmp / "ports.json"
    web_port = free_port()
    ports.write_text(json.dumps({"web": web_port}))
    cfg = write_config(tmp, db, sg_port, web_port, args.concurrency, args.local_time)
    env = {
        **os.environ,
        "NEWSLETTER_CONFIG": str(cfg),
        "NEWSLETTER_SECRET_KEY": SECRET,
        "SENDGRID_API_KEY": API_KEY,
        "PYTHONPATH": str(ROOT),
    }
    for k in ("NEWSLETTER_DATABASE_URL", "NEWSLETTER_SENDGRID_HOST"):
        env.pop(k, None)
    print(
        f"{results['engine']}, {n:,} subscribers, {results['machine']}, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if ready.exists():
        print(f"reusing the database in {tmp} (imported before)", flush=True)
        reset_editions(db)
    else:
        for setup in (["init"], ["ingest"]):
            subprocess.run(
                [sys.executable, "-m", "newsletter", *setup],
                env=env, cwd=tmp, check=True, capture_output=True,
            )  # fmt: skip
        csv = tmp / "subscribers.csv"
        write_csv(csv, n)
        s = run_stage(tmp, env, ["subscribers", "import", str(csv)])
        line("import", s["wall"], n, "rows", s["peak_mb"], f"CPU {s['cpu']:.1f} s")
        csv.unlink()
        if args.workdir:
            ready.touch()
    if "freeze" not in wanted:
        return

    out = tmp / "compile.json"
    subprocess.run([sys.executable, __file__, "--compile", str(out)], env=env, cwd=tmp, check=True)
    c = json.loads(out.read_text())
    line("compile", c["compile"], n, "subscribers", c["compile_peak_kb"] / 1024,
         f"{c['variants']} variants, CPU {c['compile_cpu']:.1f} s")  # fmt: skip
    line("freeze", c["freeze"], c["frozen"], "deliveries", c["peak_kb"] / 1024,
         f"CPU {c['freeze_cpu']:.1f} s, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    if "send" not in wanted:
        return

    before = fake_stats(sg_port)
    cmd = ["send", "--at", AT, "--json"]
    if args.workers > 1:
        cmd += ["--workers", str(args.workers)]
    s = run_stage(tmp, env, cmd)
    after = fake_stats(sg_port)
    taken = after["accepted"] - before["accepted"]
    reqs = after["requests"] - before["requests"]
    line("send", s["wall"], taken, "recipients", s["peak_mb"],
         f"CPU {s['cpu']:.1f} s ({s['cpu'] / max(taken, 1) * 1e6:.1f} µs/recipient "
         f"incl. start-up), {reqs} requests, {after['distinct']:,} distinct")  # fmt: skip
    send_rate = taken / s["wall"]
    inner = json.loads(s["out"])["digests"][-1]["send"]["seconds"]
    print(
        f"         send_edition alone: {inner:.2f} s, {taken / inner:,.0f} recipients/s; "
        f"its CPU in this process {s['send_cpu']:.2f} s "
        f"({s['send_cpu'] / max(taken, 1) * 1e6:.1f} µs/recipient), "
        f"helper processes {s['children_cpu']:.2f} s"
    )
    stages["send"].update(
        cpu=round(s["cpu"], 2),
        requests=reqs,
        send_edition=inner,
        send_edition_cpu=round(s["send_cpu"], 2),
        helper_cpu=round(s["children_cpu"], 2),
    )

    per = 1000
    nreq = (taken + per - 1) // per
    last = taken - per * (nreq - 1)
    b = subprocess.run(
        [sys.executable, __file__, "--bare", str(sg_port), str(nreq), str(per),
         str(last), str(args.concurrency)],
        env=env, cwd=tmp, check=True, capture_output=True, text=True,
    )  # fmt: skip
    bare = json.loads(b.stdout.strip().splitlines()[-1])
    line("bare", bare["seconds"], bare["recipients"], "recipients", 0,
         f"CPU {bare['cpu']:.1f} s")  # fmt: skip
    ratio = send_rate / (bare["recipients"] / bare["seconds"])
    results["ratio"] = round(ratio, 3)
    print(f"send / bare loop: {ratio:.2f}", flush=True)

    if "webhook" in wanted and not args.skip_webhook and events:
        w = webhook_stage(tmp, env, db, c["edition"], events, args.clients)
        line("webhook", w["wall"], w["events"], "events", w["peak_mb"],
             f"{args.clients} clients, client CPU {w['client_cpu']:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
