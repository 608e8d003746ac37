"""When each digest is due: schedule periods, missed periods, next runs.

A digest's ``schedule`` is a cron expression read on the wall clock of the
digest's ``timezone``. The latest fire time at or before now opens the current
*period*; one edition belongs to one period, so a period is sent at most once.

Daylight-saving changes follow the tz database and two fixed rules:

- a wall time that happens twice (clocks go back) fires once, at its first
  occurrence;
- a wall time that never happens (clocks go forward) fires once, at the moment
  the clocks jump (as Vixie cron does), so no period is lost.

Everything here is pure: no store, no network. ``newsletter.jobs`` combines it
with what the store says was already sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from newsletter.config import DigestConfig

logger = logging.getLogger(__name__)

#: most fire times walked through when listing missed periods
MISSED_LIMIT = 1000


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """A time zone by IANA name (cached: subscribers repeat the same few)."""
    return ZoneInfo(name)


def subscriber_zone(name: str, default: ZoneInfo) -> ZoneInfo:
    """A subscriber's zone; an empty or unknown name falls back to ``default``."""
    if not name:
        return default
    try:
        return zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        logger.debug("unknown subscriber time zone %r; using %s", name, default.key)
        return default


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def to_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant (aware, in ``tz``) that the naive wall-clock time ``wall`` stands for.

    Repeated wall times give their first occurrence; skipped ones give the
    moment the clocks jumped (the end of the gap).
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _wall(first, tz) == wall:
        return first.astimezone(tz)
    # in a gap: the two readings of the offset straddle the transition; find it
    other = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = int(min(first, other).timestamp()), int(max(first, other).timestamp())
    while lo < hi:
        mid = (lo + hi) // 2
        if _wall(datetime.fromtimestamp(mid, UTC), tz) >= wall:
            hi = mid
        else:
            lo = mid + 1
    return datetime.fromtimestamp(lo, UTC).astimezone(tz)


def _prev_wall(expr: str, tz: ZoneInfo, now: datetime) -> datetime:
    """The latest wall-clock fire time whose instant is at or before ``now``."""
    # the wall -> instant mapping is monotonic, so the fire times at or before
    # now are a prefix: start at the last one by the wall clock, then step on
    # while the next still lies in the past (it can, just after clocks went back)
    best = croniter(expr, _wall(now, tz) + timedelta(seconds=1)).get_prev(datetime)
    it = croniter(expr, best)
    while True:
        nxt = it.get_next(datetime)
        if to_instant(nxt, tz) > now:
            return best
        best = nxt


def _walls_after(expr: str, start: datetime) -> Iterator[datetime]:
    it = croniter(expr, start)
    while True:
        yield it.get_next(datetime)


def previous_fire(expr: str, tz: ZoneInfo, now: datetime) -> datetime:
    """The schedule's latest fire time at or before ``now``, aware in ``tz``."""
    return to_instant(_prev_wall(expr, tz, now), tz)


def fires_after(expr: str, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after ``after``, in order, each once (aware in ``tz``)."""
    last = after
    for wall in _walls_after(expr, _prev_wall(expr, tz, after)):
        t = to_instant(wall, tz)
        if t > last:  # two skipped wall times can share the jump's instant
            last = t
            yield t


def next_runs(digest: DigestConfig, after: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` fire times of ``digest`` after ``after``."""
    out: list[datetime] = []
    for t in fires_after(digest.schedule, zone(digest.timezone), after):
        if len(out) >= count:
            break
        out.append(t)
    return out


def period_start(digest: DigestConfig, now: datetime) -> datetime:
    """The schedule's latest fire time at or before ``now`` (the current period)."""
    return previous_fire(digest.schedule, zone(digest.timezone), now)


def period_key(start: datetime) -> str:
    """How an edition names its period: the fire time with its offset, to the minute."""
    return start.isoformat(timespec="minutes")


def parse_period_key(key: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(key)
    except ValueError:
        return None
    return when if when.tzinfo else None


@dataclass(frozen=True)
class Period:
    """One schedule period of a digest."""

    #: the fire time on the digest's own clock; it names the edition
    start: datetime
    #: the fire time as a naive wall-clock time (what local-time sends aim at)
    wall: datetime
    #: the first moment the period was due anywhere: ``start``, or with
    #: ``local_time`` the moment the earliest subscriber zone reached ``wall``
    opened: datetime
    #: with local_time: the moment the last subscriber zone reaches ``wall``
    closes: datetime

    @property
    def key(self) -> str:
        return period_key(self.start)

    def release_at(self, tz: ZoneInfo) -> datetime:
        """When a subscriber in ``tz`` gets this period's edition (local time)."""
        return to_instant(self.wall, tz)


def period_from_key(digest: DigestConfig, key: str) -> Period:
    """The period an edition names by ``key`` (its fire time on the digest's clock)."""
    start = parse_period_key(key)
    if start is None:
        raise ValueError(f"not a period key: {key!r}")
    wall = start.astimezone(zone(digest.timezone)).replace(tzinfo=None)
    return Period(start=start, wall=wall, opened=start, closes=start)


def current_period(digest: DigestConfig, now: datetime, zones: Iterable[ZoneInfo] = ()) -> Period:
    """The period ``now`` falls in.

    Without ``local_time`` (or without ``zones``) that is the latest fire on the
    digest's clock. With it, it is the latest wall-clock fire time that any of
    the digest's or the subscribers' ``zones`` has reached: the edition is
    compiled when the first zone gets there, and each delivery waits for its own.
    """
    home = zone(digest.timezone)
    all_zones = [home] + [z for z in zones if z != home] if digest.local_time else [home]
    # zones on the same offset now and a day ago see the same wall-clock fire: work it
    # out once per such group (hundreds of subscriber zones make a few dozen groups)
    groups: dict[tuple, ZoneInfo] = {}
    for z in all_zones:
        groups.setdefault((z.utcoffset(now), z.utcoffset(now - timedelta(hours=26))), z)
    wall = max(_prev_wall(digest.schedule, z, now) for z in groups.values())
    instants = [to_instant(wall, z) for z in all_zones]
    return Period(
        start=to_instant(wall, home),
        wall=wall,
        opened=min(instants),
        closes=max(instants),
    )


def missed_periods(
    digest: DigestConfig, last: datetime, current: datetime, *, limit: int = MISSED_LIMIT
) -> list[datetime]:
    """Fire times after ``last`` (the last period handled) and before ``current``.

    At most ``limit`` of them: a minutely schedule left alone for a month
    must not make the run walk forty thousand periods.
    """
    out: list[datetime] = []
    for t in fires_after(digest.schedule, zone(digest.timezone), last):
        if t >= current or len(out) >= limit:
            break
        out.append(t)
    return out


@dataclass(frozen=True)
class Decision:
    """Whether a period without an edition is sent now, late, or skipped."""

    #: due | late | missed
    state: str
    late_by: timedelta

    @property
    def send(self) -> bool:
        return self.state != "missed"


#: a run this long after the fire time still counts as on time (cron jitter)
ON_TIME = timedelta(minutes=15)


def decide(digest: DigestConfig, period: Period, now: datetime) -> Decision:
    """Send a period that has no edition yet, or skip it as missed.

    It is sent late up to ``catch_up_hours`` after it opened (and always within
    ``ON_TIME``, so cron's jitter never loses a period); older, it is skipped (and
    recorded, so it is never sent afterwards by a later run).
    """
    late_by = max(now - period.opened, timedelta(0))
    if late_by > max(timedelta(hours=digest.catch_up_hours), ON_TIME):
        return Decision("missed", late_by)
    return Decision("late" if late_by > ON_TIME else "due", late_by)


def describe_delta(delta: timedelta) -> str:
    """``timedelta(hours=26, minutes=5)`` -> ``"1d 2h 5m"``."""
    total = int(abs(delta.total_seconds()) // 60)
    days, rest = divmod(total, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if hours or days:
        parts.append(f"{hours}h")
    parts.append(f"{minutes}m")
    return " ".join(parts)
