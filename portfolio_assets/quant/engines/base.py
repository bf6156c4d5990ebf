"""What every engine reads and returns, its failures, and the universe an estimating engine uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from portfolio_assets.constants import REGIME_LABELS
from portfolio_assets.quant.engines.caps import Caps, feasible_caps
from portfolio_assets.quant.engines.params import EngineParams


class EngineFailure(RuntimeError):
    """One engine could not produce valid weights on this data (solver status, non-finite output,
    degenerate inputs); :func:`run_engine` records it and moves to the next engine in the chain."""


@dataclass(frozen=True)
class FallbackEvent:
    """``engine`` failed with ``error``; the run moved on to ``fallback_to``."""

    engine: str
    error: str
    fallback_to: str


class EngineError(RuntimeError):
    """Every engine of the chain *and* the terminal engine failed (only possible when the
    ``force_fail`` hook names them all); ``fallbacks`` lists the events."""

    def __init__(self, message: str, fallbacks: list[FallbackEvent]) -> None:
        super().__init__(message)
        self.fallbacks = fallbacks


def check_returns(frame: pd.DataFrame, name: str) -> None:
    """A returns frame: non-empty, unique symbols, no inf, no simple return below -100%."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name} must be a pd.DataFrame (sessions x symbols)")
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise ValueError(f"{name} is empty ({frame.shape[0]} sessions x {frame.shape[1]} symbols)")
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()].tolist()
        raise ValueError(f"{name} has duplicate symbols {dup[:3]}")
    values = frame.to_numpy(dtype=float)
    if np.isinf(values).any():
        raise ValueError(f"{name} contains +/-inf")
    if (values[~np.isnan(values)] < -1.0).any():
        raise ValueError(f"{name} has simple returns below -100%")


@dataclass
class EngineInputs:
    """What every engine reads.

    returns: train returns, sessions x symbols, synthetic-long simple daily returns, NaN = no bar.
    clusters: risk bucket per symbol (int); must cover every column of ``returns``.
    regime: QUIET / NORMAL / TURBULENT / CRISIS, the label as of the allocation date.
    prev_weights: previous holdings (non-negative, sum <= 1; may name symbols outside the
        universe), or None for an empty book.
    baseline: the market engine's only holding.
    raw_pool_returns: returns of the raw pool, needed only by ``raw_pool_ew`` (None there is a
        caller bug; an empty frame is a data condition and falls back).
    antifragility: score per symbol for ``barbell``; None computes
        :func:`~portfolio_assets.quant.moments.antifragility_scores`.
    """

    returns: pd.DataFrame
    clusters: pd.Series
    regime: str
    baseline: str
    prev_weights: pd.Series | None = None
    raw_pool_returns: pd.DataFrame | None = None
    antifragility: pd.Series | None = None

    def __post_init__(self) -> None:
        check_returns(self.returns, "returns")
        if self.raw_pool_returns is not None and not isinstance(self.raw_pool_returns, pd.DataFrame):
            raise ValueError("raw_pool_returns must be a pd.DataFrame or None")
        if not isinstance(self.clusters, pd.Series):
            raise ValueError("clusters must be a pd.Series symbol -> bucket id")
        known = self.returns.columns.isin(self.clusters.index)
        if not known.all():
            missing = list(self.returns.columns[~known])
            raise ValueError(f"clusters: no bucket for {len(missing)} symbol(s), e.g. {missing[:3]}")
        if self.clusters.reindex(self.returns.columns).isna().any():
            raise ValueError("clusters: bucket id is NaN for some symbols of returns")
        if self.regime not in REGIME_LABELS:
            raise ValueError(f"regime must be one of {REGIME_LABELS}, got {self.regime!r}")
        if self.prev_weights is not None:
            p = self.prev_weights
            if not isinstance(p, pd.Series) or not np.isfinite(p.to_numpy(dtype=float)).all():
                raise ValueError("prev_weights must be a pd.Series of finite floats")
            if (p < -1e-12).any():
                raise ValueError("prev_weights must be non-negative (synthetic-long weights)")
            if p.sum() > 1 + 1e-6:
                raise ValueError(f"prev_weights sum to {p.sum():.6f} > 1")
        if self.antifragility is not None and not isinstance(self.antifragility, pd.Series):
            raise ValueError("antifragility must be a pd.Series symbol -> score or None")


class EngineOutput(NamedTuple):
    """What an engine function returns: weights, its own diagnostics, and the caps it enforced
    (None for the uncapped benchmarks)."""

    weights: pd.Series
    diagnostics: dict[str, Any]
    caps: Caps | None


@dataclass
class EngineResult:
    """Weights from ``engine_used`` (``engine`` was requested) plus the fallbacks taken on the way.

    ``caps``: the caps ``engine_used`` enforced (None for a benchmark); ``caps.relaxations``
    lists every relaxation (empty when the manifest caps held).
    """

    weights: pd.Series
    engine: str
    engine_used: str
    fallbacks: list[FallbackEvent]
    diagnostics: dict[str, Any]
    caps: Caps | None

    @property
    def relaxations(self) -> tuple[str, ...]:
        """The cap relaxations applied (empty without caps)."""
        return self.caps.relaxations if self.caps is not None else ()


class Universe(NamedTuple):
    """The symbols an estimating engine uses, their buckets, what was dropped, the caps."""

    returns: pd.DataFrame  # kept symbols only
    clusters: pd.Series  # bucket per kept symbol
    dropped: dict[str, str]  # symbol -> reason
    caps: Caps  # manifest caps, relaxed to the kept universe when they cannot hold it


def universe(inputs: EngineInputs, params: EngineParams) -> Universe:
    """Symbols with at least ``min_observations`` returns and non-zero variance, and their caps
    (:func:`~portfolio_assets.quant.engines.caps.feasible_caps` on the kept symbols)."""
    r = inputs.returns
    x = r.to_numpy(dtype=float)
    n_obs = (~np.isnan(x)).sum(axis=0)
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(x, axis=0, initial=-np.inf, where=~np.isnan(x)) - np.nanmin(
            x, axis=0, initial=np.inf, where=~np.isnan(x))
    dropped: dict[str, str] = {}
    for j, s in enumerate(r.columns):
        if n_obs[j] < params.min_observations:
            dropped[s] = f"{int(n_obs[j])} observations < min_observations={params.min_observations}"
        elif not spread[j] > 0:
            dropped[s] = "zero variance"
    if not dropped:
        kept_returns = r
    else:
        kept = [s for s in r.columns if s not in dropped]
        if not kept:
            raise EngineFailure(f"no symbol has enough data ({len(dropped)} dropped: {dropped})")
        kept_returns = r[kept]
    clusters = inputs.clusters.reindex(kept_returns.columns).astype(int)
    return Universe(kept_returns, clusters, dropped, feasible_caps(clusters, params.max_weight, params.cluster_cap))
