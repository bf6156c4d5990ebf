"""Tests for portfolio_assets.quant.clustering: numbers vs pandas/scipy and hand-computed cases."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from portfolio_assets.quant import clustering
from portfolio_assets.quant.clustering import (
    angular_distance,
    bucket_stats,
    condensed_angular_distance,
    cut_clusters,
    hierarchical_clusters,
    mean_intra_corr,
    pairwise_correlation,
    top_correlated_pairs,
    ward_linkage,
)
from portfolio_assets_tests.quant.returns_panels import SESSIONS, mixed_returns

CUT = {"threshold": 0.45, "max_clusters": 25, "min_overlap": 20}  # the manifest defaults


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
    one = hierarchical_clusters(r[["NYSE:F0M0"]], **CUT)
    assert one.clusters.to_dict() == {"NYSE:F0M0": 1}
    assert one.linkage.shape == (0, 4)
    assert cut_clusters(np.empty((0, 4)), ["NYSE:F0M0"], 0.45, 25).tolist() == [1]
    two = hierarchical_clusters(r, **CUT)  # two independent factors: d ~ 0.7 > 0.45
    assert sorted(two.clusters.tolist()) == [1, 2]
    two_tight = hierarchical_clusters(r, **{**CUT, "threshold": 5.0})
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
    res2 = hierarchical_clusters(shuffled, **CUT)
    pd.testing.assert_series_equal(res.clusters, res2.clusters)
    assert np.array_equal(res.linkage, res2.linkage)


def test_hierarchical_clusters_counts_imputed_pairs():
    r, _ = _factor_returns(seed=2, n_factors=2, members=2)
    r.iloc[:40, 0] = np.nan
    r.iloc[30:, 1] = np.nan  # overlap of columns 0 and 1: 0 sessions
    res = hierarchical_clusters(r, **CUT)
    # column 0 has sessions 40-59, column 1 sessions 0-29: only the pair (0, 1) has no overlap;
    # each overlaps the full columns 2 and 3 on >= 20 sessions
    assert res.n_imputed_pairs == 1
    assert np.isnan(res.corr.iloc[0, 1])
    assert angular_distance(res.corr).iloc[0, 1] == pytest.approx(math.sqrt(0.5))


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


def test_float32_gives_the_same_clusters_as_float64():
    f, _ = _factor_returns(seed=6, n_factors=5, members=30)
    h64 = hierarchical_clusters(f, **CUT)
    h32 = hierarchical_clusters(f, **CUT, dtype=np.float32)
    assert h32.corr.dtypes.unique().tolist() == [np.dtype(np.float32)]
    pd.testing.assert_series_equal(h32.clusters, h64.clusters)
    assert np.abs(h32.linkage[:, 2] - h64.linkage[:, 2]).max() < 1e-5


def test_condensed_distance_is_the_square_one_and_gives_the_same_ward():
    r = mixed_returns(40, 0.5, seed=2)
    corr = pairwise_correlation(r, min_overlap=20)
    cond, n_imputed = condensed_angular_distance(corr.to_numpy())
    square = angular_distance(corr)
    assert np.array_equal(cond, squareform(square.to_numpy(), checks=False))
    assert n_imputed == square.attrs["n_imputed_pairs"] > 0
    rho = corr.to_numpy()
    iu = np.triu_indices(40, 1)
    expected = np.sqrt(np.clip(0.5 * (1.0 - np.nan_to_num(rho[iu], nan=0.0)), 0.0, 1.0))
    assert np.array_equal(cond, expected)
    assert n_imputed == int(np.isnan(rho[iu]).sum())
    assert np.array_equal(ward_linkage(cond), ward_linkage(square))
    rho32 = rho.astype(np.float32)  # the float32 path: the arithmetic still runs in float64
    assert np.array_equal(condensed_angular_distance(rho32)[0], condensed_angular_distance(rho32.astype(float))[0])
    assert np.array_equal(square.to_numpy(), square.to_numpy().T)
    with pytest.raises(ValueError, match=re.escape("rho must be a square matrix, got shape (2, 3)")):
        condensed_angular_distance(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=re.escape("distance must be a square matrix or a condensed vector")):
        ward_linkage(np.zeros((2, 3)))


def test_mean_intra_corr_blockwise_equals_explicit_pair_mean(monkeypatch):
    monkeypatch.setattr(clustering, "_INTRA_BLOCK_ELEMENTS", 30)  # 1-3 member rows per block
    r = mixed_returns(25, 0.6, seed=9)
    corr = pairwise_correlation(r, min_overlap=20)
    members = list(corr.index[[3, 0, 7, 11, 12, 20, 24, 1]])  # unsorted, with NaN pairs (column 0, 1)
    sub = corr.loc[members, members].to_numpy()
    vals = sub[np.triu_indices(len(members), 1)]
    assert np.isnan(vals).any()
    assert mean_intra_corr(corr, members) == pytest.approx(np.nanmean(vals), abs=1e-14)
    assert np.isnan(mean_intra_corr(corr, members[:1]))
    with pytest.raises(ValueError, match=re.escape("members absent from corr: ['X:NONE']")):
        mean_intra_corr(corr, ["X:NONE", members[0]])


def test_ward_equals_scipy_and_leaves_the_callers_distance_alone():
    r = mixed_returns(300, 0.1, seed=12)
    cond, _ = condensed_angular_distance(pairwise_correlation(r, min_overlap=20).to_numpy())
    before = cond.copy()
    z = ward_linkage(cond)
    z_ref = linkage(before, method="ward")
    assert np.array_equal(cond, before)  # the input is never changed
    assert np.array_equal(z[:, [0, 1, 3]], z_ref[:, [0, 1, 3]])  # same merges, same sizes
    assert np.abs(z[:, 2] - z_ref[:, 2]).max() < 1e-12
    for t in (0.3, 0.45, 0.6):
        assert np.array_equal(fcluster(z, t, "distance"), fcluster(z_ref, t, "distance"))
    assert np.array_equal(fcluster(z, 25, "maxclust"), fcluster(z_ref, 25, "maxclust"))
