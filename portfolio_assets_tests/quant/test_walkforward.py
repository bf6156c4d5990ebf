"""Walk-forward windows, the per-engine unit and its no-look-ahead guarantee."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.manifest import BacktestConfig
from portfolio_assets.quant.simulate import SIMULATORS, simulator_params
from portfolio_assets.quant.walkforward import (
    EngineWalkForward,
    WeightsDecision,
    Window,
    make_windows,
    run_engine_walkforward,
    run_walkforward,
    summary_table,
)

N_SESSIONS, N_ASSETS = 500, 8
BT = BacktestConfig()  # the manifest's 252 / 20 / 20
SIM = simulator_params(BT)


@pytest.fixture(scope="module")
def market() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(11)
    idx = pd.DatetimeIndex(pd.bdate_range("2022-01-03", periods=N_SESSIONS), name="session")
    cols = [f"NYSE:S{i}" for i in range(N_ASSETS)]
    vols = np.linspace(0.005, 0.03, N_ASSETS)
    returns = pd.DataFrame(rng.normal(0.0003, 1.0, (N_SESSIONS, N_ASSETS)) * vols, index=idx, columns=cols)
    directions = pd.Series(["long"] * 6 + ["short"] * 2, index=cols)
    return returns, directions


def inverse_vol(window: Window, train: pd.DataFrame) -> WeightsDecision:
    """w_i = (1/sigma_i) / sum_j (1/sigma_j) on the train rows."""
    inv = 1.0 / train.std(ddof=1)
    return WeightsDecision(inv / inv.sum(), {"k": window.k, "fallbacks": []})


def test_windows_for_500_sessions() -> None:
    sessions = pd.bdate_range("2022-01-03", periods=500)
    windows = make_windows(sessions, BT.train, BT.test, BT.step)
    assert len(windows) == 12  # (500 - 252 - 20) // 20 + 1
    assert [w.k for w in windows] == list(range(12))
    last, first = windows[-1], windows[0]
    assert (last.test_start, last.test_end) == (480, 500)
    assert last.test_last == sessions[-1]  # most recent data is used
    assert (first.train_start, first.train_end, first.test_start, first.test_end) == (8, 260, 260, 280)
    for w in windows:
        assert w.train_end - w.train_start == 252 and w.test_end - w.test_start == 20
        assert w.train_end == w.test_start
        assert w.train_last < w.test_first
        assert (w.train_first, w.train_last) == (sessions[w.train_start], sessions[w.train_end - 1])
        assert (w.test_first, w.test_last) == (sessions[w.test_start], sessions[w.test_end - 1])
    for prev, cur in zip(windows, windows[1:], strict=False):
        assert cur.test_start == prev.test_end  # contiguous, chronological
    assert len(make_windows(sessions[:272], BT.train, BT.test, BT.step)) == 1
    assert len(make_windows(sessions, BT.train, 20, 30)) == (500 - 272) // 30 + 1


def test_too_short_history_and_bad_parameters_are_refused() -> None:
    sessions = pd.bdate_range("2022-01-03", periods=271)
    with pytest.raises(
        ValueError, match=r"^history has 271 sessions; walk-forward needs at least train \+ test = 272$"
    ):
        make_windows(sessions, BT.train, BT.test, BT.step)
    with pytest.raises(ValueError, match="overlapping test windows"):
        make_windows(pd.bdate_range("2022-01-03", periods=500), BT.train, BT.test, 10)
    with pytest.raises(ValueError, match="strictly increasing"):
        make_windows(pd.bdate_range("2022-01-03", periods=500)[::-1], BT.train, BT.test, BT.step)
    with pytest.raises(ValueError, match="train must be a positive integer"):
        make_windows(pd.bdate_range("2022-01-03", periods=500), 0, BT.test, BT.step)


def test_fit_sees_only_train_rows_and_diagnostics_are_kept(market) -> None:
    returns, directions = market
    windows = make_windows(returns.index, BT.train, BT.test, BT.step)
    seen: list[tuple[pd.Timestamp, pd.Timestamp, int]] = []

    def recording_fit(window: Window, train: pd.DataFrame) -> WeightsDecision:
        seen.append((train.index.min(), train.index.max(), len(train)))
        return inverse_vol(window, train)

    result = run_engine_walkforward("inverse_vol", returns, directions, windows, recording_fit, SIM)
    assert len(seen) == len(windows)
    for (lo, hi, n), w in zip(seen, windows, strict=True):
        assert (lo, hi, n) == (w.train_first, w.train_last, 252)
        assert hi < w.test_first
    assert [d.diagnostics["k"] for d in result.decisions] == list(range(12))
    assert set(result.simulations) == set(SIMULATORS)


def test_no_look_ahead_future_returns_change_nothing_before(market) -> None:
    returns, directions = market
    windows = make_windows(returns.index, BT.train, BT.test, BT.step)
    base = run_engine_walkforward("inverse_vol", returns, directions, windows, inverse_vol, SIM)
    cut = windows[5].test_end
    shocked = returns.copy()
    shocked.iloc[cut:] = shocked.iloc[cut:] * 3.0 + 0.01
    after = run_engine_walkforward("inverse_vol", shocked, directions, windows, inverse_vol, SIM)

    for name in SIMULATORS:
        for k in range(12):
            a, b = base.simulations[name].windows[k], after.simulations[name].windows[k]
            if k <= 5:
                # Equal up to float reduction order (a copied frame may sum in another order).
                pd.testing.assert_series_equal(a.returns, b.returns, rtol=1e-12, atol=1e-15)
                pd.testing.assert_series_equal(
                    base.decisions[k].weights, after.decisions[k].weights, rtol=1e-12, atol=1e-15
                )
                assert a.traded_notional == pytest.approx(b.traded_notional, rel=1e-12, abs=1e-15)
                assert a.costs_paid == pytest.approx(b.costs_paid, rel=1e-12, abs=1e-15)
            else:  # the shock is visible from the next window on, so the check above could fail
                assert np.abs(a.returns.to_numpy() - b.returns.to_numpy()).max() > 1e-4


def test_realized_pays_for_turnover_and_tables_are_consistent(market) -> None:
    returns, directions = market
    windows = make_windows(returns.index, BT.train, BT.test, BT.step)

    def equal(window: Window, train: pd.DataFrame) -> pd.Series:  # bare weights: no diagnostics
        return pd.Series(1.0 / train.shape[1], index=train.columns)

    results = run_walkforward(
        returns, directions, windows, {"inverse_vol": inverse_vol, "equal_weight": equal}, SIM
    )
    assert set(results) == {"inverse_vol", "equal_weight"}
    assert all(isinstance(r, EngineWalkForward) for r in results.values())
    assert results["equal_weight"].decisions[0].diagnostics == {}

    table = summary_table(results)
    assert len(table) == 4 and set(table["simulator"]) == set(SIMULATORS)
    for engine, res in results.items():
        ideal, real = res.simulations["idealized"], res.simulations["realized"]
        assert len(real.returns) == 12 * 20
        assert real.returns.index[-1] == returns.index[-1]
        assert real.costs_paid > 0 and ideal.costs_paid == 0
        assert real.turnover_one_way == pytest.approx(ideal.turnover_one_way)
        summary = res.summary()
        assert summary.loc["realized", "total_return"] < summary.loc["idealized", "total_return"]
        per_window = res.window_table()
        assert len(per_window) == 24
        real_rows = per_window[per_window["simulator"] == "realized"]
        assert real_rows["costs_paid"].sum() == pytest.approx(summary.loc["realized", "costs_paid"])
        assert real_rows["turnover_one_way"].iloc[0] == pytest.approx(1.0)  # built from cash
        frame = res.returns_frame()
        assert list(frame.columns) == list(SIMULATORS) and len(frame) == 240
        assert res.weights_frame().sum(axis=1).to_numpy() == pytest.approx(np.ones(12))
        row = table[(table["engine"] == engine) & (table["simulator"] == "realized")].iloc[0]
        assert row["sharpe"] == pytest.approx(summary.loc["realized", "sharpe"])


def test_engine_unit_refuses_bad_input(market) -> None:
    returns, directions = market
    windows = make_windows(returns.index, BT.train, BT.test, BT.step)
    calls = []

    def counting_fit(window: Window, train: pd.DataFrame) -> WeightsDecision:
        calls.append(window.k)
        return inverse_vol(window, train)

    with pytest.raises(ValueError, match="unknown simulator 'paper'"):
        run_engine_walkforward("x", returns, directions, windows, counting_fit, SIM, simulators=("paper",))
    assert calls == []  # refused before any fitting

    def half_invested(window: Window, train: pd.DataFrame) -> pd.Series:
        return pd.Series(0.5 / train.shape[1], index=train.columns)

    with pytest.raises(ValueError, match=r"engine 'half' window 0: target weights must sum to 1"):
        run_engine_walkforward("half", returns, directions, windows, half_invested, SIM)
    with pytest.raises(ValueError, match="fit must return WeightsDecision or pd.Series"):
        run_engine_walkforward("dict", returns, directions, windows, lambda w, t: {"NYSE:S0": 1.0}, SIM)
    with pytest.raises(ValueError, match="different session index"):
        run_engine_walkforward("x", returns.iloc[1:], directions, windows[:-1], counting_fit, SIM)
