"""Render benchmark: time per stage and HTML size, 10 and 30 stories, both inliners.

    .venv/bin/python benchmarks/render.py [--runs 30]

The edition is tests/data/render_edition.json: stories from the sample feed
with 60–120-word summaries and a feed-sized image each (three have none).
One variant is rendered end to end with ``render()``, the function a send
calls: Jinja → MJML → CSS inlining → size check → plaintext. Times are
medians over the runs after one warm-up render (templates compiled, CSS
parsed); "total" is the median end-to-end time (not the sum of the stage
medians) and "best" the fastest run, the figure least disturbed by other load.
Targets for 30 stories: premailer <= 50 ms, css-inline <= 15 ms, HTML < 100 KB.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.render.compile import render  # noqa: E402
from tests.render_data import load_content  # noqa: E402

STAGES = ("jinja", "mjml", "inline", "text")


def bench(count: int, engine: str, runs: int, budget: int = 100_000) -> dict[str, float]:
    content = load_content(count)
    render(content, inliner=engine, max_bytes=budget)  # warm-up: compile templates, parse CSS
    per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
    totals = []
    for _ in range(runs):
        timings: dict[str, float] = {}
        start = time.perf_counter()
        rendered = render(content, inliner=engine, max_bytes=budget, timings=timings)
        totals.append(time.perf_counter() - start)
        for s in STAGES:
            per_stage[s].append(timings.get(s, 0.0))
    out = {s: statistics.median(v) * 1000 for s, v in per_stage.items()}
    out["total"] = statistics.median(totals) * 1000
    out["best"] = min(totals) * 1000
    out["bytes"] = len(rendered.html.encode())
    out["text_bytes"] = len(rendered.text.encode())
    out["overflow"] = rendered.overflow
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {args.runs} runs each")
    print(
        f"{'stories':>7}  {'inliner':<10} {'jinja':>7} {'mjml':>7} {'inline':>7} {'text':>7}"
        f" {'total':>8} {'best':>7}  {'HTML bytes':>10} {'text bytes':>10}  more"
    )
    # the last case forces the size check to move stories: its extra cost
    for count, budget in ((10, 100_000), (30, 100_000), (30, 60_000)):
        for engine in ("premailer", "css-inline"):
            r = bench(count, engine, args.runs, budget)
            label = f"{count}" if budget == 100_000 else f"{count}/60K"
            print(
                f"{label:>7}  {engine:<10} {r['jinja']:>6.1f}  {r['mjml']:>6.1f}"
                f"  {r['inline']:>6.1f}  {r['text']:>6.1f}  {r['total']:>6.1f}  {r['best']:>6.1f}"
                f"   {r['bytes']:>10} {r['text_bytes']:>10}  {r['overflow']:>4}"
            )
    print("times in ms: medians per stage, median and best end-to-end 'total';")
    print("'more' = stories moved to More stories; 30/60K: 30 stories, a 60 KB budget")


if __name__ == "__main__":
    main()
