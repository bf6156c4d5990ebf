"""The fetch boundary (`fetch.clean_bars`): one rule for bad prices from any source."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from portfolio_assets.fetch import assess_all, clean_bars, fetch_into_cache, window_bounds
from portfolio_assets.lakehouse import Lakehouse
from portfolio_assets.partitions import master_sessions, sessions_window
from portfolio_assets.quant.health import HealthParams

AS_OF = dt.date(2026, 11, 25)


class FixedBars:
    """A `MarketData` stand-in returning fixed frames (only `bars` is used by the fetch path)."""

    name = "fixed"

    def __init__(self, frames: dict[str, pd.DataFrame]) -> None:
        self.frames = frames

    def bars(self, symbol: str, start: dt.date, end: dt.date, *, attempt: int = 0) -> pd.DataFrame:
        return self.frames[symbol]


def _bars(days: pd.DatetimeIndex, close: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"time": pd.DatetimeIndex(days).tz_localize("UTC"), "open": close, "high": close * 1.01,
                         "low": close * 0.99, "close": close, "volume": 1000.0})


def test_clean_bars_counts_non_finite_and_non_positive_prices_and_keeps_them() -> None:
    days = pd.DatetimeIndex(["2026-11-18", "2026-11-19", "2026-11-20", "2026-11-23", "2026-11-24"])
    bars = _bars(days, np.array([10.0, 11.0, 12.0, 13.0, 14.0]))
    bars.loc[1, "high"] = np.inf
    bars.loc[2, "low"] = -np.inf
    bars.loc[3, "open"] = 0.0
    out, counts = clean_bars("NYSE:KO", bars, AS_OF)
    assert counts == {"unsorted": 0, "duplicates": 0, "future": 0, "bad_prices": 3}
    assert len(out) == 5 and np.isinf(out["high"].iloc[1]) and np.isneginf(out["low"].iloc[2])


def test_infinite_prices_from_a_source_are_bad_ticks_of_the_health_gate(tmp_path) -> None:
    window = sessions_window(AS_OF, 41)
    start, end = window_bounds(window)
    days = master_sessions(start, end)
    close = np.linspace(100.0, 110.0, len(days))
    frame = _bars(days, close)
    frame.loc[12, "high"] = np.inf
    frame.loc[25, ["close", "low"]] = -np.inf
    lake = Lakehouse(tmp_path / "lake", "development")
    report = fetch_into_cache(FixedBars({"NYSE:KO": frame}), lake, ["NYSE:KO"], start, end)
    assert report["NYSE:KO"]["bad_prices"] == 2
    params = {"NYSE:KO": HealthParams(min_days_floor=20, staleness=1, max_abs_return=0.6)}
    row = assess_all(lake, ["NYSE:KO"], {"NYSE:KO": "XNYS"}, window, start, AS_OF, params).loc["NYSE:KO"]
    # the two bad bars, and the bar after the -inf close (its return starts from a bad price)
    flagged = [str(days[i].date()) for i in (12, 25, 26)]
    assert (row["status"], row["n_bad_ticks"], row["bad_tick_days"]) == ("BAD_TICKS", 3, ",".join(flagged))
