"""Convex engines: the hand-assembled Clarabel programs against the same programs written in cvxpy,
the closed forms / Newton shortcuts against the programs, and the solver retry on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.quant.engines import convex, risk_contributions, run_engine
from portfolio_assets.quant.engines.caps import Caps
from portfolio_assets.quant.engines.conic import ATTEMPTS, solve
from portfolio_assets.quant.engines.convex import (
    max_sharpe_program,
    min_variance_program,
    risk_parity_program,
)
from portfolio_assets_tests.quant.markets import factor_market, inputs, params, sp500


def _scaled(n=12, n_buckets=3, seed=4, prev=True, **kw):
    returns, clusters = factor_market(n, n_buckets, seed=seed)
    p = params(turnover_penalty=prev, **kw)
    prev_w = pd.Series(1.0 / (n + 1), index=[*returns.columns[:-1], "NYSE:GONE", "NYSE:OLD"]) if prev else None
    uni, cov, _, _, sc = convex._prepare(inputs(returns, clusters, prev_weights=prev_w), p)
    return returns, uni, sc, p


def _cvxpy_reference(kind: str, sc: convex.Scaled, caps: Caps, kappa: float, excess=None) -> np.ndarray:
    """The engine's program written in cvxpy (solved by Clarabel through cvxpy)."""
    import cvxpy as cp

    n = len(sc.labels)
    k = kappa / sc.scale
    buckets = sc.buckets
    if kind == "min_variance":
        w = cp.Variable(n, nonneg=True)
        obj = cp.norm(sc.factor.T @ w, 2) + k * cp.norm1(w - sc.prev_in) if sc.prev_in is not None \
            else cp.sum_squares(sc.factor.T @ w)
        cons = [cp.sum(w) == 1, w <= caps.max_weight, buckets @ w <= caps.cluster_cap]
        cp.Problem(cp.Minimize(obj), cons).solve(solver=cp.CLARABEL)
        return np.asarray(w.value)
    y = cp.Variable(n, nonneg=(kind == "max_sharpe"))
    t = cp.sum(y)
    turnover = (cp.norm1(y - t * sc.prev_in) + t * sc.prev_out) if sc.prev_in is not None else 0
    cons = [y <= caps.max_weight * t, buckets @ y <= caps.cluster_cap * t]
    if kind == "risk_parity":
        obj = 0.5 * cp.sum_squares(sc.factor.T @ y) - cp.sum(cp.log(y)) / n + k * turnover
    else:
        obj = cp.sum_squares(sc.factor.T @ y)
        cons.append(excess @ y - k * turnover >= 1)
    cp.Problem(cp.Minimize(obj), cons).solve(solver=cp.CLARABEL)
    return np.asarray(y.value) / float(np.sum(y.value))


@pytest.mark.parametrize("penalized", [False, True])
@pytest.mark.parametrize("kind", ["min_variance", "risk_parity", "max_sharpe"])
def test_programs_equal_their_cvxpy_formulation(kind, penalized):
    returns, uni, sc, p = _scaled(prev=penalized, max_weight=0.15, cluster_cap=0.4)
    n = len(sc.labels)
    excess = None
    if kind == "min_variance":
        prog = min_variance_program(sc, uni.caps, p.kappa)
    elif kind == "risk_parity":
        prog = risk_parity_program(sc, uni.caps, p.kappa)
    else:
        excess = np.abs(returns.mean().to_numpy()) / sc.scale  # positive: a feasible program
        prog = max_sharpe_program(sc, uni.caps, excess, p.kappa)
    x, status = solve(prog, kind)
    assert status == "optimal (tol 1e-10)"
    ours = x[:n] / x[:n].sum()
    ref = _cvxpy_reference(kind, sc, uni.caps, p.kappa, excess)
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    assert ours.max() <= 0.15 + 1e-7
    assert pd.Series(ours).groupby(sc.labels).sum().max() <= 0.4 + 1e-7


def test_closed_forms_are_used_only_when_no_constraint_binds_and_equal_the_programs():
    returns, clusters = factor_market(8, 8, seed=12, drift=2e-3)  # both unconstrained optima long-only
    open_caps = params(max_weight=1.0, cluster_cap=1.0, turnover_penalty=False)
    for engine, program in (("min_variance", min_variance_program), ("max_sharpe", max_sharpe_program)):
        res = run_engine(engine, inputs(returns, clusters), open_caps)
        uni, _, _, _, sc = convex._prepare(inputs(returns, clusters), open_caps,
                                           open_caps.max_sharpe_l2 if engine == "max_sharpe" else 0.0)
        if engine == "min_variance":
            x, _ = solve(program(sc, uni.caps, 0.0), engine)
        else:
            excess = returns.mean().to_numpy() / sc.scale
            x, _ = solve(program(sc, uni.caps, excess, 0.0), engine)
        assert res.diagnostics["solver_status"] == "closed form (no constraint binds)", engine
        np.testing.assert_allclose(res.weights.to_numpy(), x[:8] / x[:8].sum(), atol=1e-6)
        # capped at the unconstrained optimum's largest weight minus a bit: the program must run
        tight = params(max_weight=float(res.weights.max()) - 0.01, cluster_cap=1.0, turnover_penalty=False)
        capped = run_engine(engine, inputs(returns, clusters), tight)
        assert capped.diagnostics["solver_status"].startswith("optimal"), engine
        assert capped.weights.max() <= tight.max_weight + 1e-7


def test_newton_erc_is_exact_and_the_capped_program_agrees_when_caps_do_not_bind():
    returns, clusters = factor_market(15, 3, seed=8)
    res = run_engine("risk_parity", inputs(returns, clusters), params(max_weight=1.0, cluster_cap=1.0))
    assert res.diagnostics["solver_status"] == "newton (no cap binds)"
    from portfolio_assets.quant.engines import ledoit_wolf_covariance

    rc = risk_contributions(res.weights, ledoit_wolf_covariance(returns, 20).matrix)
    np.testing.assert_allclose(rc, 1 / 15, atol=1e-12)
    uni, _, _, _, sc = convex._prepare(inputs(returns, clusters), params(max_weight=1.0, cluster_cap=1.0))
    x, _ = solve(risk_parity_program(sc, uni.caps, 0.0), "risk_parity")
    np.testing.assert_allclose(res.weights.to_numpy(), x[:15] / x[:15].sum(), atol=1e-6)


def test_retry_really_changes_the_solve_on_real_data():
    """S&P 500 (skfolio's fixture), the 252 sessions to 1998-03-24, 5 buckets, caps 0.25, turnover
    penalty from an equal-weight book: min_variance's program ends `optimal_inaccurate` at 1e-10;
    the retry (a fresh solver at 1e-8, tolerances written out) solves it `optimal`, and the
    engine does not fall back to inverse_vol (what a retry of the same cached cvxpy problem, its
    tight settings still in force, used to do)."""
    rets = sp500().pct_change().iloc[1:]
    end = rets.index.get_loc(pd.Timestamp("1998-03-24")) + 1
    train = rets.iloc[end - 252:end]
    clusters = pd.Series(np.arange(20) % 5 + 1, index=train.columns)
    prev = pd.Series(1 / 20, index=train.columns)
    p = params(turnover_penalty=True)
    uni, _, _, _, sc = convex._prepare(inputs(train, clusters, prev_weights=prev), p)
    program = min_variance_program(sc, uni.caps, p.kappa)
    with pytest.raises(Exception, match=r"min_variance: solver status 'optimal_inaccurate' \(1e-10: optimal_inaccurate\)"):
        solve(program, "min_variance", attempts=ATTEMPTS[:1])
    x, status = solve(program, "min_variance")
    assert status == "optimal (tol 1e-8; 1e-10: optimal_inaccurate)"
    res = run_engine("min_variance", inputs(train, clusters, prev_weights=prev), p)
    assert res.engine_used == "min_variance" and res.fallbacks == []
    assert res.diagnostics["solver_status"] == status
    np.testing.assert_allclose(res.weights.to_numpy(), np.clip(x[:20], 0, None) / np.clip(x[:20], 0, None).sum(),
                               atol=1e-12)
    # an independent solver agrees: the same program through cvxpy + SCS
    import cvxpy as cp

    w = cp.Variable(20, nonneg=True)
    k = p.kappa / sc.scale
    prob = cp.Problem(cp.Minimize(cp.norm(sc.factor.T @ w, 2) + k * cp.norm1(w - prev.to_numpy())),
                      [cp.sum(w) == 1, w <= 0.25, sc.buckets @ w <= 0.25])
    prob.solve(solver=cp.SCS, eps_abs=1e-9, eps_rel=1e-9, max_iters=200_000)
    np.testing.assert_allclose(res.weights.to_numpy(), w.value, atol=1e-4)
