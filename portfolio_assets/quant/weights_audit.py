"""The production weights audit: the rules of the blocking `weights_sanity` check.

The same function audits today's target weights (the check) and every walk-forward window's
weights in the tournament (with `feat_pit_fidelity`), so a rule lives in one place.

The rules are those of the engine that *produced* the weights (`engine_used`); when the
requested engine fell back, its own rules are reported as not applicable (a note), never
skipped silently. Violations and notes are readable strings; the prefix names the requested
engine and, after a fallback, the engine used (`"barbell (as hrp): ..."`).

Rules (each violation message is given; `tol` = `risk.weights_tolerance`):

1. finite: `"{who}: {k} non-finite weight(s)"` (the audit stops there);
2. long-only: `"{who}: negative weight(s) {symbol: weight}"`;
3. fully invested: `"{who}: weights sum to {total:.6f}, not 1"`;
4. held symbols are in the universe: `"{who}: held symbol(s) outside the universe: [...]"`;
5. caps (not for the honest baselines `market`, `raw_pool_ew`, `equal_weight`): the caps the
   rule allows on this universe are recomputed here (`engines.caps.feasible_caps`: the
   manifest caps, relaxed to the feasible minimum on a universe that cannot hold a capped book;
   barbell: `engines.barbell.barbell_caps` with its recorded aggressor buckets), then
   `"{who}: per-asset cap {cap:.4g} exceeded by {symbol: weight}"`,
   `"{who}: bucket cap {cap:.4g} exceeded: bucket b = x"`, and every relaxation the rule makes
   must be among the recorded ones: `"{who}: relaxation not recorded: {sentence}"`;
6. `min_variance`: `|beta to the baseline| <= max_beta` on the train window,
   `"{who}: beta to {baseline} {beta:.3f} exceeds the limit {max_beta:.2f}"`;
7. `barbell`: the aggressor weight equals the regime's budget (QUIET 15% / NORMAL 10% /
   TURBULENT 8% / CRISIS 5%; the NORMAL one without spectral regimes),
   `"{who}: aggressor budget {w:.4f} != {budget:.4f} for regime {regime}"`, and it must be
   recorded: `"{who}: aggressor weight or aggressors not recorded"`.

Notes: `"fell back: {engine} -> {engine_used}"`; `"min_variance beta: n/a (fell back to X)"`,
`"barbell budget: n/a (fell back to X)"`, `"caps: n/a (fell back to equal_weight, an uncapped
benchmark)"`; `"min_variance beta: n/a (baseline B not in the train returns)"`; every recorded
relaxation as `"relaxed: {sentence}"`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from portfolio_assets.constants import BENCHMARK_ENGINES

if TYPE_CHECKING:
    from portfolio_assets.manifest import Config

UNCAPPED_ENGINES = BENCHMARK_ENGINES


@dataclass(frozen=True)
class AuditRules:
    """The audit's limits: caps and tolerance (`risk`), beta limit, budget and barbell's k
    (`optimization`), spectral regimes (`features`). Built by :func:`audit_rules` only."""

    max_weight: float
    cluster_cap: float
    max_beta: float
    tol: float
    aggressor_budget: Mapping[str, float]
    spectral_regimes: bool
    barbell_top_k: int


def audit_rules(cfg: Config) -> AuditRules:
    """The one mapping from a resolved manifest onto :class:`AuditRules`."""
    return AuditRules(
        max_weight=cfg.risk.max_weight,
        cluster_cap=cfg.risk.cluster_cap,
        max_beta=cfg.optimization.max_beta_min_variance,
        tol=cfg.risk.weights_tolerance,
        aggressor_budget=MappingProxyType(dict(cfg.optimization.aggressor_budget)),
        spectral_regimes=cfg.features.feat_spectral_regimes,
        barbell_top_k=cfg.optimization.barbell_top_k,
    )


@dataclass(frozen=True)
class AuditReport:
    """Violations (the gate fails on any) and notes (rules not applicable, relaxations)."""

    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no rule was violated."""
        return not self.violations


def train_streams(raw_returns: pd.DataFrame, directions: pd.Series) -> pd.DataFrame:
    """The train window as the synthetic-long streams the weights are on (`quant.convention`):
    raw returns for longs (and for columns without a direction, e.g. the baseline), `max(-r, -1)`
    for shorts. The beta rule must see a short's stream, not its raw return: a 10% weight on a
    short is -10% of the raw return, and read on raw returns it would count as a long."""
    from portfolio_assets.quant.convention import synthetic_long

    dirs = pd.Series("long", index=raw_returns.columns, dtype=object)
    known = directions[directions.index.isin(raw_returns.columns)]
    dirs[known.index] = known.to_numpy()
    return synthetic_long(raw_returns, dirs)


def portfolio_beta(weights: pd.Series, returns: pd.DataFrame, baseline: str) -> float:
    """Beta of the weighted portfolio to `baseline` on `returns` (NaN returns count as 0)."""
    if baseline not in returns.columns:
        return float("nan")
    r = returns.reindex(columns=weights.index).fillna(0.0).to_numpy() @ weights.to_numpy()
    b = returns[baseline].fillna(0.0).to_numpy()
    var_b = float(np.var(b, ddof=1))
    return float(np.cov(r, b, ddof=1)[0, 1] / var_b) if var_b > 0 else float("nan")


def _expected_caps(engine_used: str, universe: pd.Series, rules: AuditRules, regime: str | None,
                   aggressors: Mapping[int, str] | None):
    from portfolio_assets.quant.engines.barbell import barbell_budget, barbell_caps
    from portfolio_assets.quant.engines.caps import feasible_caps

    if engine_used == "barbell" and aggressors and regime is not None:
        budget = barbell_budget(regime, rules.aggressor_budget, rules.spectral_regimes)
        return barbell_caps(universe, [int(b) for b in aggressors], budget, rules.max_weight, rules.cluster_cap,
                            rules.barbell_top_k)[0]
    return feasible_caps(universe, rules.max_weight, rules.cluster_cap)


def audit_weights(
    engine: str,
    weights: pd.Series,
    universe: pd.Series,
    rules: AuditRules,
    *,
    baseline: str,
    engine_used: str | None = None,
    regime: str | None = None,
    aggressor_weight: float | None = None,
    aggressors: Mapping[int, str] | None = None,
    relaxations: Sequence[str] = (),
    train_returns: pd.DataFrame | None = None,
) -> AuditReport:
    """Audit one engine's weights by the rules of `engine_used` (default: `engine`).

    `universe`: bucket per symbol the engine could hold (its kept universe: the clusters of its
    inputs minus the symbols it dropped). `relaxations`, `aggressors`, `aggressor_weight`: as
    recorded by the engine (`EngineResult.relaxations`, `diagnostics`). `train_returns`: the
    train window (incl. the baseline) for the beta rule.
    """
    used = engine_used or engine
    who = engine if used == engine else f"{engine} (as {used})"
    report = AuditReport()
    out, notes = report.violations, report.notes
    if used != engine:
        notes.append(f"fell back: {engine} -> {used}")
    w = weights.astype(float)
    if not np.isfinite(w.to_numpy()).all():
        out.append(f"{who}: {int((~np.isfinite(w.to_numpy())).sum())} non-finite weight(s)")
        return report
    if (w < -rules.tol).any():
        out.append(f"{who}: negative weight(s) {w[w < -rules.tol].round(4).to_dict()}")
    total = float(w.sum())
    if abs(total - 1.0) > rules.tol:
        out.append(f"{who}: weights sum to {total:.6f}, not 1")
    notes += [f"relaxed: {r}" for r in relaxations]
    if used in UNCAPPED_ENGINES:
        if engine not in UNCAPPED_ENGINES:
            notes.append(f"caps: n/a (fell back to {used}, an uncapped benchmark)")
    else:
        held = w[w > 0]
        outside = [s for s in held.index if s not in universe.index]
        if outside:
            out.append(f"{who}: held symbol(s) outside the universe: {outside[:5]}")
        caps = _expected_caps(used, universe, rules, regime, aggressors)
        over = w[w > caps.max_weight + rules.tol]
        if len(over):
            out.append(f"{who}: per-asset cap {caps.max_weight:.4g} exceeded by {over.round(4).to_dict()}")
        by_bucket = held.groupby(universe.reindex(held.index)).sum()
        over_b = by_bucket[by_bucket > caps.cluster_cap + rules.tol]
        if len(over_b):
            out.append(f"{who}: bucket cap {caps.cluster_cap:.4g} exceeded: "
                       + ", ".join(f"bucket {int(b)} = {v:.4f}" for b, v in over_b.items()))
        out += [f"{who}: relaxation not recorded: {r}" for r in caps.relaxations if r not in relaxations]
    if used == "min_variance" and train_returns is not None:
        beta = portfolio_beta(w, train_returns, baseline)
        if not np.isfinite(beta):
            notes.append(f"min_variance beta: n/a (baseline {baseline} not in the train returns or constant)")
        elif abs(beta) > rules.max_beta:
            out.append(f"{who}: beta to {baseline} {beta:.3f} exceeds the limit {rules.max_beta:.2f}")
    elif engine == "min_variance":
        notes.append(f"min_variance beta: n/a (fell back to {used})")
    if used == "barbell":
        if regime is None or aggressor_weight is None or not aggressors:
            out.append(f"{who}: aggressor weight or aggressors not recorded")
        else:
            from portfolio_assets.quant.engines.barbell import barbell_budget

            expected = barbell_budget(regime, rules.aggressor_budget, rules.spectral_regimes)
            if abs(aggressor_weight - expected) > rules.tol:
                out.append(f"{who}: aggressor budget {aggressor_weight:.4f} != {expected:.4f} for regime {regime}")
    elif engine == "barbell":
        notes.append(f"barbell budget: n/a (fell back to {used})")
    return report
