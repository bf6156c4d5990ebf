import numpy as np
import pandas as pd
import pytest

from portfolio_assets.partitions import (
    latest_closed_session,
    master_sessions,
    sessions_window,
    trading_date_partitions,
    validate_partition_date,
)
from portfolio_assets.quant.calendar import align_closes, align_panel, simple_returns


def bars(days, closes):
    return pd.DataFrame({"time": pd.DatetimeIndex(days).tz_localize("UTC"), "close": closes})


def test_master_sessions_skip_us_holiday_and_weekend():
    s = master_sessions("2024-07-01", "2024-07-09")
    assert [d.isoformat() for d in s.date] == [
        "2024-07-01", "2024-07-02", "2024-07-03", "2024-07-05", "2024-07-08", "2024-07-09"]


def test_partitions_are_trading_dates():
    keys = set(trading_date_partitions().get_partition_keys())
    assert "2024-07-04" not in keys and "2024-07-06" not in keys and "2024-07-05" in keys
    assert "2025-12-25" not in keys and "2025-12-24" in keys


def test_sessions_window_counts_sessions_not_days():
    w = sessions_window("2024-07-09", 5)
    assert len(w) == 5 and w[0] == pd.Timestamp("2024-07-02")
    with pytest.raises(ValueError, match="2024-07-04 is not a XNYS session"):
        sessions_window("2024-07-04", 5)


def test_partition_date_validation():
    with pytest.raises(ValueError, match="partition 2024-07-04 is not a XNYS trading session"):
        validate_partition_date("2024-07-04")
    with pytest.raises(ValueError, match="has not closed yet"):
        validate_partition_date("2024-07-05", now=pd.Timestamp("2024-07-05 15:00", tz="UTC"))
    assert latest_closed_session(pd.Timestamp("2024-07-05 19:00", tz="UTC")).isoformat() == "2024-07-03"
    assert latest_closed_session(pd.Timestamp("2024-07-05 21:00", tz="UTC")).isoformat() == "2024-07-05"


def test_us_holiday_equity_has_no_zero_return():
    s = master_sessions("2024-07-01", "2024-07-09")
    eq = bars(s, [100.0, 101, 102, 104, 103, 103])
    r = simple_returns(align_panel({"E:X": eq}, {"E:X": "XNYS"}, s))["E:X"]
    # Jul 5 return is vs Jul 3 (the holiday is not a session, not a zero)
    assert r.loc["2024-07-05"] == pytest.approx(104 / 102 - 1)
    assert np.isnan(r.iloc[0])


def test_crypto_weekend_folds_into_monday():
    s = master_sessions("2024-07-01", "2024-07-09")
    days = pd.date_range("2024-06-28", "2024-07-09")
    closes = np.arange(len(days), dtype=float) + 100.0
    c = align_closes(bars(days, closes), "24/7", s)
    by_day = dict(zip(days, closes, strict=True))
    # at D's close the last closed crypto day bar is D-1 (UTC day closes at 00:00 UTC of D)
    assert c.loc["2024-07-08"] == by_day[pd.Timestamp("2024-07-07")]  # Sunday's close lands on Monday
    assert c.loc["2024-07-05"] == by_day[pd.Timestamp("2024-07-04")]
    r = simple_returns(c.to_frame("C:X"))["C:X"]
    assert r.loc["2024-07-08"] == pytest.approx(by_day[pd.Timestamp("2024-07-07")] / by_day[pd.Timestamp("2024-07-04")] - 1)


def test_late_listing_is_nan_not_zero_and_no_carry_forward():
    s = master_sessions("2024-07-01", "2024-07-12")
    late = bars(s[4:], [50.0, 51, 52, 53, 54])
    col = align_closes(late, "XNYS", s)
    assert col.iloc[:4].isna().all() and col.iloc[4] == 50.0
    # a missing bar in the middle stays NaN; the next return spans the gap
    gap = bars(s.delete(3), [10.0, 11, 12, 14, 15, 16, 17, 18])
    g = align_closes(gap, "XNYS", s)
    assert np.isnan(g.iloc[3])
    r = simple_returns(g.to_frame("X:G"))["X:G"]
    assert np.isnan(r.iloc[3]) and r.iloc[4] == pytest.approx(14 / 12 - 1)


def test_bars_after_d_are_never_sampled():
    s = master_sessions("2024-07-01", "2024-07-03")
    days = pd.date_range("2024-06-25", "2024-07-20")
    c = align_closes(bars(days, np.arange(len(days), dtype=float)), "24/7", s)
    assert c.loc["2024-07-03"] == float(list(days).index(pd.Timestamp("2024-07-02")))


def test_align_panel_long_equals_align_panel_on_mixed_calendars():
    """The vectorized long-frame alignment (the price store's layout) gives the same panel as the
    per-symbol one: equities, crypto (weekends folded into Monday), forex, a bar on a closed day,
    a symbol without bars, a listing inside the window."""
    import datetime as dt

    from portfolio_assets.partitions import sessions_window
    from portfolio_assets.quant.calendar import align_panel, align_panel_long
    from portfolio_assets.sources.synthetic import SyntheticMarket

    src = SyntheticMarket({"seed": 3, "n_equities": 60})
    symbols = list(src.universe.index)
    meta = src.metadata(symbols)
    calendars = {s: str(meta.at[s, "calendar"]) for s in symbols}
    assert {"XNYS", "24/7", "24/5"} <= set(calendars.values())
    window = sessions_window(dt.date(2026, 11, 25), 61)
    bars = {s: src.bars(s, window[0].date() - dt.timedelta(days=10), dt.date(2026, 11, 25)) for s in symbols}
    eq = next(s for s in symbols if calendars[s] == "XNYS")
    closed_day = pd.DataFrame({"time": [pd.Timestamp("2026-11-26", tz="UTC")], "open": [1.0], "high": [1.0],
                               "low": [1.0], "close": [5.0], "volume": [1.0]})  # Thanksgiving: no session
    bars[eq] = pd.concat([bars[eq], closed_day], ignore_index=True)
    bars[symbols[1]] = bars[symbols[1]].iloc[30:]  # listed inside the window
    bars[symbols[2]] = bars[symbols[2]].iloc[:0]  # no bars
    long = pd.concat([b.assign(symbol=s) for s, b in bars.items()], ignore_index=True)
    want = align_panel(bars, calendars, window)
    got = align_panel_long(long, calendars, window)
    pd.testing.assert_frame_equal(got, want)
    with pytest.raises(ValueError, match="without a calendar"):
        align_panel_long(long, {s: calendars[s] for s in symbols[1:]}, window)
    # Bar times in another unit (a Parquet export written in microseconds, say) give the same panel.
    for unit in ("us", "ms", "s"):
        coarse = long.assign(time=long["time"].dt.as_unit(unit))
        pd.testing.assert_frame_equal(align_panel_long(coarse, calendars, window), want)
        one = {s: b.assign(time=b["time"].dt.as_unit(unit)) for s, b in bars.items()}
        pd.testing.assert_frame_equal(align_panel(one, calendars, window), want)
