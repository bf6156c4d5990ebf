"""Fetching bars into the price store, reading windows back, and automated gap recovery.

Windowed reads (60 and 500 sessions) come from the columnar price store for days <= D, never
from hundreds of upstream partitions. A run fetches each symbol's widest window once per
partition (`first_fetch`) and every asset of the run that needs a window inside it reads that
fetch back, laid over the stored bars as if just fetched (so a partition's result does not depend
on what an earlier run left in the store); repairs are fetched and stored as before.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from portfolio_assets.lakehouse import Lakehouse
from portfolio_assets.price_store import overlay
from portfolio_assets.progress import Progress
from portfolio_assets.quant.health import HealthParams, assess_symbol
from portfolio_assets.sources.base import BAR_COLUMNS, MarketData, SourceError
from portfolio_assets.timestamps import utc_times

FETCH_BUFFER_DAYS = 10  # calendar days before the first session, for the first return
# The store is compacted (parts merged, newest bar kept: reads unchanged) once it holds more than
# this many parts; parts fetched in the last 6 hours stay, so a run in progress keeps its first
# fetches (`compact_store`).
COMPACT_ABOVE_PARTS = 256
COMPACT_KEEP_RECENT_S = 6 * 3600.0
# Parts of finished runs merge sooner (`compact_store` with `finished`): a run writes ~20 parts
# (its first fetches and a part per repaired symbol), two runs at a time hold ~40.
COMPACT_FINISHED_ABOVE_PARTS = 48
COMPACT_MIN_PARTS = 16
# ... and only when the parts after the oldest (the last merge's, the largest) hold at least this
# share of its bytes: a merge rewrites the oldest part too, so its cost stays within a few times
# the size of what is new (at 20,000 symbols x 560 days, a merge takes 8.5 s).
COMPACT_GROWTH = 0.25


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
        times = utc_times(bars["time"])
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
    scope: str | None = None,
) -> dict[str, dict[str, int]]:
    """Fetch bars for `symbols` and store them as one part of the price store (`scope`: the run
    that fetched, so its later steps find the window). Returns per-symbol clean-up counts.

    Uses the source's bounded-concurrency `fetch_many` when it has one. A source error for one
    symbol is raised (naming it) — never swallowed.
    """
    store = lake.price_store()
    # The readers' lock from the fetch time to the write: no compaction runs in between, so none
    # merges a part fetched after this one while this part is still to come (`PriceStore.compact`).
    with store.shared_lock():
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
        cleaned: dict[str, pd.DataFrame] = {}
        for symbol in symbols:
            if symbol not in results:
                raise SourceError(f"source {source.name!r} returned no answer for {symbol}")
            cleaned[symbol], report[symbol] = clean_bars(symbol, results[symbol], end)
        lake.write_prices(cleaned, source.name, fetched_at, start=start, end=end, attempt=attempt, scope=scope)
    compact_store(lake)
    if keep is not None:  # what the source delivered this time (before merging with the cache)
        keep.update(cleaned)
    return report


def compact_store(lake: Lakehouse, finished: Callable[[str], bool] | None = None) -> int:
    """Merge the price store's old parts when it holds many (`PriceStore.compact`; reads do not
    change). Parts older than `COMPACT_KEEP_RECENT_S` merge once the store holds more than
    `COMPACT_ABOVE_PARTS` parts; with `finished` (a scope -> whether its run is over; the Dagster
    layer asks the run storage), so do the parts of finished runs, and sooner: once more than
    `COMPACT_FINISHED_ABOVE_PARTS` parts are stored, the parts after the oldest hold at least
    `COMPACT_GROWTH` of its bytes, and at least `COMPACT_MIN_PARTS` parts can merge. A backfill
    then keeps the store to a few dozen parts. Skipped (0) when another process holds the store's
    lock. Returns the number of parts merged away."""
    store = lake.price_store()
    sizes = [size for _, size, _, _ in store.signature()]  # oldest part first
    if len(sizes) > COMPACT_ABOVE_PARTS:  # too many parts to open at every read, whatever their size
        return store.compact(keep_recent_s=COMPACT_KEEP_RECENT_S, blocking=False, finished=finished)
    if finished is None or len(sizes) <= COMPACT_FINISHED_ABOVE_PARTS:
        return 0
    if sum(sizes[1:]) < COMPACT_GROWTH * sizes[0]:
        return 0
    return store.compact(keep_recent_s=COMPACT_KEEP_RECENT_S, blocking=False, finished=finished,
                         min_parts=COMPACT_MIN_PARTS)


def first_fetch(
    source: MarketData,
    lake: Lakehouse,
    symbols: list[str],
    start: dt.date,
    end: dt.date,
    *,
    scope: str | None = None,
    widest: Mapping[str, dt.date] | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """What the source delivers on a first fetch (attempt 0) of [start, end] for `symbols`.

    Without `scope`, fetched now (and stored). With `scope` (a run and partition), each symbol's
    window is fetched once for the scope: the first step that needs it fetches from
    `min(start, widest[symbol])` to `end` (the widest window any asset of the partition reads) and
    stores it as one part; every later request of that scope for a window inside it, ending on
    the same `end` (no bar after the partition's date), reads those bars back from that part
    instead of fetching again. A lock per scope makes parallel steps of one run wait for the
    fetch rather than repeat it."""
    if scope is None:
        fresh: dict[str, pd.DataFrame] = {}
        fetch_into_cache(source, lake, symbols, start, end, keep=fresh, say=say)
        return fresh
    store = lake.price_store()
    with store.fetch_lock(scope), store.shared_lock():  # no compaction merges the chosen parts away before they are read
        parts = [p for p in store.parts() if p.scope == scope and p.attempt == 0]
        chosen: dict[str, Path] = {}
        for symbol in symbols:
            for part in reversed(parts):  # the newest fetch of the scope that covers the window
                if part.covers(symbol, start, end):
                    chosen[symbol] = part.path
                    break
        todo = [s for s in symbols if s not in chosen]
        groups: dict[dt.date, list[str]] = {}
        for symbol in todo:
            groups.setdefault(min(start, (widest or {}).get(symbol, start)), []).append(symbol)
        for first, group in sorted(groups.items()):
            fetch_into_cache(source, lake, group, first, end, say=say, scope=scope)
            new = store.window_part(scope, group, first, end)
            if new is None:
                raise RuntimeError(f"price store: the part just written for {len(group)} symbol(s) "
                                   f"{first}..{end} is not in {store.parts_dir}")
            chosen.update(dict.fromkeys(group, new.path))
        by_part: dict[Path, list[str]] = {}
        for symbol in symbols:
            by_part.setdefault(chosen[symbol], []).append(symbol)
        out: dict[str, pd.DataFrame] = {}
        for path, group in by_part.items():
            for symbol, bars in store.read_many(group, start, end, paths=[path]).items():
                out[symbol] = bars.loc[:, list(BAR_COLUMNS)]
    return {s: out[s] for s in symbols}


def read_cached(lake: Lakehouse, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Cached bars of `symbol` with start <= day <= end."""
    return read_cached_many(lake, [symbol], start, end)[symbol]


def read_cached_many(lake: Lakehouse, symbols: list[str], start: dt.date, end: dt.date) -> dict[str, pd.DataFrame]:
    """Cached bars (`BAR_COLUMNS`) of `symbols` with start <= day <= end, in one scan."""
    return {s: b.loc[:, list(BAR_COLUMNS)] for s, b in lake.read_prices_many(symbols, start, end).items()}


@dataclass
class RecoveryLog:
    """What `recover` did: one row per symbol and attempt (status before and after, fetch range, error)."""

    rows: list[dict[str, object]] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame with fixed columns (present even when nothing was retried)."""
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
    cached = read_cached_many(lake, symbols, fetch_start, as_of) if fetched is None else {}
    rows = []
    for symbol in symbols:
        if fetched is not None:
            days = utc_times(fetched[symbol]["time"]).dt.tz_localize(None)
            bars = fetched[symbol][(days >= pd.Timestamp(fetch_start)) & (days <= pd.Timestamp(as_of))]
        else:
            bars = cached[symbol]
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
    *,
    view: dict[str, pd.DataFrame] | None = None,
    scope: str | None = None,
) -> tuple[pd.DataFrame, RecoveryLog]:
    """Re-fetch every unhealthy symbol's window up to `attempts` times with exponential backoff.

    Each repair is stored; with `view` (the step's bars per symbol, see `fetch_and_recover`) the
    repaired bars are laid over the symbol's view and judged there, else the store is re-read.

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
            repaired_bars: dict[str, pd.DataFrame] = {}
            try:
                fetch_into_cache(source, lake, [symbol], fetch_start, as_of, attempt=attempt, keep=repaired_bars,
                                 scope=scope)
            except (SourceError, BarsError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            if view is not None:
                if symbol in repaired_bars:
                    view[symbol] = overlay(view[symbol], repaired_bars[symbol])
                new = assess_all(lake, [symbol], calendars, window, fetch_start, as_of, params,
                                 fetched={symbol: view[symbol]})
            else:
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
    *,
    scope: str | None = None,
    widest: Mapping[str, dt.date] | None = None,
    view: dict[str, pd.DataFrame] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, RecoveryLog]:
    """First-fetch a window for `symbols` (`first_fetch`: once per `scope`), judge what the
    source delivered on that fetch, and repair every unhealthy symbol (`recover`). Returns
    (health before, health after, log); fills `view` with the step's bars per symbol over the
    window (pass it to `load_panel`).

    The step's view of a symbol is the stored bars with the first fetch laid over them (as if
    just fetched) and each repair laid over that, so a partition re-run in a lakehouse whose
    store already holds bars an earlier run repaired ends in the same state as a run on a fresh
    lakehouse, and every asset of a run sees the same first fetch."""
    start, end = window_bounds(window)
    fresh = first_fetch(source, lake, symbols, start, end, scope=scope, widest=widest, say=say)
    view = {} if view is None else view
    stored = read_cached_many(lake, symbols, start, as_of)
    view.update({s: overlay(stored[s], fresh[s]) for s in symbols})
    before = assess_all(lake, symbols, calendars, window, start, as_of, params, fetched=fresh)
    after, log = recover(source, lake, before, calendars, window, start, as_of, params, attempts, backoff_s, say,
                         view=view, scope=scope)
    return before, after, log


def window_bounds(window: pd.DatetimeIndex) -> tuple[dt.date, dt.date]:
    """Fetch range for a master-session window: a buffer before the first session, up to the last."""
    return (window[0] - pd.Timedelta(days=FETCH_BUFFER_DAYS)).date(), window[-1].date()


def coverage(returns: pd.DataFrame) -> pd.Series:
    """Share of sessions with a return, per symbol."""
    return returns.notna().mean().rename("coverage") if len(returns) else pd.Series(dtype=float, name="coverage")


def load_panel(
    lake: Lakehouse, symbols: list[str], calendars: dict[str, str], window: pd.DatetimeIndex, as_of: dt.date,
    view: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Aligned close panel (window sessions x symbols), data <= as_of only: of the step's `view`
    (`fetch_and_recover`) when given, else of the price store."""
    from portfolio_assets.quant.calendar import align_panel_long

    start, _ = window_bounds(window)
    if view is None:
        long = lake.price_store().read(symbols, start, as_of)
    else:
        frames = []
        for s in symbols:
            days = utc_times(view[s]["time"]).dt.tz_localize(None)
            keep = (days >= pd.Timestamp(start)) & (days <= pd.Timestamp(as_of))
            frames.append(view[s].loc[keep, ["time", "close"]].assign(symbol=s))
        long = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["symbol", "time", "close"])
    return align_panel_long(long, {s: calendars[s] for s in symbols}, window)
