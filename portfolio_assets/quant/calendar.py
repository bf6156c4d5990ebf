"""Calendar alignment: each symbol's own bars sampled on the master calendar's sessions.

A bar is labelled by its trading day. Its *close moment* is when its price becomes known:
- exchange calendars (XNYS, ...): that session's close;
- 24/7 (crypto) and 24/5 (forex): the end of the UTC day, i.e. label + 1 day at 00:00 UTC.

At master session D we take the last bar whose close moment is at or before D's close — nothing
later (point in time). A crypto bar of Saturday and Sunday is therefore folded into Monday's
sample, and the Friday→Monday return carries the weekend's move. When no new bar closed since the
previous master session the sample is NaN: closed days are never zero-filled and prices are never
carried forward into a fake zero return.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from portfolio_assets.timestamps import utc_days

CALENDAR_24_7 = "24/7"
CALENDAR_24_5 = "24/5"


@lru_cache(maxsize=16)
def _session_closes(calendar: str) -> pd.Series:
    from portfolio_assets.partitions import get_calendar

    return get_calendar(calendar).close_series()


def bar_close_moments(labels: pd.DatetimeIndex, calendar: str) -> np.ndarray:
    """UTC close moment (int64 ns) of bars labelled `labels` (tz-naive days) on `calendar`.

    Bars labelled on a day without a session of an exchange calendar get NaT (then ignored)."""
    labels = pd.DatetimeIndex(labels).tz_localize(None).normalize()
    if calendar in (CALENDAR_24_7, CALENDAR_24_5):
        return (labels + pd.Timedelta(days=1)).tz_localize("UTC").as_unit("ns").asi8
    moments = _session_closes(calendar).reindex(labels)  # tz-aware UTC; NaT where no session
    # int64 ns read directly (`.to_numpy()` of a tz-aware Series is an object array of Timestamps)
    return pd.DatetimeIndex(moments).as_unit("ns").asi8


def _master_closes_with_previous(sessions: pd.DatetimeIndex, master: str) -> np.ndarray:
    """Close moments of the session before `sessions[0]` followed by those of `sessions`."""
    closes = _session_closes(master)
    pos = closes.index.get_indexer(pd.DatetimeIndex(sessions).tz_localize(None))
    if (pos < 0).any():
        bad = pd.DatetimeIndex(sessions)[pos < 0][:3].date.tolist()
        raise ValueError(f"not {master} sessions: {bad}")
    pos = np.concatenate([[pos[0] - 1], pos]) if len(pos) else pos
    return pd.DatetimeIndex(closes.iloc[np.maximum(pos, 0)]).as_unit("ns").asi8


def align_closes(bars: pd.DataFrame, calendar: str, sessions: pd.DatetimeIndex, master: str = "XNYS") -> pd.Series:
    """Close price of `bars` sampled at each master session (NaN when no new bar closed).

    `bars` has a `time` column (bar label; tz-aware UTC or naive, normalized to the day) and
    `close`. Returns a float Series indexed by `sessions`.
    """
    sessions = pd.DatetimeIndex(sessions, name="session")
    out = np.full(len(sessions), np.nan)
    if len(bars) and len(sessions):
        labels = utc_days(bars["time"])
        moments = bar_close_moments(labels, calendar)
        close = bars["close"].to_numpy(dtype=float)
        ok = moments != np.iinfo(np.int64).min  # NaT: labelled on a day the exchange was closed
        order = np.argsort(moments[ok], kind="mergesort")
        moments, close = moments[ok][order], close[ok][order]
        # Sample at the previous master close too, so the first session only counts a bar that
        # closed after it (a new bar), never a carried-forward price.
        idx = np.searchsorted(moments, _master_closes_with_previous(sessions, master), side="right") - 1
        new_bar = (idx[1:] >= 0) & (idx[1:] != idx[:-1])
        out[new_bar] = close[idx[1:][new_bar]]
    return pd.Series(out, index=sessions, dtype=float)


def align_panel(
    bars_by_symbol: dict[str, pd.DataFrame], calendars: dict[str, str], sessions: pd.DatetimeIndex
) -> pd.DataFrame:
    """Price panel (sessions × symbols) from each symbol's own bars and calendar."""
    cols = {s: align_closes(b, calendars[s], sessions) for s, b in sorted(bars_by_symbol.items())}
    panel = pd.DataFrame(cols, index=pd.DatetimeIndex(sessions, name="session"))
    panel.columns.name = "symbol"
    return panel


def simple_returns(panel: pd.DataFrame) -> pd.DataFrame:
    """`p_t / p_prev - 1` between consecutive *available* samples; NaN where no sample.

    The first available sample of each symbol has no return (NaN). No zero-filling."""
    filled = panel.ffill()
    rets = filled / filled.shift(1) - 1.0
    return rets.where(panel.notna())


def align_panel_long(
    long: pd.DataFrame, calendars: dict[str, str], sessions: pd.DatetimeIndex, master: str = "XNYS"
) -> pd.DataFrame:
    """`align_panel` of many symbols' bars given as one long frame (`symbol`, `time`, `close`;
    the price store's layout, each symbol's bars sorted by time), vectorized: no per-symbol pass.

    The same panel as `align_panel({s: bars of s}, calendars, sessions)` (tested), for every
    symbol of `calendars`, columns sorted: each bar's close moment on its symbol's calendar is
    looked up once per (calendar, day); a bar goes to the first master session whose close is at
    or after that moment (bucket k has moments in (close_{k-1}, close_k], close_0 being the
    session before the first), and the last bar of each (symbol, session) is its sample; a bar at
    or before close_0 or after the last close is not sampled (point in time).
    """
    sessions = pd.DatetimeIndex(sessions, name="session")
    symbols = sorted(calendars)
    missing = sorted(set(long["symbol"]) - set(symbols)) if len(long) else []
    if missing:
        raise ValueError(f"bars of {len(missing)} symbol(s) without a calendar, e.g. {missing[:3]}")
    out = np.full((len(sessions), len(symbols)), np.nan)
    if len(long) and len(sessions):
        code = pd.Categorical(long["symbol"], categories=symbols).codes.astype(np.int64)
        day = utc_days(long["time"]).asi8
        moments = np.full(len(long), np.iinfo(np.int64).min, dtype=np.int64)
        cal_of = np.array([calendars[s] for s in symbols], dtype=object)[code]
        for cal in pd.unique(cal_of):
            rows = np.flatnonzero(cal_of == cal)
            uniq, inverse = np.unique(day[rows], return_inverse=True)
            moments[rows] = bar_close_moments(pd.DatetimeIndex(uniq), str(cal))[inverse]
        ok = moments != np.iinfo(np.int64).min
        closes = _master_closes_with_previous(sessions, master)
        bucket = np.searchsorted(closes, moments, side="left")
        ok &= (bucket >= 1) & (bucket <= len(sessions))
        rows = np.flatnonzero(ok)
        # The last bar per (symbol, session) in moment order (ties: the bars' own order).
        order = rows[np.lexsort((rows, moments[rows], code[rows]))]
        key = code[order] * (len(sessions) + 1) + bucket[order]
        last = np.ones(len(order), dtype=bool)
        last[:-1] = key[1:] != key[:-1]
        pick = order[last]
        out[bucket[pick] - 1, code[pick]] = long["close"].to_numpy(dtype=float)[pick]
    panel = pd.DataFrame(out, index=sessions, columns=pd.Index(symbols, name="symbol"))
    return panel
