"""Bar timestamps as tz-aware UTC: the one parser every module uses for a `time` column."""

from __future__ import annotations

from typing import Any

import pandas as pd


def utc_times(values: Any) -> Any:
    """`pd.to_datetime(values, utc=True)` (naive values taken as UTC, aware ones converted), with
    pandas' cache turned off. Bar timestamps are unique, so the cache never pays, and deciding that
    costs more than the conversion: pandas builds a Python `Timestamp` per element to count the
    distinct values, even for a column that is already `datetime64[ns, UTC]` (measured: 300 us
    against 38 us for 500 bars; 2% of a development run's CPU before it was turned off)."""
    return pd.to_datetime(values, utc=True, cache=False)


def utc_days(values: Any) -> pd.DatetimeIndex:
    """The UTC calendar day of each timestamp (tz-naive midnight, nanoseconds whatever the input's
    unit: callers read the days as int64 ns, and a Parquet export may hold microseconds)."""
    return pd.DatetimeIndex(utc_times(values)).tz_localize(None).normalize().as_unit("ns")
