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
