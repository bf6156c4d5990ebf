"""The tournament on real data: skfolio's S&P 500 fixture (20 stocks + the index, read from the
wheel), point-in-time windows whose momentum pools give small, one-sided universes in few
buckets, the situation that raised CapsInfeasibleError on 2021-06-15."""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.constants import ENGINE_NAMES
from portfolio_assets.manifest import Config, SelectionConfig
from portfolio_assets.quant.engines import EngineInputs, engine_params, run_engine
from portfolio_assets.quant.tournament import (
    build_streams,
    plan_contexts,
    run_engine_tournament,
    summarize_tournament,
)
from portfolio_assets.quant.walkforward import make_windows
from portfolio_assets_tests.quant.markets import SP500_BASELINE, momentum_pool, sp500_returns

DATE = "2021-06-15"


@cache
def _tournament():
    from portfolio_assets.assets.validation import tournament_settings

    tset, eparams, sim, sims = tournament_settings(Config(selection=SelectionConfig(baseline=SP500_BASELINE)))
    hist = sp500_returns().loc[:DATE].iloc[-500:]
    windows = make_windows(hist.index, 252, 20, 20)
    pools = {w.k: (momentum_pool(hist, w.train_last, min_abs_return=0.10), f"momentum {w.train_last.date()}")
             for w in windows}
    contexts = plan_contexts(windows, hist, SP500_BASELINE, tset, pools=pools)
    streams = build_streams(hist, sorted(set(contexts["stream"])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = [run_engine_tournament(e, streams, windows, contexts, SP500_BASELINE, tset, eparams, sim, sims)
                 for e in ENGINE_NAMES]
    return contexts, {k: pd.concat([p[k] for p in parts], ignore_index=True) for k in parts[0]}


def test_small_real_universes_run_every_engine_with_recorded_rules():
    contexts, out = _tournament()
    uni = contexts[contexts["role"] == "universe"].groupby("k")
    assert uni.size().min() <= 6 and uni["bucket"].nunique().min() == 1  # small, and one window in 1 bucket
    win = out["windows"]
    assert len(win) == len(ENGINE_NAMES) * 12 * 2
    for (engine, k), w in out["weights"].groupby(["engine", "k"]):
        assert w["weight"].sum() == pytest.approx(1.0, abs=1e-9), (engine, k)
        assert (w["weight"] > 0).all()
    relaxed = win[(win["relaxations"] != "") & (win["simulator"] == "realized")]
    assert len(relaxed) >= 10
    # the audit ran on every window (pit) and flags nothing but min_variance's beta limit
    flagged = [v for v in win["violations"].str.split("; ").explode() if v]
    assert all("beta to SP:SPX" in v for v in flagged), flagged
    # barbell is barbell wherever the universe has 2+ buckets; the 1-bucket window falls back, and says so
    bar = win[(win["engine"] == "barbell") & (win["simulator"] == "realized")].set_index("k")
    one_bucket = set(bar.index[bar["n_buckets"] == 1])
    assert set(bar.index[bar["engine_used"] != "barbell"]) == one_bucket != set()
    assert bar.loc[sorted(one_bucket), "fallbacks"].str.startswith(
        "barbell -> hrp: barbell: 1 bucket: aggressors and core need >= 2 buckets").all()
    assert bar.loc[sorted(one_bucket), "audit_notes"].str.contains("barbell budget: n/a \\(fell back to hrp\\)").all()
    summary = summarize_tournament(win, out["returns"]).set_index(["engine", "simulator"])
    assert summary.loc[("barbell", "realized"), "n_fallbacks"] == len(one_bucket)
    assert summary.loc[("barbell", "realized"), "engines_used"] == f"barbell x{12 - len(one_bucket)}, hrp x{len(one_bucket)}"


def test_real_window_hrp_and_capped_min_variance_equal_skfolio():
    from skfolio import RiskMeasure
    from skfolio.cluster import HierarchicalClustering, LinkageMethod
    from skfolio.distance import PearsonDistance
    from skfolio.moments import LedoitWolf
    from skfolio.optimization import HierarchicalRiskParity, MeanRisk, ObjectiveFunction
    from skfolio.prior import EmpiricalPrior
    from skfolio.seriation import HierarchicalSeriation

    train = sp500_returns().loc[:DATE].iloc[-252:].drop(columns=[SP500_BASELINE])
    clusters = pd.Series(np.arange(20) % 5 + 1, index=train.columns)
    base = engine_params(Config())
    import dataclasses

    inputs = EngineInputs(returns=train, clusters=clusters, regime="NORMAL", baseline=SP500_BASELINE)
    hrp = run_engine("hrp", inputs, dataclasses.replace(base, max_weight=1.0, cluster_cap=1.0))
    seriation = HierarchicalSeriation(
        hierarchical_clustering_estimator=HierarchicalClustering(linkage_method=LinkageMethod.SINGLE),
        optimal_ordering=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = HierarchicalRiskParity(seriation_estimator=seriation, distance_estimator=PearsonDistance()).fit(train)
    np.testing.assert_allclose(hrp.weights.to_numpy(), sk.weights_, atol=1e-12)
    mv = run_engine("min_variance", inputs, dataclasses.replace(base, max_weight=0.1, cluster_cap=0.3))
    sk = MeanRisk(objective_function=ObjectiveFunction.MINIMIZE_RISK, risk_measure=RiskMeasure.VARIANCE,
                  min_weights=0.0, max_weights=0.1, prior_estimator=EmpiricalPrior(covariance_estimator=LedoitWolf()),
                  groups=[[f"B{b}" for b in clusters]],
                  linear_constraints=[f"B{b} <= 0.3" for b in sorted(clusters.unique())],
                  solver_params={"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}).fit(train)
    np.testing.assert_allclose(mv.weights.to_numpy(), sk.weights_, atol=5e-6)
