"""The production weights audit: the rules of the blocking `weights_sanity` check.

The same function audits today's target weights (the check) and every walk-forward window's
weights in the tournament (with `feat_pit_fidelity`), so a rule lives in one place.

Rules (each violation is a readable string):
- no NaN/inf, no negative weight (weights are on synthetic-long streams);
- sum to 1 within `tol`;
- per-asset cap: every weight <= max_weight + tol (engines exempt: `market`, `raw_pool_ew`,
  `equal_weight` — honest baselines, 100% SPY and 1/N are what they are);
- bucket cap: every risk bucket's total <= cluster_cap + tol (same exemptions);
- `min_variance`: |beta to the baseline| <= max_beta (beta = cov(r_p, r_b) / var(r_b) on the
  train window);
- `barbell`: the aggressor budget equals the regime's budget (QUIET 15% / NORMAL 10% /
  TURBULENT 8% / CRISIS 5%; the NORMAL budget without spectral regimes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from portfolio_assets.constants import BENCHMARK_ENGINES, DEFAULT_AGGRESSOR_BUDGET

UNCAPPED_ENGINES = BENCHMARK_ENGINES


@dataclass(frozen=True)
class AuditRules:
    max_weight: float = 0.25
    cluster_cap: float = 0.25
    max_beta: float = 1.0
    tol: float = 1e-6
    aggressor_budget: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_AGGRESSOR_BUDGET)
    )
    spectral_regimes: bool = True


def portfolio_beta(weights: pd.Series, returns: pd.DataFrame, baseline: str) -> float:
    """Beta of the weighted portfolio to `baseline` on `returns` (NaN returns count as 0)."""
    if baseline not in returns.columns:
        return float("nan")
    r = returns.reindex(columns=weights.index).fillna(0.0).to_numpy() @ weights.to_numpy()
    b = returns[baseline].fillna(0.0).to_numpy()
    var_b = float(np.var(b, ddof=1))
    return float(np.cov(r, b, ddof=1)[0, 1] / var_b) if var_b > 0 else float("nan")


def audit_weights(
    engine: str,
    weights: pd.Series,
    clusters: pd.Series,
    rules: AuditRules,
    *,
    regime: str | None = None,
    aggressor_weight: float | None = None,
    train_returns: pd.DataFrame | None = None,
    baseline: str = "AMEX:SPY",
) -> list[str]:
    """Violations of the production rules by one engine's weights (empty list = clean)."""
    out: list[str] = []
    w = weights.astype(float)
    if not np.isfinite(w.to_numpy()).all():
        return [f"{engine}: {int((~np.isfinite(w.to_numpy())).sum())} non-finite weight(s)"]
    if (w < -rules.tol).any():
        out.append(f"{engine}: negative weight(s) {w[w < -rules.tol].round(4).to_dict()}")
    total = float(w.sum())
    if abs(total - 1.0) > rules.tol:
        out.append(f"{engine}: weights sum to {total:.6f}, not 1")
    if engine not in UNCAPPED_ENGINES:
        over = w[w > rules.max_weight + rules.tol]
        if len(over):
            out.append(f"{engine}: per-asset cap {rules.max_weight:.2f} exceeded by {over.round(4).to_dict()}")
        held = w[w > 0]
        missing = [s for s in held.index if s not in clusters.index]
        if missing:
            out.append(f"{engine}: held symbol(s) without a risk bucket: {missing[:5]}")
        by_bucket = held.groupby(clusters.reindex(held.index)).sum()
        over_b = by_bucket[by_bucket > rules.cluster_cap + rules.tol]
        if len(over_b):
            out.append(f"{engine}: bucket cap {rules.cluster_cap:.2f} exceeded: "
                       + ", ".join(f"bucket {int(b)} = {v:.4f}" for b, v in over_b.items()))
    if engine == "min_variance" and train_returns is not None:
        beta = portfolio_beta(w, train_returns, baseline)
        if np.isfinite(beta) and abs(beta) > rules.max_beta:
            out.append(f"{engine}: beta to {baseline} {beta:.3f} exceeds the limit {rules.max_beta:.2f}")
    if engine == "barbell" and regime is not None and aggressor_weight is not None:
        key = regime if rules.spectral_regimes else "NORMAL"
        expected = rules.aggressor_budget[key]
        if abs(aggressor_weight - expected) > 1e-4:
            out.append(f"{engine}: aggressor budget {aggressor_weight:.4f} != {expected:.4f} for regime {regime}")
    return out
