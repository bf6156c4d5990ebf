"""Which way to solve the convex engines' programs window after window: the measurement behind
``portfolio_assets/quant/engines/conic.py``.

Three ways to solve long-only capped minimum variance (N symbols, 25 buckets, LW covariance)
on each walk-forward window, all with Clarabel at 1e-10:

- ``rebuild``: a new cvxpy problem per window, the per-bucket caps as N_b ``cp.sum(w[idx])``
  constraints (what the engines did before): canonicalized and compiled every window;
- ``dpp``: one cvxpy problem with ``cp.Parameter``s (covariance factor, caps, padded bucket
  incidence as one ``A @ w <= cap`` matrix constraint), compiled once, re-solved with
  ``warm_start`` (Clarabel then updates its data in place);
- ``direct``: the QP assembled with numpy / scipy and handed to Clarabel
  (``quant.engines.convex.min_variance_program``): no modelling layer at all.

Reported per size: seconds per window (median over windows, after one warm-up solve that
compiles) and the largest weight difference to ``direct``. The engines keep ``direct``.

Run: ``.venv/bin/python benchmarks/convex_formulations.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

SIZES = ((60, 492), (200, 756))
TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}


def _windows(returns: pd.DataFrame, train: int = 252, step: int = 20) -> list[np.ndarray]:
    return [returns.iloc[end - train:end].to_numpy() for end in range(train, len(returns) + 1, step)]


def _scaled(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from portfolio_assets.quant.moments import ledoit_wolf

    cov, _, _ = ledoit_wolf(x, 20)
    s = cov / np.mean(np.diag(cov))
    return s, np.linalg.cholesky(s)


def rebuild(s: np.ndarray, f: np.ndarray, labels: np.ndarray, cap: float) -> np.ndarray:
    import cvxpy as cp

    n = len(s)
    w = cp.Variable(n, nonneg=True)
    cons = [cp.sum(w) == 1, w <= cap]
    cons += [cp.sum(w[np.flatnonzero(labels == b)]) <= cap for b in np.unique(labels)]
    cp.Problem(cp.Minimize(cp.sum_squares(f.T @ w)), cons).solve(solver=cp.CLARABEL, **TIGHT)
    return np.asarray(w.value)


_DPP: dict[int, Any] = {}


def dpp(s: np.ndarray, f: np.ndarray, labels: np.ndarray, cap: float) -> np.ndarray:
    import cvxpy as cp

    from portfolio_assets.quant.engines.caps import bucket_matrix

    n = len(s)
    if n not in _DPP:
        w = cp.Variable(n, nonneg=True)
        fp, ap, cp_ = cp.Parameter((n, n)), cp.Parameter((n, n), nonneg=True), cp.Parameter(nonneg=True)
        prob = cp.Problem(cp.Minimize(cp.sum_squares(fp.T @ w)), [cp.sum(w) == 1, w <= cp_, ap @ w <= cp_])
        _DPP[n] = (prob, w, fp, ap, cp_)
    prob, w, fp, ap, cp_ = _DPP[n]
    fp.value, ap.value, cp_.value = f, bucket_matrix(labels, n), cap
    prob.solve(solver=cp.CLARABEL, warm_start=True, **TIGHT)
    return np.asarray(w.value)


def direct(s: np.ndarray, f: np.ndarray, labels: np.ndarray, cap: float) -> np.ndarray:
    from portfolio_assets.quant.engines.caps import Caps, bucket_matrix
    from portfolio_assets.quant.engines.conic import solve
    from portfolio_assets.quant.engines.convex import Scaled, min_variance_program

    sc = Scaled(s, f, True, 1.0, None, 0.0, bucket_matrix(labels, len(np.unique(labels))), labels)
    x, _ = solve(min_variance_program(sc, Caps(cap, cap), 0.0), "min_variance")
    return x


def measure(n_symbols: int, n_sessions: int, cap: float = 0.25) -> pd.DataFrame:
    from tournament_vs_skfolio import factor_returns

    returns, buckets = factor_returns(n_symbols, n_sessions)
    labels = buckets.to_numpy()
    problems = [_scaled(x) for x in _windows(returns)]
    ways: dict[str, Callable[..., np.ndarray]] = {"rebuild": rebuild, "dpp": dpp, "direct": direct}
    answers: dict[str, list[np.ndarray]] = {}
    rows = []
    for name, fn in ways.items():
        fn(*problems[0], labels, cap)  # warm-up: imports, DPP compilation
        times, answers[name] = [], []
        for s, f in problems:
            t0 = time.perf_counter()
            answers[name].append(fn(s, f, labels, cap))
            times.append(time.perf_counter() - t0)
        rows.append({"symbols": n_symbols, "windows": len(problems), "way": name,
                     "s_per_window": statistics.median(times)})
    table = pd.DataFrame(rows)
    table["max_abs_dw_vs_direct"] = [
        max(float(np.abs(a - b).max()) for a, b in zip(answers[w], answers["direct"], strict=True))
        for w in table["way"]]
    fastest = table["s_per_window"].min()
    table["x_fastest"] = table["s_per_window"] / fastest
    return table


def main() -> int:
    table = pd.concat([measure(n, t) for n, t in SIZES], ignore_index=True)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
