"""Moments: the pairwise co-moment kernel against pandas, the one Ledoit-Wolf against scikit-learn
and the regime detector's estimator, the one antifragility score."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.quant.moments import (
    antifragility_scores,
    ledoit_wolf,
    ledoit_wolf_complete,
    ledoit_wolf_pairwise,
    pairwise_moments,
    sample_covariance,
)
from portfolio_assets_tests.quant.markets import factor_market


@pytest.fixture(scope="module")
def gappy() -> pd.DataFrame:
    returns, _ = factor_market(12, 3, seed=21, sessions=180)
    rng = np.random.default_rng(3)
    out = returns.mask(rng.random(returns.shape) < 0.25)
    out.iloc[:150, 0] = np.nan  # 30 sessions left at most
    out.iloc[:170, 1] = np.nan  # ~10 sessions: below the overlap
    return out


def test_kernel_pairwise_means_give_pandas_correlation_and_covariance(gappy):
    k = pairwise_moments(gappy.to_numpy(), min_overlap=20)
    np.testing.assert_array_equal(k.n, gappy.notna().astype(float).T @ gappy.notna().astype(float))
    cov_sum, var_i, var_j = k.centred_over_pairs()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov_sum / np.sqrt(var_i * var_j)
        cov = cov_sum / (k.n - 1)
    corr[~k.usable] = np.nan
    cov[~k.usable] = np.nan
    off = ~np.eye(12, dtype=bool)  # pandas also blanks a variance below min_periods; we keep it
    np.testing.assert_allclose(corr[off], gappy.corr(min_periods=20).to_numpy()[off], atol=1e-12)
    np.testing.assert_allclose(cov[off], gappy.cov(min_periods=20).to_numpy()[off], rtol=1e-10, atol=1e-15)


def test_engine_covariance_uses_each_symbols_own_mean_and_zero_below_overlap():
    returns, _ = factor_market(12, 3, seed=21, sessions=180)
    returns.iloc[:100, 2] = np.nan  # a late listing
    returns.iloc[:170, 1] = np.nan  # ~10 sessions: below the overlap
    estimate = sample_covariance(returns, 20)
    assert estimate.diagnostics["covariance_psd_repaired"] is False  # the raw pairwise numbers
    assert estimate.diagnostics["pairs_below_min_overlap"] == 11
    cov = estimate.matrix.to_numpy()
    x = returns.to_numpy()
    i, j = 2, 5
    both = ~np.isnan(x[:, i]) & ~np.isnan(x[:, j])
    mi, mj = np.nanmean(x[:, i]), np.nanmean(x[:, j])
    expected = ((x[both, i] - mi) * (x[both, j] - mj)).sum() / (both.sum() - 1)
    assert cov[i, j] == pytest.approx(expected, rel=1e-12)
    assert cov[1, 4] == 0.0 and cov[4, 1] == 0.0  # ~10 common sessions < 20
    assert cov[1, 1] == pytest.approx(np.nanvar(x[:, 1], ddof=1), rel=1e-12)


def test_ledoit_wolf_equals_sklearn_on_both_paths():
    from sklearn.covariance import ledoit_wolf as sk_ledoit_wolf


    returns, _ = factor_market(15, 3, seed=2, sessions=120)
    x = returns.to_numpy()
    ours, delta, below = ledoit_wolf(x, 20)
    ref, ref_delta = sk_ledoit_wolf(x)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-15)
    assert delta == pytest.approx(ref_delta, abs=1e-12) and below == 0
    for path in (ledoit_wolf_complete, ledoit_wolf_pairwise):
        cov, shrink = path(x) if path is ledoit_wolf_complete else path(x, 20)[:2]
        np.testing.assert_allclose(cov, ref, rtol=0, atol=1e-15)
        assert shrink == pytest.approx(ref_delta, abs=1e-12)


def test_antifragility_hand_computed_and_degenerate_columns():
    rng = np.random.default_rng(7)
    x = rng.standard_t(4, 300) * 0.01
    q05, q95 = np.quantile(x, [0.05, 0.95])
    d = x - x.mean()
    n = len(x)
    skew = (d**3).mean() / (d**2).mean() ** 1.5 * np.sqrt(n * (n - 1)) / (n - 2)
    frame = pd.DataFrame({"NYSE:A": x, "NYSE:FLAT": 0.01, "NYSE:TWO": np.r_[0.01, -0.01, np.full(298, np.nan)]})
    scores = antifragility_scores(frame)
    assert scores["NYSE:A"] == pytest.approx(skew + x[x >= q95].mean() / abs(x[x <= q05].mean()), rel=1e-10)
    assert np.isnan(scores["NYSE:FLAT"])  # zero variance
    assert np.isnan(scores["NYSE:TWO"])  # fewer than 3 returns
    late = antifragility_scores(pd.DataFrame({"NYSE:LATE": np.r_[np.full(50, np.nan), x[:250]]}))
    assert late["NYSE:LATE"] == pytest.approx(antifragility_scores(pd.DataFrame({"X:Y": x[:250]}))["X:Y"], rel=1e-12)


def test_selection_uses_the_same_score():
    from portfolio_assets.quant.selection import antifragility

    returns, _ = factor_market(6, 2, seed=5)
    pd.testing.assert_series_equal(antifragility(returns), antifragility_scores(returns))
