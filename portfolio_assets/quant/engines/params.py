"""`EngineParams`: the frozen view of the manifest the engines read, built in one place.

Every value comes from the manifest's pydantic sections (`optimization`, `risk`, `data`,
`features`), which hold the defaults, bounds and cross-checks; this module writes no default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portfolio_assets.manifest import Config


@dataclass(frozen=True)
class EngineParams:
    """Engine parameters (units and meaning; the manifest field is named after each).

    max_weight / cluster_cap: per-symbol / per-bucket caps, fractions of the book (``risk``).
    turnover_penalty: ``feat_turnover_penalty``. When on (and prev weights are given) the solver
        engines add ``kappa * ||w - w_prev||_1``. kappa is in daily-return units: one unit of L1
        turnover costs as much as ``kappa`` of one day's expected return (max_sharpe's numerator)
        or daily volatility (min_variance's objective; risk_parity's objective is dimensionless
        and gets ``kappa * L1 / sigma(w)``, i.e. the cost measured in units of the portfolio's
        daily volatility). 0.001 = 10 bps per unit of turnover charged against one day.
    shrinkage: covariance of the solver engines, "ledoit_wolf" or "sample" (HRP, HERC and
        inverse_vol use the sample covariance as their papers do).
    max_sharpe_l2: ridge of max_sharpe relative to the mean asset variance:
        Sigma_reg = Sigma + max_sharpe_l2 * mean(diag Sigma) * I.
    risk_free: daily risk-free rate subtracted from mu in max_sharpe.
    barbell_top_k: aggressor buckets of barbell (fewer when the universe has few buckets).
    aggressor_budget: barbell's aggressor budget per regime.
    spectral_regimes: ``feat_spectral_regimes``; without it the barbell budget is the NORMAL one.
    fallback_chain: engine -> engines tried in order when it fails.
    min_observations: returns a symbol needs to enter an estimating engine.
    min_overlap: common sessions a pair needs for a co-moment (else zero) (``data``).
    hrp_linkage / herc_linkage: linkages; herc_n_clusters: HERC's k, None = the risk buckets.
    force_fail: ops/test hook: engines named here fail at once with an EngineFailure.
    """

    max_weight: float
    cluster_cap: float
    turnover_penalty: bool
    kappa: float
    shrinkage: str
    max_sharpe_l2: float
    risk_free: float
    barbell_top_k: int
    aggressor_budget: Mapping[str, float]
    spectral_regimes: bool
    fallback_chain: Mapping[str, tuple[str, ...]]
    min_observations: int
    min_overlap: int
    hrp_linkage: str
    herc_linkage: str
    herc_n_clusters: int | None
    force_fail: frozenset[str]


def engine_params(cfg: Config) -> EngineParams:
    """The one mapping from a resolved manifest (`Config`) onto :class:`EngineParams`."""
    opt, risk = cfg.optimization, cfg.risk
    return EngineParams(
        max_weight=risk.max_weight,
        cluster_cap=risk.cluster_cap,
        turnover_penalty=cfg.features.feat_turnover_penalty,
        kappa=opt.kappa,
        shrinkage=opt.shrinkage,
        max_sharpe_l2=opt.max_sharpe_l2,
        risk_free=opt.risk_free,
        barbell_top_k=opt.barbell_top_k,
        aggressor_budget=MappingProxyType(dict(opt.aggressor_budget)),
        spectral_regimes=cfg.features.feat_spectral_regimes,
        fallback_chain=MappingProxyType({k: tuple(v) for k, v in opt.fallback_chain.items()}),
        min_observations=opt.min_observations,
        min_overlap=cfg.data.min_overlap,
        hrp_linkage=opt.hrp_linkage,
        herc_linkage=opt.herc_linkage,
        herc_n_clusters=opt.herc_n_clusters,
        force_fail=frozenset(opt.force_fail),
    )
