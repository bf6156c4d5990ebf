"""Ours against reference implementations, in the same process on the same data.

- `tournament`: the walk-forward tournament of inverse_vol, min_variance, hrp and risk_parity
  against skfolio's `WalkForward` + `cross_val_predict` with the equivalent estimators
  (`benchmarks/tournament_vs_skfolio.py`: same windows, caps and turnover penalty off so that both
  solve the same problems; ours also runs both simulators and the per-window metrics), on the
  streams, buckets and regime the real assets produced in the `graph` section. Per engine and total;
  agreement = the largest weight difference over every window.
- `hrp`: `engines.hrp_weights` against riskfolio-lib's `HCPortfolio` on the raw pool's history, and
  the `blas` rows: the same code with the default OpenBLAS threads against one thread.
- `correlation`: `clustering.pairwise_correlation` (+ angular distance + Ward) against pandas
  `.corr(min_periods=...)` (+ scipy's linkage) on the 60-session returns of the synthetic market
  at N symbols with 10% of the returns removed at random (the pairwise-complete path); agreement =
  max |drho| and whether the flat clusters are identical.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.graph import GraphRun, tournament_inputs
from benchmarks.table import Recorder, Row

COMPARE_ENGINES = ("inverse_vol", "min_variance", "hrp", "risk_parity")
HRP_SHAPE = (60, 252)  # symbols x sessions of the HRP comparison
GAP_SHARE = 0.10  # share of the returns removed for the correlation comparison
# Agreement the rows must show (the tests hold the bench to them): closed forms to rounding, the
# cvxpy engines to solver tolerance, correlation to float64 rounding.
TOLERANCE = {"inverse_vol": 1e-10, "hrp": 1e-10, "min_variance": 1e-3, "risk_parity": 1e-3,
             "hrp_riskfolio": 1e-8, "correlation": 1e-10}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the reference libraries' warnings (deprecations, solver notes) while they run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _config(profile: str) -> Any:
    from portfolio_assets.manifest import resolve

    return resolve(profile).config


# ------------------------------------------------------------------------------------------ tournament
def compare_tournament(rec: Recorder, run: GraphRun) -> None:
    """Our walk-forward tournament vs skfolio on the demo universe's complete streams."""
    from benchmarks import tournament_vs_skfolio as tvs

    cfg = _config(run.profile)
    bt = cfg.backtest
    if bt.step != bt.test:
        rec.add(Row("tournament", "vs skfolio: not comparable", note="skfolio WalkForward needs step == test"))
        return
    streams, buckets, regime = tournament_inputs(run)
    full = streams.dropna(axis=1)
    with _quiet():
        table = tvs.compare(full, buckets, cfg, engines=COMPARE_ENGINES, regime=regime).set_index("engine")
    size = f"{int(table['symbols'].iloc[0])} symbols x {int(table['windows'].iloc[0])} windows"
    for engine in COMPARE_ENGINES:
        row = table.loc[engine]
        rec.add(Row("tournament", f"{engine} vs skfolio {row['reference']}", size,
                    seconds=float(row["ours_s"]), ref_seconds=float(row["ref_s"]),
                    agreement=float(row["max_abs_dw"]),
                    note=f"max|dw| {row['max_abs_dw']:.1e}; our fits alone {row['fits_s']:.3f} s "
                         f"(ratio {row['fits_ratio']:.2f})"))
    total = table.loc["total"]
    rec.add(Row("tournament", "total, 4 engines (ours: both simulators + window metrics)", size,
                seconds=float(total["ours_s"]), ref_seconds=float(total["ref_s"]),
                agreement=float(total["max_abs_dw"]),
                note=f"caps + turnover penalty off on both sides; target ratio <= 1.0 (aim 0.5); "
                     f"regime {regime}"))
    setup = tvs.prepare(full, buckets, cfg, regime)
    blas_threads_row(rec, "tournament, 4 engines (ours)", size,
                     lambda: [tvs.ours(setup, engine) for engine in COMPARE_ENGINES], repeat=1)


def blas_threads_row(rec: Recorder, label: str, size: str, fn: Callable[[], Any], repeat: int) -> None:
    """The same code with the default OpenBLAS threads and limited to one (threadpoolctl): small
    matrices on a shared 2-core machine can lose more to thread hand-offs than they gain."""
    from threadpoolctl import threadpool_info, threadpool_limits

    threads = max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=1)
    t_default, m_default, _ = rec.measure(fn, repeat=repeat)
    with threadpool_limits(limits=1, user_api="blas"):
        t_one, m_one, _ = rec.measure(fn, repeat=repeat)
    rec.add(Row("blas", f"{label}: {threads} BLAS threads (ref: 1 thread)", size, seconds=t_default,
                peak_mb=m_default, ref_seconds=t_one, ref_peak_mb=m_one,
                note="same code; ref limited to 1 OpenBLAS thread with threadpoolctl"))


# ------------------------------------------------------------------------------------------ HRP
def hrp_inputs(raw_history: pd.DataFrame, n_symbols: int, n_sessions: int) -> pd.DataFrame:
    """The last `n_sessions` of the first `n_symbols` (sorted) symbols with complete data."""
    tail = raw_history.iloc[-n_sessions:].dropna(axis=1)
    tail = tail.loc[:, tail.std() > 0]
    return tail[sorted(tail.columns)[:n_symbols]]


def hrp_ours(returns: pd.DataFrame) -> pd.Series:
    """Our HRP as the `hrp` engine computes it (pairwise sample covariance -> correlation -> HRP)."""
    from portfolio_assets.manifest import DataConfig
    from portfolio_assets.quant.engines import correlation_from_covariance, hrp_weights, sample_covariance

    cov = sample_covariance(returns, DataConfig().min_overlap).matrix
    return hrp_weights(cov, correlation_from_covariance(cov), linkage="single")


def hrp_riskfolio(returns: pd.DataFrame) -> pd.Series:
    import riskfolio as rp

    port = rp.HCPortfolio(returns=returns)
    with _quiet():
        w = port.optimization(model="HRP", codependence="pearson", rm="MV", rf=0, linkage="single",
                              leaf_order=False, method_cov="hist")["weights"]
    return w.reindex(returns.columns)


def compare_hrp(rec: Recorder, run: GraphRun, shape: tuple[int, int] = HRP_SHAPE, repeat: int = 20) -> float:
    """HRP: ours vs riskfolio-lib on the raw pool's history the `raw_pool_history` asset stored;
    returns max |w diff|."""
    returns = hrp_inputs(run.value("raw_pool_history"), *shape)
    hrp_riskfolio(returns)  # import + warm-up
    t_ours, m_ours, ours = rec.measure(lambda: hrp_ours(returns), repeat=repeat)
    ref_repeat = max(3, repeat // 4)
    t_ref, m_ref, ref = rec.measure(lambda: hrp_riskfolio(returns), repeat=ref_repeat)
    diff = float(np.abs(ours.to_numpy() - ref.to_numpy()).max())
    size = f"{returns.shape[1]} x {returns.shape[0]}"
    rec.add(Row("hrp", "engines.hrp_weights vs riskfolio HCPortfolio HRP", size, seconds=t_ours, peak_mb=m_ours,
                ref_seconds=t_ref, ref_peak_mb=m_ref, agreement=diff,
                note=f"max|dw| {diff:.1e}; median of {repeat} / {ref_repeat} calls"))
    blas_threads_row(rec, "HRP (ours)", size, lambda: hrp_ours(returns), repeat)
    return diff


# ------------------------------------------------------------------------------------------ correlation
def corr_reference(returns: pd.DataFrame, min_overlap: int) -> np.ndarray:
    corr = returns.corr(min_periods=min_overlap).to_numpy()
    np.fill_diagonal(corr, 1.0)  # ours defines the diagonal as 1 (pandas: NaN without data)
    return corr


def linkage_reference(corr: np.ndarray) -> np.ndarray:
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    d = np.sqrt(np.clip(0.5 * (1.0 - np.nan_to_num(corr, nan=0.0)), 0.0, 1.0))
    np.fill_diagonal(d, 0.0)
    return linkage(squareform(d, checks=False), method="ward")


def corr_agreement(ours: np.ndarray, ref: np.ndarray) -> float:
    """max |ours - ref| where both are defined; inf when they disagree on which pairs are NaN."""
    if not np.array_equal(np.isnan(ours), np.isnan(ref)):
        return float("inf")
    both = ~np.isnan(ours)
    return float(np.abs(ours[both] - ref[both]).max()) if both.any() else 0.0


def gappy_returns(n: int, date: dt.date, cache: Path, seed: int = 7) -> pd.DataFrame:
    """60-session returns of the synthetic market at `n` equities (`selection_scale.build_inputs`,
    cached under `cache`) with `GAP_SHARE` of the values removed at random (seeded)."""
    from benchmarks import selection_scale

    _, ret_path, _ = selection_scale.build_inputs(n, date, cache)
    returns = pd.read_parquet(ret_path)
    mask = np.random.default_rng(seed).random(returns.shape) < GAP_SHARE
    return returns.mask(mask)


def compare_correlation(rec: Recorder, n: int, date: dt.date, cache: Path, profile: str) -> tuple[float, bool]:
    """Correlation, then correlation + Ward, ours vs pandas + scipy at `n` equities; returns
    (max |drho|, identical flat clusters)."""
    from portfolio_assets.quant.clustering import (
        condensed_angular_distance,
        cut_clusters,
        pairwise_correlation,
        ward_linkage,
    )

    cfg = _config(profile)
    min_overlap, threshold, max_clusters = cfg.data.min_overlap, cfg.selection.threshold, cfg.selection.max_clusters
    returns = gappy_returns(n, date, cache)
    t_ours, m_ours, corr = rec.measure(lambda: pairwise_correlation(returns, min_overlap=min_overlap))
    t_ward, m_ward, z = rec.measure(lambda: ward_linkage(condensed_angular_distance(corr.to_numpy())[0]))
    t_ref, m_ref, ref_corr = rec.measure(lambda: corr_reference(returns, min_overlap))
    t_link, m_link, ref_z = rec.measure(lambda: linkage_reference(ref_corr))
    diff = corr_agreement(corr.to_numpy(), ref_corr)
    labels = list(corr.index)
    same = bool((cut_clusters(z, labels, threshold, max_clusters).to_numpy()
                 == cut_clusters(ref_z, labels, threshold, max_clusters).to_numpy()).all())
    dz = float(np.abs(z[:, 2] - ref_z[:, 2]).max()) if len(ref_z) else 0.0
    size = f"{returns.shape[0]} x {returns.shape[1]:,}"
    rec.add(Row("correlation", f"{n:,}: pairwise_correlation vs pandas corr(min_periods={min_overlap})", size,
                seconds=t_ours, peak_mb=m_ours, ref_seconds=t_ref, ref_peak_mb=m_ref, agreement=diff,
                note=f"max|drho| {diff:.1e}; {GAP_SHARE:.0%} of returns removed"))
    rec.add(Row("correlation", f"{n:,}: corr + angular distance + Ward, ours vs pandas + scipy", size,
                seconds=t_ours + t_ward, peak_mb=max(m_ours, m_ward), ref_seconds=t_ref + t_link,
                ref_peak_mb=max(m_ref, m_link), agreement=dz,
                note=f"max|dheight| {dz:.1e}; same clusters: {'yes' if same else 'NO'}"))
    return diff, same
