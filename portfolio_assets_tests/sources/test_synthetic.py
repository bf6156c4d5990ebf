"""Synthetic market: determinism, point in time, calendars, faults, realism, scanner semantics, scale."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.sources import SCAN_COLUMNS, MarketData, SourceError, make_source
from portfolio_assets.sources.indicators import indicator_matrix
from portfolio_assets.sources.synthetic import (
    BASELINE,
    SCAN_RESULT_COLUMNS,
    SyntheticMarket,
    apply_preset,
    apply_scanner_query,
)
from portfolio_assets.symbols import InvalidSymbolError

D = dt.date(2024, 3, 15)  # a Friday session
START = dt.date(2019, 1, 1)
NO_FAULTS = {"faults": {}}


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket(NO_FAULTS)


@pytest.fixture(scope="module")
def faulty() -> SyntheticMarket:
    return SyntheticMarket({})  # default settings, default (healable) faults


def closes(m: SyntheticMarket, symbol: str, start: dt.date, end: dt.date) -> pd.Series:
    b = m.bars(symbol, start, end)
    return pd.Series(b["close"].to_numpy(), index=b["time"].dt.tz_localize(None), name=symbol)


# ---------------------------------------------------------------------------------------- basics
def test_implements_market_data_and_factory(market: SyntheticMarket) -> None:
    assert isinstance(market, MarketData)
    assert isinstance(make_source("synthetic", {"n_equities": 5, "faults": {}}), SyntheticMarket)
    with pytest.raises(ValueError, match="unknown source kind 'nope'"):
        make_source("nope", {})
    tradingview = pytest.importorskip("portfolio_assets.sources.tradingview")
    assert isinstance(make_source("tradingview", {}), tradingview.TradingViewSource)


@pytest.mark.parametrize(("settings", "message"), [
    ({"n_stocks": 3}, "synthetic settings: n_stocks: unknown key (not in the schema)"),
    ({"n_equities": -1}, "synthetic settings: n_equities: Input should be greater than or equal to 0 (got -1)"),
    ({"seed": "7"}, "synthetic settings: seed: Input should be a valid integer (got '7')"),
    ({"start": "2020-01-01", "end": "2019-01-01"}, "synthetic settings: end (2019-01-01) must be after start (2020-01-01)"),
    ({"n_futures": 15}, "synthetic settings: n_futures must be <= 14, got 15"),
    ({"n_etfs": 4, "n_bond_etfs": 4}, "synthetic settings: n_bond_etfs (4) must leave room for AMEX:SPY within n_etfs (4)"),
    ({"n_forex": 200}, "synthetic settings: n_forex=200 needs more than the 136 distinct pairs available"),
])
def test_bad_settings_are_named(settings: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        SyntheticMarket(settings)
    assert str(err.value) == message


def test_default_universe_composition(market: SyntheticMarket) -> None:
    u = market.universe
    counts = u["asset_class"].value_counts()
    assert counts["equity"] == 240 and counts["etf"] == 30 and counts["bond_etf"] == 10
    assert counts["crypto"] == 40 and counts["forex"] == 20 and "futures" not in counts
    assert {BASELINE, "AMEX:TLT", "NASDAQ:IEF", "AMEX:HYG", "AMEX:LQD", "AMEX:AGG", "NASDAQ:SHY"} <= set(u.index)
    assert set(u.loc[u["asset_class"] == "equity", "exchange"]) == {"NYSE", "NASDAQ"}
    assert u.loc[u["asset_class"] == "equity", "sector"].nunique() == 11
    # Same instrument on several venues/brokers: shared identity, different symbols.
    assert (u["identity"] == "crypto:BTC").sum() >= 3
    assert (u["identity"] == "fx:EURUSD").sum() >= 2
    assert u["listed"].gt(pd.Timestamp(START) + pd.Timedelta(days=60)).sum() > 10  # late listings
    assert u["delisted"].notna().sum() > 3


def test_unknown_and_invalid_symbols(market: SyntheticMarket) -> None:
    with pytest.raises(SourceError, match="unknown symbol 'NYSE:NOPE1'"):
        market.bars("NYSE:NOPE1", START, D)
    with pytest.raises(InvalidSymbolError):
        market.bars("../etc:passwd", START, D)
    with pytest.raises(ValueError, match="unknown scanner family 'stocks'"):
        market.scan("stocks", D, {})
    with pytest.raises(SourceError, match="ends 2027-12-31"):
        market.scan("equity", dt.date(2028, 1, 3), {})


# ----------------------------------------------------------------------------------- determinism
def test_same_seed_same_frames_different_seed_different() -> None:
    a, b, c = (SyntheticMarket({"seed": s, "n_equities": 60, **NO_FAULTS}) for s in (7, 7, 8))
    pd.testing.assert_frame_equal(a.scan("equity", D, {}), b.scan("equity", D, {}))
    pd.testing.assert_frame_equal(a.scan("crypto", D, {}), b.scan("crypto", D, {}))
    pd.testing.assert_frame_equal(a.bars(BASELINE, START, D), b.bars(BASELINE, START, D))
    assert not np.allclose(a.bars(BASELINE, START, D)["close"], c.bars(BASELINE, START, D)["close"])
    assert not a.scan("equity", D, {})["close"].equals(c.scan("equity", D, {})["close"])


def test_values_do_not_depend_on_call_order_or_universe_size() -> None:
    small = SyntheticMarket({"n_equities": 20, **NO_FAULTS})
    big = SyntheticMarket({"n_equities": 80, **NO_FAULTS})
    symbol = small.universe.index[3]  # an equity present in both universes
    big.scan("equity", D, {})  # builds checkpoints over many symbols first
    pd.testing.assert_frame_equal(small.bars(symbol, START, D), big.bars(symbol, START, D))
    row = big.scan("equity", D, {}).set_index("symbol").loc[symbol]
    assert row["close"] == small.bars(symbol, D, D)["close"].iloc[0]


def test_point_in_time_perturbation(market: SyntheticMarket) -> None:
    perturbed = SyntheticMarket({"perturb_after": D, **NO_FAULTS})
    for family in ("equity", "bond", "crypto", "forex"):
        pd.testing.assert_frame_equal(market.scan(family, D, {}), perturbed.scan(family, D, {}))
    for symbol in (BASELINE, "BINANCE:BTCUSDT", "FX:EURUSD"):
        pd.testing.assert_frame_equal(market.bars(symbol, START, D), perturbed.bars(symbol, START, D))
        later_a = market.bars(symbol, START, D + dt.timedelta(days=10))
        later_b = perturbed.bars(symbol, START, D + dt.timedelta(days=10))
        after = later_a["time"].dt.date > D
        assert after.any()
        assert (later_a.loc[after, "close"].to_numpy() != later_b.loc[after, "close"].to_numpy()).all()
    next_session = dt.date(2024, 3, 18)
    a, b = market.scan("equity", next_session, {}), perturbed.scan("equity", next_session, {})
    assert list(a["symbol"]) == list(b["symbol"])
    assert (a["close"].to_numpy() != b["close"].to_numpy()).all()
    assert not market.scan("crypto", D + dt.timedelta(days=1), {})["close"].equals(
        perturbed.scan("crypto", D + dt.timedelta(days=1), {})["close"])


def test_late_listing_and_delisting_in_scans(market: SyntheticMarket) -> None:
    u = market.universe
    equities = u[u["asset_class"] == "equity"]
    late = equities[equities["listed"] > pd.Timestamp("2020-06-01")].index[0]
    listed = u.loc[late, "listed"].date()
    assert late not in set(market.scan("equity", listed - dt.timedelta(days=1), {})["symbol"])
    assert late in set(market.scan("equity", listed, {})["symbol"])
    assert market.bars(late, START, listed + dt.timedelta(days=30))["time"].iloc[0].date() == listed
    gone = equities[equities["delisted"].notna()].index[0]
    last = u.loc[gone, "delisted"].date()
    assert gone in set(market.scan("equity", last, {})["symbol"])
    assert gone not in set(market.scan("equity", last + dt.timedelta(days=1), {})["symbol"])
    assert market.bars(gone, START, dt.date(2027, 12, 31))["time"].iloc[-1].date() == last


# ------------------------------------------------------------------------------------- calendars
def test_calendars(market: SyntheticMarket) -> None:
    week = (dt.date(2024, 7, 1), dt.date(2024, 7, 10))
    equity = market.bars(BASELINE, *week)
    days = set(equity["time"].dt.date)
    assert dt.date(2024, 7, 4) not in days and dt.date(2024, 7, 3) in days
    assert all(d.weekday() < 5 for d in days)
    assert str(equity["time"].dt.tz) == "UTC" and (equity["time"] == equity["time"].dt.normalize()).all()
    crypto = set(market.bars("BINANCE:BTCUSDT", *week)["time"].dt.date)
    assert {dt.date(2024, 7, 4), dt.date(2024, 7, 6), dt.date(2024, 7, 7)} <= crypto and len(crypto) == 10
    forex = set(market.bars("FX:EURUSD", *week)["time"].dt.date)
    assert dt.date(2024, 7, 6) not in forex and dt.date(2024, 7, 7) not in forex
    assert {dt.date(2024, 7, 4), dt.date(2024, 7, 5), dt.date(2024, 7, 8)} <= forex
    futures = SyntheticMarket({"n_equities": 0, "n_futures": 3, **NO_FAULTS})
    assert futures.metadata(["CME_MINI:ES1!"])["calendar"].iloc[0] == "CMES"
    assert all(d.weekday() < 5 for d in futures.bars("CME_MINI:ES1!", *week)["time"].dt.date)
    assert len(futures.scan("futures", D, {})) == 3


def test_bars_are_consistent_ohlcv(market: SyntheticMarket) -> None:
    for symbol in (BASELINE, "AMEX:TLT", "BINANCE:ETHUSDT", "FX:USDJPY", market.universe.index[0]):
        b = market.bars(symbol, START, D)
        assert list(b.columns) == ["time", "open", "high", "low", "close", "volume"]
        assert (b["low"] <= b[["open", "close"]].min(axis=1)).all()
        assert (b["high"] >= b[["open", "close"]].max(axis=1)).all()
        assert (b["low"] > 0).all() and (b["volume"] >= 0).all() and b["time"].is_monotonic_increasing


# ---------------------------------------------------------------------------------------- faults
def _sessions(start: dt.date, end: dt.date) -> set[dt.date]:
    import exchange_calendars

    cal = exchange_calendars.get_calendar("XNYS")
    return {s.date() for s in cal.sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))}


def test_missing_bars_fault_heals_after_attempts() -> None:
    m = SyntheticMarket({"faults": {"missing_bars": {"symbols": ["NASDAQ:QQQ"], "sessions": 3, "heal_after": 2}}})
    start, end = dt.date(2022, 1, 1), dt.date(2024, 6, 28)
    expected = _sessions(start, end)
    fault = m.fault_plan["NASDAQ:QQQ"]
    assert fault["kind"] == "missing_bars" and fault["heal_after"] == 2 and fault["sessions"] == 3
    for attempt in (0, 1):
        got = set(m.bars("NASDAQ:QQQ", start, end, attempt=attempt)["time"].dt.date)
        missing = sorted(expected - got)
        assert len(missing) >= 3 and len(missing) % 3 == 0  # whole gaps of 3 sessions
        assert got <= expected
    assert set(m.bars("NASDAQ:QQQ", start, end, attempt=2)["time"].dt.date) == expected
    pd.testing.assert_frame_equal(m.bars("AMEX:SPY", start, end, attempt=0), m.bars("AMEX:SPY", start, end, attempt=2))


def test_unhealable_and_stale_and_bad_tick_faults() -> None:
    m = SyntheticMarket({"faults": {
        "missing_bars": {"symbols": ["AMEX:IWM"], "heal_after": None},
        "stale": {"symbols": ["AMEX:DIA"], "bars": 4, "heal_after": 1},
        "bad_ticks": {"symbols": ["AMEX:VTI"], "kind": "zero", "heal_after": 3},
    }})
    start, end = dt.date(2022, 1, 1), dt.date(2024, 6, 28)
    full = _sessions(start, end)
    assert len(set(m.bars("AMEX:IWM", start, end, attempt=10)["time"].dt.date)) < len(full)
    stale = m.bars("AMEX:DIA", start, end, attempt=0)
    assert stale["time"].iloc[-1].date() == sorted(full)[-5]  # last 4 sessions withheld
    assert m.bars("AMEX:DIA", start, end, attempt=1)["time"].iloc[-1].date() == end
    assert m.bars("AMEX:DIA", end - dt.timedelta(days=2), end, attempt=0).empty  # a repair fetch too
    bad = m.bars("AMEX:VTI", start, end, attempt=2)
    assert (bad["close"] <= 0).sum() >= 2
    assert (m.bars("AMEX:VTI", start, end, attempt=3)["close"] > 0).all()
    spike = SyntheticMarket({"faults": {"bad_ticks": {"symbols": ["AMEX:VTI"], "kind": "spike"}}})
    jumps = spike.bars("AMEX:VTI", start, end)["close"].pct_change().abs()
    assert (jumps > 10).sum() >= 2


def test_default_fault_plan_targets_liquid_names(faulty: SyntheticMarket, market: SyntheticMarket) -> None:
    plan = faulty.fault_plan
    kinds = sorted(f["kind"] for f in plan.values())
    assert kinds == ["bad_ticks", "missing_bars", "missing_bars", "stale"]
    assert BASELINE not in plan and all(f["heal_after"] == 1 for f in plan.values())
    u = faulty.universe
    eligible = u[u["asset_class"].isin(["equity", "etf", "bond_etf"]) & u["delisted"].isna()
                 & (u["listed"] == u["listed"].min()) & (u.index != BASELINE)]
    top = eligible.sort_values("typical_value_traded", ascending=False).index[:4]
    assert set(plan) == set(top)
    # Faults live in bars only: scans are the same with and without them.
    pd.testing.assert_frame_equal(faulty.scan("equity", D, {}), market.scan("equity", D, {}))


def test_fault_settings_errors() -> None:
    tiny = {"n_equities": 2, "n_etfs": 2, "n_crypto": 0, "n_forex": 0}
    assert len(SyntheticMarket(tiny).fault_plan) == 3  # the default plan shrinks to what exists
    with pytest.raises(ValueError, match="faults ask for 4 symbols but only 3 are eligible"):
        SyntheticMarket({**tiny, "faults": {"stale": {"n": 4}}})
    with pytest.raises(ValueError, match="'NYSE:NOPE1' is not in the synthetic universe"):
        SyntheticMarket({"faults": {"stale": {"symbols": ["NYSE:NOPE1"]}}})
    for faults, message in [
        ({"gaps": {"n": 1}}, "faults.gaps: unknown key (not in the schema)"),
        ({"stale": {"n": 1, "heal_after": "soon"}}, "faults.stale.heal_after: Input should be a valid integer (got 'soon')"),
        ({"stale": {"symbols": ["AMEX:IWM"]}, "bad_ticks": {"symbols": ["AMEX:IWM"]}},
         "faults: 'AMEX:IWM' is listed under two fault kinds"),
        ({"missing_bars": {"sessions": 3, "period": 3}}, "faults.missing_bars: period (3) must exceed sessions (3)"),
        ({"bad_ticks": {"kind": "huge"}},
         "faults.bad_ticks.kind: Input should be 'zero', 'negative' or 'spike' (got 'huge')"),
    ]:
        with pytest.raises(ValueError) as err:
            SyntheticMarket({"faults": faults})
        assert str(err.value) == f"synthetic settings: {message}"


# --------------------------------------------------------------------------------------- realism
def test_factor_structure_within_sector_correlation(market: SyntheticMarket) -> None:
    u = market.universe
    equities = u[(u["asset_class"] == "equity") & (u["listed"] <= pd.Timestamp("2021-12-31"))
                 & u["delisted"].isna()].index[:120]
    panel = pd.concat([closes(market, s, dt.date(2022, 1, 1), dt.date(2023, 12, 31)) for s in equities], axis=1)
    corr = panel.pct_change(fill_method=None).iloc[1:].corr().to_numpy()
    sector = u.loc[equities, "sector"].to_numpy()
    same = (sector[:, None] == sector[None, :]) & ~np.eye(len(equities), dtype=bool)
    within, cross = np.nanmean(corr[same]), np.nanmean(corr[sector[:, None] != sector[None, :]])
    assert within > cross + 0.1 and cross > 0.05


def test_crash_and_drawdown_visible_in_spy(market: SyntheticMarket) -> None:
    spy = closes(market, BASELINE, START, dt.date(2025, 12, 31))
    crash = spy["2020-01-01":"2020-12-31"]
    assert (crash / crash.cummax() - 1).min() < -0.20
    tariff = spy["2025-02-01":"2025-05-31"]
    assert (tariff / tariff.cummax() - 1).min() < -0.10
    regime = market.hidden_regime
    assert regime["2020-03-16"] == "stressed" and set(regime.unique()) == {"calm", "normal", "stressed"}


def test_bonds_crypto_venues_and_fx_crosses(market: SyntheticMarket) -> None:
    span = (dt.date(2021, 1, 1), dt.date(2023, 12, 31))
    spy_r = closes(market, BASELINE, *span).pct_change(fill_method=None)
    for bond in ("AMEX:TLT", "NASDAQ:IEF", "NASDAQ:SHY"):
        r = closes(market, bond, *span).pct_change(fill_method=None)
        assert abs(spy_r.corr(r)) < 0.3
    assert spy_r.corr(closes(market, "AMEX:HYG", *span).pct_change(fill_method=None)) > 0.3
    binance = closes(market, "BINANCE:BTCUSDT", *span)
    coinbase = closes(market, "COINBASE:BTCUSD", *span)
    assert ((binance / coinbase - 1).abs() < 0.005).all()
    eurusd, usdjpy, eurjpy = (closes(market, s, *span) for s in ("FX:EURUSD", "FX:USDJPY", "FX:EURJPY"))
    assert ((eurusd * usdjpy / eurjpy - 1).abs() < 0.002).all()


# --------------------------------------------------------------------------------------- scanner
def test_scan_contents(market: SyntheticMarket) -> None:
    equity = market.scan("equity", D, {})
    assert list(equity.columns) == list(SCAN_RESULT_COLUMNS) and set(SCAN_COLUMNS) <= set(equity.columns)
    assert BASELINE in set(equity["symbol"]) and set(equity["type"]) == {"stock", "fund"}
    assert (equity["direction"] == "long").all()
    bond = market.scan("bond", D, {})
    assert set(bond["symbol"]) == set(market.universe.query("asset_class == 'bond_etf'").index)
    assert not set(bond["symbol"]) & set(equity["symbol"])
    assert set(market.scan("crypto", D, {})["type"]) == {"crypto"}
    assert set(market.scan("forex", D, {})["type"]) == {"forex"}
    assert equity["Recommend.All"].between(-1, 1).all()
    assert equity["ADX"].notna().mean() > 0.9 and (equity["ADX"].dropna() > 0).all()
    # Trending names both ways, so long and short scanners both find candidates.
    assert (equity["Perf.3M"] > 10).sum() >= 5 and (equity["Perf.3M"] < -10).sum() >= 5
    assert market.scan("futures", D, {}).empty


def test_scan_fields_agree_with_bars(market: SyntheticMarket) -> None:
    row = market.scan("equity", D, {}).set_index("symbol").loc[BASELINE]
    bars = market.bars(BASELINE, dt.date(2022, 1, 1), D)
    c = bars["close"].to_numpy()
    assert row["close"] == c[-1] and row["volume"] == bars["volume"].iloc[-1]
    assert row["Value.Traded"] == pytest.approx(c[-1] * bars["volume"].iloc[-1])
    for name, n in (("Perf.W", 5), ("Perf.1M", 21), ("Perf.3M", 63), ("Perf.6M", 126), ("Perf.Y", 252)):
        assert row[name] == pytest.approx(100 * (c[-1] / c[-1 - n] - 1), rel=1e-12)
    tail = bars.tail(300)
    fields = indicator_matrix(*(tail[k].to_numpy()[:, None] for k in ("high", "low", "close", "volume")))
    assert row["ATR"] == pytest.approx(fields["ATR"][0], rel=1e-12)
    assert row["ADX"] == pytest.approx(fields["ADX"][0], rel=1e-12)


def test_metadata(market: SyntheticMarket) -> None:
    meta = market.metadata([BASELINE, "AMEX:XLK", "AMEX:TLT", "BINANCE:BTCUSDT", "FX:EURUSD", "NYSE:NOPE1"])
    assert list(meta.columns) == ["asset_class", "calendar", "sector", "industry", "description", "currency"]
    assert list(meta["asset_class"].iloc[:5]) == ["etf", "etf", "bond_etf", "crypto", "forex"]
    assert list(meta["calendar"].iloc[:5]) == ["XNYS", "XNYS", "XNYS", "24/7", "24/5"]
    assert pd.isna(meta.loc[BASELINE, "sector"]) and meta.loc["AMEX:XLK", "sector"] == "Technology"
    assert meta.loc["NYSE:NOPE1"].isna().all()


SCREEN = pd.DataFrame({
    "symbol": ["A:A", "B:B", "C:C", "D:D", "E:E"],
    "type": ["stock", "fund", "stock", "stock", None],
    "close": [10.0, 20.0, np.nan, 5.0, 30.0],
    "Value.Traded": [100.0, 50.0, 70.0, 300.0, 10.0],
    "Perf.W": [1.0, -2.0, 3.0, -1.0, 0.5],
    "Perf.1M": [2.0, -3.0, 1.0, -4.0, 1.0],
    "Perf.3M": [5.0, -1.0, np.nan, -6.0, -1.0],
    "change": [0.5, -0.2, 0.1, -0.3, 0.2],
})


@pytest.mark.parametrize(("condition", "expected"), [
    ({"left": "close", "operation": "greater", "right": 10}, ["B:B", "E:E"]),
    ({"left": "close", "operation": "egreater", "right": 10}, ["A:A", "B:B", "E:E"]),
    ({"left": "close", "operation": "less", "right": 10}, ["D:D"]),
    ({"left": "close", "operation": "eless", "right": 10}, ["A:A", "D:D"]),
    ({"left": "close", "operation": "in_range", "right": [5, 20]}, ["A:A", "B:B", "D:D"]),
    ({"left": "close", "operation": "not_in_range", "right": [5, 20]}, ["E:E"]),
    ({"left": "type", "operation": "in_range", "right": ["fund", "dr"]}, ["B:B"]),
    ({"left": "type", "operation": "equal", "right": "stock"}, ["A:A", "C:C", "D:D"]),
    ({"left": "type", "operation": "nequal", "right": "stock"}, ["B:B"]),
    ({"left": "close", "operation": "nempty"}, ["A:A", "B:B", "D:D", "E:E"]),
    ({"left": "type", "operation": "empty"}, ["E:E"]),
    ({"left": "Perf.W", "operation": "greater", "right": "Perf.1M"}, ["B:B", "C:C", "D:D"]),
])
def test_scanner_filter_operations(condition: dict, expected: list[str]) -> None:
    assert list(apply_scanner_query(SCREEN, [condition])["symbol"]) == expected


def test_scanner_sort_range_and_errors() -> None:
    by_value = apply_scanner_query(SCREEN, None, {"sortBy": "Value.Traded", "sortOrder": "desc"}, [1, 3])
    assert list(by_value["symbol"]) == ["A:A", "C:C"]
    asc = apply_scanner_query(SCREEN, None, {"sortBy": "close", "sortOrder": "asc"})
    assert list(asc["symbol"]) == ["D:D", "A:A", "B:B", "E:E", "C:C"]  # NaN last
    both = apply_scanner_query(SCREEN, [{"left": "type", "operation": "equal", "right": "stock"},
                                        {"left": "Perf.3M", "operation": "greater", "right": 0}])
    assert list(both["symbol"]) == ["A:A"]
    with pytest.raises(ValueError, match="unknown operation 'like'"):
        apply_scanner_query(SCREEN, [{"left": "close", "operation": "like", "right": 1}])
    with pytest.raises(ValueError, match="unknown column 'RSI'"):
        apply_scanner_query(SCREEN, [{"left": "RSI", "operation": "greater", "right": 1}])
    with pytest.raises(ValueError, match="unknown column 'RSI' \\(sortBy\\)"):
        apply_scanner_query(SCREEN, None, {"sortBy": "RSI"})
    with pytest.raises(ValueError, match="range must be"):
        apply_scanner_query(SCREEN, None, None, [5, 1])


def test_presets_direction_limit_screens_and_timeframes() -> None:
    short = apply_preset(SCREEN, {"direction": "short", "sort": {"sortBy": "Perf.3M", "sortOrder": "asc"}, "limit": 2})
    assert list(short["symbol"]) == ["D:D", "B:B"] and set(short["direction"]) == {"short"}
    mtf_long = apply_preset(SCREEN, {"direction": "long", "timeframes": ["1M", "1W", "1D"]})
    assert list(mtf_long["symbol"]) == ["A:A"]
    mtf_short = apply_preset(SCREEN, {"direction": "short", "timeframes": ["1M", "1W", "1D"]})
    assert list(mtf_short["symbol"]) == ["B:B", "D:D"]
    both = apply_preset(SCREEN, {"timeframes": ["1M"], "screens": [{"direction": "long"}, {"direction": "short"}]})
    assert dict(zip(both["symbol"], both["direction"], strict=True)) == {"A:A": "long", "B:B": "short", "D:D": "short"}
    fixed = apply_preset(SCREEN.assign(direction=["short", None, None, "long", None]), {"direction": "long"})
    assert "A:A" not in set(fixed["symbol"]) and "D:D" in set(fixed["symbol"])
    with pytest.raises(ValueError, match="direction must be 'long' or 'short'"):
        apply_preset(SCREEN, {"direction": "up"})
    with pytest.raises(ValueError, match="unknown timeframe '4H'"):
        apply_preset(SCREEN, {"timeframes": ["4H"]})


def test_forex_multi_timeframe_scan(market: SyntheticMarket) -> None:
    preset = {"timeframes": ["1M", "1W", "1D"], "screens": [{"direction": "long"}, {"direction": "short"}]}
    rows = market.scan("forex", D, preset)
    all_rows = market.scan("forex", D, {})
    assert 0 < len(rows) < len(all_rows)
    sign = np.where(rows["direction"] == "long", 1.0, -1.0)
    for column in ("Perf.1M", "Perf.3M", "Perf.W", "change"):
        assert (sign * rows[column] > 0).all()


# ------------------------------------------------------------------------------------------ scale
def test_scale_smoke_20000_equities() -> None:
    m = SyntheticMarket({"n_equities": 20_000, "n_crypto": 0, "n_forex": 0, **NO_FAULTS})
    t0 = time.perf_counter()
    rows = m.scan("equity", D, {"sort": {"sortBy": "Value.Traded"}})
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    m.scan("equity", D + dt.timedelta(days=3), {})
    second = time.perf_counter() - t0
    t0 = time.perf_counter()
    m.bars(rows["symbol"].iloc[0], dt.date(2022, 1, 1), D)
    one = time.perf_counter() - t0
    print(f"\nscan 20k equities: first {first:.2f}s (incl. checkpoints), next date {second:.2f}s; "
          f"bars one symbol {one * 1000:.1f}ms; rows {len(rows)}")
    assert len(rows) > 15_000 and rows["Value.Traded"].is_monotonic_decreasing
