"""Trading-date partitions on the master calendar (XNYS by default, from exchange_calendars).

Partition key `D` means "as of the close of session D": no asset may read data after D. Where
the partitions start and what the calendar spans are manifest settings (`calendar`:
`first_partition`, `start`, `end`; CLI > PA_* env > profile > defaults), resolved once per
process for the active profile.

The partitions are a cron-based time-window definition: one window per weekday starting at
16:00 New York (the regular XNYS close), minus every weekday that is not an XNYS session.
With `end_offset=1` the window that started at the last 16:00 is offered, so today's session
becomes a partition at 16:00 New York — after its close, never before (early-close days appear
at 16:00 too). The key is the session date (`%Y-%m-%d`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from functools import lru_cache

import pandas as pd
from dagster import TimeWindowPartitionsDefinition

from portfolio_assets.manifest import CalendarConfig, resolve
from portfolio_assets.session_tables import SessionTable, session_table

MASTER_CALENDAR = "XNYS"
MASTER_TZ = "America/New_York"
CLOSE_HOUR = 16  # the regular XNYS close, New York time: partition D is offered from D 16:00 on


@lru_cache(maxsize=8)
def _calendar_config(env_key: str) -> CalendarConfig:
    overrides = json.loads(os.environ.get("PA_CLI_OVERRIDES") or "{}")
    return resolve(None, cli_overrides=overrides).config.calendar


def calendar_config() -> CalendarConfig:
    """The active profile's `calendar` section (cached per environment)."""
    return _calendar_config(json.dumps(sorted((k, v) for k, v in os.environ.items() if k.startswith("PA_"))))


def get_calendar(name: str = MASTER_CALENDAR) -> SessionTable:
    """The sessions and closes of exchange calendar `name` over the configured `calendar.start` ..
    `calendar.end` (`session_tables`: built by exchange_calendars once, then read from the cache)."""
    cfg = calendar_config()
    return session_table(name, cfg.start, cfg.end)


def master_sessions(start: str | dt.date | None = None, end: str | dt.date | None = None) -> pd.DatetimeIndex:
    """Master-calendar sessions in [start, end] as tz-naive midnight timestamps named `session`."""
    cfg = calendar_config()
    cal = get_calendar()
    lo = max(pd.Timestamp(start or cfg.start), pd.Timestamp(cfg.start))
    hi = min(pd.Timestamp(end or cfg.end), pd.Timestamp(cfg.end))
    sessions = cal.sessions_in_range(lo, hi) if lo <= hi else pd.DatetimeIndex([])
    return pd.DatetimeIndex(sessions, name="session")


def sessions_window(end: str | dt.date, n: int) -> pd.DatetimeIndex:
    """The `n` master sessions ending at session `end` (inclusive): sessions, not calendar days."""
    end_ts = pd.Timestamp(end)
    if not is_session(end_ts):
        raise ValueError(f"{end_ts.date()} is not a {MASTER_CALENDAR} session")
    all_sessions = master_sessions(end=end_ts)
    if len(all_sessions) < n:
        raise ValueError(f"only {len(all_sessions)} sessions before {end_ts.date()} on the master calendar "
                         f"(calendar.start {calendar_config().start}), {n} requested")
    return all_sessions[-n:]


def is_session(day: str | dt.date) -> bool:
    """Whether `day` is a master-calendar session; False outside `calendar.start` .. `calendar.end`."""
    ts = pd.Timestamp(day)
    cfg = calendar_config()
    if not pd.Timestamp(cfg.start) <= ts <= pd.Timestamp(cfg.end):
        return False
    return bool(get_calendar().is_session(ts))


def session_close_utc(day: str | dt.date) -> pd.Timestamp:
    """The UTC close of master session `day`; a day that is not a session raises `ValueError`."""
    return get_calendar().session_close(pd.Timestamp(day))


def latest_closed_session(now: dt.datetime | None = None) -> dt.date:
    """The most recent master session whose close is at or before `now` (UTC)."""
    now_ts = _utc(now)
    cal = get_calendar()
    day = pd.Timestamp(now_ts.date())
    sessions = cal.sessions_in_range(day - pd.Timedelta(days=14), day)
    for session in reversed(sessions):
        if cal.session_close(session) <= now_ts:
            return session.date()
    raise ValueError(f"no closed {MASTER_CALENDAR} session in the two weeks before {now_ts}")


def _utc(now: dt.datetime | None) -> pd.Timestamp:
    ts = pd.Timestamp(now or dt.datetime.now(dt.UTC))
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def validate_partition_date(key: str, now: dt.datetime | None = None) -> dt.date:
    """Parse a partition key; refuse anything that is not a partition: not a date, before
    `calendar.first_partition`, not a session, or a session that has not closed yet. One-line
    messages (the CLI prints them as they are)."""
    try:
        day = dt.date.fromisoformat(key)
    except (TypeError, ValueError):
        day = None
    if day is None or day.isoformat() != key:
        raise ValueError(f"partition key {key!r} is not a date YYYY-MM-DD")
    cfg = calendar_config()
    if day < cfg.first_partition:
        raise ValueError(f"partition {key} is before the first partition {cfg.first_partition} "
                         f"(manifest calendar.first_partition)")
    if day > cfg.end:
        raise ValueError(f"partition {key} is after the end of the master calendar {cfg.end} (manifest calendar.end)")
    if not is_session(day):
        raise ValueError(f"partition {key} is not a {MASTER_CALENDAR} trading session")
    close = session_close_utc(day)
    if close > _utc(now):
        raise ValueError(f"partition {key} has not closed yet (closes {close.isoformat()}); data as of D needs D's close")
    return day


def trading_date_partitions() -> TimeWindowPartitionsDefinition:
    """The partitions of the active calendar settings (see the module docstring)."""
    cfg = calendar_config()
    return _partitions(cfg.first_partition, cfg.start, cfg.end)


@lru_cache(maxsize=4)
def _partitions(first: dt.date, start: dt.date, end: dt.date) -> TimeWindowPartitionsDefinition:
    cal = session_table(MASTER_CALENDAR, start, end)
    if not cal.is_session(pd.Timestamp(first)):
        raise ValueError(f"calendar.first_partition {first} is not a {MASTER_CALENDAR} session")
    weekdays = pd.bdate_range(first, end)
    closed = weekdays[~weekdays.isin(cal.sessions_in_range(pd.Timestamp(first), pd.Timestamp(end)))]
    holidays = [d.to_pydatetime().replace(hour=CLOSE_HOUR) for d in closed]
    return TimeWindowPartitionsDefinition(
        cron_schedule=f"0 {CLOSE_HOUR} * * 1-5",
        start=dt.datetime.combine(first, dt.time(CLOSE_HOUR)),
        fmt="%Y-%m-%d",
        timezone=MASTER_TZ,
        end_offset=1,
        exclusions=holidays,
    )
