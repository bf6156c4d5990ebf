"""Allocation engines: numbers against riskfolio-lib / skfolio / closed forms, caps, fallbacks."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.cluster import hierarchy

from portfolio_assets.manifest import OptimizationConfig
from portfolio_assets.quant import engines as E
from portfolio_assets_tests.quant.markets import OPEN, factor_market
from portfolio_assets_tests.quant.markets import inputs as _inputs
from portfolio_assets_tests.quant.markets import params as make_params

DEFAULT = make_params()


@pytest.fixture(scope="module")
def market20():
    return factor_market(20, 4, seed=1)


@pytest.fixture(scope="module")
def market40():
    return factor_market(40, 5, seed=3)


# ---------------------------------------------------------------------------------- estimation


def test_late_listing_is_used_pairwise_and_short_history_dropped(market20):
    returns, clusters = market20
    r = returns.copy()
    r.iloc[:150, 0] = np.nan  # late listing: 102 observations, kept
    r.iloc[:220, 1] = np.nan  # 32 observations < min_observations=60, dropped
    cov = E.sample_covariance(r[r.columns[2:]].join(r[r.columns[:1]]), 20)
    late = r.columns[0]
    # its variance uses its own 102 sessions, not a history cut to the newest listing for others
    assert cov.matrix.loc[late, late] == pytest.approx(r[late].var(ddof=1), rel=1e-12)
    other = r.columns[5]
    assert cov.matrix.loc[other, other] == pytest.approx(r[other].var(ddof=1), rel=1e-12)
    for name in ("inverse_vol", "min_variance", "hrp", "herc", "risk_parity"):
        res = E.run_engine(name, _inputs(r, clusters), make_params(max_weight=0.3, cluster_cap=0.3))
        assert res.engine_used == name
        assert r.columns[1] not in res.weights.index
        assert "32 observations" in res.diagnostics["dropped_symbols"][r.columns[1]]
        assert res.weights[late] > 0 and res.weights.sum() == pytest.approx(1.0, abs=1e-12)



# ---------------------------------------------------------------------------------- benchmarks


def test_market_raw_pool_and_equal_weight_are_what_they_say(market20):
    returns, clusters = market20
    res = E.run_engine("market", _inputs(returns, clusters), OPEN)
    assert res.weights.to_dict() == {"AMEX:SPY": 1.0}
    raw = factor_market(33, 3, seed=9)[0]
    res = E.run_engine("raw_pool_ew", _inputs(returns, clusters, raw_pool_returns=raw), DEFAULT)
    assert list(res.weights.index) == list(raw.columns) and (res.weights == 1 / 33).all()
    with pytest.raises(ValueError, match="raw_pool_returns"):
        E.run_engine("raw_pool_ew", _inputs(returns, clusters), DEFAULT)
    # an empty raw pool is a data condition: raw_pool_ew falls back to the terminal 1/N, recorded
    empty = _inputs(returns, clusters, raw_pool_returns=raw.iloc[:, :0])
    res = E.run_engine("raw_pool_ew", empty, DEFAULT)
    assert res.engine_used == "equal_weight" and (res.weights == 1 / 20).all()
    assert res.fallbacks == [E.FallbackEvent("raw_pool_ew", "raw_pool_ew: the raw pool is empty", "equal_weight")]
    # equal_weight: exact 1/N, and a bucket over the cap is reported, not silently re-weighted
    skewed = pd.Series([1] * 12 + [2, 3, 4, 4, 2, 3, 2, 3], index=returns.columns)
    res = E.run_engine("equal_weight", _inputs(returns, skewed), DEFAULT)
    assert (res.weights == 1 / 20).all()
    assert res.diagnostics["caps_respected"] is False
    assert res.diagnostics["bucket_cap_violations"] == {1: pytest.approx(0.6)}


# ---------------------------------------------------------------------------------- hierarchical


def test_hrp_matches_riskfolio_and_skfolio(market40):
    import riskfolio as rp
    from skfolio.cluster import HierarchicalClustering, LinkageMethod
    from skfolio.distance import PearsonDistance
    from skfolio.optimization import HierarchicalRiskParity
    from skfolio.seriation import HierarchicalSeriation

    returns, clusters = market40
    res = E.run_engine("hrp", _inputs(returns, clusters), OPEN)
    assert res.diagnostics["cap_binding"] is False
    port = rp.HCPortfolio(returns=returns)
    ref = port.optimization(model="HRP", codependence="pearson", rm="MV", rf=0, linkage="single",
                            leaf_order=False, method_cov="hist")["weights"]
    np.testing.assert_allclose(res.weights.to_numpy(), ref.reindex(returns.columns), atol=1e-10)
    seriation = HierarchicalSeriation(
        hierarchical_clustering_estimator=HierarchicalClustering(linkage_method=LinkageMethod.SINGLE),
        optimal_ordering=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = HierarchicalRiskParity(seriation_estimator=seriation, distance_estimator=PearsonDistance())
        sk.fit(returns)
    np.testing.assert_allclose(res.weights.to_numpy(), sk.weights_, atol=1e-10)
    # an HRP-only check that would fail for inverse-vol: weights are not proportional to 1/var
    ivp = 1 / returns.var()
    assert np.abs(res.weights - ivp / ivp.sum()).max() > 1e-3


def test_herc_matches_riskfolio_and_splits_risk_equally(market40):
    import riskfolio as rp

    returns, clusters = market40
    k = 5
    res = E.run_engine("herc", _inputs(returns, clusters), OPEN)
    assert res.diagnostics["n_clusters"] == k
    port = rp.HCPortfolio(returns=returns)
    ref = port.optimization(model="HERC", codependence="pearson", rm="MV", rf=0, linkage="ward", k=k,
                            leaf_order=False, method_cov="hist")["weights"]
    np.testing.assert_allclose(res.weights.to_numpy(), ref.reindex(returns.columns), atol=1e-10)

    # defining property, rebuilt independently: at each of the k-1 top splits the two children's
    # total weight times their summed cluster risk are equal
    cov = returns.cov().to_numpy()
    dist = np.sqrt(np.clip(0.5 * (1 - returns.corr().to_numpy()), 0, 1))
    link = hierarchy.linkage(dist[np.triu_indices(len(dist), 1)], method="ward")
    labels = hierarchy.fcluster(link, k, criterion="maxclust")

    def ivp_var(idx):
        w = 1 / np.diag(cov)[idx]
        w /= w.sum()
        return w @ cov[np.ix_(idx, idx)] @ w

    risk = {lab: ivp_var(np.flatnonzero(labels == lab)) for lab in set(labels)}
    w = res.weights.to_numpy()
    _, nodes = hierarchy.to_tree(link, rd=True)
    top = sorted((n for n in nodes if not n.is_leaf()), key=lambda n: n.dist, reverse=True)[: k - 1]
    for node in top:
        sides = [node.get_left().pre_order(), node.get_right().pre_order()]
        products = [w[s].sum() * sum(risk[lab] for lab in set(labels[s])) for s in sides]
        assert products[0] == pytest.approx(products[1], rel=1e-9)


# ---------------------------------------------------------------------------------- solvers


def test_risk_parity_equal_contributions_and_matches_riskfolio_and_skfolio(market20):
    import riskfolio as rp
    from skfolio import RiskMeasure
    from skfolio.moments import LedoitWolf
    from skfolio.optimization import RiskBudgeting
    from skfolio.prior import EmpiricalPrior

    returns, clusters = market20
    res = E.run_engine("risk_parity", _inputs(returns, clusters), OPEN)
    cov = E.ledoit_wolf_covariance(returns, 20).matrix
    rc = E.risk_contributions(res.weights, cov)
    # Newton (Spinu) solves the uncapped program to machine precision; the exponential-cone
    # interior-point solve it replaced stopped with a gradient residual of ~1e-6, contributions
    # equal only to ~3e-7, which failed this check at 1e-7 depending on the iteration path
    assert res.diagnostics["solver_status"] == "newton (no cap binds)"
    np.testing.assert_allclose(rc, 1 / 20, atol=1e-12)
    port = rp.Portfolio(returns=returns)
    port.assets_stats(method_mu="hist", method_cov="hist")
    port.cov = cov
    ref = port.rp_optimization(model="Classic", rm="MV", rf=0, b=None, hist=True)["weights"]
    np.testing.assert_allclose(res.weights.to_numpy(), ref.reindex(returns.columns), atol=1e-4)
    sk = RiskBudgeting(risk_measure=RiskMeasure.VARIANCE,
                       prior_estimator=EmpiricalPrior(covariance_estimator=LedoitWolf()))
    sk.fit(returns.to_numpy())
    np.testing.assert_allclose(res.weights.to_numpy(), sk.weights_, atol=1e-4)
    # risk parity is not inverse-vol on correlated data
    inv = 1 / np.sqrt(np.diag(cov))
    assert np.abs(res.weights.to_numpy() - inv / inv.sum()).max() > 1e-3


def test_min_variance_two_asset_closed_form():
    returns, clusters = factor_market(2, 2, seed=11)
    res = E.run_engine("min_variance", _inputs(returns, clusters),
                       make_params(max_weight=1.0, cluster_cap=1.0, shrinkage="sample"))
    s = returns.cov().to_numpy()
    w1 = (s[1, 1] - s[0, 1]) / (s[0, 0] + s[1, 1] - 2 * s[0, 1])
    assert 0 < w1 < 1
    np.testing.assert_allclose(res.weights.to_numpy(), [w1, 1 - w1], atol=1e-9)


def test_min_variance_with_caps_matches_skfolio(market20):
    from skfolio import RiskMeasure
    from skfolio.moments import LedoitWolf
    from skfolio.optimization import MeanRisk, ObjectiveFunction
    from skfolio.prior import EmpiricalPrior

    returns, clusters = market20
    params = make_params(max_weight=0.1, cluster_cap=0.3)
    res = E.run_engine("min_variance", _inputs(returns, clusters), params)
    assert res.diagnostics["solver_status"].startswith("optimal (tol ")
    tight = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
    sk = MeanRisk(objective_function=ObjectiveFunction.MINIMIZE_RISK, risk_measure=RiskMeasure.VARIANCE,
                  min_weights=0.0, max_weights=0.1,
                  prior_estimator=EmpiricalPrior(covariance_estimator=LedoitWolf()),
                  groups=[[f"B{b}" for b in clusters]],
                  linear_constraints=[f"B{b} <= 0.3" for b in sorted(clusters.unique())],
                  solver_params=tight)
    sk.fit(returns.to_numpy())
    np.testing.assert_allclose(res.weights.to_numpy(), sk.weights_, atol=1e-5)
    # both caps bind here, so this case exercises the constraints
    assert res.weights.max() == pytest.approx(0.1, abs=1e-7)
    assert res.weights.groupby(clusters).sum().max() == pytest.approx(0.3, abs=1e-7)


def test_inverse_vol_hand_computed():
    returns, clusters = factor_market(6, 6, seed=5)
    res = E.run_engine("inverse_vol", _inputs(returns, clusters), OPEN)
    sd = returns.std(ddof=1).to_numpy()
    np.testing.assert_allclose(res.weights.to_numpy(), (1 / sd) / (1 / sd).sum(), rtol=1e-12)
    assert res.diagnostics["turnover_penalty"].startswith("not applicable")


def test_max_sharpe_two_asset_tangency_and_ridge():
    rng = np.random.default_rng(23)
    raw = rng.multivariate_normal([7e-4, 6e-4], [[1.0e-4, 2e-5], [2e-5, 8e-5]], 400)
    returns = pd.DataFrame(raw, columns=["NYSE:A", "NYSE:B"])
    clusters = pd.Series([1, 2], index=returns.columns)
    mu, s = returns.mean().to_numpy(), returns.cov().to_numpy()
    for l2 in (0.0, 0.5):
        params = make_params(max_weight=1.0, cluster_cap=1.0, shrinkage="sample", max_sharpe_l2=l2)
        res = E.run_engine("max_sharpe", _inputs(returns, clusters), params)
        reg = s + l2 * np.mean(np.diag(s)) * np.eye(2)
        closed = np.linalg.solve(reg, mu)
        closed /= closed.sum()
        assert (closed > 0).all() and (closed < 1).all()  # interior: no cap or bound binds
        np.testing.assert_allclose(res.weights.to_numpy(), closed, atol=1e-9)


def test_max_sharpe_without_positive_excess_falls_back_to_min_variance(market20):
    returns, clusters = market20
    res = E.run_engine("max_sharpe", _inputs(returns - 0.01, clusters), DEFAULT)
    assert res.engine == "max_sharpe" and res.engine_used == "min_variance"
    assert res.fallbacks[0].engine == "max_sharpe" and "positive expected excess" in res.fallbacks[0].error
    # a real solver status: the whole previous book is outside the universe and a unit of turnover
    # costs more than any expected return, so no book has a positive net excess -> infeasible
    prev = pd.Series({"NYSE:OLD1": 0.5, "NYSE:OLD2": 0.5})
    res = E.run_engine("max_sharpe", _inputs(returns, clusters, prev_weights=prev),
                       make_params(turnover_penalty=True, kappa=0.01))
    assert res.engine_used == "min_variance"
    assert "solver status 'infeasible'" in res.fallbacks[0].error


# ---------------------------------------------------------------------------------- barbell


def test_barbell_budget_by_regime_and_spectral_flag():
    returns, clusters = factor_market(30, 6, seed=2)
    score = pd.Series(0.0, index=returns.columns)
    score[clusters == 5] = 2.0  # best bucket; its best member gets the top score
    score[clusters == 2] = 1.0
    best5, best2 = clusters.index[clusters == 5][3], clusters.index[clusters == 2][1]
    score[best5], score[best2] = 3.0, 1.5
    params_on = make_params(barbell_top_k=2, max_weight=0.3, cluster_cap=0.3)
    params_off = make_params(barbell_top_k=2, max_weight=0.3, cluster_cap=0.3, spectral_regimes=False)
    expected = {"QUIET": 0.15, "NORMAL": 0.10, "TURBULENT": 0.08, "CRISIS": 0.05}
    for regime, budget in expected.items():
        inputs = _inputs(returns, clusters, regime, antifragility=score)
        res = E.run_engine("barbell", inputs, params_on)
        assert res.diagnostics["aggressors"] == {5: best5, 2: best2}
        assert res.weights[best5] == pytest.approx(budget / 2) and res.weights[best2] == pytest.approx(budget / 2)
        assert res.diagnostics["aggressor_weight"] == pytest.approx(budget)
        aggressor_buckets = clusters.isin([5, 2])
        held = res.weights[res.weights > 0].index
        assert set(held[aggressor_buckets[held]]) == {best5, best2}  # no other member of those buckets
        assert res.weights[~aggressor_buckets].sum() == pytest.approx(1 - budget)
        off = E.run_engine("barbell", inputs, params_off)
        assert off.diagnostics["aggressor_budget"] == 0.10


def test_barbell_core_is_scaled_hrp():
    returns, clusters = factor_market(30, 6, seed=2)
    params = make_params(barbell_top_k=2, max_weight=1.0, cluster_cap=1.0)
    res = E.run_engine("barbell", _inputs(returns, clusters), params)
    assert res.engine_used == "barbell" and res.relaxations == ()
    core = [s for s in returns.columns if clusters[s] not in res.diagnostics["aggressors"]]
    cov = E.sample_covariance(returns[core], 20).matrix
    hrp = E.hrp_weights(cov, E.correlation_from_covariance(cov), "single")
    np.testing.assert_allclose(res.weights[core], 0.9 * hrp, atol=1e-12)


def test_barbell_few_buckets_rule():
    """k = the number of aggressor buckets in 1..min(top_k, n_buckets - 1) that needs the least
    cap relaxation, ties to the larger; below 2 buckets barbell falls back (recorded)."""
    returns, clusters = factor_market(30, 6, seed=2)  # 6 buckets of 5
    # open caps: nothing to relax, so the largest k that leaves a core bucket: 5
    res = E.run_engine("barbell", _inputs(returns, clusters), make_params(barbell_top_k=6, max_weight=1.0,
                                                                          cluster_cap=1.0))
    assert res.engine_used == "barbell" and len(res.diagnostics["aggressors"]) == 5
    assert res.relaxations == ("barbell_top_k 6 -> 5: 6 bucket(s), at least one kept for the core",)
    # caps 0.25: the core holds 0.9, which needs 4 buckets without relaxation: k = 2
    res = E.run_engine("barbell", _inputs(returns, clusters), make_params(barbell_top_k=6))
    assert res.engine_used == "barbell" and len(res.diagnostics["aggressors"]) == 2
    assert res.relaxations == ("barbell_top_k 6 -> 2: 6 bucket(s), at least one kept for the core",)
    assert res.caps.max_weight == 0.25 and res.caps.cluster_cap == 0.25
    # 2 buckets: one aggressor bucket, the core (one bucket of 15) holds 0.9 at a relaxed bucket cap
    two = clusters.map(lambda b: 1 if b <= 3 else 2)
    res = E.run_engine("barbell", _inputs(returns, two), make_params())
    assert res.engine_used == "barbell" and res.fallbacks == []
    assert res.relaxations == (
        "cluster_cap 0.25 -> 0.5: 2 bucket(s) of [15, 15] symbols hold at most 0.5 < 1",
        "barbell_top_k 3 -> 1: 2 bucket(s), at least one kept for the core",
        "barbell core: cluster_cap 0.5 -> 0.9: 1 bucket(s) of [15] symbols hold at most 0.5 < 0.9",
    )
    assert res.caps.cluster_cap == pytest.approx(0.9)
    assert res.weights.groupby(two).sum().sort_values().tolist() == pytest.approx([0.1, 0.9])
    assert res.weights.max() <= 0.25 + 1e-12
    # 1 bucket: no core beside the aggressors -> the chain (hrp), recorded
    one = pd.Series(1, index=returns.columns)
    few = E.run_engine("barbell", _inputs(returns, one), make_params())
    assert few.engine_used == "hrp"
    assert few.fallbacks == [E.FallbackEvent("barbell", "barbell: 1 bucket: aggressors and core need >= 2 buckets",
                                             "hrp")]


# ---------------------------------------------------------------------------------- caps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_caps_hold_for_every_optimizing_engine(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 12, 7)  # 7 buckets with many members each
    n = int(sizes.sum())
    labels = np.repeat(np.arange(1, 8), sizes)
    returns, _ = factor_market(n, 7, seed=seed + 100)
    clusters = pd.Series(labels, index=returns.columns)
    # bucket 1 is made very low-vol so every risk-based engine wants to overweight it
    returns.loc[:, clusters.index[clusters == 1]] *= 0.2
    params = make_params(max_weight=0.08, cluster_cap=0.25, barbell_top_k=2)
    binding = 0
    for name in ("inverse_vol", "min_variance", "risk_parity", "hrp", "herc", "max_sharpe", "barbell"):
        res = E.run_engine(name, _inputs(returns, clusters), params)
        assert res.engine_used == name, res.fallbacks
        w = res.weights
        assert (w >= 0).all() and w.sum() == pytest.approx(1.0, abs=1e-9)
        assert w.max() <= 0.08 + 1e-6, name
        assert w.groupby(clusters.reindex(w.index)).sum().max() <= 0.25 + 1e-6, name
        binding += w.groupby(clusters.reindex(w.index)).sum().max() > 0.25 - 1e-6
    assert binding >= 5  # the bucket cap is active, not vacuous


def test_apply_caps_projection_properties():
    rng = np.random.default_rng(4)
    clusters = pd.Series(np.repeat([1, 2, 3, 4, 5], [10, 3, 8, 12, 7]),
                         index=[f"NYSE:X{i}" for i in range(40)])
    raw = pd.Series(rng.pareto(1.5, 40) + 0.01, index=clusters.index)
    raw[clusters == 1] *= 6
    raw /= raw.sum()
    capped = E.apply_caps(raw, clusters, 0.05, 0.25)
    assert capped.sum() == pytest.approx(1.0, abs=1e-12)
    assert capped.max() <= 0.05 + 1e-12
    assert capped.groupby(clusters).sum().max() <= 0.25 + 1e-12
    # names that never hit a cap, in buckets that never hit the cap, keep their proportions
    buckets = capped.groupby(clusters).sum()
    free = capped[(capped < 0.05 - 1e-9) & (clusters.map(buckets) < 0.25 - 1e-9)].index
    assert len(free) >= 3
    ratio = capped[free] / raw[free]
    assert ratio.max() == pytest.approx(ratio.min(), rel=1e-10)
    # already within the caps: unchanged
    inside = pd.Series(1 / 40, index=clusters.index)
    pd.testing.assert_series_equal(E.apply_caps(inside, clusters, 0.05, 0.5), inside)
    with pytest.raises(E.CapsInfeasibleError, match=r"40 symbols x max_weight 0.02"):
        E.apply_caps(raw, clusters, 0.02, 0.5)
    with pytest.raises(E.CapsInfeasibleError, match=r"5 buckets x cluster_cap 0.15"):
        E.apply_caps(raw, clusters, 0.1, 0.15)


# ---------------------------------------------------------------------------------- turnover


def test_turnover_penalty_lowers_l1_distance_to_previous_weights(market20):
    returns, clusters = market20
    prev = pd.Series(1 / 20, index=returns.columns)
    prev = prev.drop(returns.columns[0])
    prev["NYSE:GONE"] = 1 / 20  # a holding outside the universe: sold in full either way
    inputs = _inputs(returns, clusters, prev_weights=prev)
    for name in ("min_variance", "max_sharpe", "risk_parity"):
        plain = E.run_engine(name, inputs, make_params(turnover_penalty=False))
        penalized = E.run_engine(name, inputs, make_params(turnover_penalty=True))
        assert plain.diagnostics["turnover_penalty"] == "off"
        assert penalized.diagnostics["turnover_penalty"].startswith("applied")
        assert penalized.diagnostics["l1_turnover"] < plain.diagnostics["l1_turnover"] - 0.05, name
        direct = (penalized.weights.reindex(prev.index.union(returns.columns), fill_value=0)
                  - prev.reindex(prev.index.union(returns.columns), fill_value=0)).abs().sum()
        assert penalized.diagnostics["l1_turnover"] == pytest.approx(direct)
    hrp = E.run_engine("hrp", inputs, make_params(turnover_penalty=True))
    assert hrp.diagnostics["turnover_penalty"].startswith("not applicable")


# ---------------------------------------------------------------------------------- fallbacks


def test_forced_failure_uses_and_records_the_fallback(market20):
    returns, clusters = market20
    res = E.run_engine("max_sharpe", _inputs(returns, clusters), make_params(force_fail=frozenset({"max_sharpe"})))
    assert res.engine == "max_sharpe" and res.engine_used == "min_variance"
    assert len(res.fallbacks) == 1
    event = res.fallbacks[0]
    assert (event.engine, event.fallback_to) == ("max_sharpe", "min_variance")
    assert "forced failure" in event.error
    direct = E.run_engine("min_variance", _inputs(returns, clusters), DEFAULT)
    pd.testing.assert_series_equal(res.weights, direct.weights)


def test_non_finite_output_falls_back(market20, monkeypatch):
    returns, clusters = market20

    def broken(inputs, params):
        return E.EngineOutput(pd.Series(np.nan, index=inputs.returns.columns), {}, None)

    monkeypatch.setitem(E.ENGINES, "hrp", broken)
    res = E.run_engine("hrp", _inputs(returns, clusters), DEFAULT)
    assert res.engine_used == "inverse_vol"
    assert res.fallbacks == [E.FallbackEvent("hrp", "hrp: non-finite weights", "inverse_vol")]


def test_exhausted_chain_ends_in_the_terminal_engine_and_only_the_hook_can_fail_it(market20):
    returns, clusters = market20
    failing = {"max_sharpe", "min_variance", "inverse_vol"}
    res = E.run_engine("max_sharpe", _inputs(returns, clusters), make_params(force_fail=frozenset(failing)))
    assert res.engine_used == "equal_weight" and (res.weights == 1 / 20).all()
    assert [(f.engine, f.fallback_to) for f in res.fallbacks] == [
        ("max_sharpe", "min_variance"), ("min_variance", "inverse_vol"), ("inverse_vol", "equal_weight")]
    with pytest.raises(E.EngineError) as info:
        E.run_engine("max_sharpe", _inputs(returns, clusters), make_params(force_fail=frozenset(failing | {"equal_weight"})))
    message = str(info.value)
    for name in ("max_sharpe", "min_variance", "inverse_vol", "equal_weight"):
        assert f"{name}: {name}: forced failure" in message
    assert [e.fallback_to for e in info.value.fallbacks] == ["min_variance", "inverse_vol", "equal_weight"]
    # an engine without a chain goes to the terminal 1/N, recorded
    res = E.run_engine("hrp", _inputs(returns, clusters), make_params(force_fail=frozenset({"hrp"}), fallback_chain={}))
    assert res.engine_used == "equal_weight" and (res.weights == 1 / 20).all()
    assert [(f.engine, f.fallback_to) for f in res.fallbacks] == [("hrp", "equal_weight")]


# ---------------------------------------------------------------------------------- API


def test_registry_order_and_input_errors(market20):
    returns, clusters = market20
    assert E.ENGINE_NAMES == ("market", "raw_pool_ew", "equal_weight", "inverse_vol", "min_variance",
                              "risk_parity", "hrp", "herc", "max_sharpe", "barbell")
    assert tuple(E.ENGINES) == E.ENGINE_NAMES
    with pytest.raises(ValueError, match="unknown engine 'nco'"):
        E.run_engine("nco", _inputs(returns, clusters), DEFAULT)
    with pytest.raises(ValueError, match="regime must be one of"):
        _inputs(returns, clusters, "PANIC")
    with pytest.raises(ValueError, match="clusters: no bucket for 1 symbol"):
        _inputs(returns, clusters.iloc[1:])
    bad = returns.copy()
    bad.iloc[3, 2] = np.inf
    with pytest.raises(ValueError, match=r"returns contains \+/-inf"):
        _inputs(bad, clusters)
    with pytest.raises(ValueError, match=r"fallback_chain\['hrp'\] names unknown engine\(s\) \['one_over_n'\]"):
        OptimizationConfig(fallback_chain={"hrp": ["one_over_n"]})
    with pytest.raises(ValueError, match=r"unknown engine\(s\) \['nco'\]"):
        OptimizationConfig(force_fail=["nco"])
    with pytest.raises(ValueError, match="aggressor_budget needs exactly the regimes"):
        OptimizationConfig(aggressor_budget={"QUIET": 0.1})


def test_module_import_is_light():
    code = ("import sys, portfolio_assets.quant.engines; "
            "print(sorted(m for m in ('cvxpy', 'riskfolio', 'skfolio', 'dagster') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
