"""Metrics against QuantStats 0.0.86 and hand computations; degenerate inputs give NaN quietly."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.quant import metrics as m


@pytest.fixture(scope="module")
def qs():
    """QuantStats' stats module, imported lazily (it is heavy) with matplotlib's font chatter off."""
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    import quantstats

    return quantstats.stats


@pytest.fixture(scope="module")
def series() -> pd.Series:
    """750 seeded daily returns on a business-day index, with a few exactly flat days."""
    rng = np.random.default_rng(20240501)
    values = rng.standard_t(df=4, size=750) * 0.009 + 0.0004
    values[[10, 200, 201, 640]] = 0.0
    index = pd.bdate_range("2021-01-04", periods=750, name="session")
    return pd.Series(values, index=index, name="strategy")


def test_matches_quantstats(qs, series: pd.Series) -> None:
    # cagr: QuantStats 0.0.86 counts years as observations / periods (not calendar days), so with
    # periods=252 it is exactly our definition.
    assert m.total_return(series) == pytest.approx(qs.comp(series), rel=1e-12)
    assert m.cagr(series) == pytest.approx(qs.cagr(series, periods=252), rel=1e-12)
    assert m.ann_vol(series) == pytest.approx(qs.volatility(series, periods=252), rel=1e-12)
    assert m.sharpe(series) == pytest.approx(qs.sharpe(series, periods=252), rel=1e-12)
    assert m.sortino(series) == pytest.approx(qs.sortino(series, periods=252), rel=1e-12)
    assert m.max_drawdown(series) == pytest.approx(qs.max_drawdown(series), rel=1e-12)
    assert m.calmar(series) == pytest.approx(qs.calmar(series, periods=252), rel=1e-12)
    assert m.win_rate(series) == pytest.approx(qs.win_rate(series), rel=1e-12)
    assert m.cvar_95(series) == pytest.approx(
        qs.conditional_value_at_risk(series, method="historical"), rel=1e-12
    )
    # With a risk-free rate both de-annualize it as (1 + rf) ** (1 / 252) - 1.
    assert m.sharpe(series, rf=0.03) == pytest.approx(qs.sharpe(series, rf=0.03, periods=252), rel=1e-12)
    assert m.sortino(series, rf=0.03) == pytest.approx(qs.sortino(series, rf=0.03, periods=252), rel=1e-12)


def test_var_is_historical_not_quantstats_parametric(qs, series: pd.Series) -> None:
    from scipy.stats import norm

    x = np.sort(series.to_numpy())
    h = (len(x) - 1) * 0.05  # linear interpolation between order statistics
    lo = math.floor(h)
    hand = x[lo] + (h - lo) * (x[lo + 1] - x[lo])
    assert m.var_95(series) == pytest.approx(hand, rel=1e-12)
    assert m.var_95(series) < 0  # reported as a (negative) return
    assert m.cvar_95(series) == pytest.approx(x[x <= hand].mean(), rel=1e-12)
    assert m.cvar_95(series) <= m.var_95(series)
    # QuantStats' value_at_risk is the normal quantile -- a different estimator, not compared.
    parametric = norm.ppf(0.05, series.mean(), series.std())
    assert qs.value_at_risk(series) == pytest.approx(parametric, rel=1e-12)
    assert abs(m.var_95(series) - parametric) > 1e-5


def test_hand_computed_drawdown_cagr_and_win_rate() -> None:
    r = pd.Series([0.10, -0.20, 0.05, -0.10])
    # wealth 1.1, 0.88, 0.924, 0.8316; peak 1.1
    assert m.max_drawdown(r) == pytest.approx(0.8316 / 1.1 - 1)
    assert m.max_drawdown([-0.10, 0.05]) == pytest.approx(-0.10)  # first-day loss counts
    assert m.total_return(r) == pytest.approx(0.8316 - 1)
    assert m.cagr([0.001] * 126) == pytest.approx(1.001**252 - 1)  # half a year, annualized
    assert m.calmar(r) == pytest.approx(m.cagr(r) / (1 - 0.8316 / 1.1))
    assert m.win_rate([0.01, 0.0, -0.02, 0.03, 0.0]) == pytest.approx(2 / 3)
    assert m.sortino([0.02, -0.01, 0.0, -0.03]) == pytest.approx(
        (-0.02 / 4) / math.sqrt((0.01**2 + 0.03**2) / 4) * math.sqrt(252)
    )


def test_nan_days_are_dropped_not_treated_as_flat(series: pd.Series) -> None:
    holed = series.copy()
    holed.iloc[[3, 50, 400]] = np.nan
    dropped = series.drop(series.index[[3, 50, 400]])
    got, want = m.summarize(holed), m.summarize(dropped)
    assert got == pytest.approx(want, nan_ok=True)
    assert got["n_days"] == 747


@pytest.mark.parametrize(
    ("returns", "nan_keys", "finite"),
    [
        ([], set(m.METRIC_COLUMNS) - {"n_days"}, {"n_days": 0.0}),
        (
            [0.0] * 30,
            {"sharpe", "sortino", "calmar", "win_rate", "turnover_one_way", "costs_paid"},
            {"ann_vol": 0.0, "max_drawdown": 0.0, "cagr": 0.0},
        ),
        (
            [0.001] * 30,
            {"sharpe", "sortino", "calmar", "turnover_one_way", "costs_paid"},
            {"win_rate": 1.0, "max_drawdown": 0.0},
        ),
        ([-0.02], {"ann_vol", "sharpe", "turnover_one_way", "costs_paid"}, {"max_drawdown": -0.02}),
    ],
)
def test_degenerate_inputs_give_nan_without_warnings(
    returns: list[float], nan_keys: set[str], finite: dict[str, float]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = m.summarize(pd.Series(returns, dtype=float))
    assert {k for k, v in out.items() if math.isnan(v)} == nan_keys
    for key, value in finite.items():
        assert out[key] == pytest.approx(value, abs=1e-15)


def test_infinite_return_is_refused() -> None:
    with pytest.raises(ValueError, match="inf"):
        m.sharpe([0.01, np.inf])


def test_summarize_and_table_carry_turnover_and_costs(series: pd.Series) -> None:
    out = m.summarize(series, turnover=3.5, costs=0.0021)
    assert tuple(out) == m.METRIC_COLUMNS
    assert out["turnover_one_way"] == 3.5
    assert out["costs_paid"] == 0.0021
    table = m.metrics_table({"a": series, "b": series * 0.5}, turnover={"a": 1.0}, costs={"b": 0.01})
    assert list(table.index) == ["a", "b"]
    assert list(table.columns) == list(m.METRIC_COLUMNS)
    assert table.loc["a", "sharpe"] == pytest.approx(table.loc["b", "sharpe"])  # scale-free
    assert table.loc["b", "ann_vol"] == pytest.approx(0.5 * table.loc["a", "ann_vol"])
    assert table.loc["a", "turnover_one_way"] == 1.0 and math.isnan(table.loc["b", "turnover_one_way"])
    assert table.loc["b", "costs_paid"] == 0.01 and math.isnan(table.loc["a", "costs_paid"])
