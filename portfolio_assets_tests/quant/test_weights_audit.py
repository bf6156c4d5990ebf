"""The weights audit (the rules of the blocking `weights_sanity` gate): one case per rule, exact
messages; the rules are those of the engine that produced the weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.manifest import Config, FeaturesConfig, OptimizationConfig, RiskConfig
from portfolio_assets.quant.engines import run_engine
from portfolio_assets.quant.weights_audit import (
    AuditRules,
    audit_rules,
    audit_weights,
    portfolio_beta,
    train_streams,
)
from portfolio_assets_tests.quant.markets import BASELINE, factor_market, inputs, params

RULES = audit_rules(Config())
SYMBOLS = [f"NYSE:S{i}" for i in range(8)]
UNIVERSE = pd.Series([1, 1, 2, 2, 3, 3, 4, 4], index=SYMBOLS)  # 4 buckets of 2: the caps 0.25 hold


def _w(values: dict[str, float]) -> pd.Series:
    return pd.Series(values, dtype=float)


def _audit(engine, weights, universe=UNIVERSE, rules=RULES, **kw):
    return audit_weights(engine, weights, universe, rules, baseline=BASELINE, **kw)


EQUAL = _w(dict.fromkeys(SYMBOLS, 1 / 8))


def test_audit_rules_come_from_the_manifest_sections():
    cfg = Config(risk=RiskConfig(max_weight=0.2, cluster_cap=0.3, weights_tolerance=1e-5),
                 optimization=OptimizationConfig(max_beta_min_variance=0.8, barbell_top_k=2),
                 features=FeaturesConfig(feat_spectral_regimes=False))
    assert audit_rules(cfg) == AuditRules(max_weight=0.2, cluster_cap=0.3, max_beta=0.8, tol=1e-5,
                                          aggressor_budget=RULES.aggressor_budget, spectral_regimes=False,
                                          barbell_top_k=2)


def test_clean_weights_pass_with_no_notes():
    report = _audit("hrp", EQUAL)
    assert report.passed and report.violations == [] and report.notes == []


def test_rule_finite_stops_the_audit():
    report = _audit("hrp", _w({"NYSE:S0": np.nan, "NYSE:S1": np.inf, "NYSE:S2": 0.5}))
    assert report.violations == ["hrp: 2 non-finite weight(s)"]


def test_rule_long_only():
    w = EQUAL.copy()
    w["NYSE:S0"], w["NYSE:S1"] = -0.05, 0.3
    report = _audit("inverse_vol", w)
    assert "inverse_vol: negative weight(s) {'NYSE:S0': -0.05}" in report.violations


def test_rule_fully_invested():
    report = _audit("hrp", EQUAL * 0.9)
    assert report.violations == ["hrp: weights sum to 0.900000, not 1"]


def test_rule_held_symbols_in_the_universe():
    w = EQUAL.copy()
    w["NYSE:GONE"] = w.pop("NYSE:S7")
    report = _audit("hrp", w)
    assert report.violations == ["hrp: held symbol(s) outside the universe: ['NYSE:GONE']"]


def test_rule_per_asset_cap():
    w = _w({"NYSE:S0": 0.3, "NYSE:S2": 0.2, "NYSE:S4": 0.25, "NYSE:S6": 0.25})
    report = _audit("min_variance", w)
    assert report.violations == ["min_variance: per-asset cap 0.25 exceeded by {'NYSE:S0': 0.3}",
                                 "min_variance: bucket cap 0.25 exceeded: bucket 1 = 0.3000"]


def test_rule_bucket_cap():
    w = _w({"NYSE:S0": 0.2, "NYSE:S1": 0.2, "NYSE:S2": 0.2, "NYSE:S4": 0.2, "NYSE:S6": 0.2})
    report = _audit("herc", w)
    assert report.violations == ["herc: bucket cap 0.25 exceeded: bucket 1 = 0.4000"]


def test_rule_caps_exempt_for_the_honest_baselines():
    w = _w({"NYSE:S0": 0.5, "NYSE:S1": 0.5})
    for engine in ("market", "raw_pool_ew", "equal_weight"):
        assert _audit(engine, w).passed


def test_rule_relaxed_caps_are_recomputed_and_must_be_recorded():
    universe = UNIVERSE.iloc[:3]  # 3 symbols in 2 buckets: no book meets 0.25 / 0.25
    expected = ("max_weight 0.25 -> 0.333333: 3 symbol(s) x 0.25 = 0.75 < 1",
                "cluster_cap 0.25 -> 0.666667: 2 bucket(s) of [2, 1] symbols hold at most 0.5 < 1")
    w = _w(dict.fromkeys(universe.index, 1 / 3))
    recorded = _audit("hrp", w, universe, relaxations=expected)
    assert recorded.passed
    assert recorded.notes == [f"relaxed: {r}" for r in expected]
    silent = _audit("hrp", w, universe)
    assert silent.violations == [f"hrp: relaxation not recorded: {r}" for r in expected]
    # the relaxed cap is the feasible minimum, not a licence: 0.5 on one symbol is still too much
    over = _w({"NYSE:S0": 0.5, "NYSE:S1": 0.1, "NYSE:S2": 0.4})
    assert _audit("hrp", over, universe, relaxations=expected).violations == [
        "hrp: per-asset cap 0.3333 exceeded by {'NYSE:S0': 0.5, 'NYSE:S2': 0.4}"]


def test_rule_min_variance_beta():
    returns, _ = factor_market(3, 1, seed=4)
    train = returns.rename(columns=dict(zip(returns.columns, ["NYSE:S0", "NYSE:S1", BASELINE], strict=True)))
    train["NYSE:S0"] = 2.0 * train[BASELINE]  # beta 2 by construction
    universe = pd.Series([1, 2, 3], index=train.columns)
    w = _w({"NYSE:S0": 1 / 3, "NYSE:S1": 1 / 3, BASELINE: 1 / 3})
    beta = portfolio_beta(w, train, BASELINE)
    assert beta > 1.0
    rules = dataclasses.replace(RULES, max_weight=1.0, cluster_cap=1.0)
    report = _audit("min_variance", w, universe, rules, train_returns=train)
    assert report.violations == [f"min_variance: beta to {BASELINE} {beta:.3f} exceeds the limit 1.00"]
    # the rules of the engine that produced the weights: an inverse_vol fallback has no beta limit
    fell = _audit("min_variance", w, universe, rules, engine_used="inverse_vol", train_returns=train)
    assert fell.passed
    assert fell.notes == ["fell back: min_variance -> inverse_vol", "min_variance beta: n/a (fell back to inverse_vol)"]
    # ... and a min_variance fallback of max_sharpe gets it
    other = _audit("max_sharpe", w, universe, rules, engine_used="min_variance", train_returns=train)
    assert other.violations == [f"max_sharpe (as min_variance): beta to {BASELINE} {beta:.3f} exceeds the limit 1.00"]
    no_base = _audit("min_variance", w, universe, rules, train_returns=train.drop(columns=[BASELINE]))
    assert no_base.passed and no_base.notes == [
        f"min_variance beta: n/a (baseline {BASELINE} not in the train returns or constant)"]


def test_rule_barbell_budget():
    universe = pd.Series(np.repeat(np.arange(1, 9), 4), index=[f"NYSE:B{i:02d}" for i in range(32)])
    w = pd.Series(0.9 / 29, index=universe.index)
    aggressors = {1: "NYSE:B00", 2: "NYSE:B04", 3: "NYSE:B08"}
    w[list(aggressors.values())] = 0.1 / 3
    w[[s for s in universe.index if universe[s] in aggressors and s not in aggressors.values()]] = 0.0
    w /= w.sum()
    ok = _audit("barbell", w, universe, regime="NORMAL", aggressor_weight=0.1, aggressors=aggressors)
    assert ok.passed, ok.violations
    bad = _audit("barbell", w, universe, regime="CRISIS", aggressor_weight=0.1, aggressors=aggressors)
    assert bad.violations == ["barbell: aggressor budget 0.1000 != 0.0500 for regime CRISIS"]
    off = dataclasses.replace(RULES, spectral_regimes=False)  # the NORMAL budget whatever the regime
    assert _audit("barbell", w, universe, off, regime="CRISIS", aggressor_weight=0.1, aggressors=aggressors).passed
    missing = _audit("barbell", w, universe, regime="NORMAL")
    assert missing.violations == ["barbell: aggressor weight or aggressors not recorded"]
    fell = _audit("barbell", w, universe, engine_used="hrp", regime="NORMAL", aggressor_weight=None)
    assert fell.passed
    assert fell.notes == ["fell back: barbell -> hrp", "barbell budget: n/a (fell back to hrp)"]


def test_fallback_to_an_uncapped_benchmark_says_caps_do_not_apply():
    w = _w({"NYSE:S0": 0.5, "NYSE:S1": 0.5})
    report = _audit("hrp", w, engine_used="equal_weight")
    assert report.passed
    assert report.notes == ["fell back: hrp -> equal_weight", "caps: n/a (fell back to equal_weight, an uncapped benchmark)"]


@pytest.mark.parametrize("n_buckets", [2, 3, 4])
def test_engine_output_on_few_buckets_passes_the_audit_of_the_engine_used(n_buckets):
    """Every engine's real output, relaxations and all, passes the audit; dropping the recorded
    relaxations makes it fail (the audit recomputes them)."""
    returns, clusters = factor_market(9, n_buckets, seed=n_buckets)
    universe = clusters
    for engine in ("inverse_vol", "min_variance", "risk_parity", "hrp", "herc", "max_sharpe", "barbell"):
        res = run_engine(engine, inputs(returns, clusters, "TURBULENT"), params())
        report = audit_weights(engine, res.weights, universe, RULES, baseline=BASELINE, engine_used=res.engine_used,
                               regime="TURBULENT", relaxations=res.relaxations,
                               aggressor_weight=res.diagnostics.get("aggressor_weight"),
                               aggressors=res.diagnostics.get("aggressors"))
        assert report.passed, (engine, report.violations)
        if res.relaxations:
            silent = audit_weights(engine, res.weights, universe, RULES, baseline=BASELINE,
                                   engine_used=res.engine_used, regime="TURBULENT",
                                   aggressor_weight=res.diagnostics.get("aggressor_weight"),
                                   aggressors=res.diagnostics.get("aggressors"))
            assert any("relaxation not recorded" in v for v in silent.violations), engine


def test_beta_rule_reads_a_short_on_its_stream_not_on_its_raw_return():
    """A 50/50 book of the baseline and a short of a stock that moves exactly like it has beta 0:
    the short's stream is -r. Read on raw returns (the bug the weights gate had on real data, a
    1996 min_variance book with three shorts at beta 0.50 reported as 1.04) it would be 1."""
    rng = np.random.default_rng(3)
    base = rng.normal(0, 0.01, 252)
    raw = pd.DataFrame({BASELINE: base, "NYSE:TWIN": base, "NYSE:LONG": base * 0.5 + rng.normal(0, 0.01, 252)})
    directions = pd.Series({"NYSE:TWIN": "short", "NYSE:LONG": "long"})
    streams = train_streams(raw, directions)
    assert streams[BASELINE].tolist() == raw[BASELINE].tolist()  # no direction: long
    assert streams["NYSE:TWIN"].tolist() == (-raw["NYSE:TWIN"]).tolist()
    w = pd.Series({BASELINE: 0.5, "NYSE:TWIN": 0.5})
    assert portfolio_beta(w, streams, BASELINE) == pytest.approx(0.0, abs=1e-12)
    assert portfolio_beta(w, raw, BASELINE) == pytest.approx(1.0)
    # In general: weights on the streams = signed net weights on the raw returns (no -100% clipping here).
    w3 = pd.Series({BASELINE: 0.2, "NYSE:TWIN": 0.3, "NYSE:LONG": 0.5})
    net = w3 * pd.Series({BASELINE: 1.0, "NYSE:TWIN": -1.0, "NYSE:LONG": 1.0})
    assert portfolio_beta(w3, streams, BASELINE) == pytest.approx(portfolio_beta(net, raw, BASELINE), abs=1e-12)
    rules = dataclasses.replace(audit_rules(Config()), max_beta=0.5)
    universe = pd.Series({BASELINE: 1, "NYSE:TWIN": 2})
    assert not [v for v in audit_weights("min_variance", w, universe, rules, baseline=BASELINE,
                                         train_returns=streams).violations if "beta" in v]
    assert [v for v in audit_weights("min_variance", w, universe, rules, baseline=BASELINE,
                                     train_returns=raw).violations if "beta" in v] == [
        f"min_variance: beta to {BASELINE} 1.000 exceeds the limit 0.50"]
