"""Barbell: an HRP core plus a few antifragile aggressors, the aggressor budget set by the regime.

Rule (:func:`barbell`, caps by :func:`barbell_caps`):

- bucket score = mean antifragility of its scored symbols; buckets ranked best first (ties by
  bucket id); the aggressor of a bucket is its best-scoring symbol (ties by symbol);
- budget B = :func:`barbell_budget` (per regime); each of the k aggressors holds B / k, the core
  (every symbol of the other buckets) holds 1 - B by HRP, projected onto the caps;
- few buckets: barbell runs whenever the universe has >= 2 buckets (aggressors and core in
  different buckets). k is chosen among 1 .. min(barbell_top_k, n_buckets - 1): the k needing
  the least cap relaxation (ratio of relaxed to manifest cap), ties to the larger k; a k below
  ``barbell_top_k`` is recorded as a relaxation;
- caps: the universe's caps (:func:`~portfolio_assets.quant.engines.caps.feasible_caps`); when
  the core cannot hold 1 - B within them, the core's caps are relaxed to the least values that
  can (same rule, target 1 - B), and an aggressor weight B / k above a cap raises that cap;
  every step is a sentence in ``Caps.relaxations``.
- fewer than 2 buckets: ``EngineFailure`` (there is no core beside an aggressor bucket), and the
  fallback chain takes over (recorded).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from portfolio_assets.constants import REGIME_LABELS
from portfolio_assets.quant.engines.base import EngineFailure, EngineInputs, EngineOutput, universe
from portfolio_assets.quant.engines.caps import Caps, apply_caps, feasible_caps
from portfolio_assets.quant.engines.hierarchical import hierarchical_inputs, hrp_weights
from portfolio_assets.quant.engines.params import EngineParams
from portfolio_assets.quant.moments import antifragility_scores


def barbell_budget(regime: str, aggressor_budget: dict[str, float] | object, spectral_regimes: bool) -> float:
    """Aggressor budget: ``aggressor_budget[regime]`` with spectral regimes, else the NORMAL one."""
    if regime not in REGIME_LABELS:
        raise ValueError(f"regime must be one of {REGIME_LABELS}, got {regime!r}")
    return float(aggressor_budget[regime if spectral_regimes else "NORMAL"])  # type: ignore[index]


def barbell_caps(clusters: pd.Series, aggressor_buckets: Sequence[int], budget: float, max_weight: float,
                 cluster_cap: float, top_k: int) -> tuple[Caps, Caps]:
    """(book caps, core caps) of a barbell with these aggressor buckets (rule in the module doc).

    Book caps bound every weight and bucket of the whole book; core caps are what the core's
    HRP weights (summing to 1) are projected onto: the book's core caps divided by 1 - B.
    """
    book = feasible_caps(clusters, max_weight, cluster_cap)
    k = len(aggressor_buckets)
    core_clusters = clusters[~clusters.isin(list(aggressor_buckets))]
    scale = 1.0 - budget
    core = feasible_caps(core_clusters, book.max_weight, book.cluster_cap, target=scale, who="barbell core: ")
    notes = list(book.relaxations)
    if k < top_k:
        notes.append(f"barbell_top_k {top_k} -> {k}: {clusters.nunique()} bucket(s), at least one kept for the core")
    notes += core.relaxations
    a, c = max(book.max_weight, core.max_weight), max(book.cluster_cap, core.cluster_cap)
    each = budget / k if k else 0.0
    if each > min(a, c) + 1e-12:
        notes.append(f"barbell aggressors: {budget:g} / {k} = {each:.6g} above the caps ({a:.6g}, {c:.6g})")
        a, c = max(a, each), max(c, each)
    core_scaled = Caps(min(1.0, core.max_weight / scale), min(1.0, core.cluster_cap / scale))
    return Caps(a, c, tuple(notes)), core_scaled


def _relaxation_cost(caps: Caps, max_weight: float, cluster_cap: float) -> float:
    return max(caps.max_weight / max_weight, caps.cluster_cap / cluster_cap)


def barbell(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Cluster-aware barbell (module docstring): HRP core + one aggressor per top bucket."""
    uni = universe(inputs, params)
    budget = barbell_budget(inputs.regime, params.aggressor_budget, params.spectral_regimes)
    if inputs.antifragility is None:
        scores = antifragility_scores(uni.returns)
    else:
        missing = [s for s in uni.returns.columns if s not in inputs.antifragility.index]
        if missing:
            raise ValueError(f"antifragility: no score for {len(missing)} symbol(s), e.g. {missing[:3]}")
        scores = inputs.antifragility.reindex(uni.returns.columns).astype(float)
    n_buckets = int(uni.clusters.nunique())
    if n_buckets < 2:
        raise EngineFailure(f"barbell: {n_buckets} bucket: aggressors and core need >= 2 buckets")
    # a symbol without a score (NaN) is ignored in its bucket's mean and never preferred as aggressor
    frame = pd.DataFrame({"bucket": uni.clusters, "score": scores})
    bucket_score = frame.groupby("bucket")["score"].mean().fillna(-np.inf)
    frame["score"] = frame["score"].fillna(-np.inf)
    ranked = sorted(bucket_score.index, key=lambda b: (-bucket_score[b], b))
    best: tuple[float, int, Caps, Caps] | None = None
    for k in range(min(params.barbell_top_k, n_buckets - 1), 0, -1):
        book, core_caps = barbell_caps(uni.clusters, ranked[:k], budget, params.max_weight, params.cluster_cap,
                                       params.barbell_top_k)
        cost = _relaxation_cost(book, params.max_weight, params.cluster_cap)
        if best is None or cost < best[0] - 1e-12:
            best = (cost, k, book, core_caps)
    assert best is not None  # n_buckets >= 2 gives k = 1 at least
    _, k, book, core_caps = best
    top = ranked[:k]
    aggressors = {
        int(b): sorted(frame.index[frame["bucket"] == b], key=lambda s: (-frame.at[s, "score"], s))[0]
        for b in top
    }
    core = [s for s in uni.returns.columns if uni.clusters[s] not in top]
    cov, corr = hierarchical_inputs(uni.returns[core], params)
    raw = hrp_weights(cov.matrix, corr, params.hrp_linkage)
    core_w = apply_caps(raw, uni.clusters[core], core_caps.max_weight, core_caps.cluster_cap)
    w = pd.Series(0.0, index=uni.returns.columns)
    w[core] = core_w * (1.0 - budget)
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
    }, book)
