"""Pairwise-complete Pearson correlation, fast at 5,000-20,000 symbols (natural selection and
risk buckets; `quant.clustering` builds on it).

`pairwise_correlation(returns, min_overlap)` equals pandas `returns.corr(min_periods=min_overlap)`
(to 1e-10 in float64; the diagonal is 1 by definition). How (`correlation_matrix`):

- the columns with a return in every session (when they are at least half) are standardized
  once, z = (x - mean) / ||x - mean||, and their correlations are one BLAS `syrk` of Z (the lower
  triangle, half the flops of a general product), mirrored tile by tile into an exactly
  symmetric matrix;
- the columns with gaps go through the masked kernel (`_masked_rows`): six products of the
  centred data and its 0/1 mask give, per pair, the count, sums and sums of squares over the
  sessions both have; row blocks bound the temporaries, the arithmetic runs in place, and BLAS
  runs on one thread there (products with an inner dimension of 60 lose to thread hand-offs).

`dtype=np.float32` keeps the n x n result in float32 (the one n x n array selection keeps): the
product runs in float32 on returns standardized in float64, the gappy rows are computed in
float64 and stored as float32. Tolerance: |rho_float32 - rho_float64| <= `FLOAT32_RHO_TOL`
(1e-5; the bound is T * 2^-24 ~ 4e-6 for T = 60 unit-norm columns, observed ~5e-7), which on the
bench data gives the same clusters as float64 (`benchmarks/selection_scale.py` checks it).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

# Documented bound on |rho_float32 - rho_float64| (see the module docstring); tested.
FLOAT32_RHO_TOL = 1e-5
# Tile size of the mirror pass (256 x 256 tiles transpose in cache; measured best of 128-1024),
# and the element budget of one masked-kernel temporary (rows x columns): ~10 such float64
# temporaries live at once, so 2^21 elements keep them ~160 MB.
_MIRROR_BLOCK = 256
_MASKED_BLOCK_ELEMENTS = 2**21
_DTYPES = (np.float64, np.float32)


def returns_matrix(returns: pd.DataFrame, name: str = "returns") -> np.ndarray:
    """A float64 copy of `returns` (sessions x symbols); ValueError for a non-frame, duplicate
    columns, non-numeric or infinite values."""
    if not isinstance(returns, pd.DataFrame):
        raise ValueError(
            f"{name} must be a pandas DataFrame (sessions x symbols), got {type(returns).__name__}"
        )
    if returns.columns.has_duplicates:
        dup = returns.columns[returns.columns.duplicated()].unique().tolist()
        raise ValueError(f"{name} has duplicate symbol columns: {dup[:3]}")
    try:
        x = returns.to_numpy(dtype=float, copy=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold numeric returns: {exc}") from exc
    if np.isinf(x).any():
        raise ValueError(f"{name} contains infinite values")
    return x


def _check_dtype(dtype: type | np.dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in [np.dtype(d) for d in _DTYPES]:
        raise ValueError(f"dtype must be float64 or float32, got {dt}")
    return dt


@functools.cache
def _blas_threads() -> ThreadpoolController:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _syrk_lower_gram(z: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Z'Z for Z (T x n) as a C-ordered n x n array, exactly symmetric.

    BLAS `syrk` computes only one triangle (half the flops of a general product); its
    Fortran-ordered lower triangle is the upper triangle of the C-ordered transpose, which is
    then mirrored block by block.
    """
    from scipy.linalg import blas

    syrk = blas.dsyrk if dtype == np.float64 else blas.ssyrk
    g = syrk(1.0, np.asfortranarray(z.T, dtype=dtype), trans=0, lower=1).T  # C order, upper valid
    n = g.shape[0]
    for i in range(0, n, _MIRROR_BLOCK):
        rows = slice(i, min(i + _MIRROR_BLOCK, n))
        for j in range(0, i + 1, _MIRROR_BLOCK):
            cols = slice(j, min(j + _MIRROR_BLOCK, n))
            if j == i:  # diagonal block: copy its own upper triangle down
                blk = g[rows, cols]
                low = np.tril_indices(blk.shape[0], -1)
                blk[low] = blk.T[low]
            else:
                g[rows, cols] = g[cols, rows].T
    return g


def _masked_rows(
    x0: np.ndarray, m: np.ndarray, rows: np.ndarray, cols: np.ndarray, min_overlap: int
) -> np.ndarray:
    """Pairwise-complete correlation of columns `rows` against columns `cols` (float64).

    x0: returns centred by each column's own mean, NaN -> 0; m: the 0/1 mask of available
    returns. With S_ij the sessions both have, n = M'M, sum x_i = (X'M)_ij, sum x_j = (M'X)_ij,
    sum x_i^2 = (X^2'M)_ij, sum x_j^2 = (M'X^2)_ij, sum x_i x_j = (X'X)_ij, and

        rho_ij = (Sxy - Sx Sy / n) / sqrt((Sxx - Sx^2 / n) (Syy - Sy^2 / n)).

    NaN when n < min_overlap or either side is constant over S_ij (its centred variance below
    1e-12 of its sum of squares: the one-pass sums leave rounding residue on a constant stream).
    """
    xr, mr, xc, mc = x0[:, rows], m[:, rows], x0[:, cols], m[:, cols]
    n = mr.T @ mc
    sx = xr.T @ mc
    sy = mr.T @ xc
    sxx = (xr * xr).T @ mc
    syy = mr.T @ (xc * xc)
    sxy = xr.T @ xc
    invalid = n < min_overlap
    # In place on the six products (each block x cols): fresh temporaries of that size cost
    # page faults and memory traffic, which dominate the arithmetic here.
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.divide(1.0, n, out=n)
        mx = sx * inv  # mean of x_i over S_ij
        my = np.multiply(sy, inv, out=inv)  # mean of x_j over S_ij
        np.multiply(mx, sx, out=sx)  # Sx^2 / n
        np.multiply(mx, sy, out=mx)  # Sx Sy / n
        np.subtract(sxy, mx, out=sxy)  # covariance sum
        np.multiply(my, sy, out=sy)  # Sy^2 / n
        var_x = np.subtract(sxx, sx, out=sx)
        invalid |= var_x <= np.multiply(sxx, 1e-12, out=sxx)
        var_y = np.subtract(syy, sy, out=sy)
        invalid |= var_y <= np.multiply(syy, 1e-12, out=syy)
        rho = np.divide(sxy, np.sqrt(np.multiply(var_x, var_y, out=var_x), out=var_x), out=sxy)
    rho[invalid] = np.nan
    return rho


def _masked_blocks(
    out: np.ndarray, x0: np.ndarray, m: np.ndarray, gappy: np.ndarray, block: int, min_overlap: int, dt: np.dtype
) -> None:
    """Rows of the `gappy` columns, `block` at a time, against every column not yet mirrored."""
    done = np.zeros(out.shape[0], dtype=bool)
    for start in range(0, len(gappy), block):
        rows = gappy[start : start + block]
        cols = np.flatnonzero(~done)  # complete columns and the gappy ones not yet mirrored
        done[rows] = True
        rho = _masked_rows(x0, m, rows, cols, min_overlap).astype(dt, copy=False)
        # The block's own pairs were computed twice (i vs j and j vs i): keep i < j's value
        # for both, so the result is exactly symmetric.
        w = _as_slice(np.searchsorted(cols, rows))
        own = rho[:, w]
        rho[:, w] = np.triu(own) + np.triu(own, 1).T
        r, c = _as_slice(rows), _as_slice(cols)
        if isinstance(r, slice) and isinstance(c, slice):  # e.g. every column gappy
            out[r, c] = rho
            out[c, r] = rho.T
        else:
            out[np.ix_(rows, cols)] = rho
            out[np.ix_(cols, rows)] = rho.T


def _as_slice(ix: np.ndarray) -> slice | np.ndarray:
    """`ix` as a slice when it is a contiguous ascending range (basic indexing, no gather)."""
    if len(ix) and ix[-1] - ix[0] == len(ix) - 1:
        return slice(int(ix[0]), int(ix[-1]) + 1)
    return ix


def correlation_matrix(x: np.ndarray, min_overlap: int, dtype: type | np.dtype = np.float64) -> np.ndarray:
    """The pairwise-complete Pearson correlation of the columns of `x` (T x n, NaN = no data).

    Same definition as `pairwise_correlation` (which wraps this in a frame); returns a C-ordered
    n x n array of `dtype`, exactly symmetric, clipped to [-1, 1], diagonal 1.

    When at least half of the columns have a return in all T sessions ("complete"), they are
    standardized once,
    z = (x - mean) / ||x - mean||, and their correlations are the one product Z'Z (two-pass
    centring, so it equals the pairwise formula to rounding); a complete column that is constant
    has NaN correlations, and with T < min_overlap every off-diagonal entry is NaN. Rows of the
    columns with gaps are then overwritten (and mirrored into their columns) by the masked kernel,
    each block of gappy rows against the complete columns and the gappy columns not yet done;
    with fewer complete columns every column goes through the masked kernel.
    """
    if int(min_overlap) < 2:
        raise ValueError(f"min_overlap must be >= 2 sessions, got {min_overlap}")
    dt = _check_dtype(dtype)
    t, n = x.shape
    if t < min_overlap:  # no pair can have min_overlap common sessions
        out = np.full((n, n), np.nan, dtype=dt)
        np.fill_diagonal(out, 1.0)
        return out
    mask = ~np.isnan(x)
    counts = mask.sum(axis=0)
    complete = counts == t
    if 2 * complete.sum() < n:
        # The product would spend most of its flops on the zero columns of the gappy symbols:
        # the masked kernel (correct for complete columns too) does all of it instead.
        complete[:] = False
    gappy = np.flatnonzero(~complete)

    if complete.any():
        xc = x[:, complete]
        zc = xc - xc.mean(axis=0)
        norm = np.sqrt(np.einsum("ij,ij->j", zc, zc))
        constant = np.zeros(n, dtype=bool)
        constant[complete] = xc.max(axis=0) == xc.min(axis=0)
        z = np.zeros((t, n))
        with np.errstate(invalid="ignore", divide="ignore"):
            z[:, complete] = np.where(norm > 0, zc / norm, 0.0)
        out = _syrk_lower_gram(z, dt)
        out[constant, :] = np.nan
        out[:, constant] = np.nan
    else:  # every entry is written by the masked kernel below
        out = np.empty((n, n), dtype=dt)

    if len(gappy):
        with np.errstate(invalid="ignore", divide="ignore"):
            col_mean = np.where(counts > 0, np.nansum(x, axis=0) / np.maximum(counts, 1), 0.0)
        # Centre each column by its own mean: correlation is shift-invariant, and the one-pass
        # sums of the masked kernel then avoid cancellation.
        x0 = np.where(mask, x - col_mean, 0.0)
        m = mask.astype(float)
        block = max(1, _MASKED_BLOCK_ELEMENTS // n)
        # Many products with an inner dimension of T (60): OpenBLAS's thread hand-offs cost more
        # than they save there, by up to 8x on a busy 2-core machine; one thread throughout.
        with _blas_threads().limit(limits=1, user_api="blas"):
            _masked_blocks(out, x0, m, gappy, block, min_overlap, dt)
    np.clip(out, -1.0, 1.0, out=out)
    np.fill_diagonal(out, 1.0)
    return out


def pairwise_correlation(
    returns: pd.DataFrame, min_overlap: int, dtype: type | np.dtype = np.float64
) -> pd.DataFrame:
    """Pearson correlation of every pair of columns over their pairwise-complete sessions.

    For symbols i, j let S_ij be the sessions where both have a return (NaN = no data) and
    n_ij = |S_ij|. Then

        rho_ij = sum_S (x_i - xbar_i)(x_j - xbar_j) / sqrt(sum_S (x_i - xbar_i)^2 * sum_S (x_j - xbar_j)^2)

    with the means xbar taken over S_ij, i.e. exactly `returns.corr(min_periods=min_overlap)`
    (to 1e-10 in float64). Pairs with n_ij < `min_overlap`, or where either side is constant over
    S_ij, are NaN; values are clipped to [-1, 1]; the diagonal is 1 by definition (also for a
    symbol without data). `dtype=np.float32` halves the memory of the n x n result at a
    documented cost (`FLOAT32_RHO_TOL`). How it is computed: `correlation_matrix`.
    """
    x = returns_matrix(returns)
    rho = correlation_matrix(x, min_overlap, dtype)
    return pd.DataFrame(rho, index=returns.columns.copy(), columns=returns.columns.copy(), copy=False)
