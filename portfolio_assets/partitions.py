"""Trading-date partitions on the master calendar (XNYS by default, from exchange_calendars).

Partition key `D` means "as of the close of session D": no asset may read data after D. The
partitions are Dagster daily partitions minus weekends (cron exclusions) and minus every weekday
that is not an XNYS session (holiday datetimes), so the UI and backfills only offer trading dates.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd
from dagster import DailyPartitionsDefinition

MASTER_CALENDAR = "XNYS"
MASTER_TZ = "America/New_York"
PARTITIONS_START = "2023-01-03"
CALENDAR_START = "2015-01-02"
CALENDAR_END = "2028-12-29"


@lru_cache(maxsize=8)
def get_calendar(name: str = MASTER_CALENDAR) -> xcals.ExchangeCalendar:
    """An exchange calendar covering the whole synthetic and partition range."""
    return xcals.get_calendar(name, start=CALENDAR_START, end=CALENDAR_END)


def master_sessions(start: str | dt.date | None = None, end: str | dt.date | None = None) -> pd.DatetimeIndex:
    """Master-calendar sessions in [start, end] as tz-naive midnight timestamps named `session`."""
    cal = get_calendar()
    sessions = cal.sessions_in_range(pd.Timestamp(start or CALENDAR_START), pd.Timestamp(end or CALENDAR_END))
    return pd.DatetimeIndex(sessions, name="session")


def sessions_window(end: str | dt.date, n: int) -> pd.DatetimeIndex:
    """The `n` master sessions ending at session `end` (inclusive): sessions, not calendar days."""
    end_ts = pd.Timestamp(end)
    cal = get_calendar()
    if not cal.is_session(end_ts):
        raise ValueError(f"{end_ts.date()} is not a {MASTER_CALENDAR} session")
    all_sessions = master_sessions(end=end_ts)
    if len(all_sessions) < n:
        raise ValueError(f"only {len(all_sessions)} sessions before {end_ts.date()}, {n} requested")
    return all_sessions[-n:]


def is_session(day: str | dt.date) -> bool:
    return bool(get_calendar().is_session(pd.Timestamp(day)))


def session_close_utc(day: str | dt.date) -> pd.Timestamp:
    return get_calendar().session_close(pd.Timestamp(day))


def latest_closed_session(now: dt.datetime | None = None) -> dt.date:
    """The most recent master session whose close is at or before `now` (UTC)."""
    now_ts = pd.Timestamp(now or dt.datetime.now(dt.UTC))
    now_ts = now_ts.tz_localize("UTC") if now_ts.tzinfo is None else now_ts.tz_convert("UTC")
    cal = get_calendar()
    day = pd.Timestamp(now_ts.date())
    sessions = cal.sessions_in_range(day - pd.Timedelta(days=14), day)
    for session in reversed(sessions):
        if cal.session_close(session) <= now_ts:
            return session.date()
    raise ValueError(f"no closed {MASTER_CALENDAR} session in the two weeks before {now_ts}")


def validate_partition_date(key: str, now: dt.datetime | None = None) -> dt.date:
    """Parse a partition key and refuse non-sessions and sessions that have not closed yet."""
    try:
        day = dt.date.fromisoformat(key)
    except ValueError:
        raise ValueError(f"partition key {key!r} is not a date YYYY-MM-DD") from None
    if not is_session(day):
        raise ValueError(f"partition {key} is not a {MASTER_CALENDAR} trading session")
    close = session_close_utc(day)
    now_ts = pd.Timestamp(now or dt.datetime.now(dt.UTC))
    now_ts = now_ts.tz_localize("UTC") if now_ts.tzinfo is None else now_ts.tz_convert("UTC")
    if close > now_ts:
        raise ValueError(f"partition {key} has not closed yet (closes {close.isoformat()}); data as of D needs D's close")
    return day


@lru_cache(maxsize=1)
def trading_date_partitions() -> DailyPartitionsDefinition:
    """Daily partitions in New York time, excluding weekends and XNYS holidays.

    `end_offset=1` keeps today's session in the set so the after-close schedule can target it;
    `run_manifest` refuses a session whose close has not happened yet.
    """
    cal = get_calendar()
    weekdays = pd.bdate_range(PARTITIONS_START, CALENDAR_END)
    sessions = set(cal.sessions_in_range(pd.Timestamp(PARTITIONS_START), pd.Timestamp(CALENDAR_END)))
    holidays = [d.to_pydatetime() for d in weekdays if d not in sessions]
    return DailyPartitionsDefinition(
        start_date=PARTITIONS_START,
        timezone=MASTER_TZ,
        end_offset=1,
        exclusions=["0 0 * * 6", "0 0 * * 0", *holidays],
    )
