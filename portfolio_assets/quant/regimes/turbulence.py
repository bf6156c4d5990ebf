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

from portfolio_assets.quant.moments import ledoit_wolf_complete


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
    cov, _ = ledoit_wolf_complete(block)
    try:
        return float(diff @ np.linalg.solve(cov, diff)) / diff.size
    except np.linalg.LinAlgError:  # singular shrunk covariance: no turbulence reading for this session
        return np.nan
