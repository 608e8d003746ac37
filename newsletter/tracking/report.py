"""`newsletter report`: one HTML page about an edition, for editors.

The funnel, events over time (an inline SVG chart), the most-clicked links and
bounces by reason. The page is self-contained: no scripts, no fonts or styles
from the network, so it can be mailed around or opened offline.

:func:`build_report` reads the store; :func:`render_report` is pure.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

from markupsafe import Markup

from newsletter.errors import InputError
from newsletter.render.env import make_env
from newsletter.store import Store
from newsletter.tracking.status import edition_status

#: event types drawn in the chart, with their colours
SERIES = {
    "delivered": "#2f6fde",
    "opened": "#1f9d6b",
    "clicked": "#e08a00",
    "bounced": "#d2453d",
}
_EMAIL = re.compile(r"<?[\w.+'-]+@[\w-]+(\.[\w-]+)+>?")
#: bucket widths to choose from, smallest first; the first giving <= 96 buckets wins
_BUCKETS = (
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(days=1),
)


def _minute(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(second=0, microsecond=0)


def timeline(items: Any) -> dict[str, Any]:
    """Bucketed counts per type from (type, occurred_at) pairs, in one pass.

    Counts are kept per minute (at most one entry per minute with events),
    then folded into buckets sized so the chart has at most ~96 points.
    """
    per_minute: dict[datetime, dict[str, int]] = {}
    for kind, when in items:
        slot = per_minute.setdefault(_minute(when), {})
        slot[kind] = slot.get(kind, 0) + 1
    if not per_minute:
        return {"start": None, "bucket": None, "series": {k: [] for k in SERIES}}
    first, last = min(per_minute), max(per_minute)
    span = last - first
    bucket = next((b for b in _BUCKETS if span / b <= 96), _BUCKETS[-1])
    if bucket == _BUCKETS[-1]:
        bucket = max(bucket, span / 96)
    start = first - timedelta(
        seconds=(first - datetime(2000, 1, 1, tzinfo=UTC)).total_seconds() % bucket.total_seconds()
    )
    n = int((last - start) / bucket) + 1
    series = {k: [0] * n for k in SERIES}
    for minute, kinds in per_minute.items():
        i = int((minute - start) / bucket)
        for kind, count in kinds.items():
            if kind in series:
                series[kind][i] += count
    return {"start": start, "bucket": bucket, "series": series}


def _label(t: datetime, bucket: timedelta) -> str:
    return t.strftime("%d %b") if bucket >= timedelta(days=1) else t.strftime("%d %b %H:%M")


def chart_svg(tl: dict[str, Any], width: int = 760, height: int = 260) -> str:
    """An inline SVG line chart of the timeline (UTC)."""
    series: dict[str, list[int]] = tl["series"]
    n = max((len(v) for v in series.values()), default=0)
    if not n or tl["start"] is None:
        return '<p class="empty">No events recorded yet.</p>'
    left, right, top, bottom = 48, 12, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(max(v) for v in series.values() if v) or 1
    step = plot_w / max(n - 1, 1)

    def xy(i: int, v: int) -> str:
        return f"{left + i * step:.1f},{top + plot_h - v / peak * plot_h:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="Events over time" class="chart">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        'stroke="#c9ced4"/>',
        f'<line x1="{left}" y1="{top}" x2="{width - right}" y2="{top}" stroke="#eef0f2"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" class="tick">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h + 4}" text-anchor="end" class="tick">0</text>',
    ]
    start, bucket = tl["start"], tl["bucket"]
    for i in sorted({0, (n - 1) // 2, n - 1}):
        x = left + i * step
        anchor = "start" if i == 0 else "end" if i == n - 1 else "middle"
        parts.append(
            f'<text x="{x:.1f}" y="{height - 12}" text-anchor="{anchor}" class="tick">'
            f"{escape(_label(start + i * bucket, bucket))}</text>"
        )
    for kind, colour in SERIES.items():
        values = series[kind]
        if not any(values):
            continue
        points = " ".join(xy(i, v) for i, v in enumerate(values))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
            f'stroke-linejoin="round" points="{points}"><title>{kind}</title></polyline>'
        )
    parts.append("</svg>")
    return "".join(parts)


def group_reasons(rows: list[tuple[str, str, int]], limit: int = 20) -> list[dict[str, Any]]:
    """Failure reasons with addresses blanked, so one reason is one row."""
    grouped: dict[tuple[str, str], int] = {}
    for kind, reason, n in rows:
        text = _EMAIL.sub("<address>", " ".join((reason or "(no reason given)").split()))[:240]
        grouped[(kind, text)] = grouped.get((kind, text), 0) + n
    ordered = sorted(grouped.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"kind": k, "reason": r, "count": n} for (k, r), n in ordered[:limit]]


def build_report(store: Store, edition_id: int) -> dict[str, Any]:
    """Everything the page shows, read from the store."""
    status = edition_status(store, edition_id)
    tl = timeline(store.event_times(edition_id, tuple(SERIES)))
    return {
        "status": status,
        "timeline": tl,
        "links": [
            {"url": u, "clicks": c, "people": p} for u, c, p in store.top_links(edition_id, 20)
        ],
        "reasons": group_reasons(store.failure_reasons(edition_id)),
        "generated_at": datetime.now(UTC),
    }


def render_report(data: dict[str, Any], templates: str = "") -> str:
    """The HTML page (report/report.html.j2 through the one environment, the
    newsroom's ``templates`` folder first). Pure: data in, text out.

    The report is for editors and stays in English (docs/templates.md)."""
    env = make_env(templates, "en")
    s = data["status"]
    c = s["counts"]
    base = s["sent"] or 1
    # SMTP and the outbox report no events: past "sent" nothing is known (not 0%)
    unknown = bool(s["backends"]) and not s["events_reported"]
    funnel: list[tuple[str, int | None]] = [
        ("Sent", s["sent"]),
        ("Delivered", None if unknown else s["delivered_total"]),
        ("Opened", None if unknown else c["opened"]),
        ("Clicked", None if unknown else c["clicked"]),
    ]
    return env.get_template("report/report.html.j2").render(
        s=s,
        events_unknown=unknown,
        funnel=[
            {
                "label": label,
                "n": n,
                "share": None if n is None else n / base if s["sent"] else 0.0,
            }
            for label, n in funnel
        ],
        chart=Markup(chart_svg(data["timeline"])),
        series=SERIES,
        links=[
            {**link, "safe": link["url"].lower().startswith(("http://", "https://"))}
            for link in data["links"]
        ],
        reasons=data["reasons"],
        generated_at=data["generated_at"].strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_report(store: Store, edition_id: int, out: str | Path, templates: str = "") -> Path:
    """Build and write the report; returns the path written. ``templates``: the
    newsroom's ``[render] templates`` folder ("" for the bundled templates only)."""
    html = render_report(build_report(store, edition_id), templates)
    path = Path(out)
    try:
        path.write_text(html, encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot write: {err.strerror}", where=str(path)) from err
    return path
