"""Tournament planning (`plan_contexts`, windows, point-in-time contexts), the per-window table
(engine used, fallbacks, relaxations, audit) and the summary's fallback counts."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.manifest import Config
from portfolio_assets.quant.engines import engine_params
from portfolio_assets.quant.simulate import SimulatorParams
from portfolio_assets.quant.tournament import (
    CONTEXT_COLUMNS,
    WINDOW_DIAGNOSTICS,
    TodayContext,
    build_streams,
    plan_contexts,
    run_engine_tournament,
    stream_direction,
    stream_id,
    stream_symbol,
    summarize_tournament,
)
from portfolio_assets.quant.walkforward import make_windows
from portfolio_assets_tests.quant.markets import BASELINE, factor_market

TRAIN, TEST = 252, 20
SIM = SimulatorParams(slippage_bps=5.0, commission_bps=1.0, borrow_bps_annual=50.0)


@cache
def _settings():
    from portfolio_assets.assets.validation import tournament_settings

    return tournament_settings(Config())


def _market(n: int = 24, n_buckets: int = 4, windows: int = 3, seed: int = 0):
    returns, buckets = factor_market(n, n_buckets, seed=seed, sessions=TRAIN + windows * TEST)
    returns[BASELINE] = returns.mean(axis=1) + np.random.default_rng(seed).normal(0, 0.002, len(returns))
    buckets[BASELINE] = 1
    return returns, buckets


def _today(symbols, buckets, regime="NORMAL", pool=None):
    universe = pd.Series("long", index=list(symbols))
    return TodayContext(universe=universe, buckets=buckets, regime=regime,
                        raw_pool=universe if pool is None else pool)


def _pool(symbols, directions=None) -> pd.DataFrame:
    d = directions if directions is not None else ["long"] * len(symbols)
    return pd.DataFrame({"direction": d, "identity": list(symbols), "asset_class": "equity",
                         "Value.Traded": np.linspace(1e9, 1e8, len(symbols))}, index=list(symbols))


# ------------------------------------------------------------------------------------ streams


def test_stream_ids_round_trip_and_shorts_are_negated_once_and_clipped():
    assert stream_id("NYSE:A", "long") == "NYSE:A"
    assert stream_id("NYSE:A", "short") == "NYSE:A#short"
    assert (stream_symbol("NYSE:A#short"), stream_direction("NYSE:A#short")) == ("NYSE:A", "short")
    assert (stream_symbol("NYSE:A"), stream_direction("NYSE:A")) == ("NYSE:A", "long")
    raw = pd.DataFrame({"NYSE:A": [0.01, 1.5, np.nan]})
    streams = build_streams(raw, ["NYSE:A", "NYSE:A#short"])
    assert streams["NYSE:A"].tolist()[:2] == [0.01, 1.5]
    assert streams["NYSE:A#short"].tolist()[:2] == [-0.01, -1.0]  # a +150% day costs a short at most 100%
    assert np.isnan(streams["NYSE:A#short"].iloc[2])
    with pytest.raises(ValueError, match=r"no returns for stream symbol\(s\) \['NYSE:B'\]"):
        build_streams(raw, ["NYSE:B#short"])


# ------------------------------------------------------------------------------------ planning


def test_plan_without_point_in_time_uses_todays_context_in_every_window():
    returns, buckets = _market()
    windows = make_windows(returns.index, TRAIN, TEST, TEST)
    assert [w.k for w in windows] == [0, 1, 2]
    cfg = dataclasses.replace(_settings()[0], pit=False)
    universe = list(returns.columns[:5]) + [BASELINE]
    pool = pd.Series(["long", "short"], index=["NYSE:S000", "NYSE:S023"])
    contexts = plan_contexts(windows, returns, BASELINE, cfg,
                             today=_today(universe, buckets.drop("NYSE:S004"), "CRISIS", pool))
    assert list(contexts.columns) == list(CONTEXT_COLUMNS)
    assert len(contexts) == 3 * (6 + 2)
    for _, ctx in contexts.groupby("k"):
        uni = ctx[ctx["role"] == "universe"].set_index("stream")
        assert list(uni.index) == universe
        assert uni.at["NYSE:S004", "bucket"] == 0  # no bucket today: 0, never a guess
        assert uni.at["NYSE:S001", "bucket"] == buckets["NYSE:S001"]
        raw = ctx[ctx["role"] == "raw_pool"]
        assert list(raw["stream"]) == ["NYSE:S000", "NYSE:S023#short"]
        assert set(ctx["regime"]) == {"CRISIS"} and set(ctx["pool_source"]) == {"today"}
    with pytest.raises(ValueError, match="a tournament without point-in-time contexts needs today's context"):
        plan_contexts(windows, returns, BASELINE, cfg)


def test_point_in_time_plan_sees_only_each_windows_train_rows():
    returns, _ = _market(n=24, n_buckets=4, windows=3, seed=5)
    windows = make_windows(returns.index, TRAIN, TEST, TEST)
    cfg = _settings()[0]
    assert cfg.pit
    symbols = [c for c in returns.columns if c != BASELINE]
    pools = {w.k: (_pool(symbols), f"stored {w.train_last.date()}") for w in windows}
    with pytest.raises(ValueError, match="point-in-time tournament needs the raw pool of window 1"):
        plan_contexts(windows, returns, BASELINE, cfg, pools={0: pools[0]})
    plan = plan_contexts(windows, returns, BASELINE, cfg, pools=pools)
    # rewriting everything after window 0's train rows leaves window 0's context unchanged
    future = returns.copy()
    future.iloc[windows[0].train_end:] = future.iloc[windows[0].train_end:].to_numpy()[::-1] * 3.0
    again = plan_contexts(windows[:1], future, BASELINE, cfg, pools=pools)
    pd.testing.assert_frame_equal(plan[plan["k"] == 0].reset_index(drop=True), again.reset_index(drop=True))
    for k, ctx in plan.groupby("k"):
        uni = ctx[ctx["role"] == "universe"]
        assert BASELINE in set(uni["symbol"])  # natural selection always keeps the baseline
        assert (uni["bucket"] >= 1).all()  # re-clustered on the window's own rows
        assert set(ctx["pool_source"]) == {pools[k][1]}
        assert ctx["regime"].nunique() == 1


def test_point_in_time_plan_with_a_one_sided_short_pool():
    returns, _ = _market(n=12, n_buckets=3, windows=1, seed=9)
    windows = make_windows(returns.index, TRAIN, TEST, TEST)
    symbols = [c for c in returns.columns if c != BASELINE]
    pools = {0: (_pool(symbols, ["short"] * len(symbols)), "scanned")}
    plan = plan_contexts(windows, returns, BASELINE, _settings()[0], pools=pools)
    uni = plan[plan["role"] == "universe"]
    assert set(uni.loc[uni["symbol"] != BASELINE, "direction"]) <= {"short"}
    assert all(s.endswith("#short") for s in uni.loc[uni["symbol"] != BASELINE, "stream"])


# ------------------------------------------------------------------------------------ the per-window table


def _run(engine, returns, contexts, cfg=None, params=None):
    tset, eparams, sim, sims = _settings()
    windows = make_windows(returns.index, TRAIN, TEST, TEST)
    streams = build_streams(returns, sorted(set(contexts["stream"])))
    return run_engine_tournament(engine, streams, windows, contexts, BASELINE, cfg or tset, params or eparams,
                                 SIM, sims)


def test_small_universe_windows_record_relaxations_and_the_engine_used():
    """The 2021-06-15 failure: a window with 6 symbols in 3 buckets (caps 0.25 cannot hold the
    book) ran, with the relaxation recorded, instead of raising CapsInfeasibleError."""
    returns, buckets = _market(n=5, n_buckets=3, windows=2, seed=3)
    tset = _settings()[0]
    windows = make_windows(returns.index, TRAIN, TEST, TEST)
    contexts = plan_contexts(windows, returns, BASELINE, dataclasses.replace(tset, pit=False),
                             today=_today(returns.columns, buckets))
    audited = dataclasses.replace(tset, pit=True)  # audit every window
    for engine in ("min_variance", "risk_parity", "hrp", "herc", "max_sharpe", "inverse_vol", "barbell"):
        out = _run(engine, returns, contexts, cfg=audited)
        table = out["windows"]
        assert set(WINDOW_DIAGNOSTICS) <= set(table.columns)
        assert (table["relaxations"] != "").all(), engine
        assert table["relaxations"].str.contains("cluster_cap 0.25 -> ").all()
        assert (table["violations"] == "").all(), (engine, table["violations"].tolist())
        assert table["audit_notes"].str.contains("relaxed: cluster_cap 0.25 -> ").all()
        weights = out["weights"].groupby("k")["weight"].sum()
        np.testing.assert_allclose(weights, 1.0, atol=1e-9)
        if engine == "barbell":
            assert (table["engine_used"] == "barbell").all()  # 3 buckets: barbell runs as barbell


def test_summary_counts_fallback_and_relaxed_windows():
    returns, buckets = _market(n=11, n_buckets=1, windows=2, seed=1)  # one bucket: no barbell core
    tset = dataclasses.replace(_settings()[0], pit=False)
    windows = make_windows(returns.index, TRAIN, TEST, TEST)
    contexts = plan_contexts(windows, returns, BASELINE, tset, today=_today(returns.columns, buckets))
    parts = [_run(e, returns, contexts, cfg=tset) for e in ("barbell", "hrp")]
    win = pd.concat([p["windows"] for p in parts], ignore_index=True)
    rets = pd.concat([p["returns"] for p in parts], ignore_index=True)
    bar = win[win["engine"] == "barbell"]
    assert (bar["engine_used"] == "hrp").all()
    assert bar["fallbacks"].str.startswith("barbell -> hrp: barbell: 1 bucket").all()
    summary = summarize_tournament(win, rets).set_index(["engine", "simulator"])
    for sim in ("idealized", "realized"):
        assert summary.loc[("barbell", sim), "n_fallbacks"] == 2
        assert summary.loc[("barbell", sim), "engines_used"] == "hrp x2"
        assert summary.loc[("hrp", sim), "n_fallbacks"] == 0
        assert summary.loc[("hrp", sim), "n_relaxed"] == 2  # 1 bucket: cluster_cap 0.25 -> 1
    # barbell's row is HRP's under another name, and the table says so
    b = rets[rets["engine"] == "barbell"].set_index(["simulator", "session"])["ret"]
    h = rets[rets["engine"] == "hrp"].set_index(["simulator", "session"])["ret"]
    pd.testing.assert_series_equal(b, h)


def test_late_listing_and_a_symbol_without_data_in_a_window():
    returns, buckets = _market(n=20, n_buckets=4, windows=2, seed=2)
    returns.iloc[:200, 0] = np.nan  # listed late: 52 train rows in window 0 (< 60, dropped), more later
    returns.iloc[:, 1] = np.nan  # never traded in these windows
    tset = dataclasses.replace(_settings()[0], pit=False)
    windows = make_windows(returns.index, TRAIN, TEST, TEST)
    contexts = plan_contexts(windows, returns, BASELINE, tset, today=_today(returns.columns, buckets))
    params = engine_params(Config())
    for engine in ("min_variance", "hrp", "barbell", "risk_parity"):
        out = _run(engine, returns, contexts, cfg=tset, params=params)
        w = out["weights"]
        assert "NYSE:S001" not in set(w["stream"])
        assert "NYSE:S000" not in set(w.loc[w["k"] == 0, "stream"])
        assert "NYSE:S000" in set(w.loc[w["k"] == 1, "stream"])  # 72 rows by window 1: used
