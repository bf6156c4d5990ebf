"""Tests for portfolio_assets.quant.correlation: pandas as the reference, on both paths."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.quant import correlation
from portfolio_assets.quant.correlation import FLOAT32_RHO_TOL, correlation_matrix, pairwise_correlation
from portfolio_assets_tests.quant.returns_panels import SESSIONS, holey_returns, mixed_returns


def test_pairwise_correlation_matches_pandas_with_holes_and_late_listings():
    r = holey_returns()
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
    r = holey_returns(n=8)
    with pytest.raises(ValueError, match=re.escape("min_overlap must be >= 2 sessions, got 1")):
        pairwise_correlation(r, min_overlap=1)
    dup = pd.concat([r["NYSE:S00"], r["NYSE:S00"]], axis=1)
    with pytest.raises(ValueError, match=re.escape("returns has duplicate symbol columns: ['NYSE:S00']")):
        pairwise_correlation(dup, min_overlap=20)
    with pytest.raises(ValueError, match=re.escape("dtype must be float64 or float32, got float16")):
        pairwise_correlation(r, min_overlap=20, dtype=np.float16)


@pytest.mark.parametrize("gappy_share", [0.0, 0.2, 0.9, 1.0])
def test_correlation_equals_pandas_to_1e10_across_blocks_and_paths(monkeypatch, gappy_share):
    """The product path (mostly complete columns), the masked path (mostly gappy) and their mix,
    with blocks small enough that the masked kernel and the mirror pass run over many blocks."""
    monkeypatch.setattr(correlation, "_MASKED_BLOCK_ELEMENTS", 700)  # 4 rows per block at n = 160
    monkeypatch.setattr(correlation, "_MIRROR_BLOCK", 7)
    r = mixed_returns(160, gappy_share)
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
    r = mixed_returns(6, 0.0).iloc[:19]
    got = pairwise_correlation(r, min_overlap=20).to_numpy()
    assert np.isnan(got[~np.eye(6, dtype=bool)]).all() and (np.diag(got) == 1.0).all()
    assert np.array_equal(np.isnan(got), np.isnan(r.corr(min_periods=20).to_numpy()) & ~np.eye(6, dtype=bool))


def test_float32_within_documented_tolerance():
    r = mixed_returns(300, 0.2, seed=4)
    c64 = correlation_matrix(r.to_numpy(), 20, np.float64)
    c32 = correlation_matrix(r.to_numpy(), 20, np.float32)
    assert c32.dtype == np.float32 and c32.nbytes * 2 == c64.nbytes
    assert np.array_equal(np.isnan(c32), np.isnan(c64))
    err = np.nanmax(np.abs(c32.astype(float) - c64))
    assert 0 < err <= FLOAT32_RHO_TOL  # really float32 (not a copy of float64), within the bound


def test_correlation_not_slower_than_pandas_on_a_full_window():
    """The product path at a realistic shape (60 sessions, every symbol complete): pandas'
    pairwise loop is O(n^2 T) in Python-free C too, so a regression to a per-pair method shows."""
    import time

    r = mixed_returns(1500, 0.02, seed=1)

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
