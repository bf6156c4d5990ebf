"""Scanner fields from daily bars: the one place where the indicator math lives.

Every source that computes scanner rows from bars (the synthetic market and the files source) calls
`indicator_matrix` (many symbols at once, as aligned matrices) or its per-symbol wrapper
`scanner_fields`. All fields for a date D use the last `WINDOW` bars at or before D only.

Definitions (TradingView column names; percent fields are in percent units, e.g. 3.2 = +3.2 %):

- `close`, `volume`: of the last bar; `Value.Traded` = close x volume of the last bar.
- `change`: 100 x (close_t / close_{t-1} - 1), the last bar's percent change.
- `Perf.W`, `Perf.1M`, `Perf.3M`, `Perf.6M`, `Perf.Y`: 100 x (close_t / close_{t-n} - 1) with
  n = 5, 21, 63, 126, 252 bars of the symbol's own calendar (NaN when fewer than n + 1 bars).
- `Volatility.D`: the last bar's range in percent, 100 x (high - low) / low.
- `ATR`: Wilder's average true range, length 14. TR_t = max(high - low, |high - close_{t-1}|,
  |low - close_{t-1}|), defined from the second bar on; ATR = Wilder average of TR.
- `ADX`: Wilder's average directional index, length 14. +DM_t = up if up > down and up > 0 else 0
  with up = high_t - high_{t-1}, down = low_{t-1} - low_t (-DM symmetric); +DI = 100 x W(+DM) / W(TR),
  -DI likewise, DX = 100 x |+DI - -DI| / (+DI + -DI) (0 when both are 0), ADX = W(DX).
- `Recommend.All`: in [-1, 1], the mean of sign(close - MA) over the simple and exponential moving
  averages of lengths 10, 20, 30, 50, 100, 200 that have enough bars (NaN when none has). This is
  the moving-average half of TradingView's rating; the oscillator half is not modelled.

"Wilder average" W and the exponential averages are `seeded_average`: the first value is the simple
mean of the first `length` valid inputs, then s_t = s_{t-1} + alpha x (x_t - s_{t-1}) with
alpha = 1/length (Wilder) or 2/(length + 1) (EMA). Because only `WINDOW` bars are used, recursive
fields are a deterministic function of those bars (they may differ slightly from a vendor computing
over the full history).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pandas as pd

from portfolio_assets.timestamps import utc_times

WINDOW = 300  # bars used per symbol: covers Perf.Y (253 bars) and the 200-bar moving averages
PERF_PERIODS: tuple[tuple[str, int], ...] = (
    ("Perf.W", 5), ("Perf.1M", 21), ("Perf.3M", 63), ("Perf.6M", 126), ("Perf.Y", 252),
)
MA_LENGTHS: tuple[int, ...] = (10, 20, 30, 50, 100, 200)
WILDER_LENGTH = 14
INDICATOR_COLUMNS: tuple[str, ...] = (
    "close", "volume", "Value.Traded", "change", *(name for name, _ in PERF_PERIODS),
    "Volatility.D", "ADX", "ATR", "Recommend.All",
)


def seeded_average(x: np.ndarray, length: int | np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    """Column-wise recursive average with a simple-mean seed (Wilder's RMA / an SMA-seeded EMA).

    `x` is (T, M); `length` and `alpha` are scalars or (M,) arrays. For each column the output is NaN
    until `length` valid (non-NaN) inputs have been seen, then equals their mean, then follows
    s_t = s_{t-1} + alpha x (x_t - s_{t-1}). A NaN input leaves the state unchanged.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"seeded_average expects a (T, M) array, got shape {x.shape}")
    n_rows, n_cols = x.shape
    length_v = np.broadcast_to(np.asarray(length, dtype=np.float64), (n_cols,))
    alpha_v = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (n_cols,))
    if np.any(length_v < 1):
        raise ValueError("seeded_average: length must be >= 1")
    out = np.full((n_rows, n_cols), np.nan)
    state = np.full(n_cols, np.nan)
    total = np.zeros(n_cols)
    count = np.zeros(n_cols)
    for t in range(n_rows):
        row = x[t]
        valid = ~np.isnan(row)
        value = np.where(valid, row, 0.0)
        warming = count < length_v
        total += np.where(warming, value, 0.0)
        count += warming & valid
        seeded_now = warming & valid & (count == length_v)
        state = np.where(seeded_now, total / length_v, state)
        running = ~warming & valid
        state = np.where(running, state + alpha_v * (value - state), state)
        out[t] = state
    return out


def _shifted(x: np.ndarray) -> np.ndarray:
    """Rows moved down by one (row t holds x[t-1]); the first row is NaN."""
    prev = np.empty_like(x)
    prev[0] = np.nan
    prev[1:] = x[:-1]
    return prev


def _percent_change(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * (new / old - 1.0)


def indicator_matrix(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> dict[str, np.ndarray]:
    """Scanner fields for N symbols from right-aligned (T, N) bar matrices.

    Row T-1 is each symbol's last bar at or before the as-of date, row T-2 the bar before it, and so
    on; a symbol with fewer than T bars has NaN rows at the top. Returns a dict of (N,) arrays keyed
    by `INDICATOR_COLUMNS` (definitions in the module docstring).
    """
    high, low, close, volume = (np.asarray(a, dtype=np.float64) for a in (high, low, close, volume))
    if not (high.shape == low.shape == close.shape == volume.shape) or close.ndim != 2:
        raise ValueError("indicator_matrix: high, low, close, volume must be (T, N) arrays of one shape")
    n_rows, n_sym = close.shape
    if n_rows == 0:
        return {name: np.full(n_sym, np.nan) for name in INDICATOR_COLUMNS}
    last = close[-1]
    out: dict[str, np.ndarray] = {
        "close": last.copy(),
        "volume": volume[-1].copy(),
        "Value.Traded": last * volume[-1],
    }
    out["change"] = _percent_change(last, close[-2]) if n_rows >= 2 else np.full(n_sym, np.nan)
    for name, n in PERF_PERIODS:
        out[name] = _percent_change(last, close[-1 - n]) if n_rows > n else np.full(n_sym, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["Volatility.D"] = 100.0 * (high[-1] - low[-1]) / low[-1]

    prev_close, prev_high, prev_low = _shifted(close), _shifted(high), _shifted(low)
    true_range = np.fmax(high - low, np.fmax(np.abs(high - prev_close), np.abs(low - prev_close)))
    true_range[np.isnan(prev_close)] = np.nan
    up = high - prev_high
    down = prev_low - low
    plus_dm = np.where((up > down) & (up > 0), up, 0.0)
    minus_dm = np.where((down > up) & (down > 0), down, 0.0)
    no_prev = np.isnan(prev_high) | np.isnan(prev_low)
    plus_dm[no_prev] = np.nan
    minus_dm[no_prev] = np.nan

    # One recursive pass over every smoothed series: TR, +DM, -DM (Wilder) and the six EMAs.
    lengths = [WILDER_LENGTH] * 3 + list(MA_LENGTHS)
    alphas = [1.0 / WILDER_LENGTH] * 3 + [2.0 / (n + 1.0) for n in MA_LENGTHS]
    stacked = np.hstack([true_range, plus_dm, minus_dm] + [close] * len(MA_LENGTHS))
    smoothed = seeded_average(stacked, np.repeat(lengths, n_sym), np.repeat(alphas, n_sym))
    blocks = [smoothed[:, k * n_sym:(k + 1) * n_sym] for k in range(len(lengths))]
    atr, plus_s, minus_s = blocks[0], blocks[1], blocks[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        plus_di = 100.0 * plus_s / atr
        minus_di = 100.0 * minus_s / atr
        di_sum = plus_di + minus_di
        dx = np.where(di_sum > 0, 100.0 * np.abs(plus_di - minus_di) / di_sum, 0.0)
    dx[np.isnan(di_sum)] = np.nan
    out["ATR"] = atr[-1].copy()
    out["ADX"] = seeded_average(dx, WILDER_LENGTH, 1.0 / WILDER_LENGTH)[-1]

    signals = []
    for k, n in enumerate(MA_LENGTHS):
        if n_rows >= n:
            tail = close[-n:]
            sma = np.where(np.isnan(tail).any(axis=0), np.nan, tail.mean(axis=0))
        else:
            sma = np.full(n_sym, np.nan)
        ema = blocks[3 + k][-1]
        signals.extend([np.sign(last - sma), np.sign(last - ema)])
    signal_matrix = np.vstack(signals)
    available = (~np.isnan(signal_matrix)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["Recommend.All"] = np.where(available > 0, np.nansum(signal_matrix, axis=0) / available, np.nan)
    return out


def scanner_fields(
    bars_by_symbol: Mapping[str, pd.DataFrame], as_of: dt.date, window: int = WINDOW
) -> pd.DataFrame:
    """Scanner fields per symbol from its own bars with UTC day <= `as_of`.

    `bars_by_symbol` maps a symbol to a frame with at least `time` (tz-aware UTC or UTC-naive),
    `high`, `low`, `close`, `volume`, sorted by time. The last `window` bars at or before `as_of` are
    right-aligned into matrices and passed to `indicator_matrix`. Symbols without any bar at or
    before `as_of` are left out. Returns a frame indexed by symbol with `INDICATOR_COLUMNS` and
    `last_bar` (the UTC day of the last bar used).
    """
    # A bar's UTC day is <= as_of exactly when its time is before the next UTC midnight: one
    # comparison per bar, then only the last `window` rows are taken (a long exported history is
    # neither normalized nor copied whole on every scan).
    limit = pd.Timestamp(as_of, tz="UTC") + pd.Timedelta(days=1)
    kept: list[tuple[str, pd.DataFrame, pd.Timestamp]] = []
    for symbol, frame in bars_by_symbol.items():
        times = utc_times(frame["time"])
        rows = np.flatnonzero((times < limit).to_numpy())
        rows = rows[max(len(rows) - window, 0):]
        if len(rows):
            kept.append((symbol, frame.iloc[rows], times.iloc[rows[-1]].tz_localize(None).normalize()))
    columns = [*INDICATOR_COLUMNS, "last_bar"]
    if not kept:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="symbol"))
    n_rows = max(len(tail) for _, tail, _ in kept)
    mats = {name: np.full((n_rows, len(kept)), np.nan) for name in ("high", "low", "close", "volume")}
    for j, (_, tail, _) in enumerate(kept):
        for name, mat in mats.items():
            mat[n_rows - len(tail):, j] = tail[name].to_numpy(dtype=np.float64)
    fields = indicator_matrix(mats["high"], mats["low"], mats["close"], mats["volume"])
    result = pd.DataFrame(fields, index=pd.Index([s for s, _, _ in kept], name="symbol"))
    result["last_bar"] = [last for _, _, last in kept]
    return result[columns]
