"""Performance metrics of a daily return series.

Every metric is a plain function of a daily simple-return series (`pd.Series` or 1-D array,
fractions: 0.01 = +1%). Conventions, shared by all functions:

* annualization uses `PERIODS_PER_YEAR = 252` sessions, never calendar days;
* `NaN` observations are dropped before computing (a day without a return is not a flat day);
  `n` below is the number of remaining observations;
* the risk-free rate `rf` is an *annual* rate (0 unless given), turned into a daily rate
  `rf_d = (1 + rf) ** (1 / 252) - 1` and subtracted before Sharpe and Sortino (as QuantStats does);
* a degenerate input (empty series, zero volatility, no drawdown, no non-zero day) gives `NaN`
  for the metrics it makes undefined -- never an exception and never a runtime warning.

The definitions match QuantStats 0.0.86 (`qs.stats.*` with `periods=252`) where QuantStats has
the same metric; the differences are stated in each docstring (historical VaR instead of QuantStats'
parametric one; `NaN` instead of QuantStats' `0.0` for undefined drawdown and win rate).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

import numpy as np
import pandas as pd

from portfolio_assets.constants import PERIODS_PER_YEAR

__all__ = ["PERIODS_PER_YEAR"]

VAR_CONFIDENCE = 0.95

METRIC_COLUMNS = (
    "n_days",
    "total_return",
    "cagr",
    "ann_vol",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "var_95",
    "cvar_95",
    "win_rate",
    "turnover_one_way",
    "costs_paid",
)

ReturnsLike: TypeAlias = pd.Series | np.ndarray


def _clean(returns: ReturnsLike) -> np.ndarray:
    """Daily returns as a float array with NaN dropped (and +/-inf rejected)."""
    r = np.asarray(returns, dtype=float).ravel()
    if np.isinf(r).any():
        raise ValueError("returns contain +/-inf; a daily simple return must be finite")
    return r[~np.isnan(r)]


def _daily_rf(rf: float) -> float:
    """Daily risk-free rate from an annual one: `(1 + rf) ** (1 / 252) - 1`."""
    return (1.0 + rf) ** (1.0 / PERIODS_PER_YEAR) - 1.0 if rf else 0.0


def total_return(returns: ReturnsLike) -> float:
    """Compounded total return `prod(1 + r_t) - 1` (fraction). Empty -> NaN."""
    r = _clean(returns)
    return float(np.prod(1.0 + r) - 1.0) if r.size else float("nan")


def cagr(returns: ReturnsLike) -> float:
    """Annualized compounded return `(1 + total_return) ** (252 / n) - 1` (fraction per year).

    Years are counted in sessions (`n / 252`), as QuantStats 0.0.86 does with `periods=252`.
    Empty -> NaN; a negative final wealth (impossible for returns >= -100%) -> NaN.
    """
    r = _clean(returns)
    if not r.size:
        return float("nan")
    wealth = float(np.prod(1.0 + r))
    if wealth < 0:
        return float("nan")
    return wealth ** (PERIODS_PER_YEAR / r.size) - 1.0


def ann_vol(returns: ReturnsLike) -> float:
    """Annualized volatility `std(r, ddof=1) * sqrt(252)` (fraction per year). Fewer than 2 days -> NaN."""
    r = _clean(returns)
    if r.size < 2:
        return float("nan")
    return float(np.std(r, ddof=1) * np.sqrt(PERIODS_PER_YEAR))


def sharpe(returns: ReturnsLike, rf: float = 0.0) -> float:
    """Annualized Sharpe ratio `mean(x) / std(x, ddof=1) * sqrt(252)`, `x = r - rf_d` (dimensionless).

    Fewer than 2 days or zero volatility -> NaN.
    """
    x = _clean(returns) - _daily_rf(rf)
    if x.size < 2:
        return float("nan")
    sd = float(np.std(x, ddof=1))
    # Relative tolerance: a constant series has a float-noise std, not a real one.
    if sd <= 1e-14 * max(1.0, float(np.abs(x).max())):
        return float("nan")
    return float(x.mean() / sd * np.sqrt(PERIODS_PER_YEAR))


def sortino(returns: ReturnsLike, rf: float = 0.0) -> float:
    """Annualized Sortino ratio, QuantStats' definition (Red Rock Capital).

    `downside_dev = sqrt(sum(min(x_t, 0) ** 2) / n)` (daily; `n` counts *all* days, not only the
    losing ones), `sortino = mean(x) / downside_dev * sqrt(252)`, with `x = r - rf_d`.
    Empty or no losing day -> NaN.
    """
    x = _clean(returns) - _daily_rf(rf)
    if not x.size:
        return float("nan")
    downside = float(np.sqrt(np.sum(np.minimum(x, 0.0) ** 2) / x.size))
    if downside == 0.0:
        return float("nan")
    return float(x.mean() / downside * np.sqrt(PERIODS_PER_YEAR))


def max_drawdown(returns: ReturnsLike) -> float:
    """Maximum drawdown of compounded wealth, a number <= 0 (fraction of the running peak).

    `W_t = prod_{s<=t}(1 + r_s)` with `W_0 = 1` before the first day;
    `max_drawdown = min_t W_t / max(1, max_{s<=t} W_s) - 1`. The starting wealth counts as a peak,
    so a loss on the first day is a drawdown (QuantStats' phantom baseline does the same).
    Empty -> NaN (QuantStats returns 0.0).
    """
    r = _clean(returns)
    if not r.size:
        return float("nan")
    wealth = np.cumprod(1.0 + r)
    peak = np.maximum.accumulate(np.maximum(wealth, 1.0))
    return float(np.min(wealth / peak) - 1.0)


def calmar(returns: ReturnsLike) -> float:
    """Calmar ratio `cagr / |max_drawdown|` (dimensionless). No drawdown or empty -> NaN."""
    mdd = max_drawdown(returns)
    if not mdd or np.isnan(mdd):
        return float("nan")
    return cagr(returns) / abs(mdd)


def var_95(returns: ReturnsLike) -> float:
    """Historical daily Value at Risk at 95%: the 5% quantile of daily returns (linear interpolation).

    Sign: reported as a *return*, so a loss is negative (-0.02 = "on the worst 5% of days the book
    lost at least 2%"). Historical, not QuantStats' `value_at_risk`, which is parametric (normal).
    Empty -> NaN.
    """
    r = _clean(returns)
    if not r.size:
        return float("nan")
    return float(np.quantile(r, 1.0 - VAR_CONFIDENCE))


def cvar_95(returns: ReturnsLike) -> float:
    """Historical daily Conditional VaR (expected shortfall) at 95%: mean of the returns `<= var_95`.

    Same sign convention as `var_95` (a negative return; `cvar_95 <= var_95`). Equals QuantStats'
    `conditional_value_at_risk(method="historical")`. Empty -> NaN.
    """
    r = _clean(returns)
    if not r.size:
        return float("nan")
    tail = r[r <= np.quantile(r, 1.0 - VAR_CONFIDENCE)]
    return float(tail.mean())


def win_rate(returns: ReturnsLike) -> float:
    """Share of winning days among days with a non-zero return: `#(r > 0) / #(r != 0)` (fraction).

    QuantStats' definition (flat days are neither wins nor losses). No non-zero day -> NaN
    (QuantStats returns 0.0 with a warning).
    """
    r = _clean(returns)
    nonzero = int(np.count_nonzero(r))
    if not nonzero:
        return float("nan")
    return float(np.count_nonzero(r > 0) / nonzero)


def summarize(
    returns: ReturnsLike,
    turnover: float = float("nan"),
    costs: float = float("nan"),
    rf: float = 0.0,
) -> dict[str, float]:
    """All metrics of one daily return series, keyed as `METRIC_COLUMNS`.

    `turnover` (one-way, fraction of NAV) and `costs` (fraction of NAV) are not derivable from the
    return series; the simulator passes them in and they are reported as `turnover_one_way` and
    `costs_paid`. `n_days` is the number of non-NaN observations.
    """
    r = _clean(returns)
    return {
        "n_days": float(r.size),
        "total_return": total_return(r),
        "cagr": cagr(r),
        "ann_vol": ann_vol(r),
        "sharpe": sharpe(r, rf),
        "sortino": sortino(r, rf),
        "max_drawdown": max_drawdown(r),
        "calmar": calmar(r),
        "var_95": var_95(r),
        "cvar_95": cvar_95(r),
        "win_rate": win_rate(r),
        "turnover_one_way": float(turnover),
        "costs_paid": float(costs),
    }


def metrics_table(
    series: Mapping[str, ReturnsLike],
    turnover: Mapping[str, float] | None = None,
    costs: Mapping[str, float] | None = None,
    rf: float = 0.0,
) -> pd.DataFrame:
    """One row per named return series (index `name`), columns `METRIC_COLUMNS`.

    `turnover` and `costs` map a name to its one-way turnover and costs paid; a name missing from
    them gets NaN (unknown, not zero).
    """
    turnover = turnover or {}
    costs = costs or {}
    rows = {
        name: summarize(r, turnover.get(name, float("nan")), costs.get(name, float("nan")), rf)
        for name, r in series.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(METRIC_COLUMNS))
    table.index.name = "name"
    return table
