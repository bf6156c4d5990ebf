"""Seeded markets and engine parameters for the quant tests (importable helpers, no fixtures)."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pandas as pd

from portfolio_assets.manifest import Config
from portfolio_assets.quant.engines import EngineInputs, EngineParams, engine_params

BASELINE = "AMEX:SPY"


@cache
def _default_params() -> EngineParams:
    return engine_params(Config())


def params(**changes: object) -> EngineParams:
    """The manifest defaults' EngineParams with ``changes`` (EngineParams field names)."""
    return dataclasses.replace(_default_params(), **changes)


OPEN = params(max_weight=1.0, cluster_cap=1.0)  # caps that cannot bind


def factor_market(n: int, n_buckets: int, seed: int, sessions: int = 252, drift: float = 4e-4):
    """Seeded factor-model returns: symbol i loads on factor i % n_buckets; buckets match factors."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(0.0, 0.01, (sessions, n_buckets))
    bucket = np.arange(n) % n_buckets
    loading = rng.uniform(0.5, 1.5, n)
    idio = rng.normal(0.0, 0.01, (sessions, n)) * rng.uniform(0.5, 2.0, n)
    values = factors[:, bucket] * loading + idio + drift
    cols = [f"NYSE:S{i:03d}" for i in range(n)]
    index = pd.DatetimeIndex(pd.bdate_range("2024-01-02", periods=sessions), name="session")
    return pd.DataFrame(values, index=index, columns=cols), pd.Series(bucket + 1, index=cols)


def inputs(returns: pd.DataFrame, clusters: pd.Series, regime: str = "NORMAL", **kw: object) -> EngineInputs:
    return EngineInputs(returns=returns, clusters=clusters, regime=regime, baseline=kw.pop("baseline", BASELINE),
                        **kw)  # type: ignore[arg-type]


@cache
def sp500() -> pd.DataFrame:
    """skfolio's bundled S&P 500 closes (20 stocks, 1990-2022; read from the wheel, no network)."""
    from skfolio.datasets import load_sp500_dataset

    return load_sp500_dataset()


SP500_BASELINE = "SP:SPX"


@cache
def sp500_returns() -> pd.DataFrame:
    """Daily simple returns of skfolio's 20 S&P 500 stocks (as ``NYSE:<ticker>``) and the index
    (``SP:SPX``), 1990-2022; a stock's first return is its first full session."""
    from skfolio.datasets import load_sp500_index

    prices = sp500().rename(columns=lambda t: f"NYSE:{t}")
    prices[SP500_BASELINE] = load_sp500_index().iloc[:, 0]
    return prices.pct_change(fill_method=None).iloc[1:]


def momentum_pool(returns: pd.DataFrame, as_of: pd.Timestamp, lookback: int = 60,
                  min_abs_return: float = 0.0) -> pd.DataFrame:
    """A scanner-like raw pool as of ``as_of``: the stocks whose trailing ``lookback``-session
    return is at least ``min_abs_return`` in size, long when it is >= 0, short otherwise (what a
    momentum scan gives; with a threshold, small and one-sided pools on trending days)."""
    window = returns.loc[:as_of].iloc[-lookback:].drop(columns=[SP500_BASELINE])
    growth = ((1 + window).prod(min_count=1) - 1).dropna()
    growth = growth[growth.abs() >= min_abs_return]
    return pd.DataFrame({"direction": np.where(growth >= 0, "long", "short"), "identity": growth.index,
                         "asset_class": "equity", "Value.Traded": np.nan}, index=growth.index)
