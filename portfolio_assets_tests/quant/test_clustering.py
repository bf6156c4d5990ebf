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
    FLOAT32_RHO_TOL,
    angular_distance,
    bucket_stats,
    condensed_angular_distance,
    correlation_matrix,
    cut_clusters,
    hierarchical_clusters,
    mean_intra_corr,
    pairwise_correlation,
    top_correlated_pairs,
    ward_linkage,
)

SESSIONS = pd.bdate_range("2024-01-02", periods=60, name="session")
CUT = {"threshold": 0.45, "max_clusters": 25, "min_overlap": 20}  # the manifest defaults


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
        pairwise_correlation(dup, min_overlap=20)
    with pytest.raises(ValueError, match=re.escape("dtype must be float64 or float32, got float16")):
        pairwise_correlation(r, min_overlap=20, dtype=np.float16)


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


def _mixed_returns(n: int, gappy_share: float, seed: int = 8) -> pd.DataFrame:
    """Two factors + noise; `gappy_share` of the columns get holes or late listings, two complete
    columns are constant and one gappy column is constant over its sessions."""
    rng = np.random.default_rng(seed)
    f = rng.normal(0.0, 0.01, (len(SESSIONS), 2))
    x = f[:, rng.integers(0, 2, n)] + rng.normal(0.0, 0.01, (len(SESSIONS), n))
    gappy = rng.random(n) < gappy_share
    holes = rng.random(x.shape) < 0.15
    x[holes & gappy] = np.nan
    late = np.flatnonzero(gappy)[::5]
    for k, j in enumerate(late):
        x[: 25 + k % 30, j] = np.nan  # late listings: from 35 down to 6 sessions
    complete = np.flatnonzero(~gappy)
    if len(complete) >= 2:
        x[:, complete[:2]] = [0.01, -0.02]  # constant complete streams
    if gappy.any():
        x[:, np.flatnonzero(gappy)[0]] = np.where(np.isnan(x[:, np.flatnonzero(gappy)[0]]), np.nan, 0.003)
    return pd.DataFrame(x, index=SESSIONS, columns=[f"NYSE:S{i:03d}" for i in range(n)])


@pytest.mark.parametrize("gappy_share", [0.0, 0.2, 0.9, 1.0])
def test_correlation_equals_pandas_to_1e10_across_blocks_and_paths(monkeypatch, gappy_share):
    """The product path (mostly complete columns), the masked path (mostly gappy) and their mix,
    with blocks small enough that the masked kernel and the mirror pass run over many blocks."""
    monkeypatch.setattr(clustering, "_MASKED_BLOCK_ELEMENTS", 700)  # 4 rows per block at n = 160
    monkeypatch.setattr(clustering, "_MIRROR_BLOCK", 7)
    r = _mixed_returns(160, gappy_share)
    got = pairwise_correlation(r, min_overlap=20).to_numpy()
    ref = r.corr(min_periods=20).to_numpy()
    np.fill_diagonal(ref, 1.0)  # ours defines the diagonal as 1
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.nanmax(np.abs(got - ref)) <= 1e-10
    assert np.array_equal(got, got.T, equal_nan=True)  # exactly symmetric
    constant = np.flatnonzero((r.max() == r.min()).to_numpy())
    assert len(constant) >= 1
    for j in constant:  # constant over its sessions: no correlation with anything
        assert np.isnan(np.delete(got[j], j)).all()
    assert got.flags["C_CONTIGUOUS"] and got.dtype == np.float64


def test_fewer_sessions_than_min_overlap_gives_only_nan_pairs():
    r = _mixed_returns(6, 0.0).iloc[:19]
    got = pairwise_correlation(r, min_overlap=20).to_numpy()
    assert np.isnan(got[~np.eye(6, dtype=bool)]).all() and (np.diag(got) == 1.0).all()
    assert np.array_equal(np.isnan(got), np.isnan(r.corr(min_periods=20).to_numpy()) & ~np.eye(6, dtype=bool))


def test_float32_within_documented_tolerance_and_same_clusters():
    r = _mixed_returns(300, 0.2, seed=4)
    c64 = correlation_matrix(r.to_numpy(), 20, np.float64)
    c32 = correlation_matrix(r.to_numpy(), 20, np.float32)
    assert c32.dtype == np.float32 and c32.nbytes * 2 == c64.nbytes
    assert np.array_equal(np.isnan(c32), np.isnan(c64))
    err = np.nanmax(np.abs(c32.astype(float) - c64))
    assert 0 < err <= FLOAT32_RHO_TOL  # really float32 (not a copy of float64), within the bound
    f, _ = _factor_returns(seed=6, n_factors=5, members=30)
    h64 = hierarchical_clusters(f, **CUT)
    h32 = hierarchical_clusters(f, **CUT, dtype=np.float32)
    assert h32.corr.dtypes.unique().tolist() == [np.dtype(np.float32)]
    pd.testing.assert_series_equal(h32.clusters, h64.clusters)
    assert np.abs(h32.linkage[:, 2] - h64.linkage[:, 2]).max() < 1e-5


def test_condensed_distance_is_the_square_one_and_gives_the_same_ward():
    r = _mixed_returns(40, 0.5, seed=2)
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
    assert np.array_equal(square.to_numpy(), square.to_numpy().T)
    with pytest.raises(ValueError, match=re.escape("rho must be a square matrix, got shape (2, 3)")):
        condensed_angular_distance(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=re.escape("distance must be a square matrix or a condensed vector")):
        ward_linkage(np.zeros((2, 3)))


def test_mean_intra_corr_blockwise_equals_explicit_pair_mean(monkeypatch):
    monkeypatch.setattr(clustering, "_MASKED_BLOCK_ELEMENTS", 30)  # 1-3 member rows per block
    r = _mixed_returns(25, 0.6, seed=9)
    corr = pairwise_correlation(r, min_overlap=20)
    members = list(corr.index[[3, 0, 7, 11, 12, 20, 24, 1]])  # unsorted, with NaN pairs (column 0, 1)
    sub = corr.loc[members, members].to_numpy()
    vals = sub[np.triu_indices(len(members), 1)]
    assert np.isnan(vals).any()
    assert mean_intra_corr(corr, members) == pytest.approx(np.nanmean(vals), abs=1e-14)
    assert np.isnan(mean_intra_corr(corr, members[:1]))
    with pytest.raises(ValueError, match=re.escape("members absent from corr: ['X:NONE']")):
        mean_intra_corr(corr, ["X:NONE", members[0]])


def test_correlation_not_slower_than_pandas_on_a_full_window():
    """The product path at a realistic shape (60 sessions, every symbol complete): pandas'
    pairwise loop is O(n^2 T) in Python-free C too, so a regression to a per-pair method shows."""
    import time

    r = _mixed_returns(1500, 0.02, seed=1)

    def best(fn) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    ours = best(lambda: pairwise_correlation(r, min_overlap=20))
    ref = best(lambda: r.corr(min_periods=20))
    assert ours <= ref, (ours, ref)


def test_ward_equals_scipy_and_leaves_the_callers_distance_alone():
    r = _mixed_returns(300, 0.1, seed=12)
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
