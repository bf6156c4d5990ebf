"""Data health (step 8): one status per symbol, judged on the symbol's *own* calendar.

Statuses, in priority order when several problems coexist (all are listed in `issues`):
- MISSING: no bar at all in the window;
- BAD_TICKS: a non-finite or non-positive price, or a close-to-close jump above the threshold;
- STALE: the last bar is older than the calendar allows (more than `staleness` own-calendar days
  behind the last day whose bar had closed by D's close);
- GAPS: days missing between the first and last bar where the symbol's own calendar was open;
- INSUFFICIENT: fewer than `min_days_floor` master sessions with a price;
- OK.
A late listing is not a gap: the window starts at the symbol's first bar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from portfolio_assets.quant.calendar import CALENDAR_24_5, CALENDAR_24_7, bar_close_moments
from portfolio_assets.timestamps import utc_days

STATUSES = ("OK", "MISSING", "STALE", "GAPS", "INSUFFICIENT", "BAD_TICKS")
PRIORITY = ("MISSING", "BAD_TICKS", "STALE", "GAPS", "INSUFFICIENT")


@dataclass(frozen=True)
class HealthParams:
    """Thresholds of one symbol's health assessment (sessions, returns as fractions)."""

    min_days_floor: int = 400
    staleness: int = 1
    max_abs_return: float = 0.6


def expected_days(calendar: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    """Days on which `calendar` produces a bar, start..end inclusive (tz-naive)."""
    if end < start:
        return pd.DatetimeIndex([])
    if calendar == CALENDAR_24_7:
        return pd.date_range(start, end, freq="D")
    if calendar == CALENDAR_24_5:
        return pd.bdate_range(start, end)
    from portfolio_assets.partitions import get_calendar

    return pd.DatetimeIndex(get_calendar(calendar).sessions_in_range(start, end)).tz_localize(None)


def last_expected_day(calendar: str, as_of_close_ns: int, as_of: pd.Timestamp) -> pd.Timestamp | None:
    """The newest day whose bar has closed by D's close on `calendar`."""
    days = expected_days(calendar, as_of - pd.Timedelta(days=14), as_of)
    if not len(days):
        return None
    closed = days[bar_close_moments(days, calendar) <= as_of_close_ns]
    return closed[-1] if len(closed) else None


def assess_symbol(
    bars: pd.DataFrame,
    calendar: str,
    window_start: pd.Timestamp,
    as_of: pd.Timestamp,
    as_of_close_ns: int,
    n_master_sessions: int,
    params: HealthParams,
) -> dict[str, object]:
    """Health of one symbol's bars (`time`, OHLC) within [window_start, as_of]."""
    row: dict[str, object] = {"calendar": calendar, "n_bars": 0, "n_sessions": int(n_master_sessions),
                              "first_bar": None, "last_bar": None, "n_gap_days": 0, "gap_ranges": "",
                              "n_bad_ticks": 0, "bad_tick_days": "", "stale_days": 0}
    issues: list[str] = []
    labels = utc_days(bars["time"]) if len(bars) else pd.DatetimeIndex([])
    in_window = (labels >= window_start) & (labels <= as_of)
    bars, labels = bars[np.asarray(in_window)], labels[in_window]
    if not len(bars):
        return {**row, "status": "MISSING", "issues": "MISSING: no bar in the window"}
    row.update(n_bars=len(bars), first_bar=str(labels.min().date()), last_bar=str(labels.max().date()))

    prices = bars[["open", "high", "low", "close"]].to_numpy(dtype=float)
    bad = ~np.isfinite(prices).all(axis=1) | (prices <= 0).any(axis=1)
    close = bars["close"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        jump = np.abs(close[1:] / close[:-1] - 1.0) > params.max_abs_return
    bad[1:] |= jump
    if bad.any():
        days = labels[bad]
        row.update(n_bad_ticks=int(bad.sum()), bad_tick_days=",".join(str(d.date()) for d in days[:10]))
        issues.append(f"BAD_TICKS: {int(bad.sum())} bar(s), first {days[0].date()}")

    last_day = last_expected_day(calendar, as_of_close_ns, as_of)
    if last_day is not None:
        lag = len(expected_days(calendar, labels.max() + pd.Timedelta(days=1), last_day))
        row["stale_days"] = lag
        if lag > params.staleness:
            issues.append(f"STALE: last bar {labels.max().date()}, {lag} bar(s) behind {last_day.date()}")

    expected = expected_days(calendar, labels.min(), labels.max())
    missing = expected.difference(labels)
    if len(missing):
        ranges = _ranges(missing, expected)
        row.update(n_gap_days=len(missing), gap_ranges=";".join(f"{a.date()}..{b.date()}" for a, b in ranges[:10]))
        issues.append(f"GAPS: {len(missing)} day(s) in {len(ranges)} range(s), first {ranges[0][0].date()}")

    if n_master_sessions < params.min_days_floor:
        issues.append(f"INSUFFICIENT: {n_master_sessions} sessions < floor {params.min_days_floor}")

    status = next((p for p in PRIORITY if any(i.startswith(p) for i in issues)), "OK")
    return {**row, "status": status, "issues": "; ".join(issues)}


def _ranges(missing: pd.DatetimeIndex, expected: pd.DatetimeIndex) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Group missing days into runs of consecutive expected days."""
    pos = expected.get_indexer(missing)
    out: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    start = prev = pos[0]
    for p in pos[1:]:
        if p != prev + 1:
            out.append((expected[start], expected[prev]))
            start = p
        prev = p
    out.append((expected[start], expected[prev]))
    return out
