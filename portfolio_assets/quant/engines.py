"""Allocation engines: plain functions from train returns to long-only weights.

Every engine reads an :class:`EngineInputs` (synthetic-long *simple daily* returns, sessions x
symbols, ``NaN`` where a symbol had no bar; risk buckets; regime; previous weights) and an
:class:`EngineParams`, and returns weights (``pd.Series`` symbol -> float, non-negative, sum 1).
:func:`run_engine` runs one engine with its recorded fallback chain and returns an
:class:`EngineResult`; it never falls back silently and never invents a 1/N.

Units. Returns are simple daily returns; means ``mu`` are daily means, covariances ``Sigma`` are
daily (return^2), volatilities daily. The turnover coefficient ``kappa`` is in daily-return units
(see :class:`EngineParams`).

Universe and missing data. An estimating engine first drops symbols with fewer than
``params.min_observations`` non-NaN returns or zero variance (recorded in
``diagnostics["dropped_symbols"]``). There is no inner join: moments use each symbol's available
rows and co-moments each pair's overlapping rows (pairwise), with pairs overlapping on fewer than
``params.min_overlap`` sessions given zero co-movement (counted in ``diagnostics``). A pairwise
matrix need not be positive semi-definite; when it is not, negative eigenvalues are lifted to a
small floor (``diagnostics["covariance_psd_repaired"]``). On complete data both steps are no-ops.

The engines (``ENGINE_NAMES`` order) and what they compute:

=============== ============================================================ ===================
name            allocation                                                   implementation
=============== ============================================================ ===================
market          100% in the baseline (``inputs.baseline``)                   rule
raw_pool_ew     1/N over the raw pool's columns                              rule
equal_weight    1/N over the filtered universe (caps reported, not applied)  rule
inverse_vol     w_i proportional to 1/sigma_i, then :func:`apply_caps`       numpy
min_variance    min sigma(w) on the shrunk covariance, caps as constraints   cvxpy + Clarabel
risk_parity     equal risk contribution (Spinu), caps as constraints         cvxpy + Clarabel
hrp             Lopez de Prado HRP, then :func:`apply_caps`                  numpy/scipy
herc            Raffinot HERC, then :func:`apply_caps`                       numpy/scipy
max_sharpe      tangency on a ridge-regularized covariance (Charnes-Cooper)  cvxpy + Clarabel
barbell         HRP core + antifragile aggressors, budget by regime          numpy/scipy
=============== ============================================================ ===================

Why own code rather than calling riskfolio-lib / skfolio: the engines must take pairwise (NaN-
aware) moments, the project's bucket cap and the L1 turnover term in one documented formulation,
run hundreds of times per tournament (own HRP ~3 ms vs ~55 ms for riskfolio's HCPortfolio on 60
symbols) and keep the heavy imports out of the code location. Every own implementation is
cross-checked in the tests: HRP against riskfolio-lib and skfolio (to 1e-10), HERC against
riskfolio-lib (to 1e-10), risk parity against riskfolio-lib and skfolio, capped min-variance
against skfolio, Ledoit-Wolf against scikit-learn, and closed forms (inverse-vol, 2-asset
min-variance, 2-asset tangency).

Caps. The optimizing engines (everything but the three benchmarks ``market``, ``raw_pool_ew`` and
``equal_weight``) are fully invested, long-only, hold at most ``max_weight`` per symbol and at
most ``cluster_cap`` per risk bucket. The solver engines (min_variance, risk_parity, max_sharpe)
get the caps as constraints. The others get the projection :func:`apply_caps`, and
``diagnostics["cap_binding"]`` says whether it changed anything.

Turnover penalty. With ``params.turnover_penalty`` and ``inputs.prev_weights``, the solver engines
add ``kappa * ||w - w_prev||_1`` to their objective (cvxpy ``norm1``; ``w_prev`` may hold symbols
outside the universe, whose weight is sold in full and counts as turnover). Rule-based engines
have no objective to penalize, so the penalty does not apply to them and
``diagnostics["turnover_penalty"]`` says so rather than blending weights under the same name.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from portfolio_assets.constants import (
    BENCHMARK_ENGINES,
    DEFAULT_AGGRESSOR_BUDGET,
    DEFAULT_FALLBACK_CHAIN,
    ENGINE_NAMES,
    SOLVER_ENGINES,
)
from portfolio_assets.constants import REGIME_LABELS as REGIMES

__all__ = ["BENCHMARK_ENGINES", "ENGINE_NAMES", "REGIMES", "SOLVER_ENGINES"]

# Tighter than Clarabel's 1e-8 defaults: risk-parity contributions are then equal to ~1e-8 and
# min-variance weights (flat objective near the optimum) are stable to ~1e-6.
_CLARABEL_SETTINGS = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
_CAP_TOL = 1e-6  # tolerance on caps and on the budget after a solve (Clarabel's accuracy is ~1e-8)


class EngineError(RuntimeError):
    """An engine and every engine in its fallback chain failed; ``fallbacks`` lists the events."""

    def __init__(self, message: str, fallbacks: list[FallbackEvent]) -> None:
        super().__init__(message)
        self.fallbacks = fallbacks


class EngineFailure(RuntimeError):
    """One engine could not produce valid weights on this data (solver status, non-finite output,
    degenerate inputs); :func:`run_engine` records it and moves to the next engine in the chain."""


class CapsInfeasibleError(ValueError):
    """No fully invested long-only portfolio satisfies the per-asset and bucket caps."""


@dataclass(frozen=True)
class FallbackEvent:
    """``engine`` failed with ``error``; the run moved on to ``fallback_to``."""

    engine: str
    error: str
    fallback_to: str


@dataclass
class EngineInputs:
    """What every engine reads.

    returns: train returns, sessions x symbols, synthetic-long simple daily returns, NaN = no bar.
    clusters: risk bucket per symbol (int, 1-based); must cover every column of ``returns``.
    regime: QUIET / NORMAL / TURBULENT / CRISIS, the label as of the allocation date.
    prev_weights: previous holdings (non-negative, sum <= 1; may name symbols outside the
        universe), or None for an empty book.
    baseline: the market engine's only holding.
    raw_pool_returns: returns of the raw pool, needed (and validated) only by ``raw_pool_ew``.
    antifragility: score per symbol for ``barbell``; None computes :func:`antifragility_scores`.
    """

    returns: pd.DataFrame
    clusters: pd.Series
    regime: str
    prev_weights: pd.Series | None = None
    baseline: str = "AMEX:SPY"
    raw_pool_returns: pd.DataFrame | None = None
    antifragility: pd.Series | None = None

    def __post_init__(self) -> None:
        _check_returns(self.returns, "returns")
        if self.raw_pool_returns is not None and not isinstance(self.raw_pool_returns, pd.DataFrame):
            raise ValueError("raw_pool_returns must be a pd.DataFrame or None")
        if not isinstance(self.clusters, pd.Series):
            raise ValueError("clusters must be a pd.Series symbol -> bucket id")
        missing = [s for s in self.returns.columns if s not in self.clusters.index]
        if missing:
            raise ValueError(f"clusters: no bucket for {len(missing)} symbol(s), e.g. {missing[:3]}")
        if self.clusters.reindex(self.returns.columns).isna().any():
            raise ValueError("clusters: bucket id is NaN for some symbols of returns")
        if self.regime not in REGIMES:
            raise ValueError(f"regime must be one of {REGIMES}, got {self.regime!r}")
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


def _default_budget() -> dict[str, float]:
    return dict(DEFAULT_AGGRESSOR_BUDGET)


def _default_chain() -> dict[str, list[str]]:
    return {k: list(v) for k, v in DEFAULT_FALLBACK_CHAIN.items()}


@dataclass(frozen=True)
class EngineParams:
    """Engine parameters (profile values come from the manifest).

    max_weight: per-symbol cap (fraction of the book).
    cluster_cap: per-bucket cap (fraction of the book).
    turnover_penalty: ``feat_turnover_penalty``. When on (and prev weights are given) the solver
        engines add ``kappa * ||w - w_prev||_1``. kappa is in daily-return units: one unit of L1
        turnover costs as much as ``kappa`` of one day's expected return (max_sharpe's numerator)
        or daily volatility (min_variance's objective; risk_parity's objective is dimensionless
        and gets ``kappa * L1 / sigma(w)``, i.e. the cost measured in units of the portfolio's
        daily volatility). 0.001 = 10 bps per unit of turnover charged against one day; to
        amortize a one-off cost c over H sessions use kappa = c / H.
    shrinkage: covariance estimator of the solver engines: "ledoit_wolf" (Ledoit-Wolf 2004, shrunk
        toward the scaled identity) or "sample". HRP, HERC and inverse_vol use the sample
        covariance as their papers do.
    max_sharpe_l2: ridge regularization of max_sharpe, relative to the mean asset variance:
        Sigma_reg = Sigma + max_sharpe_l2 * mean(diag Sigma) * I. Equivalent to an L2 penalty
        on w inside the Sharpe ratio's denominator; pulls the tangency toward 1/N.
    risk_free: daily risk-free rate subtracted from mu in max_sharpe.
    barbell_top_k: number of aggressor buckets in barbell.
    aggressor_budget: barbell's aggressor budget per regime.
    spectral_regimes: ``feat_spectral_regimes``. Without it the barbell budget is the NORMAL one
        whatever the regime (regime-scaled budgets belong to the spectral feature).
    fallback_chain: engine -> engines to try in order when it fails.
    min_observations: a symbol needs this many non-NaN returns to enter an estimating engine.
    min_overlap: a pair needs this many common sessions for a co-moment (else zero).
    hrp_linkage: HRP's linkage (Lopez de Prado: "single").
    herc_linkage: HERC's linkage (Raffinot / riskfolio default: "ward").
    herc_n_clusters: HERC's number of clusters; None = number of risk buckets in the universe.
    force_fail: test/ops hook: engines named here fail at once with an EngineFailure, so the
        fallback path can be exercised (tests, fire drills). Empty in production.
    """

    max_weight: float = 0.25
    cluster_cap: float = 0.25
    turnover_penalty: bool = False
    kappa: float = 0.001
    shrinkage: str = "ledoit_wolf"
    max_sharpe_l2: float = 0.1
    risk_free: float = 0.0
    barbell_top_k: int = 3
    aggressor_budget: Mapping[str, float] = field(default_factory=_default_budget)
    spectral_regimes: bool = True
    fallback_chain: Mapping[str, list[str]] = field(default_factory=_default_chain)
    min_observations: int = 60
    min_overlap: int = 20
    hrp_linkage: str = "single"
    herc_linkage: str = "ward"
    herc_n_clusters: int | None = None
    force_fail: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not 0 < self.max_weight <= 1:
            raise ValueError(f"max_weight must be in (0, 1], got {self.max_weight}")
        if not 0 < self.cluster_cap <= 1:
            raise ValueError(f"cluster_cap must be in (0, 1], got {self.cluster_cap}")
        if self.kappa < 0:
            raise ValueError(f"kappa must be >= 0, got {self.kappa}")
        if self.shrinkage not in ("ledoit_wolf", "sample"):
            raise ValueError(f"shrinkage must be 'ledoit_wolf' or 'sample', got {self.shrinkage!r}")
        if self.max_sharpe_l2 < 0:
            raise ValueError(f"max_sharpe_l2 must be >= 0, got {self.max_sharpe_l2}")
        if self.barbell_top_k < 1:
            raise ValueError(f"barbell_top_k must be >= 1, got {self.barbell_top_k}")
        if set(self.aggressor_budget) != set(REGIMES):
            raise ValueError(f"aggressor_budget needs exactly the regimes {REGIMES}")
        bad = {k: v for k, v in self.aggressor_budget.items() if not 0 <= v < 1}
        if bad:
            raise ValueError(f"aggressor_budget values must be in [0, 1), got {bad}")
        for name, chain in self.fallback_chain.items():
            unknown = [e for e in [name, *chain] if e not in ENGINE_NAMES]
            if unknown:
                raise ValueError(f"fallback_chain[{name!r}] names unknown engine(s) {unknown}")
        unknown = sorted(set(self.force_fail) - set(ENGINE_NAMES))
        if unknown:
            raise ValueError(f"force_fail names unknown engine(s) {unknown}")
        if self.min_observations < 2 or self.min_overlap < 2:
            raise ValueError("min_observations and min_overlap must be >= 2")
        if self.herc_n_clusters is not None and self.herc_n_clusters < 1:
            raise ValueError(f"herc_n_clusters must be >= 1 or None, got {self.herc_n_clusters}")


@dataclass
class EngineResult:
    """Weights from ``engine_used`` (``engine`` was requested) plus the fallbacks taken on the way."""

    weights: pd.Series
    engine: str
    engine_used: str
    fallbacks: list[FallbackEvent]
    diagnostics: dict[str, Any]


class EngineOutput(NamedTuple):
    """What an engine function returns: weights and its own diagnostics."""

    weights: pd.Series
    diagnostics: dict[str, Any]


# ----------------------------------------------------------------------------------------------
# validation and estimation
# ----------------------------------------------------------------------------------------------


def _check_returns(frame: pd.DataFrame, name: str) -> None:
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


class _Universe(NamedTuple):
    returns: pd.DataFrame  # kept symbols only
    clusters: pd.Series  # bucket per kept symbol
    dropped: dict[str, str]  # symbol -> reason


def _universe(inputs: EngineInputs, params: EngineParams) -> _Universe:
    """Symbols an estimating engine can use: enough observations and non-zero variance."""
    r = inputs.returns
    n_obs = r.notna().sum()
    std = r.std(ddof=1)
    dropped: dict[str, str] = {}
    for s in r.columns:
        if n_obs[s] < params.min_observations:
            dropped[s] = f"{int(n_obs[s])} observations < min_observations={params.min_observations}"
        elif not std[s] > 0:
            dropped[s] = "zero variance"
    kept = [s for s in r.columns if s not in dropped]
    if not kept:
        raise EngineFailure(f"no symbol has enough data ({len(dropped)} dropped: {dropped})")
    clusters = inputs.clusters.reindex(kept).astype(int)
    return _Universe(r[kept], clusters, dropped)


class Covariance(NamedTuple):
    """A daily covariance matrix with how it was estimated."""

    matrix: pd.DataFrame
    diagnostics: dict[str, Any]


def _pairwise_parts(returns: pd.DataFrame, min_overlap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Demeaned data with NaN -> 0, pair overlap counts, and the mask of usable pairs."""
    x = returns.to_numpy(dtype=float)
    mask = ~np.isnan(x)
    x0 = np.where(mask, x - np.nanmean(x, axis=0), 0.0)
    m = mask.astype(float)
    overlap = m.T @ m
    usable = overlap >= min_overlap
    np.fill_diagonal(usable, True)
    return x0, overlap, usable


def _psd_repair(matrix: np.ndarray) -> tuple[np.ndarray, bool]:
    """Lift negative eigenvalues to 1e-10 * mean variance; a positive-definite matrix (Cholesky
    succeeds) is returned unchanged."""
    sym = 0.5 * (matrix + matrix.T)
    try:
        np.linalg.cholesky(sym)  # cheap positive-definiteness test; the common case
        return sym, False
    except np.linalg.LinAlgError:
        pass
    eigval, eigvec = np.linalg.eigh(sym)
    floor = 1e-10 * float(np.mean(np.diag(sym)))
    if eigval.min() >= 0:
        return sym, False
    repaired = (eigvec * np.maximum(eigval, floor)) @ eigvec.T
    return 0.5 * (repaired + repaired.T), True


def sample_covariance(returns: pd.DataFrame, min_overlap: int = 20) -> Covariance:
    """Pairwise sample covariance (daily, ddof = 1).

    ``S_ij = sum_{t in O_ij} (r_ti - m_i)(r_tj - m_j) / (n_ij - 1)`` over the sessions ``O_ij``
    where both have a return, ``m_i`` = symbol i's mean over its own sessions; pairs with
    ``n_ij < min_overlap`` get ``S_ij = 0``. Equals ``returns.cov()`` on complete data.
    """
    x0, overlap, usable = _pairwise_parts(returns, min_overlap)
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = np.where(usable, (x0.T @ x0) / (overlap - 1.0), 0.0)
    cov, repaired = _psd_repair(cov)
    cols = returns.columns
    diag = {
        "covariance": "sample",
        "pairs_below_min_overlap": int((~usable).sum() // 2),
        "covariance_psd_repaired": repaired,
    }
    return Covariance(pd.DataFrame(cov, index=cols, columns=cols), diag)


def ledoit_wolf_covariance(returns: pd.DataFrame, min_overlap: int = 20) -> Covariance:
    """Ledoit-Wolf (2004) shrinkage toward the scaled identity, pairwise for missing data.

    With ``S`` the (ddof = 0) covariance, ``p`` symbols, ``mu = tr(S)/p``:
    ``Sigma = (1 - delta) S + delta mu I``, ``delta = min(b2, d2) / d2``,
    ``d2 = ||S - mu I||_F^2 / p``, ``b2 = (1/p) sum_ij pi_ij / n_ij``,
    ``pi_ij = mean_t (x_ti x_tj)^2 - S_ij^2`` (x demeaned), each over the pair's ``n_ij`` common
    sessions. On complete data this is exactly ``sklearn.covariance.ledoit_wolf``. Pairs with
    ``n_ij < min_overlap`` get ``S_ij = 0`` and no ``pi_ij`` term.
    """
    x0, overlap, usable = _pairwise_parts(returns, min_overlap)
    p = x0.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(usable, (x0.T @ x0) / overlap, 0.0)
        fourth = np.where(usable, ((x0**2).T @ (x0**2)) / overlap, 0.0)
        pi_over_n = np.where(usable, (fourth - s**2) / overlap, 0.0)
    mu = float(np.trace(s)) / p
    d2 = float(((s - mu * np.eye(p)) ** 2).sum()) / p
    b2 = float(pi_over_n.sum()) / p
    delta = 0.0 if d2 == 0 else min(b2, d2) / d2
    cov, repaired = _psd_repair((1.0 - delta) * s + delta * mu * np.eye(p))
    cols = returns.columns
    diag = {
        "covariance": "ledoit_wolf",
        "shrinkage_intensity": delta,
        "pairs_below_min_overlap": int((~usable).sum() // 2),
        "covariance_psd_repaired": repaired,
    }
    return Covariance(pd.DataFrame(cov, index=cols, columns=cols), diag)


def _covariance(returns: pd.DataFrame, params: EngineParams) -> Covariance:
    if params.shrinkage == "ledoit_wolf":
        return ledoit_wolf_covariance(returns, params.min_overlap)
    return sample_covariance(returns, params.min_overlap)


def correlation_from_covariance(cov: pd.DataFrame) -> pd.DataFrame:
    """``rho_ij = Sigma_ij / (sigma_i sigma_j)``, clipped to [-1, 1] (pairwise estimates can stray)."""
    sd = np.sqrt(np.diag(cov.to_numpy()))
    corr = np.clip(cov.to_numpy() / np.outer(sd, sd), -1.0, 1.0)
    np.fill_diagonal(corr, 1.0)
    return pd.DataFrame(corr, index=cov.index, columns=cov.columns)


def antifragility_scores(returns: pd.DataFrame) -> pd.Series:
    """Antifragility per symbol = skewness + right-tail gain.

    skewness: the bias-corrected sample skewness of daily returns (pandas ``skew``).
    right-tail gain: ``mean(r | r >= q95) / |mean(r | r <= q05)|`` with q the symbol's own 5th
    and 95th percentiles of daily returns (dimensionless: > 1 means the best days are larger
    than the worst days). Each symbol uses its available (non-NaN) sessions; NaN if the left tail
    mean is zero or there are fewer than 3 returns.
    """
    x = returns.to_numpy(dtype=float)
    n_obs = (~np.isnan(x)).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, masked below
        q05, q95 = np.nanquantile(x, [0.05, 0.95], axis=0)
        left = np.nanmean(np.where(x <= q05, x, np.nan), axis=0)
        right = np.nanmean(np.where(x >= q95, x, np.nan), axis=0)
    gain = np.divide(right, np.abs(left), out=np.full_like(right, np.nan), where=left != 0)
    score = returns.skew().to_numpy() + gain
    score[n_obs < 3] = np.nan
    return pd.Series(score, index=returns.columns, dtype=float, name="antifragility")


# ----------------------------------------------------------------------------------------------
# caps
# ----------------------------------------------------------------------------------------------


def check_caps_feasible(clusters: pd.Series, max_weight: float, cluster_cap: float) -> None:
    """Raise CapsInfeasibleError unless some fully invested long-only book meets both caps.

    Feasible iff ``sum_b min(cluster_cap, n_b * max_weight) >= 1`` (bucket b holds n_b symbols);
    this implies ``N * max_weight >= 1`` and ``n_buckets * cluster_cap >= 1``.
    """
    sizes = clusters.value_counts()
    capacity = float(np.minimum(cluster_cap, sizes.to_numpy() * max_weight).sum())
    if capacity < 1 - 1e-12:
        raise CapsInfeasibleError(
            f"caps infeasible: {len(clusters)} symbols x max_weight {max_weight} = "
            f"{len(clusters) * max_weight:.4g}, {len(sizes)} buckets x cluster_cap {cluster_cap} = "
            f"{len(sizes) * cluster_cap:.4g}; the most a capped book can hold is {capacity:.4g} < 1"
        )


def cap_status(weights: pd.Series, clusters: pd.Series, max_weight: float, cluster_cap: float) -> dict[str, Any]:
    """Which caps the weights meet: max asset and bucket weight, violations, names at a cap."""
    buckets = weights.groupby(clusters.reindex(weights.index)).sum()
    tol = _CAP_TOL
    return {
        "max_asset_weight": float(weights.max()),
        "max_bucket_weight": float(buckets.max()),
        "asset_cap_violations": {k: float(v) for k, v in weights[weights > max_weight + tol].items()},
        "bucket_cap_violations": {int(k): float(v) for k, v in buckets[buckets > cluster_cap + tol].items()},
        "assets_at_cap": int((weights >= max_weight - tol).sum()),
        "buckets_at_cap": int((buckets >= cluster_cap - tol).sum()),
    }


def apply_caps(weights: pd.Series, clusters: pd.Series, max_weight: float, cluster_cap: float) -> pd.Series:
    """Project weights onto the caps by clipping and pro-rata redistribution.

    Repeat until no cap is violated: set every symbol above ``max_weight`` to ``max_weight``
    and scale every bucket above ``cluster_cap`` down to ``cluster_cap``; those symbols and
    buckets are frozen; the excess goes to the not-frozen symbols in not-frozen buckets in
    proportion to their current weights (equally if all are zero). Each round freezes at least
    one symbol or bucket, so it ends within N + n_buckets rounds; when the caps are feasible
    (:func:`check_caps_feasible`) free capacity never runs out. Weights that never hit a cap keep
    their relative proportions; weights already within the caps are returned unchanged.
    """
    check_caps_feasible(clusters.reindex(weights.index), max_weight, cluster_cap)
    w = weights.to_numpy(dtype=float).copy()
    if (w < 0).any() or abs(w.sum() - 1) > 1e-9:
        raise ValueError("apply_caps needs non-negative weights summing to 1")
    labels = clusters.reindex(weights.index).to_numpy()
    frozen = np.zeros(len(w), dtype=bool)
    tol = 1e-12
    for _ in range(len(w) + len(set(labels)) + 1):
        excess = 0.0
        over = w > max_weight + tol
        excess += float((w[over] - max_weight).sum())
        w[over] = max_weight
        frozen |= over
        for b in np.unique(labels):
            members = labels == b
            total = w[members].sum()
            if total > cluster_cap + tol:
                w[members] *= cluster_cap / total
                excess += total - cluster_cap
                frozen |= members
        if excess <= tol:
            return pd.Series(w / w.sum(), index=weights.index)
        free = ~frozen
        if not free.any():
            raise CapsInfeasibleError("apply_caps: no free capacity left for the excess weight")
        base = w[free].sum()
        w[free] += excess * (w[free] / base if base > 0 else 1.0 / free.sum())
    raise CapsInfeasibleError("apply_caps did not converge")  # unreachable for feasible caps


# ----------------------------------------------------------------------------------------------
# hierarchical allocations (own implementations, cross-checked against riskfolio-lib in tests)
# ----------------------------------------------------------------------------------------------


def _ivp_variance(cov: np.ndarray, idx: np.ndarray) -> float:
    """Variance of the inverse-variance portfolio of ``idx``: w = (1/s_ii) / sum(1/s_jj)."""
    sub = cov[np.ix_(idx, idx)]
    ivp = 1.0 / np.diag(sub)
    ivp /= ivp.sum()
    return float(ivp @ sub @ ivp)


def _linkage(corr: pd.DataFrame, method: str) -> np.ndarray:
    """Linkage on the correlation distance d_ij = sqrt(0.5 (1 - rho_ij)) (condensed form)."""
    dist = np.sqrt(np.clip(0.5 * (1.0 - corr.to_numpy()), 0.0, 1.0))
    dist = 0.5 * (dist + dist.T)
    np.fill_diagonal(dist, 0.0)
    return hierarchy.linkage(squareform(dist, checks=False), method=method, optimal_ordering=False)


def hrp_weights(cov: pd.DataFrame, corr: pd.DataFrame, linkage: str = "single") -> pd.Series:
    """Hierarchical Risk Parity (Lopez de Prado 2016), uncapped.

    1. distance d_ij = sqrt(0.5 (1 - rho_ij)); ``linkage`` (single in the paper) on the condensed
       distances (the paper's code passed the square matrix, which scipy reads as observations;
       we cluster the distances themselves, as riskfolio-lib and skfolio do);
    2. quasi-diagonalization: order = the dendrogram's leaves, no optimal leaf reordering;
    3. recursive bisection: split each list in halves L | R; V_X = w_X' Sigma_X w_X for the
       inverse-variance weights w_X within X; alpha = 1 - V_L / (V_L + V_R); weights in L are
       multiplied by alpha, in R by 1 - alpha.
    Matches riskfolio ``HCPortfolio.optimization(model='HRP', codependence='pearson', rm='MV',
    linkage='single', leaf_order=False)``.
    """
    n = cov.shape[0]
    if n == 1:
        return pd.Series(1.0, index=cov.index)
    c = cov.to_numpy()
    order = hierarchy.leaves_list(_linkage(corr, linkage))
    w = np.ones(n)
    items = [order]
    while items:
        items = [i[a:b] for i in items for a, b in ((0, len(i) // 2), (len(i) // 2, len(i))) if len(i) > 1]
        for left, right in zip(items[::2], items[1::2], strict=True):
            v_left, v_right = _ivp_variance(c, left), _ivp_variance(c, right)
            alpha = 1.0 - v_left / (v_left + v_right)
            w[left] *= alpha
            w[right] *= 1.0 - alpha
    return pd.Series(w / w.sum(), index=cov.index)


def herc_weights(cov: pd.DataFrame, corr: pd.DataFrame, n_clusters: int, linkage: str = "ward") -> pd.Series:
    """Hierarchical Equal Risk Contribution (Raffinot 2018) with variance as the risk measure.

    1. linkage (ward) on d_ij = sqrt(0.5 (1 - rho_ij)); cut into k = ``n_clusters`` clusters;
    2. cluster risk V_c = variance of cluster c's inverse-variance portfolio;
    3. top-down over the k - 1 highest merges of the dendrogram: with V_L, V_R the summed risks
       of the clusters under the left and right child, the left child's weight is multiplied by
       alpha = V_R / (V_L + V_R) and the right child's by 1 - alpha, so that
       alpha * V_L = (1 - alpha) * V_R (equal risk contribution of the two children);
    4. within each cluster, inverse-variance weights.
    Matches riskfolio ``HCPortfolio.optimization(model='HERC', codependence='pearson', rm='MV',
    linkage='ward', k=k, leaf_order=False)``. Raffinot picks k by the gap statistic; the engine
    uses the number of risk buckets instead (see :func:`herc`).
    """
    n = cov.shape[0]
    k = int(min(max(n_clusters, 1), n))
    if n == 1:
        return pd.Series(1.0, index=cov.index)
    c = cov.to_numpy()
    link = _linkage(corr, linkage)
    labels = hierarchy.fcluster(link, k, criterion="maxclust")
    members = {lab: np.flatnonzero(labels == lab) for lab in np.unique(labels)}
    risk = {lab: _ivp_variance(c, idx) for lab, idx in members.items()}
    _, nodes = hierarchy.to_tree(link, rd=True)
    merges = sorted((nd for nd in nodes if not nd.is_leaf()), key=lambda nd: nd.dist, reverse=True)
    w = np.ones(n)
    for node in merges[: len(members) - 1]:
        left, right = set(node.get_left().pre_order()), set(node.get_right().pre_order())
        v_left = sum(risk[lab] for lab, idx in members.items() if set(idx) <= left)
        v_right = sum(risk[lab] for lab, idx in members.items() if set(idx) <= right)
        alpha = v_right / (v_left + v_right)
        w[sorted(left)] *= alpha
        w[sorted(right)] *= 1.0 - alpha
    for idx in members.values():
        ivp = 1.0 / np.diag(c)[idx]
        w[idx] *= ivp / ivp.sum()
    return pd.Series(w / w.sum(), index=cov.index)


# ----------------------------------------------------------------------------------------------
# convex solves (cvxpy + Clarabel, imported lazily)
# ----------------------------------------------------------------------------------------------


class _Problem(NamedTuple):
    factor: np.ndarray  # F with Sigma / s2 = F F' (s2 = mean daily variance, for conditioning)
    scale: float  # s = sqrt(s2), daily
    prev_in: np.ndarray | None  # previous weights on the universe
    prev_out: float  # previous weight outside the universe (sold in full)
    bucket_index: list[np.ndarray]


def _problem(cov: pd.DataFrame, clusters: pd.Series, inputs: EngineInputs, params: EngineParams) -> _Problem:
    c = cov.to_numpy()
    s2 = float(np.mean(np.diag(c)))
    try:
        factor = np.linalg.cholesky(c / s2)
    except np.linalg.LinAlgError:  # singular (e.g. sample covariance with N > T): eigen factor
        eigval, eigvec = np.linalg.eigh(c / s2)
        factor = eigvec * np.sqrt(np.clip(eigval, 0.0, None))
    prev_in, prev_out = None, 0.0
    if params.turnover_penalty and inputs.prev_weights is not None:
        prev = inputs.prev_weights.astype(float)
        prev_in = prev.reindex(cov.index).fillna(0.0).to_numpy()
        prev_out = float(prev.drop(cov.index, errors="ignore").sum())
    labels = clusters.reindex(cov.index).to_numpy()
    buckets = [np.flatnonzero(labels == b) for b in np.unique(labels)]
    return _Problem(factor, float(np.sqrt(s2)), prev_in, prev_out, buckets)


def _caps(cp: Any, x: Any, total: Any, prob: _Problem, params: EngineParams) -> list[Any]:
    """Caps written homogeneously in x (total = sum x, which is 1 for weights)."""
    cons = [x <= params.max_weight * total]
    cons += [cp.sum(x[idx]) <= params.cluster_cap * total for idx in prob.bucket_index if len(idx) > 0]
    return cons


def _turnover(cp: Any, x: Any, total: Any, prob: _Problem) -> Any:
    """||x - total * w_prev||_1 + total * (previous weight outside the universe)."""
    return cp.norm1(x - total * prob.prev_in) + total * prob.prev_out


def _solve(cp: Any, problem: Any, engine: str) -> str:
    """Solve with Clarabel at tight tolerances (1e-10); when that ends `optimal_inaccurate`, solve
    again at Clarabel's default tolerances (1e-8). Only an `optimal` status counts; the status
    string says which tolerance produced it (recorded in the engine's diagnostics)."""
    import warnings

    for label, settings in (("1e-10", _CLARABEL_SETTINGS), ("1e-8", {})):
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                problem.solve(solver=cp.CLARABEL, **settings)
        except cp.SolverError as exc:
            raise EngineFailure(f"{engine}: solver error: {exc}") from exc
        if problem.status == cp.OPTIMAL:
            return f"{problem.status} (tol {label})"
        if problem.status != cp.OPTIMAL_INACCURATE:
            break
    raise EngineFailure(f"{engine}: solver status {problem.status!r}")


def _finish(x: np.ndarray | None, index: pd.Index, engine: str) -> pd.Series:
    if x is None or not np.isfinite(x).all():
        raise EngineFailure(f"{engine}: solver returned non-finite weights")
    w = np.clip(x, 0.0, None)
    if w.sum() <= 0:
        raise EngineFailure(f"{engine}: solver returned an all-zero portfolio")
    return pd.Series(w / w.sum(), index=index)


def _penalty_label(engine: str, inputs: EngineInputs, params: EngineParams) -> str:
    if engine not in SOLVER_ENGINES:
        return f"not applicable: {engine} has no objective to penalize"
    if not params.turnover_penalty:
        return "off"
    if inputs.prev_weights is None:
        return "off: no prev_weights (empty book)"
    return f"applied: kappa={params.kappa}"


# ----------------------------------------------------------------------------------------------
# engines
# ----------------------------------------------------------------------------------------------


def market(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Benchmark: 100% in ``inputs.baseline``. No caps."""
    return EngineOutput(pd.Series({inputs.baseline: 1.0}), {"caps_applied": False})


def raw_pool_ew(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Benchmark: w_i = 1/N over every column of ``inputs.raw_pool_returns``. No caps."""
    if inputs.raw_pool_returns is None:
        raise ValueError("raw_pool_ew needs inputs.raw_pool_returns (the raw pool's returns)")
    _check_returns(inputs.raw_pool_returns, "raw_pool_returns")
    cols = inputs.raw_pool_returns.columns
    return EngineOutput(pd.Series(1.0 / len(cols), index=cols), {"caps_applied": False})


def equal_weight(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Benchmark: w_i = 1/N over every symbol of the filtered universe (``inputs.returns``).

    Kept as pure 1/N so that "optimization alpha = engine - equal_weight" compares against a
    true 1/N. Caps are not applied; ``caps_respected`` and the violations are reported (1/N
    always meets the asset cap when N * max_weight >= 1, but a large bucket can exceed the
    bucket cap).
    """
    cols = inputs.returns.columns
    w = pd.Series(1.0 / len(cols), index=cols)
    status = cap_status(w, inputs.clusters, params.max_weight, params.cluster_cap)
    caps_ok = not status["asset_cap_violations"] and not status["bucket_cap_violations"]
    return EngineOutput(w, {"caps_applied": False, "caps_respected": caps_ok, **status})


def _capped(raw: pd.Series, uni: _Universe, params: EngineParams) -> tuple[pd.Series, dict[str, Any]]:
    capped = apply_caps(raw, uni.clusters, params.max_weight, params.cluster_cap)
    return capped, {"caps_applied": "projection", "cap_binding": bool(np.abs(capped - raw).max() > 1e-12)}


def inverse_vol(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """w_i = (1/sigma_i) / sum_j (1/sigma_j), sigma_i = sample std of daily returns (available
    sessions), then :func:`apply_caps`."""
    uni = _universe(inputs, params)
    inv = 1.0 / uni.returns.std(ddof=1)
    w, diag = _capped(inv / inv.sum(), uni, params)
    return EngineOutput(w, {**diag, "dropped_symbols": uni.dropped})


def min_variance(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Long-only minimum variance on the shrunk covariance, caps as constraints.

    minimize  sigma(w) + kappa * ||w - w_prev||_1   (penalty only with turnover_penalty)
    s.t.      sum w = 1, 0 <= w_i <= max_weight, sum_{i in b} w_i <= cluster_cap
    with sigma(w) = sqrt(w' Sigma w) the daily volatility, in daily-return units like kappa.
    Without the penalty the equivalent QP (minimize w' Sigma w) is solved: same minimizer, and
    Clarabel solves a QP more accurately than the second-order cone.
    """
    import cvxpy as cp

    uni = _universe(inputs, params)
    check_caps_feasible(uni.clusters, params.max_weight, params.cluster_cap)
    cov = _covariance(uni.returns, params)
    prob = _problem(cov.matrix, uni.clusters, inputs, params)
    w = cp.Variable(len(cov.matrix), nonneg=True)
    if prob.prev_in is None:  # same minimizer as sigma(w); a QP is solved more accurately than an SOCP
        objective = cp.sum_squares(prob.factor.T @ w)
    else:
        objective = cp.norm(prob.factor.T @ w, 2) + (params.kappa / prob.scale) * _turnover(cp, w, 1.0, prob)
    problem = cp.Problem(cp.Minimize(objective), [cp.sum(w) == 1, *_caps(cp, w, 1.0, prob, params)])
    status = _solve(cp, problem, "min_variance")
    weights = _finish(w.value, cov.matrix.index, "min_variance")
    return EngineOutput(weights, {"solver_status": status, "caps_applied": "constraints",
                                  "dropped_symbols": uni.dropped, **cov.diagnostics})


def risk_contributions(weights: pd.Series, cov: pd.DataFrame) -> pd.Series:
    """Fractional risk contributions RC_i = w_i (Sigma w)_i / (w' Sigma w); they sum to 1."""
    w = weights.reindex(cov.index).to_numpy()
    marginal = cov.to_numpy() @ w
    return pd.Series(w * marginal / (w @ marginal), index=cov.index)


def risk_parity(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Equal risk contribution (Maillard-Roncalli-Teiletche) via Spinu's convex program.

    minimize  0.5 y' Sigma y - (1/N) sum_i log y_i  [+ kappa * ||y - (1'y) w_prev||_1]
    s.t.      y_i <= max_weight * 1'y,  sum_{i in b} y_i <= cluster_cap * 1'y
    and w = y / 1'y. Uncapped, the optimum has y_i (Sigma y)_i = 1/N for all i: every symbol's
    risk contribution w_i (Sigma w)_i / (w' Sigma w) equals 1/N. The caps are homogeneous in y,
    so the program stays convex; when one binds, the capped symbols carry less risk than 1/N
    (``diagnostics["risk_contribution_range"]``). Since 1'y = 1 / sigma(w) at the optimum, the
    turnover term equals kappa * ||w - w_prev||_1 / sigma(w): the cost in units of the
    portfolio's daily volatility, which keeps the dimensionless objective dimensionless.
    """
    import cvxpy as cp

    uni = _universe(inputs, params)
    check_caps_feasible(uni.clusters, params.max_weight, params.cluster_cap)
    cov = _covariance(uni.returns, params)
    prob = _problem(cov.matrix, uni.clusters, inputs, params)
    n = len(cov.matrix)
    y = cp.Variable(n)
    total = cp.sum(y)
    objective = 0.5 * cp.sum_squares(prob.factor.T @ y) - cp.sum(cp.log(y)) / n
    if prob.prev_in is not None:
        objective = objective + (params.kappa / prob.scale) * _turnover(cp, y, total, prob)
    problem = cp.Problem(cp.Minimize(objective), _caps(cp, y, total, prob, params))
    status = _solve(cp, problem, "risk_parity")
    weights = _finish(y.value, cov.matrix.index, "risk_parity")
    rc = risk_contributions(weights, cov.matrix)
    return EngineOutput(weights, {"solver_status": status, "caps_applied": "constraints",
                                  "risk_contribution_range": [float(rc.min()), float(rc.max())],
                                  "dropped_symbols": uni.dropped, **cov.diagnostics})


def max_sharpe(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Regularized maximum Sharpe ratio (tangency) portfolio, long-only with caps.

    maximize  [ (mu - r_f)' w - kappa * ||w - w_prev||_1 ] / sqrt(w' Sigma_g w)
    s.t.      sum w = 1, 0 <= w_i <= max_weight, sum_{i in b} w_i <= cluster_cap
    Sigma_g = Sigma + g * mean(diag Sigma) * I with g = ``max_sharpe_l2`` (ridge: an L2 penalty
    on w in the risk term), mu = daily sample means, Sigma the shrunk daily covariance; the
    turnover term is present only with turnover_penalty (it then maximizes the Sharpe ratio of
    the expected return net of the turnover cost). Solved exactly by the Charnes-Cooper
    transform y = t w, t = 1'y > 0:
    minimize y' Sigma_g y  s.t.  (mu - r_f)'y - kappa ||y - t w_prev||_1 >= 1,  y >= 0,
    y_i <= max_weight t,  sum_{i in b} y_i <= cluster_cap t;  w = y / 1'y.
    Fails (and falls back) when no capped long-only book has a positive net excess return.
    """
    import cvxpy as cp

    uni = _universe(inputs, params)
    check_caps_feasible(uni.clusters, params.max_weight, params.cluster_cap)
    cov = _covariance(uni.returns, params)
    c = cov.matrix.to_numpy()
    ridge = params.max_sharpe_l2 * float(np.mean(np.diag(c)))
    reg = pd.DataFrame(c + ridge * np.eye(len(c)), index=cov.matrix.index, columns=cov.matrix.index)
    prob = _problem(reg, uni.clusters, inputs, params)
    excess = (uni.returns.mean() - params.risk_free).to_numpy() / prob.scale
    if not (excess > 0).any():
        raise EngineFailure("max_sharpe: no symbol has a positive expected excess return")
    y = cp.Variable(len(c), nonneg=True)
    total = cp.sum(y)
    numerator = excess @ y
    if prob.prev_in is not None:
        numerator = numerator - (params.kappa / prob.scale) * _turnover(cp, y, total, prob)
    cons = [numerator >= 1, *_caps(cp, y, total, prob, params)]
    problem = cp.Problem(cp.Minimize(cp.sum_squares(prob.factor.T @ y)), cons)
    status = _solve(cp, problem, "max_sharpe")
    weights = _finish(y.value, cov.matrix.index, "max_sharpe")
    mu = uni.returns.mean().to_numpy()
    sharpe = float((mu - params.risk_free) @ weights.to_numpy() / np.sqrt(weights @ c @ weights))
    return EngineOutput(weights, {"solver_status": status, "caps_applied": "constraints",
                                  "daily_sharpe_in_sample": sharpe, "ridge": ridge,
                                  "dropped_symbols": uni.dropped, **cov.diagnostics})


def _hierarchical_inputs(uni: _Universe, params: EngineParams) -> tuple[Covariance, pd.DataFrame]:
    cov = sample_covariance(uni.returns, params.min_overlap)
    return cov, correlation_from_covariance(cov.matrix)


def hrp(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Lopez de Prado's HRP (:func:`hrp_weights`, sample covariance), then :func:`apply_caps`."""
    uni = _universe(inputs, params)
    cov, corr = _hierarchical_inputs(uni, params)
    w, diag = _capped(hrp_weights(cov.matrix, corr, params.hrp_linkage), uni, params)
    return EngineOutput(w, {**diag, "linkage": params.hrp_linkage, "dropped_symbols": uni.dropped,
                            **cov.diagnostics})


def herc(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Raffinot's HERC (:func:`herc_weights`, sample covariance), then :func:`apply_caps`.

    k = ``params.herc_n_clusters`` or, by default, the number of risk buckets among the kept
    symbols (the project's clustering decision, SPEC section 9) in place of Raffinot's gap
    statistic. The clusters are cut from HERC's own tree on the train returns.
    """
    uni = _universe(inputs, params)
    cov, corr = _hierarchical_inputs(uni, params)
    k = params.herc_n_clusters or int(uni.clusters.nunique())
    raw = herc_weights(cov.matrix, corr, k, params.herc_linkage)
    w, diag = _capped(raw, uni, params)
    return EngineOutput(w, {**diag, "n_clusters": k, "linkage": params.herc_linkage,
                            "dropped_symbols": uni.dropped, **cov.diagnostics})


def barbell_budget(regime: str, params: EngineParams) -> float:
    """Aggressor budget: ``aggressor_budget[regime]`` with spectral regimes, else the NORMAL one."""
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    return float(params.aggressor_budget[regime if params.spectral_regimes else "NORMAL"])


def barbell(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Cluster-aware barbell: HRP core + antifragile aggressors.

    bucket score = mean antifragility of its scored symbols (:func:`antifragility_scores` unless
    given);
    aggressor buckets = the ``barbell_top_k`` best buckets (ties by bucket id); aggressor = the
    best-scoring symbol of each (ties by symbol); budget B = :func:`barbell_budget`.
    weights: each aggressor B / k; core = HRP over all symbols of the other buckets, capped by
    :func:`apply_caps` at max_weight / (1 - B) and cluster_cap / (1 - B), scaled to 1 - B, so the
    whole book meets the caps and the aggressor budget stays exactly B. Needs more buckets than
    k (else EngineFailure).
    """
    uni = _universe(inputs, params)
    k = params.barbell_top_k
    budget = barbell_budget(inputs.regime, params)
    if inputs.antifragility is None:
        scores = antifragility_scores(uni.returns)
    else:
        missing = [s for s in uni.returns.columns if s not in inputs.antifragility.index]
        if missing:
            raise ValueError(f"antifragility: no score for {len(missing)} symbol(s), e.g. {missing[:3]}")
        scores = inputs.antifragility.reindex(uni.returns.columns).astype(float)
    n_buckets = uni.clusters.nunique()
    if n_buckets <= k:
        raise EngineFailure(f"barbell: {n_buckets} bucket(s) <= barbell_top_k={k}; no core left")
    if budget / k > min(params.max_weight, params.cluster_cap) + 1e-12:
        raise CapsInfeasibleError(f"barbell: aggressor weight {budget}/{k} exceeds the caps")
    # a symbol without a score (NaN) is ignored in its bucket's mean and never picked as aggressor
    frame = pd.DataFrame({"bucket": uni.clusters, "score": scores})
    bucket_score = frame.groupby("bucket")["score"].mean().fillna(-np.inf)
    frame["score"] = frame["score"].fillna(-np.inf)
    ranked = sorted(bucket_score.index, key=lambda b: (-bucket_score[b], b))
    top = ranked[:k]
    aggressors = {
        int(b): sorted(frame.index[frame["bucket"] == b], key=lambda s: (-frame.at[s, "score"], s))[0]
        for b in top
    }
    core = [s for s in uni.returns.columns if uni.clusters[s] not in top]
    core_uni = _Universe(uni.returns[core], uni.clusters[core], {})
    cov, corr = _hierarchical_inputs(core_uni, params)
    raw = hrp_weights(cov.matrix, corr, params.hrp_linkage)
    scale = 1.0 - budget
    core_caps = (min(1.0, params.max_weight / scale), min(1.0, params.cluster_cap / scale))
    try:
        core_w = apply_caps(raw, core_uni.clusters, *core_caps)
    except CapsInfeasibleError as exc:  # depends on how many buckets the data has: fall back
        raise EngineFailure(f"barbell: the core ({len(core)} symbols, "
                            f"{core_uni.clusters.nunique()} buckets) cannot hold {scale:.2%} "
                            f"within the caps: {exc}") from exc
    w = pd.Series(0.0, index=uni.returns.columns)
    w[core] = core_w * scale
    w[list(aggressors.values())] = budget / k
    return EngineOutput(w, {
        "caps_applied": "projection (core)",
        "cap_binding": bool(np.abs(core_w - raw).max() > 1e-12),
        "aggressor_budget": budget,
        "aggressor_weight": float(w[list(aggressors.values())].sum()),
        "budget_regime": inputs.regime if params.spectral_regimes else "NORMAL (spectral_regimes off)",
        "aggressors": aggressors,
        "bucket_scores": {int(b): float(bucket_score[b]) for b in top},
        "dropped_symbols": uni.dropped,
    })


Engine = Callable[[EngineInputs, EngineParams], EngineOutput]

ENGINES: dict[str, Engine] = {
    "market": market,
    "raw_pool_ew": raw_pool_ew,
    "equal_weight": equal_weight,
    "inverse_vol": inverse_vol,
    "min_variance": min_variance,
    "risk_parity": risk_parity,
    "hrp": hrp,
    "herc": herc,
    "max_sharpe": max_sharpe,
    "barbell": barbell,
}


# ----------------------------------------------------------------------------------------------
# running with recorded fallbacks
# ----------------------------------------------------------------------------------------------


def _validated(out: EngineOutput, engine: str, inputs: EngineInputs, params: EngineParams) -> pd.Series:
    """Check an engine's weights: finite, non-negative, sum 1, caps met for capped engines."""
    w = out.weights.astype(float)
    if not np.isfinite(w.to_numpy()).all():
        raise EngineFailure(f"{engine}: non-finite weights")
    if (w < -_CAP_TOL).any() or abs(w.sum() - 1.0) > _CAP_TOL:
        raise EngineFailure(f"{engine}: weights not long-only / fully invested (sum {w.sum():.8f})")
    if (w < 0).any() or abs(w.sum() - 1.0) > 1e-12:  # solver noise; exact rules stay exact (1/N)
        w = w.clip(lower=0.0)
        w = w / w.sum()
    if engine not in BENCHMARK_ENGINES:
        status = cap_status(w, inputs.clusters, params.max_weight, params.cluster_cap)
        if status["asset_cap_violations"] or status["bucket_cap_violations"]:
            raise EngineFailure(f"{engine}: caps violated: {status}")
    return w


def _l1_turnover(weights: pd.Series, prev: pd.Series | None) -> float:
    """||w - w_prev||_1 over the union of both indices (empty book: ||w||_1 = 1)."""
    p = prev if prev is not None else pd.Series(dtype=float)
    union = weights.index.union(p.index)
    return float((weights.reindex(union, fill_value=0.0) - p.reindex(union, fill_value=0.0)).abs().sum())


def run_engine(name: str, inputs: EngineInputs, params: EngineParams | None = None) -> EngineResult:
    """Run engine ``name``; on failure walk ``params.fallback_chain[name]`` and record each step.

    A failure is an :class:`EngineFailure` (solver status other than optimal, non-finite or
    invalid weights, degenerate data, or the ``force_fail`` hook) or a numpy ``LinAlgError``.
    Bad input (``ValueError``, incl. :class:`CapsInfeasibleError`) is raised as is: another
    engine would not fix it. When the chain is exhausted, :class:`EngineError` lists every error.
    """
    params = params or EngineParams()
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; engines: {', '.join(ENGINE_NAMES)}")
    chain = [name, *params.fallback_chain.get(name, [])]
    fallbacks: list[FallbackEvent] = []
    errors: list[str] = []
    for position, engine in enumerate(chain):
        started = time.perf_counter()
        try:
            if engine in params.force_fail:
                raise EngineFailure(f"{engine}: forced failure (params.force_fail hook)")
            out = ENGINES[engine](inputs, params)
            weights = _validated(out, engine, inputs, params)
        except (EngineFailure, np.linalg.LinAlgError) as exc:
            errors.append(f"{engine}: {exc}")
            if position + 1 < len(chain):
                fallbacks.append(FallbackEvent(engine, str(exc), chain[position + 1]))
            continue
        diagnostics = {
            **out.diagnostics,
            "turnover_penalty": _penalty_label(engine, inputs, params),
            "l1_turnover": _l1_turnover(weights, inputs.prev_weights),
            "n_holdings": int((weights > 0).sum()),
            "seconds": time.perf_counter() - started,
        }
        return EngineResult(weights, name, engine, fallbacks, diagnostics)
    raise EngineError(f"engine {name!r}: fallback chain {chain} exhausted; errors: " + " | ".join(errors),
                      fallbacks)
