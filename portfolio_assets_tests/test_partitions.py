"""Trading-date partitions: the configured first partition and calendar, and "after the close"."""

from __future__ import annotations

import datetime as dt

import pytest

from portfolio_assets.partitions import (
    calendar_config,
    master_sessions,
    sessions_window,
    trading_date_partitions,
    validate_partition_date,
)

UTC = dt.UTC


def test_defaults_offer_every_xnys_session_from_1995():
    parts = trading_date_partitions()
    keys = parts.get_partition_keys(current_time=dt.datetime(2026, 12, 2, 22, tzinfo=UTC))
    assert keys[0] == "1995-01-03" and keys[-1] == "2026-12-02"
    assert len(keys) == len(master_sessions("1995-01-03", "2026-12-02")) > 8000
    assert "2026-11-26" not in keys and "2026-11-28" not in keys  # Thanksgiving, a Saturday
    assert calendar_config().start == dt.date(1990, 1, 2)
    assert len(sessions_window("1995-01-03", 1260)) == 1260  # five years of history before the first partition


@pytest.mark.parametrize("now, last", [
    (dt.datetime(2026, 12, 2, 20, 59, tzinfo=UTC), "2026-12-01"),  # 15:59 New York: today not closed
    (dt.datetime(2026, 12, 2, 21, 0, tzinfo=UTC), "2026-12-02"),   # 16:00 New York: today's close
    (dt.datetime(2026, 11, 30, 15, 0, tzinfo=UTC), "2026-11-27"),  # Monday 10:00: Friday is the latest
    (dt.datetime(2026, 11, 28, 12, 0, tzinfo=UTC), "2026-11-27"),  # Saturday
])
def test_todays_session_becomes_a_partition_after_its_close(now, last):
    assert trading_date_partitions().get_partition_keys(current_time=now)[-1] == last


def test_after_a_weekday_holiday_the_session_is_offered_early_but_refused_until_its_close():
    """Dagster's `end_offset` counts the excluded holiday's window, so the Friday after
    Thanksgiving is offered from Thursday 16:00 (documented in docs/ARCHITECTURE.md); the CLI and
    step 1 still refuse it until its close."""
    now = dt.datetime(2026, 11, 27, 17, 0, tzinfo=UTC)  # 12:00 New York, before the 13:00 early close
    assert trading_date_partitions().get_partition_keys(current_time=now)[-1] == "2026-11-27"
    with pytest.raises(ValueError, match="partition 2026-11-27 has not closed yet"):
        validate_partition_date("2026-11-27", now=now)


def test_partition_keys_name_the_session_and_its_window_starts_at_the_close():
    window = trading_date_partitions().time_window_for_partition_key("2026-11-25")
    assert (window.start.date(), window.start.hour) == (dt.date(2026, 11, 25), 16)


@pytest.mark.parametrize("key, message", [
    ("1994-12-30", "partition 1994-12-30 is before the first partition 1995-01-03 (manifest calendar.first_partition)"),
    ("2026-11-26", "partition 2026-11-26 is not a XNYS trading session"),
    ("20261125", "partition key '20261125' is not a date YYYY-MM-DD"),
    ("2026-12-02", "partition 2026-12-02 has not closed yet"),
])
def test_dates_that_are_not_partitions_are_refused_in_one_line(key, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        validate_partition_date(key, now=dt.datetime(2026, 12, 2, 20, tzinfo=UTC))


def test_the_first_partition_and_the_calendar_are_settings(monkeypatch):
    monkeypatch.setenv("PA_CALENDAR__FIRST_PARTITION", '"2008-01-02"')
    monkeypatch.setenv("PA_CALENDAR__START", '"2000-01-03"')
    assert trading_date_partitions().get_first_partition_key() == "2008-01-02"
    assert master_sessions()[0].date() == dt.date(2000, 1, 3)
    with pytest.raises(ValueError, match="before the first partition 2008-01-02"):
        validate_partition_date("2007-12-31")
