"""Cluster figures: the Ward dendrogram and the correlation heatmap grouped by cluster.

Drawn from a `quant.clustering.ClusterResult` (linkage, corr, clusters) by the risk-buckets asset.
matplotlib is imported inside the functions (heavy import, not needed to load the code location).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

# Symbols in a dendrogram / clustermap above which tick labels are dropped (unreadable anyway).
MAX_PLOT_LABELS = 80


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
