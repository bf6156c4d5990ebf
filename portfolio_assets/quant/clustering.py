"""Coverage-aware correlation clustering (natural selection step 5 and risk buckets step 9).

The pipeline is

1. `pairwise_correlation` — Pearson correlation on pairwise-complete sessions (a symbol listed
   late, or with missing bars, is correlated only over the sessions both symbols traded; never
   zero-filled, never inner-joined);
2. `angular_distance` — d = sqrt(0.5 * (1 - rho)), in [0, 1];
3. `ward_linkage` — Ward agglomeration on that distance;
4. `cut_clusters` — flat clusters at a distance threshold, or `max_clusters` if the threshold
   gives more.

`hierarchical_clusters` runs all four and returns a `ClusterResult`. `bucket_stats`,
`top_correlated_pairs`, `plot_dendrogram` and `plot_clustermap` describe the result.

Pure numpy / scipy / pandas; matplotlib is imported inside the plot helpers only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from portfolio_assets.constants import PERIODS_PER_YEAR

# Symbols in a dendrogram / clustermap above which tick labels are dropped (unreadable anyway).
MAX_PLOT_LABELS = 80
# Row-block size of the correlation kernel: bounds the temporaries to ~5 (block x n) matrices.
_CORR_BLOCK = 1024


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


def pairwise_correlation(returns: pd.DataFrame, min_overlap: int = 20) -> pd.DataFrame:
    """Pearson correlation of every pair of columns over their pairwise-complete sessions.

    For symbols i, j let S_ij be the sessions where both have a return (NaN = no data) and
    n_ij = |S_ij|. Then

        rho_ij = sum_S (x_i - xbar_i)(x_j - xbar_j) / sqrt(sum_S (x_i - xbar_i)^2 * sum_S (x_j - xbar_j)^2)

    with the means xbar taken over S_ij, i.e. exactly `returns.corr(min_periods=min_overlap)`.
    Pairs with n_ij < `min_overlap`, or where either side is constant over S_ij, are NaN; values
    are clipped to [-1, 1]; the diagonal is 1 by definition (also for a symbol without data).

    Vectorized with masked matrix products: with X the returns (NaN -> 0) and M the 0/1 mask of
    available returns, n = M'M, sum x_i over S_ij = (X'M)_ij, sum x_i^2 = (X^2'M)_ij and
    sum x_i x_j = (X'X)_ij, so the cost is a handful of BLAS products, O(n_symbols^2 * T), done in
    row blocks so the temporaries stay small. Each column is first centred by its own mean
    (correlation is shift-invariant) to avoid cancellation in the one-pass sums.
    """
    if int(min_overlap) < 2:
        raise ValueError(f"min_overlap must be >= 2 sessions, got {min_overlap}")
    x = _returns_matrix(returns)
    cols = returns.columns
    n_sym = x.shape[1]
    mask = ~np.isnan(x)
    m = mask.astype(float)
    counts = m.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        col_mean = np.where(counts > 0, np.nansum(x, axis=0) / np.maximum(counts, 1.0), 0.0)
    x0 = np.where(mask, x - col_mean, 0.0)
    x2 = x0 * x0

    out = np.empty((n_sym, n_sym))
    for start in range(0, n_sym, _CORR_BLOCK):
        b = slice(start, min(start + _CORR_BLOCK, n_sym))
        n = m[:, b].T @ m  # n_ij, sessions both observed
        sx = x0[:, b].T @ m  # sum of x_i over S_ij
        sy = m[:, b].T @ x0  # sum of x_j over S_ij
        sxx = x2[:, b].T @ m
        syy = m[:, b].T @ x2
        sxy = x0[:, b].T @ x0
        with np.errstate(invalid="ignore", divide="ignore"):
            inv_n = 1.0 / n
            cov = sxy - sx * sy * inv_n
            var_x = sxx - sx * sx * inv_n
            var_y = syy - sy * sy * inv_n
            # A constant stream has zero centred variance; the one-pass sums leave rounding
            # residue, so anything below a relative epsilon of the raw sum of squares is zero.
            tol = 1e-12
            degenerate = (var_x <= tol * sxx) | (var_y <= tol * syy)
            rho = cov / np.sqrt(var_x * var_y)
        rho[(n < min_overlap) | degenerate] = np.nan
        out[b] = np.clip(rho, -1.0, 1.0)
    np.fill_diagonal(out, 1.0)
    return pd.DataFrame(out, index=cols.copy(), columns=cols.copy())


def angular_distance(corr: pd.DataFrame) -> pd.DataFrame:
    """Angular correlation distance d_ij = sqrt(0.5 * (1 - rho_ij)), clipped to [0, 1].

    d = 0 for perfectly correlated, sqrt(0.5) ~ 0.707 for uncorrelated, 1 for perfectly
    anti-correlated streams. A NaN correlation (fewer than `min_overlap` common sessions, or a
    constant stream) is *imputed as rho = 0*, i.e. d = sqrt(0.5): with no evidence of co-movement
    the pair is treated as unrelated rather than dropped. The diagonal is 0.

    The number of imputed unordered off-diagonal pairs is returned in
    `result.attrs["n_imputed_pairs"]` (an int) so callers can record it.
    """
    if not isinstance(corr, pd.DataFrame) or corr.shape[0] != corr.shape[1]:
        raise ValueError("corr must be a square pandas DataFrame (symbols x symbols)")
    if not corr.index.equals(corr.columns):
        raise ValueError("corr must have the same symbols, in the same order, on index and columns")
    rho = corr.to_numpy(dtype=float, copy=True)
    off_diag = ~np.eye(rho.shape[0], dtype=bool)
    n_imputed = int(np.count_nonzero(np.isnan(rho) & off_diag) // 2)
    rho = np.where(np.isnan(rho), 0.0, rho)
    d = np.sqrt(np.clip(0.5 * (1.0 - rho), 0.0, 1.0))
    # Symmetrize so squareform sees an exact metric-shaped matrix.
    d = 0.5 * (d + d.T)
    np.fill_diagonal(d, 0.0)
    out = pd.DataFrame(d, index=corr.index.copy(), columns=corr.columns.copy())
    out.attrs["n_imputed_pairs"] = n_imputed
    return out


def ward_linkage(distance: pd.DataFrame) -> np.ndarray:
    """Ward linkage matrix of a square distance matrix.

    `scipy.cluster.hierarchy.linkage(squareform(d, checks=False), method="ward")`: an
    (n - 1) x 4 array [left, right, height, size]. Fewer than two symbols give an empty (0, 4)
    array (there is nothing to merge).
    """
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    d = distance.to_numpy(dtype=float) if isinstance(distance, pd.DataFrame) else np.asarray(distance, float)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"distance must be a square matrix, got shape {d.shape}")
    if np.isnan(d).any():
        raise ValueError("distance contains NaN; impute missing correlations first (angular_distance does)")
    if d.shape[0] < 2:
        return np.empty((0, 4))
    return linkage(squareform(d, checks=False), method="ward")


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

    `corr` and `distance` are square frames over the symbols in sorted order; `linkage` is the
    Ward matrix over that order; `clusters` maps symbol -> 1-based id (same order);
    `criterion` is "distance" when the threshold cut was used and "maxclust" when it gave more
    than `max_clusters` clusters; `n_imputed_pairs` counts the pairs whose correlation was NaN and
    was imputed as 0 for the distance.
    """

    corr: pd.DataFrame
    distance: pd.DataFrame
    linkage: np.ndarray
    clusters: pd.Series
    criterion: str
    n_imputed_pairs: int

    @property
    def n_clusters(self) -> int:
        return int(self.clusters.nunique())


def hierarchical_clusters(
    returns: pd.DataFrame, threshold: float = 0.45, max_clusters: int = 25, min_overlap: int = 20
) -> ClusterResult:
    """Correlation -> angular distance -> Ward -> flat clusters, in one call.

    Columns are sorted by symbol first, so the result does not depend on the column order of
    `returns` (deterministic). Works for any number of symbols >= 1 (one symbol -> cluster 1).
    """
    x = _returns_matrix(returns)
    if x.shape[1] == 0:
        raise ValueError("returns has no symbols to cluster")
    ordered = returns[sorted(returns.columns)]
    corr = pairwise_correlation(ordered, min_overlap=min_overlap)
    distance = angular_distance(corr)
    z = ward_linkage(distance)
    ids, criterion = _cut(z, len(corr), threshold, max_clusters)
    clusters = pd.Series(ids.astype(int), index=pd.Index(corr.index, name="symbol"), name="cluster")
    return ClusterResult(
        corr=corr,
        distance=distance,
        linkage=z,
        clusters=clusters,
        criterion=criterion,
        n_imputed_pairs=int(distance.attrs["n_imputed_pairs"]),
    )


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
    """
    sub = corr.loc[list(members), list(members)].to_numpy(dtype=float)
    iu = np.triu_indices(sub.shape[0], k=1)
    vals = sub[iu]
    vals = vals[~np.isnan(vals)]
    return float(vals.mean()) if vals.size else float("nan")


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


def top_correlated_pairs(corr: pd.DataFrame, n: int = 20) -> pd.DataFrame:
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


def _label_fontsize(n: int) -> float:
    return float(np.clip(400.0 / max(n, 1), 4.0, 9.0))


def plot_dendrogram(z: np.ndarray, labels: Sequence[str], path: str | Path, threshold: float) -> Path:
    """Write the Ward dendrogram as a PNG with the cut threshold as a dashed line.

    Leaf labels are drawn (small font) for up to 80 symbols and omitted above that. Returns the
    path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.cluster.hierarchy import dendrogram

    labels = list(labels)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    width = float(np.clip(0.15 * n + 4.0, 6.0, 20.0))
    fig, ax = plt.subplots(figsize=(width, 5.0))
    try:
        if n < 2:
            ax.text(0.5, 0.5, f"{n} symbol(s): nothing to merge", ha="center", va="center")
            ax.set_axis_off()
        else:
            show = n <= MAX_PLOT_LABELS
            dendrogram(
                np.asarray(z, dtype=float),
                labels=labels if show else None,
                no_labels=not show,
                leaf_rotation=90.0,
                leaf_font_size=_label_fontsize(n),
                color_threshold=threshold,
                ax=ax,
            )
            ax.axhline(threshold, color="grey", linestyle="--", linewidth=1.0, label=f"cut {threshold:g}")
            ax.legend(loc="upper right", fontsize=8)
            ax.set_ylabel("Ward height")
        ax.set_title(f"Ward dendrogram ({n} symbols)")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


def plot_clustermap(
    corr: pd.DataFrame, clusters: pd.Series, path: str | Path, linkage: np.ndarray | None = None
) -> Path:
    """Write the correlation heatmap, rows/columns grouped by cluster, as a PNG.

    Order: by cluster id, and within a cluster by dendrogram leaf order when `linkage` (built over
    `corr`'s order) is given, else by symbol. Cluster blocks are outlined; NaN correlations are
    grey. Tick labels for up to 80 symbols, none above. Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    syms = list(corr.index)
    missing = [s for s in syms if s not in clusters.index]
    if missing:
        raise ValueError(f"clusters has no id for symbols in corr: {missing[:3]}")
    if linkage is not None and len(syms) >= 2:
        from scipy.cluster.hierarchy import leaves_list

        leaf_pos = {syms[k]: pos for pos, k in enumerate(leaves_list(np.asarray(linkage, dtype=float)))}
    else:
        leaf_pos = {s: pos for pos, s in enumerate(sorted(syms))}
    order = sorted(syms, key=lambda s: (int(clusters[s]), leaf_pos[s]))
    mat = np.ma.masked_invalid(corr.loc[order, order].to_numpy(dtype=float))
    ids = [int(clusters[s]) for s in order]

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(order)
    side = float(np.clip(0.12 * n + 4.0, 6.0, 16.0))
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    try:
        cmap = plt.get_cmap("RdBu_r").with_extremes(bad="lightgrey")
        im = ax.imshow(mat, cmap=cmap, vmin=-1.0, vmax=1.0, interpolation="nearest")
        start = 0
        for k in range(1, n + 1):
            if k == n or ids[k] != ids[start]:
                ax.add_patch(
                    Rectangle(
                        (start - 0.5, start - 0.5),
                        k - start,
                        k - start,
                        fill=False,
                        edgecolor="black",
                        lw=0.8,
                    )
                )
                start = k
        if n <= MAX_PLOT_LABELS:
            fs = _label_fontsize(n)
            ax.set_xticks(range(n), order, rotation=90, fontsize=fs)
            ax.set_yticks(range(n), order, fontsize=fs)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="correlation")
        ax.set_title(f"Correlation by cluster ({n} symbols, {len(set(ids))} clusters)")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
