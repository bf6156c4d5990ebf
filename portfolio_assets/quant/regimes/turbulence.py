"""Kritzman–Li turbulence of the universe's cross-section (a CRISIS trigger and spectral stress).

``turbulence_t = (x_t - mu)' S^{-1} (x_t - mu) / p`` where ``x_t`` is the universe's return vector
at ``t`` and ``mu``, ``S`` (Ledoit–Wolf shrunk covariance) come from the ``turbulence_window`` rows
strictly *before* ``t``, restricted to the ``p`` symbols with a return at ``t`` and on every row of
that window (no imputation). Dividing by ``p`` makes it ``~1`` in calm markets whatever the universe
size; it is large when returns are unusual in size *or* in their co-movement (e.g. correlations
breaking down). NaN without enough (``turbulence_min_symbols``) full-coverage, non-constant symbols.
"""

from __future__ import annotations

import numpy as np


def _ledoit_wolf(block: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit–Wolf (2004) shrunk covariance of the rows of ``block`` (n x p), and the shrinkage.

    With ``X`` the column-demeaned block, ``S = X'X / n``, ``mu = tr(S) / p``:
    ``delta = ||S - mu I||_F^2 / p``, ``beta = min(delta, (sum_k ||x_k||^4 / n - ||S||_F^2) / (n p))``,
    shrinkage ``s = beta / delta`` and ``S* = (1 - s) S + s mu I`` — the estimator of
    ``sklearn.covariance.ledoit_wolf`` (checked against it in the tests), without its per-call
    validation overhead, which dominates in this rolling loop.
    """
    n, p = block.shape
    x = block - block.mean(axis=0)
    emp = x.T @ x / n
    trace = float(np.trace(emp))
    mu = trace / p
    frob2 = float(np.sum(emp * emp))
    row_norm2 = np.einsum("ij,ij->i", x, x)
    beta = (float(row_norm2 @ row_norm2) / n - frob2) / (n * p)
    delta = (frob2 - 2.0 * mu * trace + p * mu * mu) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    shrunk = (1.0 - shrinkage) * emp
    shrunk[np.diag_indices(p)] += shrinkage * mu
    return shrunk, shrinkage


def rolling_turbulence(u: np.ndarray, window: int, min_symbols: int) -> np.ndarray:
    """Per-symbol turbulence of each row ``t >= window`` of ``u`` (sessions x symbols, NaN = no bar)
    against the ``window`` rows before it (module docstring); NaN before that."""
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    n = u.shape[0]
    out = np.full(n, np.nan)
    finite = np.isfinite(u)
    cum = np.vstack([np.zeros((1, u.shape[1]), dtype=np.int64), np.cumsum(finite, axis=0)])
    # Hundreds of tiny (window x p) products: a multi-threaded BLAS only adds synchronization cost
    # (10-100x slower on a busy 2-core machine), so the loop runs with one BLAS thread.
    with threadpool_limits(limits=1, user_api="blas"):
        for t in range(window, n):
            out[t] = _turbulence_at(u, finite, cum, t, window, min_symbols)
    return out


def _turbulence_at(u: np.ndarray, finite: np.ndarray, cum: np.ndarray, t: int, window: int,
                   min_symbols: int) -> float:
    full = (cum[t] - cum[t - window] == window) & finite[t]
    if full.sum() < min_symbols:
        return np.nan
    block = u[t - window: t][:, full]
    varying = block.std(axis=0) > 0
    if varying.sum() < min_symbols:
        return np.nan
    block = block[:, varying]
    diff = u[t, full][varying] - block.mean(axis=0)
    cov, _ = _ledoit_wolf(block)
    try:
        return float(diff @ np.linalg.solve(cov, diff)) / diff.size
    except np.linalg.LinAlgError:  # singular shrunk covariance: no turbulence reading for this session
        return np.nan
