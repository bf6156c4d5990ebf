"""Simulators: hand-computed drift and costs, carried holdings, NaN policy, refusal of bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.manifest import BacktestConfig
from portfolio_assets.quant.simulate import SIMULATORS, SimulatorParams, simulate, simulator_params
from portfolio_assets.quant.walkforward import make_windows

A, B = "NYSE:AAA", "NASDAQ:BBB"
COST = 6e-4  # 5 bps slippage + 1 bp commission
BORROW = 50e-4 / 252  # 50 bps a year, per session
PARAMS = simulator_params(BacktestConfig())  # the manifest's frictions: 5 + 1 bps, 50 bps borrow


def _two_asset_case() -> tuple[pd.DataFrame, pd.Series, list, list[pd.Series]]:
    """2 train rows + 2 windows of 2 test days; A long, B short-direction (synthetic-long stream)."""
    idx = pd.DatetimeIndex(pd.bdate_range("2024-01-01", periods=6), name="session")
    returns = pd.DataFrame(
        {
            A: [0.0, 0.0, 0.10, -0.05, 0.02, -0.01],
            B: [0.0, 0.0, 0.00, 0.10, -0.04, 0.03],
        },
        index=idx,
    )
    directions = pd.Series({A: "long", B: "short"})
    windows = make_windows(idx, train=2, test=2, step=2)
    targets = [pd.Series({A: 0.6, B: 0.4}), pd.Series({A: 0.5, B: 0.5})]
    return returns, directions, windows, targets


# Hand computation of the two-asset case (plain arithmetic, no library helper).
# Window 0: book 0.6 / 0.4 built from cash.
DAY1 = 0.6 * 0.10 + 0.4 * 0.00  # 0.06
A1, B1 = 0.6 * 1.10 / 1.06, 0.4 * 1.00 / 1.06  # drifted weights after day 1
DAY2 = A1 * -0.05 + B1 * 0.10
END_A, END_B = 0.6 * 1.10 * 0.95, 0.4 * 1.00 * 1.10
END_A, END_B = END_A / (END_A + END_B), END_B / (END_A + END_B)  # 0.587629 / 0.412371
# Window 1: rebalance from the drifted book to 0.5 / 0.5.
TRADED_1 = abs(0.5 - END_A) + abs(0.5 - END_B)
DAY3 = 0.5 * 0.02 + 0.5 * -0.04  # -0.01
A3, B3 = 0.5 * 1.02 / 0.99, 0.5 * 0.96 / 0.99
DAY4 = A3 * -0.01 + B3 * 0.03


def test_idealized_drifts_weights_with_prices() -> None:
    returns, directions, windows, targets = _two_asset_case()
    result = simulate("idealized", returns, directions, windows, targets, PARAMS)

    np.testing.assert_allclose(result.returns.to_numpy(), [DAY1, DAY2, DAY3, DAY4], rtol=0, atol=1e-15)
    assert list(result.returns.index) == list(returns.index[2:])
    assert result.returns.index.name == "session"
    w0 = result.windows[0]
    assert w0.end_weights[A] == pytest.approx(END_A, abs=1e-15)
    assert w0.end_weights[B] == pytest.approx(END_B, abs=1e-15)
    assert result.costs_paid == 0.0
    # Turnover is reported even without friction: the build from cash is one-way 1.0.
    assert w0.turnover_one_way == pytest.approx(1.0)
    assert result.windows[1].turnover_one_way == pytest.approx(0.5 * TRADED_1)


def test_realized_charges_trading_and_borrow_on_carried_book() -> None:
    returns, directions, windows, targets = _two_asset_case()
    result = simulate("realized", returns, directions, windows, targets, PARAMS)

    expected = [
        DAY1 - COST * 1.0 - BORROW * 0.4,  # empty book -> notional 1.0; borrow on B's start weight
        DAY2 - BORROW * B1,
        DAY3 - COST * TRADED_1 - BORROW * 0.5,  # trade from the *drifted* book, not the old target
        DAY4 - BORROW * B3,
    ]
    np.testing.assert_allclose(result.returns.to_numpy(), expected, rtol=0, atol=1e-15)

    w0, w1 = result.windows
    assert w0.traded_notional == pytest.approx(1.0)
    assert w1.traded_notional == pytest.approx(TRADED_1)
    # Carrying holdings matters: trading from the old target would have cost 6 bps * 0.2 instead.
    assert TRADED_1 == pytest.approx(0.175258, abs=1e-6)
    assert w0.trading_cost == pytest.approx(COST)
    assert w1.trading_cost == pytest.approx(COST * TRADED_1)
    assert w0.borrow_cost == pytest.approx(BORROW * (0.4 + B1))
    assert w1.borrow_cost == pytest.approx(BORROW * (0.5 + B3))
    assert result.costs_paid == pytest.approx(COST * (1.0 + TRADED_1) + BORROW * (0.4 + B1 + 0.5 + B3))
    assert result.turnover_one_way == pytest.approx(1.0 + 0.5 * TRADED_1)


def test_realized_without_friction_equals_idealized_and_longs_pay_no_borrow() -> None:
    returns, directions, windows, targets = _two_asset_case()
    free = SimulatorParams(slippage_bps=0.0, commission_bps=0.0, borrow_bps_annual=0.0)
    ideal = simulate("idealized", returns, directions, windows, targets, PARAMS)
    realized_free = simulate("realized", returns, directions, windows, targets, free)
    pd.testing.assert_series_equal(ideal.returns, realized_free.returns, check_names=False)

    all_long = pd.Series({A: "long", B: "long"})
    realized = simulate("realized", returns, all_long, windows, targets, PARAMS)
    assert sum(w.borrow_cost for w in realized.windows) == 0.0
    diff = (ideal.returns - realized.returns).to_numpy()
    np.testing.assert_allclose(diff, [COST, 0.0, COST * TRADED_1, 0.0], atol=1e-15)


def test_nan_return_of_held_stream_is_zero_and_counted() -> None:
    returns, directions, windows, targets = _two_asset_case()
    returns.iloc[3, 0] = np.nan  # A on day 2 (held)
    returns["NYSE:UNHELD"] = [0.0, 0.0, np.nan, np.nan, 0.0, 0.0]
    directions["NYSE:UNHELD"] = "long"
    result = simulate("idealized", returns, directions, windows, targets, PARAMS)
    assert result.windows[0].nan_returns_held == 1
    assert result.nan_returns_held == 1
    assert result.returns.iloc[1] == pytest.approx(A1 * 0.0 + B1 * 0.10, abs=1e-15)
    assert result.returns.notna().all()


def _loop_reference(
    returns: np.ndarray, short: np.ndarray, spans: list[tuple[int, int]], targets: list[np.ndarray]
) -> np.ndarray:
    """Day-by-day recursion of the realized simulator, written independently of the module."""
    book = np.zeros(returns.shape[1])
    out = []
    for (start, end), target in zip(spans, targets, strict=True):
        traded = np.abs(target - book).sum()
        w = target.copy()
        for t in range(start, end):
            r = returns[t]
            rp = float(w @ r)
            cost = 50e-4 / 252 * w[short].sum() + (6e-4 * traded if t == start else 0.0)
            out.append(rp - cost)
            w = w * (1 + r) / (1 + rp)
        book = w
    return np.array(out)


def test_realized_matches_daily_recursion_on_random_book() -> None:
    rng = np.random.default_rng(7)
    idx = pd.DatetimeIndex(pd.bdate_range("2023-01-02", periods=40), name="session")
    cols = [f"NYSE:S{i}" for i in range(6)]
    values = rng.normal(0.0005, 0.02, (40, 6))
    returns = pd.DataFrame(values, index=idx, columns=cols)
    directions = pd.Series(["long", "short", "long", "short", "long", "long"], index=cols)
    windows = make_windows(idx, train=10, test=5, step=5)
    targets = []
    for _ in windows:
        raw = rng.uniform(0, 1, 6) * (rng.uniform(0, 1, 6) > 0.3)
        raw[0] += 0.1
        targets.append(pd.Series(raw / raw.sum(), index=cols))
    result = simulate("realized", returns, directions, windows, targets, PARAMS)

    expected = _loop_reference(
        values,
        directions.eq("short").to_numpy(),
        [(w.test_start, w.test_end) for w in windows],
        [t.to_numpy() for t in targets],
    )
    assert len(windows) == 6  # (40 - 10 - 5) // 5 + 1
    np.testing.assert_allclose(result.returns.to_numpy(), expected, rtol=1e-12, atol=1e-15)


def test_unknown_simulator_is_refused_not_replaced() -> None:
    returns, directions, windows, targets = _two_asset_case()
    assert SIMULATORS == ("idealized", "realized")
    with pytest.raises(
        ValueError, match=r"unknown simulator 'optimistic'; expected one of \('idealized', 'realized'\)"
    ):
        simulate("optimistic", returns, directions, windows, targets, PARAMS)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (pd.Series({A: 0.5, B: 0.4}), "must sum to 1"),
        (pd.Series({A: 1.2, B: -0.2}), "must be non-negative"),
        (pd.Series({A: np.nan, B: 1.0}), "NaN or inf"),
        (pd.Series({A: 0.5, "NYSE:ZZZ": 0.5}), "not in the returns matrix"),
    ],
)
def test_bad_target_weights_are_refused(weights: pd.Series, message: str) -> None:
    returns, directions, windows, targets = _two_asset_case()
    with pytest.raises(ValueError, match=message):
        simulate("realized", returns, directions, windows, [targets[0], weights], PARAMS)


def test_bad_params_and_missing_direction_are_refused() -> None:
    with pytest.raises(ValueError, match="slippage_bps must be a finite number >= 0"):
        SimulatorParams(slippage_bps=-1.0, commission_bps=1.0, borrow_bps_annual=50.0)
    with pytest.raises(ValueError, match="borrow_bps_annual"):
        SimulatorParams(slippage_bps=5.0, commission_bps=1.0, borrow_bps_annual=float("nan"))
    returns, _, windows, targets = _two_asset_case()
    with pytest.raises(ValueError, match="direction missing"):
        simulate("realized", returns, pd.Series({A: "long"}), windows, targets, PARAMS)
    with pytest.raises(ValueError, match="2 windows but 1 target"):
        simulate("realized", returns, pd.Series({A: "long", B: "long"}), windows, targets[:1], PARAMS)
