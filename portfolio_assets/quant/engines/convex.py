"""Convex engines: minimum variance, equal risk contribution, maximum Sharpe ratio.

Each engine first tries its closed form or Newton solution, exact when no constraint binds,
and solves its conic program (:mod:`.conic`, Clarabel) only when a bound or cap binds or the
turnover penalty is on:

============= ==================================================== ===========================
engine        no constraint binds (checked, then used)             otherwise
============= ==================================================== ===========================
min_variance  w = S^-1 1 / 1'S^-1 1 (one Cholesky solve)           QP (SOCP with the penalty)
risk_parity   Spinu's Newton method on 0.5 y'Sy - (1/N) sum log y  exponential-cone program
max_sharpe    w = S_g^-1 e / 1'S_g^-1 e                            Charnes-Cooper QP
============= ==================================================== ===========================

Grouped caps are one matrix block ``B w <= cluster_cap`` (B the 0/1 bucket incidence).
Scaling: S = Sigma / s2 with s2 = mean daily variance (conditioning); F with F F' = S.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from portfolio_assets.quant.engines.base import EngineFailure, EngineInputs, EngineOutput, Universe, universe
from portfolio_assets.quant.engines.caps import Caps, bucket_matrix, within_caps
from portfolio_assets.quant.engines.conic import Program, solve
from portfolio_assets.quant.engines.params import EngineParams
from portfolio_assets.quant.moments import Covariance, covariance


class Scaled(NamedTuple):
    """The scaled numbers of one convex problem."""

    s: np.ndarray  # S = Sigma / s2
    factor: np.ndarray  # F with F F' = S: lower Cholesky factor, or V sqrt(lambda) when S is singular
    cholesky: bool  # whether ``factor`` is the Cholesky factor
    scale: float  # s = sqrt(s2), daily
    prev_in: np.ndarray | None  # previous weights on the universe (penalty on), else None
    prev_out: float  # previous weight outside the universe (sold in full)
    buckets: np.ndarray  # bucket incidence, n_buckets x N
    labels: np.ndarray  # bucket per symbol


def scaled(cov: np.ndarray, index: pd.Index, labels: np.ndarray, inputs: EngineInputs,
           params: EngineParams) -> Scaled:
    """`S = cov / s2` (`s2` the mean variance, for well-conditioned programs), its factor, the previous
    weights on and off the universe, and the bucket incidence (see `Scaled`)."""
    s2 = float(np.mean(np.diag(cov)))
    s = cov / s2
    try:
        factor, chol = np.linalg.cholesky(s), True
    except np.linalg.LinAlgError:  # singular (e.g. sample covariance with N > T): eigen factor
        eigval, eigvec = np.linalg.eigh(s)
        factor, chol = eigvec * np.sqrt(np.clip(eigval, 0.0, None)), False
    prev_in, prev_out = None, 0.0
    if params.turnover_penalty and inputs.prev_weights is not None:
        prev = inputs.prev_weights.astype(float)
        prev_in = prev.reindex(index).fillna(0.0).to_numpy()
        prev_out = float(prev.drop(index, errors="ignore").sum())
    n_buckets = len(np.unique(labels))
    return Scaled(s, factor, chol, float(np.sqrt(s2)), prev_in, prev_out, bucket_matrix(labels, n_buckets), labels)


def _caps_rows(prog: Program, sc: Scaled, caps: Caps, total: int | None) -> None:
    """x_i <= a and B x <= c on the first N variables; homogeneous (``total`` = the column of
    t = 1'x): x_i - a t <= 0 and B x - c t <= 0, sparse rows (t is one variable)."""
    n = len(sc.labels)
    eye = sp.identity(n, format="csr")
    buckets = sp.csr_array(sc.buckets)
    if total is None:
        prog.le(prog.cols(eye, 0), np.full(n, caps.max_weight))
        prog.le(prog.cols(buckets, 0), np.full(buckets.shape[0], caps.cluster_cap))
        return
    prog.le(prog.cols(eye, 0) + prog.cols(np.full((n, 1), -caps.max_weight), total), np.zeros(n))
    prog.le(prog.cols(buckets, 0) + prog.cols(np.full((buckets.shape[0], 1), -caps.cluster_cap), total),
            np.zeros(buckets.shape[0]))


def _total_row(prog: Program, n: int, total: int) -> None:
    """t = 1'x for the first N variables."""
    prog.eq(prog.cols(np.ones((1, n)), 0) + prog.cols(-np.ones((1, 1)), total), [0.0])


def _l1_rows(prog: Program, sc: Scaled, u: int, total: int | None) -> None:
    """u >= |x - p| (or |x - t p| with t at column ``total``) for the N variables at 0 and u at
    column ``u``."""
    n = len(sc.labels)
    assert sc.prev_in is not None
    eye = sp.identity(n, format="csr")
    if total is None:
        shift, rhs = prog.cols(eye, 0), sc.prev_in
    else:
        shift, rhs = prog.cols(eye, 0) + prog.cols(-sc.prev_in[:, None], total), np.zeros(n)
    prog.le(shift - prog.cols(eye, u), rhs)
    prog.le(-shift - prog.cols(eye, u), -rhs)


def _finish(x: np.ndarray, index: pd.Index, engine: str) -> pd.Series:
    if not np.isfinite(x).all():
        raise EngineFailure(f"{engine}: solver returned non-finite weights")
    w = np.clip(x, 0.0, None)
    if w.sum() <= 0:
        raise EngineFailure(f"{engine}: solver returned an all-zero portfolio")
    return pd.Series(w / w.sum(), index=index)


def _closed_form(sc: Scaled, rhs: np.ndarray, caps: Caps) -> np.ndarray | None:
    """w = S^-1 rhs / 1'S^-1 rhs when it is long-only and within the caps, else None.

    It is then the optimum of the constrained program too: no constraint is active.
    """
    if sc.prev_in is not None or not sc.cholesky:  # singular S: no unique unconstrained optimum
        return None
    from scipy.linalg import cho_solve

    z = cho_solve((sc.factor, True), rhs)
    total = z.sum()
    if not np.isfinite(z).all() or total <= 0:
        return None
    w = z / total
    return w if (w >= 0).all() and within_caps(w, sc.labels, caps.max_weight, caps.cluster_cap, tol=0.0) else None


def _prepare(inputs: EngineInputs, params: EngineParams, ridge_l2: float = 0.0
             ) -> tuple[Universe, Covariance, np.ndarray, float, Scaled]:
    uni = universe(inputs, params)
    cov = covariance(uni.returns, params.shrinkage, params.min_overlap)
    c = cov.matrix.to_numpy()
    ridge = ridge_l2 * float(np.mean(np.diag(c)))
    reg = c + ridge * np.eye(len(c)) if ridge else c
    return uni, cov, c, ridge, scaled(reg, cov.matrix.index, uni.clusters.to_numpy(), inputs, params)


def min_variance_program(sc: Scaled, caps: Caps, kappa: float) -> Program:
    """Variables [w] (no penalty) or [w, u, t] (penalty):

    no penalty: minimize 0.5 m w'Sw (m = N^2 / 1'S1) s.t. 1'w = 1, w >= 0, w <= a, B w <= c;
    penalty:    minimize t + (kappa/s) 1'u s.t. ||F'w|| <= t, u >= |w - w_prev|, and the same.
    """
    n = len(sc.labels)
    if sc.prev_in is None:
        prog = Program(n)
        # scaled so that 1/N has objective 0.5: Clarabel's absolute gap tolerance then bounds
        # the weights to ~1e-9 (unscaled, w'Sw ~ 1/N and binding caps were met only to ~2e-7)
        prog.P = sp.csc_array(sc.s * (n * n / float(sc.s.sum())))
    else:
        prog = Program(2 * n + 1)
        prog.q[n:2 * n] = kappa / sc.scale
        prog.q[2 * n] = 1.0
        prog.soc(sp.vstack([prog.cols(-np.ones((1, 1)), 2 * n), prog.cols(-sc.factor.T, 0)]), np.zeros(n + 1))
        _l1_rows(prog, sc, n, total=None)
    prog.eq(prog.cols(np.ones((1, n)), 0), [1.0])
    prog.le(prog.cols(-sp.identity(n), 0), np.zeros(n))
    _caps_rows(prog, sc, caps, total=None)
    return prog


def min_variance(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Long-only minimum variance on the shrunk covariance, caps as constraints.

    minimize  sigma(w) + kappa * ||w - w_prev||_1   (penalty only with turnover_penalty)
    s.t.      sum w = 1, 0 <= w_i <= max_weight, sum_{i in b} w_i <= cluster_cap
    with sigma(w) = sqrt(w' Sigma w) the daily volatility, in daily-return units like kappa.
    Without the penalty the equivalent QP (minimize w' Sigma w) is solved, after trying the
    unconstrained optimum Sigma^-1 1 / 1'Sigma^-1 1 (exact when it is long-only within caps).
    """
    uni, cov, _, _, sc = _prepare(inputs, params)
    index = cov.matrix.index
    w = _closed_form(sc, np.ones(len(index)), uni.caps)
    if w is not None:
        weights, status = pd.Series(w, index=index), "closed form (no constraint binds)"
    else:
        x, status = solve(min_variance_program(sc, uni.caps, params.kappa), "min_variance")
        weights = _finish(x[: len(index)], index, "min_variance")
    return EngineOutput(weights, {"solver_status": status, "caps_applied": "constraints",
                                  "dropped_symbols": uni.dropped, **cov.diagnostics}, uni.caps)


def risk_contributions(weights: pd.Series, cov: pd.DataFrame) -> pd.Series:
    """Fractional risk contributions RC_i = w_i (Sigma w)_i / (w' Sigma w); they sum to 1."""
    w = weights.reindex(cov.index).to_numpy()
    marginal = cov.to_numpy() @ w
    return pd.Series(w * marginal / (w @ marginal), index=cov.index)


def erc_newton(s: np.ndarray, max_iter: int = 100) -> np.ndarray | None:
    """Spinu's (2013) damped Newton method for equal risk contribution, uncapped.

    minimize f(y) = 0.5 y'Sy - b sum_i log y_i, b = 1/N; gradient g = Sy - b/y, Hessian
    H = S + diag(b / y^2). f / b is self-concordant, so with the Newton decrement
    lambda = sqrt(g'H^-1 g / b) the damped step y -= H^-1 g / (1 + lambda) stays positive and
    converges, quadratically once lambda < 0.25 (full steps). Start y0 = 1 / sqrt(1'S1).
    At the optimum y_i (Sy)_i = b for all i: w = y / 1'y has equal risk contributions to
    machine precision (an interior-point solve of the same program stops with a gradient
    residual of ~1e-6, i.e. contributions equal only to ~1e-7). None if it does not converge.
    """
    n = len(s)
    b = 1.0 / n
    total = float(s.sum())
    y = np.full(n, 1.0 / np.sqrt(total)) if total > 0 else np.ones(n)
    for _ in range(max_iter):
        g = s @ y - b / y
        h = s + np.diag(b / (y * y))
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            return None
        lam = float(np.sqrt(max(g @ step, 0.0) / b))
        y = y - (step / (1.0 + lam) if lam > 0.25 else step)
        if not (y > 0).all():
            return None
        if lam < 1e-10:
            w = y / y.sum()
            return w if np.isfinite(w).all() else None
    return None


def risk_parity_program(sc: Scaled, caps: Caps, kappa: float) -> Program:
    """Variables [y, l, t] or [y, l, t, u] (penalty), t = 1'y: minimize 0.5 y'Sy - (1/N) 1'l
    [+ (kappa/s)(1'u + p_out t)] s.t. l_i <= log y_i, y <= a t, B y <= c t [, u >= |y - t w_prev|]."""
    n = len(sc.labels)
    penalized = sc.prev_in is not None
    total = 2 * n
    prog = Program(3 * n + 1 if penalized else 2 * n + 1)
    prog.P = sp.csc_array(sp.block_diag([sc.s, sp.csc_array((prog.n - n, prog.n - n))]))
    prog.q[n:2 * n] = -1.0 / n
    if penalized:
        k = kappa / sc.scale
        prog.q[total + 1:] = k
        prog.q[total] = k * sc.prev_out
    prog.exp_le_log(np.arange(n, 2 * n), np.arange(n))
    _total_row(prog, n, total)
    _caps_rows(prog, sc, caps, total)
    if penalized:
        _l1_rows(prog, sc, total + 1, total)
    return prog


def risk_parity(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Equal risk contribution (Maillard-Roncalli-Teiletche) via Spinu's convex program.

    minimize  0.5 y' Sigma y - (1/N) sum_i log y_i  [+ kappa * ||y - (1'y) w_prev||_1]
    s.t.      y_i <= max_weight * 1'y,  sum_{i in b} y_i <= cluster_cap * 1'y
    and w = y / 1'y. Uncapped, the optimum has y_i (Sigma y)_i = 1/N for all i: every symbol's
    risk contribution equals 1/N; :func:`erc_newton` finds it, and it is the answer when it
    meets the caps and no penalty applies. Otherwise the program is solved (caps homogeneous in
    y keep it convex); a binding cap leaves the capped symbols less risk than 1/N
    (``diagnostics["risk_contribution_range"]``). Since 1'y = 1 / sigma(w) at the optimum, the
    turnover term equals kappa * ||w - w_prev||_1 / sigma(w): the cost in units of the
    portfolio's daily volatility, which keeps the dimensionless objective dimensionless.
    """
    uni, cov, _, _, sc = _prepare(inputs, params)
    index = cov.matrix.index
    w = erc_newton(sc.s) if sc.prev_in is None else None
    if w is not None and within_caps(w, sc.labels, uni.caps.max_weight, uni.caps.cluster_cap, tol=0.0):
        weights, status = pd.Series(w, index=index), "newton (no cap binds)"
    else:
        x, status = solve(risk_parity_program(sc, uni.caps, params.kappa), "risk_parity")
        weights = _finish(x[: len(index)], index, "risk_parity")
    rc = risk_contributions(weights, cov.matrix)
    return EngineOutput(weights, {"solver_status": status, "caps_applied": "constraints",
                                  "risk_contribution_range": [float(rc.min()), float(rc.max())],
                                  "dropped_symbols": uni.dropped, **cov.diagnostics}, uni.caps)


def max_sharpe_program(sc: Scaled, caps: Caps, excess: np.ndarray, kappa: float) -> Program:
    """Variables [y, t] or [y, t, u] (penalty), t = 1'y: minimize 0.5 y'S_g y s.t. e'y [- (kappa/s)
    (1'u + p_out t)] >= 1, y >= 0, y <= a t, B y <= c t [, u >= |y - t w_prev|]."""
    n = len(sc.labels)
    penalized = sc.prev_in is not None
    total = n
    prog = Program(2 * n + 1 if penalized else n + 1)
    prog.P = sp.csc_array(sp.block_diag([sc.s, sp.csc_array((prog.n - n, prog.n - n))]))
    row = np.zeros((1, prog.n))
    row[0, :n] = -excess
    if penalized:
        k = kappa / sc.scale
        row[0, total] = k * sc.prev_out
        row[0, total + 1:] = k
    prog.le(row, [-1.0])
    prog.le(prog.cols(-sp.identity(n), 0), np.zeros(n))
    _total_row(prog, n, total)
    _caps_rows(prog, sc, caps, total)
    if penalized:
        _l1_rows(prog, sc, total + 1, total)
    return prog


def max_sharpe(inputs: EngineInputs, params: EngineParams) -> EngineOutput:
    """Regularized maximum Sharpe ratio (tangency) portfolio, long-only with caps.

    maximize  [ (mu - r_f)' w - kappa * ||w - w_prev||_1 ] / sqrt(w' Sigma_g w)
    s.t.      sum w = 1, 0 <= w_i <= max_weight, sum_{i in b} w_i <= cluster_cap
    Sigma_g = Sigma + g * mean(diag Sigma) * I with g = ``max_sharpe_l2`` (ridge: an L2 penalty
    on w in the risk term), mu = daily sample means, Sigma the shrunk daily covariance; the
    turnover term is present only with turnover_penalty. Without it the unconstrained tangency
    Sigma_g^-1 (mu - r_f) (normalized) is the answer when it is long-only within the caps;
    otherwise the Charnes-Cooper transform y = t w, t = 1'y > 0 is solved exactly:
    minimize y' Sigma_g y  s.t.  (mu - r_f)'y - kappa ||y - t w_prev||_1 >= 1,  y >= 0,
    y_i <= max_weight t,  sum_{i in b} y_i <= cluster_cap t;  w = y / 1'y.
    Fails (and falls back) when no capped long-only book has a positive net excess return.
    """
    uni, cov, c, ridge, sc = _prepare(inputs, params, params.max_sharpe_l2)
    index = cov.matrix.index
    mu = np.nanmean(uni.returns.to_numpy(dtype=float), axis=0)
    excess = (mu - params.risk_free) / sc.scale
    if not (excess > 0).any():
        raise EngineFailure("max_sharpe: no symbol has a positive expected excess return")
    w = _closed_form(sc, excess, uni.caps)
    if w is not None:
        weights, status = pd.Series(w, index=index), "closed form (no constraint binds)"
    else:
        x, status = solve(max_sharpe_program(sc, uni.caps, excess, params.kappa), "max_sharpe")
        weights = _finish(x[: len(index)], index, "max_sharpe")
    wv = weights.to_numpy()
    sharpe = float((mu - params.risk_free) @ wv / np.sqrt(wv @ c @ wv))
    return EngineOutput(weights, {"solver_status": status, "caps_applied": "constraints",
                                  "daily_sharpe_in_sample": sharpe, "ridge": ridge,
                                  "dropped_symbols": uni.dropped, **cov.diagnostics}, uni.caps)
