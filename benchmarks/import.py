"""Subscriber import: rows/s and peak memory, 100,000 vs 1,000,000 rows.

    .venv/bin/python benchmarks/import.py [--rows 1000000] [--db postgresql+psycopg://…]

Writes CSV files (1 row in 200 is bad, 1 in 1000 has an address in mixed case),
imports each with `newsletter subscribers import` in a child process into a
fresh database (a SQLite file, or a throwaway schema of the PostgreSQL
database at --db), and reports the time, the child's CPU time and its peak
RSS. Flat memory means the peak barely moves between the small and the large
file. The CPU time depends less on what else the machine runs than the wall
time does (PostgreSQL's own work is not in it).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import scratch_database  # noqa: E402

TAGS = ["kazakhstan", "uzbekistan", "kyrgyzstan", "tajikistan", "energy", "economy", "water"]
ZONES = ["Asia/Almaty", "Asia/Tashkent", "Asia/Bishkek", "Europe/London", ""]


def write_csv(path: Path, rows: int) -> None:
    rnd = random.Random(rows)
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("email,name,tags,timezone,status\n")
        for i in range(rows):
            if i % 200 == 7:
                fh.write(f"broken-address-{i},Someone,,,\n")
                continue
            email = f"Reader.{i}@Example.com" if i % 1000 == 3 else f"reader{i}@example.com"
            tags = ";".join(rnd.sample(TAGS, rnd.randint(0, 3)))
            status = "unsubscribed" if i % 97 == 0 else "active"
            fh.write(f"{email},Reader Number {i},{tags},{rnd.choice(ZONES)},{status}\n")


def run_import(csv_path: Path, workdir: Path, db: str) -> tuple[float, float, int, str]:
    env = {**os.environ, "NEWSLETTER_DATABASE_URL": db}
    env.pop("NEWSLETTER_CONFIG", None)
    # a config (the defaults) and the database, as `newsletter init` makes them; untimed
    (workdir / "newsletter.toml").write_text("", encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "newsletter", "init"],
        env=env,
        cwd=workdir,
        check=True,
        capture_output=True,
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "newsletter", "subscribers", "import", str(csv_path)],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 3):
        raise SystemExit(proc.stderr)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    # ru_maxrss of children is the largest child so far: run small files first
    return elapsed, cpu, max(after.ru_maxrss, before.ru_maxrss), proc.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--db", default="", help="PostgreSQL URL (a throwaway schema is used)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nl-import-bench-"))
    for rows in sorted({max(args.rows // 10, 1000), args.rows}):
        path = work / f"subs_{rows}.csv"
        write_csv(path, rows)
        folder = work / f"db_{rows}"
        folder.mkdir()
        with scratch_database(args.db, folder) as db:
            elapsed, cpu, peak_kb, summary = run_import(path, folder, db)
        size_mb = path.stat().st_size / 1e6
        print(
            f"{rows:>9,} rows ({size_mb:.0f} MB): {elapsed:6.1f} s, {rows / elapsed:8,.0f} rows/s, "
            f"CPU {cpu:5.1f} s, peak RSS {peak_kb / 1024:.0f} MB  "
            f"[{summary.split(': ', 1)[-1]}]  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    engine = "PostgreSQL" if args.db else "SQLite"
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {engine}")


if __name__ == "__main__":
    main()
