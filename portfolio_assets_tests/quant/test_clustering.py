"""Tests for portfolio_assets.quant.clustering: numbers vs pandas/scipy and hand-computed cases."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import fcluster, linkage

from portfolio_assets.quant.clustering import (
    angular_distance,
    bucket_stats,
    cut_clusters,
    hierarchical_clusters,
    pairwise_correlation,
    plot_clustermap,
    plot_dendrogram,
    top_correlated_pairs,
    ward_linkage,
)

SESSIONS = pd.bdate_range("2024-01-02", periods=60, name="session")


def _holey_returns(seed: int = 0, n: int = 30) -> pd.DataFrame:
    """Random returns with scattered NaN holes, late listings, an early delisting and a flat stream."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0005, 0.02, (len(SESSIONS), n))
    x[rng.random(x.shape) < 0.12] = np.nan
    x[:35, 1] = np.nan  # late listing: 25 sessions
    x[30:, 2] = np.nan  # delisted after 30 sessions -> overlap with column 1 is 0
    x[:45, 3] = np.nan  # listed too late: < 20 sessions at all
    x[:, 4] = 0.01  # constant stream (stale price with a fixed drift): correlation undefined
    x[:, 5] = 1.5 + x[:, 6] * 1e-3  # large mean, small spread: cancellation-prone
    return pd.DataFrame(x, index=SESSIONS, columns=[f"NYSE:S{i:02d}" for i in range(n)])


def _factor_returns(
    seed: int = 3, n_factors: int = 3, members: int = 4
) -> tuple[pd.DataFrame, dict[str, int]]:
    """n_factors latent factors x members; member = factor + 0.5 * idio (rho ~ 0.8 within, ~0 across)."""
    rng = np.random.default_rng(seed)
    f = rng.normal(0.0, 0.01, (len(SESSIONS), n_factors))
    cols, truth = {}, {}
    for k in range(n_factors):
        for j in range(members):
            sym = f"NYSE:F{k}M{j}"
            cols[sym] = f[:, k] + 0.5 * rng.normal(0.0, 0.01, len(SESSIONS))
            truth[sym] = k
    return pd.DataFrame(cols, index=SESSIONS), truth


def test_pairwise_correlation_matches_pandas_with_holes_and_late_listings():
    r = _holey_returns()
    got = pairwise_correlation(r, min_overlap=20)
    ref = r.corr(min_periods=20)
    off = ~np.eye(r.shape[1], dtype=bool)
    g, e = got.to_numpy()[off], ref.to_numpy()[off]
    assert np.array_equal(np.isnan(g), np.isnan(e))
    assert np.nanmax(np.abs(g - e)) < 1e-10
    # the cases that make this coverage-aware rather than zero-filled
    assert np.isnan(got.loc["NYSE:S01", "NYSE:S02"])  # no common sessions
    assert got["NYSE:S03"].drop("NYSE:S03").isna().all()  # listed with < 20 sessions
    assert got["NYSE:S04"].drop("NYSE:S04").isna().all()  # constant stream
    assert got.loc["NYSE:S05", "NYSE:S06"] == pytest.approx(ref.loc["NYSE:S05", "NYSE:S06"], abs=1e-10)
    # diagonal is 1 by definition, also where pandas says NaN (too few sessions / constant)
    assert np.all(np.diag(got.to_numpy()) == 1.0)
    assert got.index.equals(r.columns) and got.columns.equals(r.columns)
    assert np.allclose(got.to_numpy(), got.to_numpy().T, equal_nan=True)


def test_pairwise_correlation_min_overlap_is_inclusive():
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 0.01, (60, 3))
    x[:40, 1] = np.nan  # 20 common sessions with column 0
    x[:41, 2] = np.nan  # 19 common sessions with column 0
    r = pd.DataFrame(x, index=SESSIONS, columns=["A:A", "A:B", "A:C"])
    c = pairwise_correlation(r, min_overlap=20)
    assert c.loc["A:A", "A:B"] == pytest.approx(np.corrcoef(x[40:, 0], x[40:, 1])[0, 1], abs=1e-12)
    assert np.isnan(c.loc["A:A", "A:C"])
    assert np.isnan(c.loc["A:B", "A:C"])


def test_pairwise_correlation_rejects_bad_input():
    r = _holey_returns(n=8)
    with pytest.raises(ValueError, match=re.escape("min_overlap must be >= 2 sessions, got 1")):
        pairwise_correlation(r, min_overlap=1)
    dup = pd.concat([r["NYSE:S00"], r["NYSE:S00"]], axis=1)
    with pytest.raises(ValueError, match=re.escape("returns has duplicate symbol columns: ['NYSE:S00']")):
        pairwise_correlation(dup)


def test_angular_distance_formula_and_imputed_pairs():
    syms = ["A:A", "A:B", "A:C", "A:D"]
    rho = np.array(
        [
            [1.0, 1.0, -1.0, 0.5],
            [1.0, 1.0, np.nan, 0.0],
            [-1.0, np.nan, 1.0, np.nan],
            [0.5, 0.0, np.nan, 1.0],
        ]
    )
    d = angular_distance(pd.DataFrame(rho, index=syms, columns=syms))
    assert d.attrs["n_imputed_pairs"] == 2  # (B, C) and (C, D)
    assert d.loc["A:A", "A:B"] == 0.0
    assert d.loc["A:A", "A:C"] == 1.0
    assert d.loc["A:A", "A:D"] == pytest.approx(0.5)  # sqrt(0.5 * 0.5)
    assert d.loc["A:B", "A:D"] == pytest.approx(math.sqrt(0.5))
    assert d.loc["A:B", "A:C"] == pytest.approx(math.sqrt(0.5))  # imputed rho = 0
    assert np.all(np.diag(d.to_numpy()) == 0.0)
    # a correlation a hair above 1 (rounding) must not give NaN
    rho2 = pd.DataFrame([[1.0, 1.0 + 1e-15], [1.0 + 1e-15, 1.0]], index=syms[:2], columns=syms[:2])
    assert angular_distance(rho2).loc["A:A", "A:B"] == 0.0


def test_distance_linkage_and_cut_equal_scipy_on_independent_condensed_distance():
    r, _ = _factor_returns(seed=11, n_factors=4, members=5)
    r.iloc[:12, 0] = np.nan
    corr = pairwise_correlation(r, min_overlap=20)
    dist = angular_distance(corr)
    # independent condensed distance: pandas correlations, explicit pair loop, i < j order
    ref_corr = r.corr(min_periods=20).to_numpy()
    n = r.shape[1]
    condensed = [math.sqrt(0.5 * (1.0 - ref_corr[i, j])) for i in range(n) for j in range(i + 1, n)]
    z_ref = linkage(np.array(condensed), method="ward")
    z = ward_linkage(dist)
    assert z.shape == (n - 1, 4)
    assert np.allclose(z, z_ref, atol=1e-10)

    labels = list(r.columns)
    got = cut_clusters(z, labels, threshold=0.45, max_clusters=25)
    assert got.to_numpy().tolist() == fcluster(z_ref, t=0.45, criterion="distance").tolist()
    assert got.index.tolist() == labels
    assert got.nunique() == 4

    # threshold too low for max_clusters -> maxclust criterion
    got_max = cut_clusters(z, labels, threshold=0.01, max_clusters=3)
    assert got_max.to_numpy().tolist() == fcluster(z_ref, t=3, criterion="maxclust").tolist()
    assert got_max.nunique() == 3


def test_cut_clusters_validates_shape_and_params():
    z = np.zeros((2, 4))
    with pytest.raises(ValueError, match=re.escape("linkage has shape (2, 4), expected (3, 4) for 4 labels")):
        cut_clusters(z, ["A:A", "A:B", "A:C", "A:D"], 0.45, 25)
    with pytest.raises(ValueError, match=re.escape("threshold must be > 0, got 0")):
        cut_clusters(z, ["A:A", "A:B", "A:C"], 0, 25)
    with pytest.raises(ValueError, match=re.escape("max_clusters must be >= 1, got 0")):
        cut_clusters(z, ["A:A", "A:B", "A:C"], 0.45, 0)


def test_one_and_two_symbols_do_not_crash():
    r, _ = _factor_returns(n_factors=2, members=1)
    one = hierarchical_clusters(r[["NYSE:F0M0"]])
    assert one.clusters.to_dict() == {"NYSE:F0M0": 1}
    assert one.linkage.shape == (0, 4)
    assert cut_clusters(np.empty((0, 4)), ["NYSE:F0M0"], 0.45, 25).tolist() == [1]
    two = hierarchical_clusters(r)  # two independent factors: d ~ 0.7 > 0.45
    assert sorted(two.clusters.tolist()) == [1, 2]
    two_tight = hierarchical_clusters(r, threshold=5.0)
    assert two_tight.clusters.tolist() == [1, 1]


def test_hierarchical_clusters_recovers_latent_factors_and_ignores_column_order():
    r, truth = _factor_returns(seed=5)
    res = hierarchical_clusters(r, threshold=0.45, max_clusters=25, min_overlap=20)
    assert res.criterion == "distance"
    assert res.n_clusters == 3
    # the partition equals the factor membership (cluster ids are scipy's, so compare groups)
    groups = {frozenset(g.index) for _, g in res.clusters.groupby(res.clusters)}
    expected = {frozenset(s for s, k in truth.items() if k == f) for f in range(3)}
    assert groups == expected
    assert res.n_imputed_pairs == 0
    shuffled = r[list(np.random.default_rng(0).permutation(r.columns))]
    res2 = hierarchical_clusters(shuffled)
    pd.testing.assert_series_equal(res.clusters, res2.clusters)
    assert np.array_equal(res.linkage, res2.linkage)


def test_hierarchical_clusters_counts_imputed_pairs():
    r, _ = _factor_returns(seed=2, n_factors=2, members=2)
    r.iloc[:40, 0] = np.nan
    r.iloc[30:, 1] = np.nan  # overlap of columns 0 and 1: 0 sessions
    res = hierarchical_clusters(r)
    # column 0 has sessions 40-59, column 1 sessions 0-29: only the pair (0, 1) has no overlap;
    # each overlaps the full columns 2 and 3 on >= 20 sessions
    assert res.n_imputed_pairs == 1
    assert np.isnan(res.corr.iloc[0, 1])
    assert res.distance.iloc[0, 1] == pytest.approx(math.sqrt(0.5))


def test_bucket_stats_hand_checked():
    a = np.array([0.01, -0.02, 0.03, 0.00, 0.01])
    b = np.array([0.02, -0.01, 0.02, 0.01, 0.00])
    c = np.array([0.00, -0.03, 0.04, -0.01, 0.02])
    d = np.array([0.05, 0.01, -0.02, 0.00, np.nan])
    idx = pd.bdate_range("2024-01-02", periods=5)
    r = pd.DataFrame({"X:C": c, "X:A": a, "X:B": b, "X:D": d}, index=idx)
    corr = r.corr(min_periods=2)
    clusters = pd.Series({"X:A": 1, "X:B": 1, "X:C": 1, "X:D": 2})
    out = bucket_stats(r, clusters, corr)

    rab, rac, rbc = (np.corrcoef(u, v)[0, 1] for u, v in [(a, b), (a, c), (b, c)])
    assert out["bucket"].tolist() == [1, 2]
    assert out["size"].tolist() == [3, 1]
    assert out["members"].tolist() == ["X:A,X:B,X:C", "X:D"]
    assert out.loc[0, "mean_intra_corr"] == pytest.approx((rab + rac + rbc) / 3, abs=1e-12)
    assert np.isnan(out.loc[1, "mean_intra_corr"])
    ew = (a + b + c) / 3
    assert out.loc[0, "ann_vol"] == pytest.approx(np.std(ew, ddof=1) * math.sqrt(252), abs=1e-12)
    assert out.loc[1, "ann_vol"] == pytest.approx(np.std(d[:4], ddof=1) * math.sqrt(252), abs=1e-12)
    mean_to_others = {"X:A": (rab + rac) / 2, "X:B": (rab + rbc) / 2, "X:C": (rac + rbc) / 2}
    assert out.loc[0, "lead"] == max(mean_to_others, key=mean_to_others.get)
    assert out.loc[1, "lead"] == "X:D"


def test_bucket_stats_rejects_unknown_symbols():
    r = pd.DataFrame({"X:A": [0.01, 0.02, 0.0]})
    with pytest.raises(
        ValueError, match=re.escape("clusters name symbols absent from returns or corr: ['X:Z']")
    ):
        bucket_stats(r, pd.Series({"X:A": 1, "X:Z": 2}), r.corr())


def test_top_correlated_pairs_each_pair_once_sorted():
    syms = ["A:A", "A:B", "A:C", "A:D"]
    rho = np.array(
        [
            [1.0, 0.9, 0.2, np.nan],
            [0.9, 1.0, 0.5, -0.3],
            [0.2, 0.5, 1.0, 0.5],
            [np.nan, -0.3, 0.5, 1.0],
        ]
    )
    out = top_correlated_pairs(pd.DataFrame(rho, index=syms, columns=syms), n=10)
    assert list(out.columns) == ["a", "b", "corr"]
    assert out.to_records(index=False).tolist() == [
        ("A:A", "A:B", 0.9),
        ("A:B", "A:C", 0.5),
        ("A:C", "A:D", 0.5),
        ("A:A", "A:C", 0.2),
        ("A:B", "A:D", -0.3),
    ]
    assert len(top_correlated_pairs(pd.DataFrame(rho, index=syms, columns=syms), n=2)) == 2


@pytest.mark.parametrize("n_members", [3, 40])  # 12 and 120 symbols: labelled and unlabelled
def test_plots_write_png(tmp_path, n_members):
    r, _ = _factor_returns(seed=9, n_factors=3, members=n_members)
    res = hierarchical_clusters(r)
    dend = plot_dendrogram(res.linkage, list(res.corr.index), tmp_path / "img" / "dendrogram.png", 0.45)
    cmap = plot_clustermap(res.corr, res.clusters, tmp_path / "img" / "clustermap.png", linkage=res.linkage)
    for p in (dend, cmap):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert p.stat().st_size > 5_000
    single = plot_dendrogram(np.empty((0, 4)), ["A:A"], tmp_path / "one.png", 0.45)
    assert single.read_bytes()[:4] == b"\x89PNG"
