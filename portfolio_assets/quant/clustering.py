"""Coverage-aware correlation clustering (natural selection step 5 and risk buckets step 9).

The pipeline is

1. `pairwise_correlation` — Pearson correlation on pairwise-complete sessions (a symbol listed
   late, or with missing bars, is correlated only over the sessions both symbols traded; never
   zero-filled, never inner-joined);
2. `condensed_angular_distance` — d = sqrt(0.5 * (1 - rho)), in [0, 1], for the pairs i < j only
   (scipy's condensed order); `angular_distance` is the same as a square frame, for small n;
3. `ward_linkage` — Ward agglomeration on that distance (nearest-neighbour chain, fastcluster;
   the same linkage as scipy's);
4. `cut_clusters` — flat clusters at a distance threshold, or `max_clusters` if the threshold
   gives more.

`hierarchical_clusters` runs all four and returns a `ClusterResult`; `bucket_stats` and
`top_correlated_pairs` describe the result (the figures are in `reports.plots.clusters`).

Scale (5,000-20,000 symbols x 60 sessions): the correlation of the symbols with a return in every
session is one BLAS product of the standardized returns (`syrk`, the lower triangle only, then
mirrored); only the symbols with gaps go through the masked pairwise-complete kernel, in row
blocks. The distance is written straight into scipy's condensed vector, row by row, with no
square distance matrix and no full-matrix temporaries (Ward then works on one copy of it).
With `dtype=np.float32` the correlation
matrix (the one n x n array that is kept) is float32: the product runs in float32 on returns
standardized in float64, the gappy rows are computed in float64 and stored as float32, and the
distance is float64 again. Tolerance: |rho_float32 - rho_float64| <= `FLOAT32_RHO_TOL` (1e-5;
the bound is T * 2^-24 ~ 4e-6 for T = 60 unit-norm columns, observed ~5e-7), which on the bench
data gives the same clusters as float64 (`benchmarks/selection_scale.py` checks it).

numpy / scipy / pandas, fastcluster for Ward, threadpoolctl for the BLAS threads.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from portfolio_assets.constants import PERIODS_PER_YEAR

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


def _returns_matrix(returns: pd.DataFrame, name: str = "returns") -> np.ndarray:
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
    x = _returns_matrix(returns)
    rho = correlation_matrix(x, min_overlap, dtype)
    return pd.DataFrame(rho, index=returns.columns.copy(), columns=returns.columns.copy(), copy=False)


def _check_square(corr: pd.DataFrame) -> None:
    if not isinstance(corr, pd.DataFrame) or corr.shape[0] != corr.shape[1]:
        raise ValueError("corr must be a square pandas DataFrame (symbols x symbols)")
    if not corr.index.equals(corr.columns):
        raise ValueError("corr must have the same symbols, in the same order, on index and columns")


def _distance_row(rho_row: np.ndarray, out: np.ndarray) -> int:
    """out <- sqrt(clip(0.5 * (1 - rho), 0, 1)) with NaN rho imputed as 0; returns #imputed."""
    np.subtract(1.0, rho_row, out=out)
    out *= 0.5
    n_nan = int(np.count_nonzero(np.isnan(out)))
    if n_nan:
        out[np.isnan(out)] = 0.5
    np.clip(out, 0.0, 1.0, out=out)
    np.sqrt(out, out=out)
    return n_nan


def condensed_angular_distance(rho: np.ndarray) -> tuple[np.ndarray, int]:
    """Angular distance d_ij = sqrt(0.5 * (1 - rho_ij)) for i < j, in scipy's condensed order.

    `rho`: a square correlation array (float64 or float32; only its upper triangle is read).
    Returns (the float64 vector of the n(n-1)/2 distances, the number of imputed pairs). A NaN
    correlation (fewer than `min_overlap` common sessions, or a constant stream) is *imputed as
    rho = 0*, i.e. d = sqrt(0.5): with no evidence of co-movement the pair is treated as
    unrelated rather than dropped. Written row by row into the one output vector: no square
    distance matrix and no full-matrix temporary.
    """
    rho = np.asarray(rho)
    if rho.ndim != 2 or rho.shape[0] != rho.shape[1]:
        raise ValueError(f"rho must be a square matrix, got shape {rho.shape}")
    n = rho.shape[0]
    out = np.empty(n * (n - 1) // 2)
    n_imputed = 0
    k = 0
    for i in range(n - 1):
        seg = out[k : k + n - 1 - i]
        n_imputed += _distance_row(rho[i, i + 1 :], seg)
        k += n - 1 - i
    return out, n_imputed


def angular_distance(corr: pd.DataFrame) -> pd.DataFrame:
    """Angular correlation distance d_ij = sqrt(0.5 * (1 - rho_ij)), clipped to [0, 1], square.

    d = 0 for perfectly correlated, sqrt(0.5) ~ 0.707 for uncorrelated, 1 for perfectly
    anti-correlated streams. A NaN correlation is imputed as rho = 0 (see
    `condensed_angular_distance`, the large-n path); the diagonal is 0. Computed in place on one
    float64 copy of `corr` and read from its upper triangle, so the result is exactly symmetric.

    The number of imputed unordered off-diagonal pairs is returned in
    `result.attrs["n_imputed_pairs"]` (an int) so callers can record it.
    """
    _check_square(corr)
    d = corr.to_numpy(dtype=float, copy=True)
    n = d.shape[0]
    n_imputed = 0
    for i in range(n - 1):
        n_imputed += _distance_row(d[i, i + 1 :], d[i, i + 1 :])
    lower = np.tril_indices(n, -1)
    d[lower] = d.T[lower]
    np.fill_diagonal(d, 0.0)
    out = pd.DataFrame(d, index=corr.index.copy(), columns=corr.columns.copy(), copy=False)
    out.attrs["n_imputed_pairs"] = n_imputed
    return out


def ward_linkage(distance: pd.DataFrame | np.ndarray) -> np.ndarray:
    """Ward linkage matrix of a square distance matrix or of a condensed distance vector.

    Ward by nearest-neighbour chain (`_ward`; the square form is condensed with
    `squareform(d, checks=False)`; the input is never changed): an
    (n - 1) x 4 array [left, right, height, size], as `scipy.cluster.hierarchy.linkage(condensed,
    method="ward")` returns. Fewer than two symbols give an empty (0, 4) array.
    """
    from scipy.spatial.distance import num_obs_y, squareform

    d = distance.to_numpy(dtype=float) if isinstance(distance, pd.DataFrame) else np.asarray(distance, float)
    if d.ndim == 2 and d.shape[0] == d.shape[1]:
        n = d.shape[0]
        d = squareform(d, checks=False) if n >= 2 else np.empty(0)
    elif d.ndim == 1:
        n = num_obs_y(d) if d.size else 1
    else:
        raise ValueError(f"distance must be a square matrix or a condensed vector, got shape {d.shape}")
    if np.isnan(d).any():
        raise ValueError("distance contains NaN; impute missing correlations first (angular_distance does)")
    return _ward(d, n)


def _ward(condensed: np.ndarray, n: int) -> np.ndarray:
    """Ward linkage of a condensed float64 distance vector.

    fastcluster's nearest-neighbour chain (Muellner's, the algorithm scipy ported): the same
    linkage matrix as `scipy.cluster.hierarchy.linkage(condensed, "ward")` (same merges, heights
    to ~1e-15; tested), about twice as fast at 19,000 symbols (16-18 s vs 32 s on the bench
    machine). Like scipy it works on one copy of the n(n-1)/2 distances (fastcluster 1.3 copies
    even with `preserve_input=False`), so the caller's vector is left as it was.
    """
    import fastcluster

    if n < 2:
        return np.empty((0, 4))
    return fastcluster.linkage(condensed, method="ward")


def _cut(z: np.ndarray, n_leaves: int, threshold: float, max_clusters: int) -> tuple[np.ndarray, str]:
    from scipy.cluster.hierarchy import fcluster

    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    if int(max_clusters) < 1:
        raise ValueError(f"max_clusters must be >= 1, got {max_clusters}")
    if z.shape != (max(n_leaves - 1, 0), 4):
        raise ValueError(
            f"linkage has shape {z.shape}, expected ({max(n_leaves - 1, 0)}, 4) for {n_leaves} labels"
        )
    if n_leaves == 0:
        return np.empty(0, dtype=int), "distance"
    if n_leaves == 1:
        return np.ones(1, dtype=int), "distance"
    ids = fcluster(z, t=threshold, criterion="distance")
    if ids.max() <= max_clusters:
        return ids, "distance"
    return fcluster(z, t=int(max_clusters), criterion="maxclust"), "maxclust"


def cut_clusters(z: np.ndarray, labels: Sequence[str], threshold: float, max_clusters: int) -> pd.Series:
    """Flat clusters: symbol -> 1-based cluster id.

    `fcluster(Z, threshold, criterion="distance")` (merges with Ward height <= threshold are
    joined); if that gives more than `max_clusters` clusters, `fcluster(Z, max_clusters,
    criterion="maxclust")` instead. One label gives cluster 1. Ids are scipy's, unchanged.
    """
    labels = list(labels)
    ids, _ = _cut(np.asarray(z, dtype=float).reshape(-1, 4), len(labels), threshold, max_clusters)
    return pd.Series(ids.astype(int), index=pd.Index(labels, name="symbol"), name="cluster")


@dataclass(frozen=True)
class ClusterResult:
    """Everything the clustering produced, in one place.

    `corr` is the square correlation frame over the symbols in sorted order (float32 when
    clustered with `dtype=np.float32`); `linkage` is the Ward matrix over that order; `clusters`
    maps symbol -> 1-based id (same order); `criterion` is "distance" when the threshold cut was
    used and "maxclust" when it gave more than `max_clusters` clusters; `n_imputed_pairs` counts
    the pairs whose correlation was NaN and was imputed as 0 for the distance. The distance itself
    is not kept (n(n-1)/2 float64: 1.6 GB at 20,000 symbols); `angular_distance(corr)` rebuilds it.
    """

    corr: pd.DataFrame
    linkage: np.ndarray
    clusters: pd.Series
    criterion: str
    n_imputed_pairs: int

    @property
    def n_clusters(self) -> int:
        return int(self.clusters.nunique())


def hierarchical_clusters(
    returns: pd.DataFrame,
    threshold: float,
    max_clusters: int,
    min_overlap: int,
    dtype: type | np.dtype = np.float64,
) -> ClusterResult:
    """Correlation -> condensed angular distance -> Ward -> flat clusters, in one call.

    Columns are sorted by symbol first, so the result does not depend on the column order of
    `returns` (deterministic). Works for any number of symbols >= 1 (one symbol -> cluster 1).
    `dtype` is the precision of the correlation matrix (see the module docstring).
    Peak memory ~ n^2 * (itemsize of `dtype` + 8) bytes: the correlation, the condensed float64
    distance and Ward's working copy of it (4.3 GB at 19,000 symbols in float32).
    """
    x = _returns_matrix(returns)
    if x.shape[1] == 0:
        raise ValueError("returns has no symbols to cluster")
    order = np.argsort(np.asarray(returns.columns, dtype=object), kind="stable")
    symbols = returns.columns[order]
    rho = correlation_matrix(x[:, order], min_overlap, dtype)
    condensed, n_imputed = condensed_angular_distance(rho)
    z = _ward(condensed, len(symbols))
    del condensed
    ids, criterion = _cut(z, len(symbols), threshold, max_clusters)
    corr = pd.DataFrame(rho, index=symbols.copy(), columns=symbols.copy(), copy=False)
    clusters = pd.Series(ids.astype(int), index=pd.Index(symbols, name="symbol"), name="cluster")
    return ClusterResult(corr=corr, linkage=z, clusters=clusters, criterion=criterion, n_imputed_pairs=n_imputed)


def _mean_corr_to_others(sub: np.ndarray) -> np.ndarray:
    """Per member, nan-mean of its correlation to the other members (NaN if none known)."""
    k = sub.shape[0]
    off = np.where(np.eye(k, dtype=bool), np.nan, sub)
    known = ~np.isnan(off)
    n = known.sum(axis=1)
    s = np.where(known, off, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def mean_intra_corr(corr: pd.DataFrame, members: Sequence[str]) -> float:
    """Mean of the off-diagonal correlations among `members` (each unordered pair once).

    NaN correlations are skipped; NaN for a singleton or when no pair has a correlation.
    The matrix is symmetric, so this is sum_{i != j} rho_ij / #{i != j: rho_ij known}, summed
    in float64 over blocks of member rows (no k x k copy for a cluster of k members).
    """
    pos = np.sort(corr.index.get_indexer(list(members)))
    if (pos < 0).any():
        missing = [s for s in members if s not in corr.index]
        raise ValueError(f"members absent from corr: {missing[:3]}")
    k = len(pos)
    if k < 2:
        return float("nan")
    rho = corr.to_numpy()
    total, known = 0.0, 0
    block = max(1, _MASKED_BLOCK_ELEMENTS // k)
    for start in range(0, k, block):
        rows = pos[start : start + block]
        sub = rho[np.ix_(rows, pos)]
        ok = ~np.isnan(sub)
        total += float(np.sum(sub, where=ok, dtype=np.float64))
        known += int(np.count_nonzero(ok))
    known -= k  # the diagonal (1 by definition) is not a pair
    total -= k
    return total / known if known > 0 else float("nan")


def bucket_stats(returns: pd.DataFrame, clusters: pd.Series, corr: pd.DataFrame) -> pd.DataFrame:
    """One row per bucket (cluster), sorted by bucket id.

    Columns:
    - `bucket` (int id), `size` (members), `members` (comma-joined, sorted);
    - `mean_intra_corr`: mean pairwise correlation among members (NaN-skipping; NaN for
      singletons);
    - `ann_vol`: annualized volatility of the bucket's equal-weight daily return,
      std(r_ew, ddof=1) * sqrt(252), where r_ew,t is the mean return over the members with a
      return on session t (sessions with none are skipped); a fraction, e.g. 0.18 = 18 %/yr;
    - `lead`: the member with the highest mean correlation to the other members (ties and
      all-NaN -> the alphabetically first); a singleton's lead is itself.
    """
    missing = [s for s in clusters.index if s not in returns.columns or s not in corr.index]
    if missing:
        raise ValueError(f"clusters name symbols absent from returns or corr: {missing[:3]}")
    rows = []
    for bucket, members_idx in clusters.groupby(clusters).groups.items():
        members = sorted(members_idx)
        sub = corr.loc[members, members].to_numpy(dtype=float)
        if len(members) == 1:
            lead = members[0]
        else:
            mc = _mean_corr_to_others(sub)
            # sorted members + stable argmax on -inf-filled scores -> alphabetical tie-break
            lead = members[int(np.argmax(np.where(np.isnan(mc), -np.inf, mc)))]
        ew = returns[members].mean(axis=1, skipna=True).dropna()
        rows.append(
            {
                "bucket": int(bucket),
                "size": len(members),
                "members": ",".join(members),
                "mean_intra_corr": mean_intra_corr(corr, members),
                "ann_vol": float(ew.std(ddof=1) * np.sqrt(PERIODS_PER_YEAR)),
                "lead": lead,
            }
        )
    cols = ["bucket", "size", "members", "mean_intra_corr", "ann_vol", "lead"]
    return pd.DataFrame(rows, columns=cols).sort_values("bucket").reset_index(drop=True)


def top_correlated_pairs(corr: pd.DataFrame, n: int) -> pd.DataFrame:
    """The `n` most positively correlated pairs: columns a, b, corr, sorted by corr descending.

    Each unordered pair appears once (a before b in the matrix order); NaN correlations are
    skipped; ties are broken by (a, b) for determinism.
    """
    if int(n) < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rho = corr.to_numpy(dtype=float)
    i, j = np.triu_indices(rho.shape[0], k=1)
    vals = rho[i, j]
    keep = ~np.isnan(vals)
    syms = np.asarray(corr.index, dtype=object)
    pairs = pd.DataFrame({"a": syms[i[keep]], "b": syms[j[keep]], "corr": vals[keep]})
    pairs = pairs.sort_values(["corr", "a", "b"], ascending=[False, True, True], kind="mergesort")
    return pairs.head(int(n)).reset_index(drop=True)
