"""Rule engines: the three honest benchmarks and inverse volatility.

``market`` (100% baseline), ``raw_pool_ew`` (1/N over the raw pool) and ``equal_weight`` (1/N
over the filtered universe) hold what their names say: no caps apply to them, and
``equal_weight`` reports (does not fix) a bucket over the cap. ``inverse_vol`` is capped by
projection.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from portfolio_assets.quant.engines.base import (
    EngineFailure,
    EngineInputs,
    EngineOutput,
    check_returns,
    universe,
)
from portfolio_assets.quant.engines.caps import cap_status, feasible_caps
from portfolio_assets.quant.engines.hierarchical import capped
from portfolio_assets.quant.engines.params import EngineParams


def market(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Benchmark: 100% in ``inputs.baseline``. No caps."""
    return EngineOutput(pd.Series({inputs.baseline: 1.0}), {"caps_applied": False}, None)


def raw_pool_ew(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Benchmark: w_i = 1/N over every column of ``inputs.raw_pool_returns``. No caps.

    None is a caller bug (ValueError); an empty raw pool is a data condition (EngineFailure,
    so the terminal 1/N over the universe takes over, recorded).
    """
    if inputs.raw_pool_returns is None:
        raise ValueError("raw_pool_ew needs inputs.raw_pool_returns (the raw pool's returns)")
    if inputs.raw_pool_returns.shape[1] == 0:
        raise EngineFailure("raw_pool_ew: the raw pool is empty")
    check_returns(inputs.raw_pool_returns, "raw_pool_returns")
    cols = inputs.raw_pool_returns.columns
    return EngineOutput(pd.Series(1.0 / len(cols), index=cols), {"caps_applied": False}, None)


def equal_weight(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Benchmark: w_i = 1/N over every symbol of the filtered universe (``inputs.returns``).

    Kept as pure 1/N so that "optimization alpha = engine - equal_weight" compares against a
    true 1/N, and so that it needs no estimate (it is the terminal fallback). Caps are not
    applied; ``caps_respected`` and the violations against the (relaxed, see
    :func:`feasible_caps`) caps are reported: 1/N always meets the asset cap, a large bucket can
    exceed the bucket cap.
    """
    cols = inputs.returns.columns
    w = pd.Series(1.0 / len(cols), index=cols)
    clusters = inputs.clusters.reindex(cols)
    caps = feasible_caps(clusters, params.max_weight, params.cluster_cap)
    status = cap_status(w, clusters, caps.max_weight, caps.cluster_cap)
    caps_ok = not status["asset_cap_violations"] and not status["bucket_cap_violations"]
    return EngineOutput(w, {"caps_applied": False, "caps_respected": caps_ok, **status}, None)


def inverse_vol(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """w_i = (1/sigma_i) / sum_j (1/sigma_j), sigma_i = sample std of daily returns (available
    sessions), then :func:`~portfolio_assets.quant.engines.caps.apply_caps`."""
    uni = universe(inputs, params)
    inv = 1.0 / np.nanstd(uni.returns.to_numpy(dtype=float), axis=0, ddof=1)
    raw = pd.Series(inv / inv.sum(), index=uni.returns.columns)
    w, diag = capped(raw, uni)
    return EngineOutput(w, {**diag, "dropped_symbols": uni.dropped}, uni.caps)
