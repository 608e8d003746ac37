"""The schedule on its own: periods, due or not, DST in the tz database, missed periods."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from newsletter.config import DigestConfig, load_config
from newsletter.errors import ConfigError
from newsletter.schedule import (
    current_period,
    decide,
    missed_periods,
    next_runs,
    period_key,
    period_start,
    to_instant,
)

BERLIN = ZoneInfo("Europe/Berlin")
ALMATY = ZoneInfo("Asia/Almaty")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def digest(schedule_="0 7 * * MON", tz="Asia/Almaty", **kw) -> DigestConfig:
    return DigestConfig(schedule=schedule_, timezone=tz, **kw)


def test_the_installed_tz_database_knows_almaty_moved_to_utc_plus_5():
    # Kazakhstan unified on UTC+5 on 2024-03-01 (tzdata 2024a); older data would
    # put every Almaty schedule an hour off from then on
    assert ALMATY.utcoffset(datetime(2024, 2, 28, 12)) == timedelta(hours=6)
    assert ALMATY.utcoffset(datetime(2024, 3, 2, 12)) == timedelta(hours=5)


def test_period_is_the_latest_fire_time_at_or_before_now():
    d = digest()
    monday = datetime(2026, 11, 30, 7, 0, tzinfo=ALMATY)
    assert period_start(d, monday) == monday
    assert period_start(d, monday + timedelta(days=3)) == monday
    assert period_start(d, monday - timedelta(seconds=1)) == monday - timedelta(days=7)
    assert period_key(monday) == "2026-11-30T07:00+05:00"


def test_due_just_after_the_fire_time_and_not_due_before_it():
    d = digest(catch_up_hours=24)
    fire = datetime(2026, 11, 30, 7, 0, tzinfo=ALMATY)
    on_time = decide(d, current_period(d, fire + timedelta(minutes=5)), fire + timedelta(minutes=5))
    assert on_time.state == "due" and on_time.send
    late = decide(d, current_period(d, fire + timedelta(hours=5)), fire + timedelta(hours=5))
    assert late.state == "late" and late.send and late.late_by == timedelta(hours=5)
    # a minute before the fire the current period is still last week's, 7 days old
    before = fire - timedelta(minutes=1)
    period = current_period(d, before)
    assert period.start == fire - timedelta(days=7)
    assert decide(d, period, before).state == "missed"


def test_missed_beyond_catch_up_hours():
    d = digest(catch_up_hours=3)
    fire = datetime(2026, 11, 30, 7, 0, tzinfo=ALMATY)
    assert decide(d, current_period(d, fire + timedelta(hours=3)), fire + timedelta(hours=3)).send
    later = fire + timedelta(hours=3, minutes=1)
    assert decide(d, current_period(d, later), later).state == "missed"
    # 0: only on time, which allows for cron's jitter (a run every 5 minutes)
    zero = digest(catch_up_hours=0)
    for minutes, state in ((0, "due"), (5, "due"), (15, "due"), (16, "missed")):
        at = fire + timedelta(minutes=minutes)
        assert decide(zero, current_period(zero, at), at).state == state


def test_next_runs_of_a_weekly_and_a_daily_schedule():
    after = datetime(2026, 11, 30, 7, 0, tzinfo=ALMATY)  # exactly a fire time: not listed
    weekly = next_runs(digest(), after, 3)
    assert weekly == [after + timedelta(days=7 * i) for i in (1, 2, 3)]
    daily = next_runs(digest("30 6 * * *", "Europe/Berlin"), utc(2026, 11, 30, 12), 2)
    assert [t.isoformat() for t in daily] == [
        "2026-12-01T06:30:00+01:00",
        "2026-12-02T06:30:00+01:00",
    ]


def test_missed_periods_lie_strictly_between_the_last_and_the_current():
    d = digest("0 8 * * *", "UTC")
    got = missed_periods(d, utc(2026, 11, 1, 8), utc(2026, 11, 5, 8))
    assert got == [utc(2026, 11, 2, 8), utc(2026, 11, 3, 8), utc(2026, 11, 4, 8)]
    assert missed_periods(d, utc(2026, 11, 4, 8), utc(2026, 11, 5, 8)) == []
    minutely = digest("* * * * *", "UTC")
    assert len(missed_periods(minutely, utc(2026, 1, 1), utc(2026, 2, 1), limit=50)) == 50


# --------------------------------------------------------------------------- DST


def test_europe_spring_forward_a_skipped_time_fires_once_when_the_clocks_jump():
    # Europe/Berlin, 2024-03-31: 02:00 CET -> 03:00 CEST; 02:30 never happens
    d = digest("30 2 * * *", "Europe/Berlin")
    runs = next_runs(d, utc(2024, 3, 29, 12), 4)
    assert [t.isoformat() for t in runs] == [
        "2024-03-30T02:30:00+01:00",
        "2024-03-31T03:00:00+02:00",  # the jump: 01:00 UTC
        "2024-04-01T02:30:00+02:00",
        "2024-04-02T02:30:00+02:00",
    ]
    assert runs[1].astimezone(UTC) == utc(2024, 3, 31, 1, 0)
    # and it is due right after the jump, not an hour later
    just_after = utc(2024, 3, 31, 1, 5)
    assert period_start(d, just_after) == runs[1]
    assert decide(d, current_period(d, just_after), just_after).state == "due"


def test_europe_spring_forward_two_skipped_times_share_one_run():
    d = digest("15,45 2 * * *", "Europe/Berlin")
    runs = next_runs(d, utc(2024, 3, 30, 12), 3)
    assert [t.isoformat() for t in runs] == [
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:15:00+02:00",
        "2024-04-01T02:45:00+02:00",
    ]


def test_europe_fall_back_a_repeated_time_fires_once():
    # Europe/Berlin, 2024-10-27: 03:00 CEST -> 02:00 CET; 02:30 happens twice
    d = digest("30 2 * * *", "Europe/Berlin")
    runs = next_runs(d, utc(2024, 10, 26, 12), 2)
    assert [t.isoformat() for t in runs] == [
        "2024-10-27T02:30:00+02:00",  # the first 02:30 (00:30 UTC)
        "2024-10-28T02:30:00+01:00",
    ]
    # during the second 02:xx the period is still the one that already fired
    second_pass = utc(2024, 10, 27, 1, 40)  # 02:40 CET
    assert period_start(d, second_pass) == runs[0]
    assert period_key(period_start(d, second_pass)) == "2024-10-27T02:30+02:00"


def test_europe_fall_back_hourly_schedule_keeps_one_period_per_wall_time():
    d = digest("0 * * * *", "Europe/Berlin")
    runs = next_runs(d, utc(2024, 10, 26, 22, 30), 4)  # 00:30 CEST
    assert [t.isoformat() for t in runs] == [
        "2024-10-27T01:00:00+02:00",
        "2024-10-27T02:00:00+02:00",
        "2024-10-27T03:00:00+01:00",  # 02:00 CET (a repeat) is not a new period
        "2024-10-27T04:00:00+01:00",
    ]
    keys = {period_key(t) for t in runs}
    assert len(keys) == 4


def test_the_period_just_after_clocks_went_back_is_found():
    # at 02:10 CET (second pass), the */20 schedule's last fire was 02:40 CEST,
    # which is later on the wall clock than now but 30 minutes in the past
    d = digest("*/20 * * * *", "Europe/Berlin")
    now = utc(2024, 10, 27, 1, 10)
    assert period_start(d, now).isoformat() == "2024-10-27T02:40:00+02:00"
    assert period_start(d, now) <= now


def test_almaty_moving_to_utc_plus_5_on_2024_03_01():
    # 2024-03-01 00:00 +06 became 2024-02-29 23:00 +05: 23:00-24:00 on the 29th repeats
    daily = digest("0 7 * * *", "Asia/Almaty")
    runs = next_runs(daily, utc(2024, 2, 28, 12), 3)
    assert [t.astimezone(UTC) for t in runs] == [
        utc(2024, 2, 29, 1),  # 07:00 +06
        utc(2024, 3, 1, 2),  # 07:00 +05: 25 hours later
        utc(2024, 3, 2, 2),
    ]
    # the weekly Monday digest: 07:00 local either side of the change
    weekly = next_runs(digest("0 7 * * MON", "Asia/Almaty"), utc(2024, 2, 20), 2)
    assert [t.isoformat() for t in weekly] == [
        "2024-02-26T07:00:00+06:00",
        "2024-03-04T07:00:00+05:00",
    ]
    late = digest("30 23 * * *", "Asia/Almaty")
    runs = next_runs(late, utc(2024, 2, 29, 12), 2)
    assert [t.isoformat() for t in runs] == [
        "2024-02-29T23:30:00+06:00",  # the first 23:30; the repeat at +05 does not fire
        "2024-03-01T23:30:00+05:00",
    ]
    repeat = utc(2024, 2, 29, 18, 40)  # 23:40 +05, in the repeated hour
    assert period_start(late, repeat) == runs[0]


def test_to_instant_rules():
    assert to_instant(datetime(2024, 3, 31, 2, 30), BERLIN).astimezone(UTC) == utc(2024, 3, 31, 1)
    assert to_instant(datetime(2024, 10, 27, 2, 30), BERLIN).astimezone(UTC) == utc(
        2024, 10, 27, 0, 30
    )
    assert to_instant(datetime(2024, 2, 29, 23, 30), ALMATY).astimezone(UTC) == utc(
        2024, 2, 29, 17, 30
    )


# --------------------------------------------------------------------------- local time


def test_local_time_period_opens_with_the_earliest_zone():
    d = digest("0 7 * * MON", "Asia/Almaty", local_time=True)
    tokyo, london = ZoneInfo("Asia/Tokyo"), ZoneInfo("Europe/London")
    # Monday 07:00 in Tokyo is 03:00 in Almaty: the period is open, Almaty not reached yet
    now = datetime(2026, 11, 30, 7, 5, tzinfo=tokyo)
    p = current_period(d, now, [tokyo, london])
    assert p.key == "2026-11-30T07:00+05:00"
    assert p.opened == datetime(2026, 11, 30, 7, 0, tzinfo=tokyo)
    assert p.closes == datetime(2026, 11, 30, 7, 0, tzinfo=london)
    assert p.release_at(london).isoformat() == "2026-11-30T07:00:00+00:00"
    assert p.release_at(ALMATY) == p.start
    # without local_time the zones do not matter
    plain = digest("0 7 * * MON", "Asia/Almaty")
    assert current_period(plain, now, [tokyo]).key == "2026-11-23T07:00+05:00"


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "value, needle",
    [
        ('schedule = "0 0 7 * * MON"', "schedule: not a valid cron expression"),
        ('schedule = "61 7 * * *"', "schedule: not a valid cron expression"),
        ('timezone = "Mars/Olympus"', "timezone: unknown time zone"),
        ("catch_up_hours = -1", "catch_up_hours: must be 0 or more"),
    ],
)
def test_bad_schedule_settings_name_file_and_key(tmp_path, value, needle):
    path = tmp_path / "n.toml"
    path.write_text(f'[[digests]]\nname = "daily"\n{value}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(path) in str(err.value) and f"digests[0].{needle}" in str(err.value)


def test_several_digests_each_with_their_own_schedule(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text(
        """
[[digests]]
name = "weekly"
schedule = "0 7 * * MON"
timezone = "Asia/Almaty"
tags = ["kazakhstan"]
template = "digest"
subject = "{site}: weekly"

[[digests]]
name = "daily"
schedule = "@daily"
timezone = "Europe/Berlin"
tags = ["economy"]
subject = "{site}: brief"
local_time = true
catch_up_hours = 2
""",
        encoding="utf-8",
    )
    cfg = load_config(path, env={})
    weekly, daily = cfg.digests
    assert (weekly.timezone, daily.timezone) == ("Asia/Almaty", "Europe/Berlin")
    assert daily.local_time and daily.catch_up_hours == 2 and daily.tags == ["economy"]
    now = utc(2026, 12, 2, 12)
    assert period_key(period_start(daily, now)) == "2026-12-02T00:00+01:00"
    assert period_key(period_start(weekly, now)) == "2026-11-30T07:00+05:00"
