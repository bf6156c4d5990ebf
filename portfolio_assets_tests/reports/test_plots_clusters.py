"""Tests for portfolio_assets.reports.plots.clusters: the dendrogram and clustermap PNGs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.quant.clustering import hierarchical_clusters
from portfolio_assets.reports.plots.clusters import plot_clustermap, plot_dendrogram


def _factor_returns(n_factors: int, members: int, seed: int = 9) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    f = rng.normal(0.0, 0.01, (60, n_factors))
    cols = {f"NYSE:F{k}M{j}": f[:, k] + 0.5 * rng.normal(0.0, 0.01, 60)
            for k in range(n_factors) for j in range(members)}
    return pd.DataFrame(cols, index=pd.bdate_range("2024-01-02", periods=60))


@pytest.mark.parametrize("n_members", [3, 40])  # 12 and 120 symbols: labelled and unlabelled
def test_plots_write_png(tmp_path, n_members):
    res = hierarchical_clusters(_factor_returns(3, n_members), threshold=0.45, max_clusters=25, min_overlap=20)
    dend = plot_dendrogram(res.linkage, list(res.corr.index), tmp_path / "img" / "dendrogram.png", 0.45)
    cmap = plot_clustermap(res.corr, res.clusters, tmp_path / "img" / "clustermap.png", linkage=res.linkage)
    for p in (dend, cmap):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert p.stat().st_size > 5_000
    single = plot_dendrogram(np.empty((0, 4)), ["A:A"], tmp_path / "one.png", 0.45)
    assert single.read_bytes()[:4] == b"\x89PNG"


def test_clustermap_names_symbols_without_a_cluster(tmp_path):
    res = hierarchical_clusters(_factor_returns(2, 2), threshold=0.45, max_clusters=25, min_overlap=20)
    with pytest.raises(ValueError, match=r"clusters has no id for symbols in corr: \['NYSE:F0M0'\]"):
        plot_clustermap(res.corr, res.clusters.drop("NYSE:F0M0"), tmp_path / "x.png")
