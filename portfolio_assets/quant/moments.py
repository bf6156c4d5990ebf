"""Moments of NaN-gapped daily returns: the pairwise co-moment kernel, covariance, Ledoit-Wolf,
correlation, and the antifragility score.

Units: simple daily returns in, daily (return^2) covariances out.

Missing data. There is no inner join: a symbol's mean and variance use its own sessions and a
pair's co-moment the sessions both have (pairwise). One kernel, :func:`pairwise_moments`,
computes every pairwise sum with masked matrix products (X = returns with NaN -> 0, M the 0/1
mask of available returns: ``n = M'M``, ``sum x_i x_j = X'X``, ``sum x_i = (X'M)``, ...), so the
cost is a few BLAS products, O(N^2 T). Pairs overlapping on fewer than ``min_overlap`` sessions
are not usable (zero co-movement in a covariance). A pairwise matrix need not be positive
semi-definite; :func:`psd_repair` lifts negative eigenvalues to a small floor. On complete data
both steps are no-ops and the estimators equal pandas / scikit-learn exactly.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

ANTIFRAGILITY_TAIL = 0.05
"""Tail quantile of the antifragility score's right-tail gain (5th / 95th percentiles)."""


class PairwiseMoments(NamedTuple):
    """Pairwise sums of a (T x N) returns block with NaN gaps (see :func:`pairwise_moments`).

    ``x0``: returns minus each column's own mean, NaN -> 0; ``mask``: 0/1 availability;
    ``n``: ``n_ij`` = sessions both i and j have; ``cross``: ``sum_{t in O_ij} x0_ti x0_tj``;
    ``usable``: ``n_ij >= min_overlap`` (the diagonal always).
    """

    x0: np.ndarray
    mask: np.ndarray
    n: np.ndarray
    cross: np.ndarray
    usable: np.ndarray

    def centred_over_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sums centred by the *pair's* means over ``O_ij``: (co-moment, var_i, var_j) sums.

        ``c_ij = sum (x_i - xbar_i^ij)(x_j - xbar_j^ij)``, ``v_ij = sum (x_i - xbar_i^ij)^2``,
        ``u_ij = sum (x_j - xbar_j^ij)^2`` over O_ij: what pandas ``corr(min_periods)`` uses
        (correlation = c / sqrt(v u)); with the own-mean centring of ``x0`` the one-pass sums
        lose no precision.
        """
        x0, m = self.x0, self.mask
        sx = x0.T @ m  # sum of x_i over O_ij
        sy = sx.T
        x2 = x0 * x0
        sxx = x2.T @ m
        with np.errstate(invalid="ignore", divide="ignore"):
            inv_n = 1.0 / self.n
            return self.cross - sx * sy * inv_n, sxx - sx * sx * inv_n, sxx.T - sy * sy * inv_n


def pairwise_moments(x: np.ndarray, min_overlap: int) -> PairwiseMoments:
    """The co-moment kernel: own-mean-centred data and every pair's overlap and cross sum."""
    mask_b = ~np.isnan(x)
    m = mask_b.astype(float)
    counts = m.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, np.where(mask_b, x, 0.0).sum(axis=0) / np.maximum(counts, 1.0), 0.0)
    x0 = np.where(mask_b, x - mean, 0.0)
    n = m.T @ m
    usable = n >= min_overlap
    np.fill_diagonal(usable, True)
    return PairwiseMoments(x0, m, n, x0.T @ x0, usable)


class Covariance(NamedTuple):
    """A daily covariance matrix with how it was estimated."""

    matrix: pd.DataFrame
    diagnostics: dict[str, Any]


def psd_repair(matrix: np.ndarray) -> tuple[np.ndarray, bool]:
    """Symmetrize; lift negative eigenvalues to 1e-10 * mean variance. A positive-definite matrix
    (Cholesky succeeds, the common case) or a PSD one is returned unchanged (``False``)."""
    sym = 0.5 * (matrix + matrix.T)
    try:
        np.linalg.cholesky(sym)
        return sym, False
    except np.linalg.LinAlgError:
        pass
    eigval, eigvec = np.linalg.eigh(sym)
    if eigval.min() >= 0:
        return sym, False
    floor = 1e-10 * float(np.mean(np.diag(sym)))
    repaired = (eigvec * np.maximum(eigval, floor)) @ eigvec.T
    return 0.5 * (repaired + repaired.T), True


def sample_covariance(returns: pd.DataFrame, min_overlap: int) -> Covariance:
    """Pairwise sample covariance (daily, ddof = 1).

    ``S_ij = sum_{t in O_ij} (r_ti - m_i)(r_tj - m_j) / (n_ij - 1)`` over the sessions ``O_ij``
    where both have a return, ``m_i`` = symbol i's mean over its own sessions; pairs with
    ``n_ij < min_overlap`` get ``S_ij = 0``. Equals ``returns.cov()`` on complete data.
    """
    k = pairwise_moments(returns.to_numpy(dtype=float), min_overlap)
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = np.where(k.usable, k.cross / (k.n - 1.0), 0.0)
    cov, repaired = psd_repair(cov)
    cols = returns.columns
    diag = {"covariance": "sample", "pairs_below_min_overlap": int((~k.usable).sum() // 2),
            "covariance_psd_repaired": repaired}
    return Covariance(pd.DataFrame(cov, index=cols, columns=cols), diag)


def ledoit_wolf_complete(block: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf (2004) shrunk covariance of a complete (n x p, no NaN) block, and the shrinkage.

    With ``X`` the column-demeaned block, ``S = X'X / n`` (ddof = 0), ``mu = tr(S) / p``:
    ``d2 = ||S - mu I||_F^2 / p``, ``b2 = min(d2, (sum_k ||x_k||^4 / n - ||S||_F^2) / (n p))``,
    shrinkage ``delta = b2 / d2`` and ``Sigma = (1 - delta) S + delta mu I`` — exactly
    ``sklearn.covariance.ledoit_wolf`` without its per-call validation (which dominates in the
    regime detector's rolling turbulence loop). :func:`ledoit_wolf` takes this path on complete data.
    """
    n, p = block.shape
    x = block - block.mean(axis=0)
    emp = x.T @ x / n
    trace = float(np.trace(emp))
    mu = trace / p
    frob2 = float(np.sum(emp * emp))
    row_norm2 = np.einsum("ij,ij->i", x, x)
    b2 = (float(row_norm2 @ row_norm2) / n - frob2) / (n * p)
    d2 = (frob2 - 2.0 * mu * trace + p * mu * mu) / p
    b2 = min(b2, d2)
    delta = 0.0 if b2 == 0 else b2 / d2
    shrunk = (1.0 - delta) * emp
    shrunk[np.diag_indices(p)] += delta * mu
    return shrunk, delta


def ledoit_wolf(x: np.ndarray, min_overlap: int) -> tuple[np.ndarray, float, int]:
    """Ledoit-Wolf shrinkage of a (T x N) block: :func:`ledoit_wolf_complete` when the block has no
    gap (and at least ``min_overlap`` rows), else :func:`ledoit_wolf_pairwise`; both equal
    ``sklearn.covariance.ledoit_wolf`` on complete data."""
    if x.shape[0] >= min_overlap and not np.isnan(x).any():
        shrunk, delta = ledoit_wolf_complete(x)
        return shrunk, delta, 0
    return ledoit_wolf_pairwise(x, min_overlap)


def ledoit_wolf_pairwise(x: np.ndarray, min_overlap: int) -> tuple[np.ndarray, float, int]:
    """Ledoit-Wolf (2004) shrinkage toward the scaled identity of a (T x N) block with NaN gaps.

    With ``S`` the (ddof = 0) covariance, ``p`` symbols, ``mu = tr(S)/p``:
    ``Sigma = (1 - delta) S + delta mu I``, ``delta = min(b2, d2) / d2``,
    ``d2 = ||S - mu I||_F^2 / p``, ``b2 = (1/p) sum_ij pi_ij / n_ij``,
    ``pi_ij = mean_t (x_ti x_tj)^2 - S_ij^2`` (x demeaned), each over the pair's ``n_ij`` common
    sessions. On complete data this is exactly ``sklearn.covariance.ledoit_wolf``. Pairs with
    ``n_ij < min_overlap`` get ``S_ij = 0`` and no ``pi_ij`` term. Returns (Sigma before any
    PSD repair, delta, number of pairs below the overlap).
    """
    k = pairwise_moments(x, min_overlap)
    p = x.shape[1]
    sq = k.x0 * k.x0
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(k.usable, k.cross / k.n, 0.0)
        fourth = np.where(k.usable, (sq.T @ sq) / k.n, 0.0)
        pi_over_n = np.where(k.usable, (fourth - s**2) / k.n, 0.0)
    mu = float(np.trace(s)) / p
    target = s.copy()
    target[np.diag_indices(p)] -= mu
    d2 = float((target**2).sum()) / p
    b2 = float(pi_over_n.sum()) / p
    delta = 0.0 if d2 == 0 else min(b2, d2) / d2
    shrunk = (1.0 - delta) * s
    shrunk[np.diag_indices(p)] += delta * mu
    return shrunk, delta, int((~k.usable).sum() // 2)


def ledoit_wolf_covariance(returns: pd.DataFrame, min_overlap: int) -> Covariance:
    """:func:`ledoit_wolf` on a DataFrame, PSD-repaired, with its diagnostics."""
    shrunk, delta, below = ledoit_wolf(returns.to_numpy(dtype=float), min_overlap)
    cov, repaired = psd_repair(shrunk)
    cols = returns.columns
    diag = {"covariance": "ledoit_wolf", "shrinkage_intensity": delta, "pairs_below_min_overlap": below,
            "covariance_psd_repaired": repaired}
    return Covariance(pd.DataFrame(cov, index=cols, columns=cols), diag)


def covariance(returns: pd.DataFrame, shrinkage: str, min_overlap: int) -> Covariance:
    """The solver engines' covariance: ``ledoit_wolf`` or ``sample``."""
    if shrinkage == "ledoit_wolf":
        return ledoit_wolf_covariance(returns, min_overlap)
    if shrinkage == "sample":
        return sample_covariance(returns, min_overlap)
    raise ValueError(f"shrinkage must be 'ledoit_wolf' or 'sample', got {shrinkage!r}")


def correlation_from_covariance(cov: pd.DataFrame) -> pd.DataFrame:
    """``rho_ij = Sigma_ij / (sigma_i sigma_j)``, clipped to [-1, 1] (pairwise estimates can stray)."""
    sd = np.sqrt(np.diag(cov.to_numpy()))
    corr = np.clip(cov.to_numpy() / np.outer(sd, sd), -1.0, 1.0)
    np.fill_diagonal(corr, 1.0)
    return pd.DataFrame(corr, index=cov.index, columns=cov.columns)


def antifragility_scores(returns: pd.DataFrame) -> pd.Series:
    """Antifragility per column = sample skewness + right-tail gain (dimensionless).

    - skewness: pandas' bias-adjusted Fisher-Pearson G1 = sqrt(n(n-1))/(n-2) * m3 / m2^1.5 over
      the available (non-NaN) returns;
    - right-tail gain: ``mean(r | r >= q95) / |mean(r | r <= q05)|`` with q05, q95 the column's
      own 5th / 95th percentiles (``ANTIFRAGILITY_TAIL``, linear interpolation); > 1 means the
      best days are larger than the worst days.
    NaN when the column has fewer than 3 returns, zero variance, or a zero left-tail mean. The one
    score of the project: natural selection ranks by it and barbell picks its aggressors by it.
    """
    x = returns.to_numpy(dtype=float)
    n_obs = (~np.isnan(x)).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, masked below
        q_lo, q_hi = np.nanquantile(x, [ANTIFRAGILITY_TAIL, 1.0 - ANTIFRAGILITY_TAIL], axis=0)
        left = np.abs(np.nanmean(np.where(x <= q_lo, x, np.nan), axis=0))
        right = np.nanmean(np.where(x >= q_hi, x, np.nan), axis=0)
        std = np.nanstd(x, axis=0)
    gain = np.divide(right, left, out=np.full_like(right, np.nan), where=left > 0)
    score = returns.skew().to_numpy() + gain
    score[(n_obs < 3) | ~(std > 0)] = np.nan
    return pd.Series(score, index=returns.columns, dtype=float, name="antifragility")
