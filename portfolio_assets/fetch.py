"""Fetching bars into the price cache, reading windows back, and automated gap recovery.

Windowed reads (60 and 500 sessions) come from the per-symbol price cache for days <= D, never
from hundreds of upstream partitions. Every fetch of a window re-fetches the whole window (so a
partition's result does not depend on what an earlier run left in the cache) and merges it in.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from portfolio_assets.lakehouse import Lakehouse
from portfolio_assets.progress import Progress
from portfolio_assets.quant.health import HealthParams, assess_symbol
from portfolio_assets.sources.base import BAR_COLUMNS, MarketData, SourceError

FETCH_BUFFER_DAYS = 10  # calendar days before the first session, for the first return


class BarsError(ValueError):
    """Bars a source returned are structurally unusable (columns, timestamps)."""


def clean_bars(symbol: str, bars: pd.DataFrame, as_of: dt.date) -> tuple[pd.DataFrame, dict[str, int]]:
    """Structural checks on fetched bars; returns sorted, de-duplicated bars <= as_of and counts.

    Missing columns or unparseable timestamps raise `BarsError` naming the symbol. Duplicated
    timestamps keep the last row; rows after `as_of` are dropped (point in time). Counts:
    `unsorted`, `duplicates`, `future` and `bad_prices` (kept rows whose open, high, low or close is
    NaN, infinite or <= 0).

    Bad prices, non-finite ones included, are one rule for every source: they are kept (the cache
    holds what the vendor said), counted here, and judged by the health gate (`quant.health`): a
    bar with a non-finite or non-positive price is a BAD_TICKS day, which triggers repair fetches
    and, if it stays, fails the blocking gate or drops the symbol. They never pass as good data.
    (The files source refuses them earlier, per file and row: a user's own export can be fixed.)
    """
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise BarsError(f"bars for {symbol}: missing columns {missing}")
    try:
        times = pd.to_datetime(bars["time"], utc=True)
    except (ValueError, TypeError) as exc:
        raise BarsError(f"bars for {symbol}: unparseable timestamps ({exc})") from None
    if times.isna().any():
        raise BarsError(f"bars for {symbol}: {int(times.isna().sum())} empty timestamp(s)")
    out = bars.loc[:, list(BAR_COLUMNS)].copy()
    out["time"] = times.dt.normalize()
    counts = {"unsorted": int((out["time"].diff().dt.total_seconds() < 0).sum())}
    out = out.sort_values("time", kind="mergesort")
    dup = out["time"].duplicated(keep="last")
    counts["duplicates"] = int(dup.sum())
    out = out[~dup]
    future = out["time"].dt.tz_localize(None) > pd.Timestamp(as_of)
    counts["future"] = int(future.sum())
    out = out[~future].reset_index(drop=True)
    prices = out[["open", "high", "low", "close"]].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        counts["bad_prices"] = int((~np.isfinite(prices) | (prices <= 0)).any(axis=1).sum())
    return out, counts


def fetch_into_cache(
    source: MarketData,
    lake: Lakehouse,
    symbols: list[str],
    start: dt.date,
    end: dt.date,
    attempt: int = 0,
    keep: dict[str, pd.DataFrame] | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, dict[str, int]]:
    """Fetch bars for `symbols` and merge them into the cache. Returns per-symbol clean-up counts.

    Uses the source's bounded-concurrency `fetch_many` when it has one. A source error for one
    symbol is raised (naming it) — never swallowed.
    """
    fetched_at = dt.datetime.now(dt.UTC)
    fetch_many = getattr(source, "fetch_many", None)
    if callable(fetch_many) and attempt == 0:
        results = fetch_many(symbols, start, end)
    else:
        fetched = Progress(say, f"fetch {start}..{end}", len(symbols), "symbols")
        results = {}
        for s in symbols:
            results[s] = source.bars(s, start, end, attempt=attempt)
            fetched.advance()
    report = {}
    merged = Progress(say, "price cache", len(symbols), "symbols merged")
    for symbol in symbols:
        if symbol not in results:
            raise SourceError(f"source {source.name!r} returned no answer for {symbol}")
        bars, counts = clean_bars(symbol, results[symbol], end)
        lake.merge_prices(symbol, bars, source.name, fetched_at)
        report[symbol] = counts
        if keep is not None:  # what the source delivered this time (before merging with the cache)
            keep[symbol] = bars
        merged.advance()
    return report


def read_cached(lake: Lakehouse, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Cached bars of `symbol` with start <= day <= end."""
    bars = lake.read_prices(symbol)
    if bars.empty:
        return bars.loc[:, list(BAR_COLUMNS)]
    days = pd.to_datetime(bars["time"], utc=True).dt.tz_localize(None)
    keep = (days >= pd.Timestamp(start)) & (days <= pd.Timestamp(end))
    return bars.loc[keep, list(BAR_COLUMNS)].reset_index(drop=True)


@dataclass
class RecoveryLog:
    rows: list[dict[str, object]] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        cols = ["symbol", "attempt", "status_before", "status_after", "start", "end", "error"]
        return pd.DataFrame(self.rows, columns=cols)


def assess_all(
    lake: Lakehouse,
    symbols: list[str],
    calendars: dict[str, str],
    window: pd.DatetimeIndex,
    fetch_start: dt.date,
    as_of: dt.date,
    params: dict[str, HealthParams],
    fetched: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Health table (one row per symbol, judged with that symbol's `params`): of the bars just
    `fetched` when given (what the source delivered this run), else of the price cache."""
    from portfolio_assets.partitions import session_close_utc
    from portfolio_assets.quant.calendar import align_closes

    close_ns = session_close_utc(as_of).value
    rows = []
    for symbol in symbols:
        if fetched is not None:
            days = pd.to_datetime(fetched[symbol]["time"], utc=True).dt.tz_localize(None)
            bars = fetched[symbol][(days >= pd.Timestamp(fetch_start)) & (days <= pd.Timestamp(as_of))]
        else:
            bars = read_cached(lake, symbol, fetch_start, as_of)
        n_sessions = int(align_closes(bars, calendars[symbol], window).notna().sum()) if len(bars) else 0
        row = assess_symbol(
            bars, calendars[symbol], window[0], pd.Timestamp(as_of), close_ns, n_sessions, params[symbol]
        )
        rows.append({"symbol": symbol, **row})
    return pd.DataFrame(rows).set_index("symbol")


def recover(
    source: MarketData,
    lake: Lakehouse,
    health: pd.DataFrame,
    calendars: dict[str, str],
    window: pd.DatetimeIndex,
    fetch_start: dt.date,
    as_of: dt.date,
    params: dict[str, HealthParams],
    attempts: int,
    backoff_s: float,
    say: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, RecoveryLog]:
    """Re-fetch every unhealthy symbol's window up to `attempts` times with exponential backoff.

    INSUFFICIENT alone is not repairable by re-fetching (the history is simply short), so it is
    not retried. A source error during a repair is recorded for that symbol and the symbol keeps
    its unhealthy status, so the health gate sees it: recovery never reports success it did not have.
    """
    log = RecoveryLog()
    health = health.copy()
    repairable = {"MISSING", "STALE", "GAPS", "BAD_TICKS"}
    for attempt in range(1, attempts + 1):
        todo = [s for s in health.index if health.at[s, "status"] in repairable]
        if not todo:
            break
        if attempt > 1 and backoff_s > 0:
            time.sleep(backoff_s * 2 ** (attempt - 2))
        repaired = Progress(say, f"recovery attempt {attempt}/{attempts}", len(todo), "symbols re-fetched")
        for symbol in todo:
            before = health.at[symbol, "status"]
            error = ""
            try:
                fetch_into_cache(source, lake, [symbol], fetch_start, as_of, attempt=attempt)
            except (SourceError, BarsError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            new = assess_all(lake, [symbol], calendars, window, fetch_start, as_of, params)
            health.loc[symbol, new.columns] = new.loc[symbol]
            log.rows.append({
                "symbol": symbol, "attempt": attempt, "status_before": before,
                "status_after": health.at[symbol, "status"], "start": str(fetch_start), "end": str(as_of),
                "error": error,
            })
            repaired.advance(note=f"{symbol} {before} -> {health.at[symbol, 'status']}")
    return health, log


def fetch_and_recover(
    source: MarketData,
    lake: Lakehouse,
    symbols: list[str],
    calendars: dict[str, str],
    window: pd.DatetimeIndex,
    as_of: dt.date,
    params: dict[str, HealthParams],
    attempts: int,
    backoff_s: float,
    say: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, RecoveryLog]:
    """Fetch a window for `symbols` into the cache, judge what the source delivered *this time*,
    and repair every unhealthy symbol (`recover`). Returns (health before, health after, log).

    Every window read goes through here, so a partition re-run in a lakehouse whose cache already
    holds bars an earlier run repaired ends in the same state as a run on a fresh lakehouse."""
    start, end = window_bounds(window)
    fresh: dict[str, pd.DataFrame] = {}
    fetch_into_cache(source, lake, symbols, start, end, keep=fresh, say=say)
    before = assess_all(lake, symbols, calendars, window, start, as_of, params, fetched=fresh)
    after, log = recover(source, lake, before, calendars, window, start, as_of, params, attempts, backoff_s, say)
    return before, after, log


def window_bounds(window: pd.DatetimeIndex) -> tuple[dt.date, dt.date]:
    """Fetch range for a master-session window: a buffer before the first session, up to the last."""
    return (window[0] - pd.Timedelta(days=FETCH_BUFFER_DAYS)).date(), window[-1].date()


def coverage(returns: pd.DataFrame) -> pd.Series:
    """Share of sessions with a return, per symbol."""
    return returns.notna().mean().rename("coverage") if len(returns) else pd.Series(dtype=float, name="coverage")


def load_panel(
    lake: Lakehouse, symbols: list[str], calendars: dict[str, str], window: pd.DatetimeIndex, as_of: dt.date
) -> pd.DataFrame:
    """Aligned close panel (window sessions x symbols) from the cache, data <= as_of only."""
    from portfolio_assets.quant.calendar import align_panel

    start, _ = window_bounds(window)
    bars = {s: read_cached(lake, s, start, as_of) for s in symbols}
    return align_panel(bars, calendars, window)
