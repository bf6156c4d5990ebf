"""Our walk-forward tournament against skfolio's ``WalkForward`` + ``cross_val_predict``.

The four engines with skfolio equivalents, on the same data and the same windows:

=============== ======================================================================
ours            skfolio
=============== ======================================================================
inverse_vol     ``InverseVolatility()``
min_variance    ``MeanRisk(MINIMIZE_RISK, VARIANCE, LedoitWolf prior, weights in [0, 1])``
hrp             ``HierarchicalRiskParity(VARIANCE, PearsonDistance, single linkage)``
risk_parity     ``RiskBudgeting(VARIANCE, LedoitWolf prior)``
=============== ======================================================================

Caps and the turnover penalty are off on our side (``max_weight = cluster_cap = 1``, no
penalty) so both sides solve the same problems; skfolio's solvers get the tight Clarabel
tolerances ours use (1e-10). Ours is the whole tournament unit the Dagster step runs
(``quant.tournament.run_engine_tournament``: every window's engine fit, *both* simulators
and the per-window metrics); skfolio's is ``cross_val_predict`` plus the summary metrics it
computes lazily (Sharpe, max drawdown, CVaR). ``ratio`` = ours / skfolio (< 1: ours faster);
``fits`` is our engine calls alone. ``max|dw|`` is the largest weight difference over every
window and symbol.

Data. :func:`factor_returns` builds seeded factor-model daily returns (``n_buckets`` factors,
each symbol loading on one; the buckets are those factors), so that N = 60 and N = 200 need no
network and no pipeline run; ``benchmarks/references.py`` (``make bench``) calls :func:`compare`
on the streams a real materialization of the demo partition produced instead. Timings are wall
seconds of one call after a warm-up (imports and the first cvxpy problem), medians over
``repeat`` calls; only ratios within one run mean anything on a shared machine.

Run: ``.venv/bin/python benchmarks/tournament_vs_skfolio.py [--small] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

COMPARE_ENGINES = ("inverse_vol", "min_variance", "hrp", "risk_parity")
TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
SIZES = ((60, 492), (200, 756))  # (symbols, sessions): 12 and 25 windows of 252 / 20
COLUMNS = ("engine", "reference", "symbols", "windows", "ours_s", "fits_s", "ref_s", "ratio", "fits_ratio",
           "max_abs_dw")


def factor_returns(n_symbols: int, n_sessions: int, n_buckets: int = 25, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Seeded factor-model simple daily returns and their buckets.

    r_ti = beta_i f_t,b(i) + e_ti + drift with f ~ N(0, 1%), e ~ N(0, 1%) * U(0.5, 2),
    beta ~ U(0.5, 1.5), b(i) = i mod n_buckets, drift 3 bp a day; bucket id = b(i) + 1.
    """
    rng = np.random.default_rng(seed)
    buckets = np.arange(n_symbols) % min(n_buckets, n_symbols)
    factors = rng.normal(0.0, 0.01, (n_sessions, buckets.max() + 1))
    idio = rng.normal(0.0, 0.01, (n_sessions, n_symbols)) * rng.uniform(0.5, 2.0, n_symbols)
    values = factors[:, buckets] * rng.uniform(0.5, 1.5, n_symbols) + idio + 3e-4
    cols = [f"NYSE:B{i:03d}" for i in range(n_symbols)]
    index = pd.DatetimeIndex(pd.bdate_range("2020-01-02", periods=n_sessions), name="session")
    return pd.DataFrame(values, index=index, columns=cols), pd.Series(buckets + 1, index=cols, name="bucket")


def _skfolio_estimators() -> dict[str, Callable[[], Any]]:
    from skfolio import RiskMeasure
    from skfolio.cluster import HierarchicalClustering, LinkageMethod
    from skfolio.distance import PearsonDistance
    from skfolio.moments import LedoitWolf
    from skfolio.optimization import (
        HierarchicalRiskParity,
        InverseVolatility,
        MeanRisk,
        ObjectiveFunction,
        RiskBudgeting,
    )
    from skfolio.prior import EmpiricalPrior
    from skfolio.seriation import HierarchicalSeriation

    def lw() -> Any:
        return EmpiricalPrior(covariance_estimator=LedoitWolf())

    def seriation() -> Any:
        return HierarchicalSeriation(
            hierarchical_clustering_estimator=HierarchicalClustering(linkage_method=LinkageMethod.SINGLE),
            optimal_ordering=False)

    return {
        "inverse_vol": lambda: InverseVolatility(),
        "min_variance": lambda: MeanRisk(objective_function=ObjectiveFunction.MINIMIZE_RISK,
                                         risk_measure=RiskMeasure.VARIANCE, min_weights=0.0, max_weights=1.0,
                                         prior_estimator=lw(), solver_params=dict(TIGHT)),
        "hrp": lambda: HierarchicalRiskParity(risk_measure=RiskMeasure.VARIANCE, distance_estimator=PearsonDistance(),
                                              seriation_estimator=seriation()),
        "risk_parity": lambda: RiskBudgeting(risk_measure=RiskMeasure.VARIANCE, prior_estimator=lw(),
                                             solver_params=dict(TIGHT)),
    }


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out



@dataclass(frozen=True)
class Setup:
    """Both walk-forwards' shared inputs: data, windows, our contexts and settings."""

    data: pd.DataFrame
    clusters: pd.Series
    windows: list[Any]
    contexts: pd.DataFrame
    tset: Any
    eparams: Any
    sim: Any
    simulators: tuple[str, ...]
    baseline: str
    regime: str
    train: int
    test: int


def prepare(returns: pd.DataFrame, buckets: pd.Series, cfg: Any = None, regime: str = "NORMAL") -> Setup:
    """Cut the last ``train + K * test`` rows (K windows on both sides) and build our contexts.

    ``cfg``: a resolved manifest ``Config`` (default: the ``demo`` profile); its backtest
    train/test and simulator frictions are used, its caps and turnover penalty switched off.
    """
    from portfolio_assets.assets.validation import tournament_settings
    from portfolio_assets.manifest import resolve
    from portfolio_assets.quant.tournament import TodayContext, plan_contexts
    from portfolio_assets.quant.walkforward import make_windows

    if returns.isna().to_numpy().any():
        raise ValueError("the comparison needs complete returns (skfolio's estimators take no NaN)")
    cfg = cfg if cfg is not None else resolve("demo", environ={}).config
    train, test = cfg.backtest.train, cfg.backtest.test
    n = len(returns)
    k = (n - train - test) // test + 1
    if k < 1:
        raise ValueError(f"{n} sessions < train + test = {train + test}")
    data = returns.iloc[n - (train + k * test):]
    windows = make_windows(data.index, train, test, test)
    tset, eparams, sim, simulators = tournament_settings(cfg)
    tset = dataclasses.replace(tset, pit=False)
    eparams = dataclasses.replace(eparams, max_weight=1.0, cluster_cap=1.0, turnover_penalty=False)
    clusters = buckets.reindex(data.columns).fillna(0).astype(int)
    dirs = pd.Series("long", index=data.columns)
    today = TodayContext(universe=dirs, buckets=clusters, regime=regime, raw_pool=dirs)
    contexts = plan_contexts(windows, data, cfg.selection.baseline, tset, today=today)
    return Setup(data, clusters, windows, contexts, tset, eparams, sim, tuple(simulators), cfg.selection.baseline,
                 regime, train, test)


def ours(setup: Setup, engine: str) -> dict[str, pd.DataFrame]:
    """Our tournament unit for one engine: fits, both simulators, window metrics."""
    from portfolio_assets.quant.tournament import run_engine_tournament

    return run_engine_tournament(engine, setup.data, setup.windows, setup.contexts, setup.baseline, setup.tset,
                                 setup.eparams, setup.sim, setup.simulators)


def fits(setup: Setup, engine: str) -> None:
    """Our engine calls alone, one per window."""
    from portfolio_assets.quant.engines import EngineInputs, run_engine

    for w in setup.windows:
        run_engine(engine, EngineInputs(returns=setup.data.iloc[w.train_rows], clusters=setup.clusters,
                                        regime=setup.regime, baseline=setup.baseline), setup.eparams)


def reference(setup: Setup, engine: str) -> Any:
    """skfolio's walk-forward of the equivalent estimator, with the metrics we compute."""
    from skfolio.model_selection import WalkForward, cross_val_predict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = cross_val_predict(_skfolio_estimators()[engine](), setup.data,
                                 cv=WalkForward(train_size=setup.train, test_size=setup.test))
        _ = (pred.sharpe_ratio, pred.max_drawdown, pred.cvar)
    return pred


def compare(returns: pd.DataFrame, buckets: pd.Series, cfg: Any = None, *, engines: Sequence[str] = COMPARE_ENGINES,
            regime: str = "NORMAL", repeat: int = 1) -> pd.DataFrame:
    """One row per engine plus a ``total`` row: our tournament vs skfolio on the same windows.

    ``returns``: complete synthetic-long daily returns (sessions x symbols, no NaN: skfolio's
    estimators need complete data). ``buckets``: bucket per symbol (our context only).
    """
    setup = prepare(returns, buckets, cfg, regime)
    refs = _skfolio_estimators()
    x = setup.data.to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in engines:  # warm-up: imports, the first cvxpy problem of each kind and size
            refs[name]().fit(x[: setup.train])
            ours(dataclasses.replace(setup, windows=setup.windows[:1]), name)
    rows = []
    for name in engines:
        t_ours, out = _timed(lambda name=name: ours(setup, name), repeat)
        t_fits, _ = _timed(lambda name=name: fits(setup, name), repeat)
        t_ref, pred = _timed(lambda name=name: reference(setup, name), repeat)
        ours_w = out["weights"].pivot_table(index="k", columns="stream", values="weight", fill_value=0.0)
        ours_w = ours_w.reindex(columns=setup.data.columns, fill_value=0.0).to_numpy()
        ref_w = np.vstack([np.asarray(p.weights) for p in pred.portfolios])
        diff = float(np.abs(ours_w - ref_w).max()) if ref_w.shape == ours_w.shape else float("nan")
        rows.append({"engine": name, "reference": type(refs[name]()).__name__, "symbols": setup.data.shape[1],
                     "windows": len(setup.windows), "ours_s": t_ours, "fits_s": t_fits, "ref_s": t_ref,
                     "max_abs_dw": diff})
    table = pd.DataFrame(rows)
    total = {"engine": "total", "reference": "", "symbols": setup.data.shape[1], "windows": len(setup.windows),
             "ours_s": table["ours_s"].sum(), "fits_s": table["fits_s"].sum(), "ref_s": table["ref_s"].sum(),
             "max_abs_dw": table["max_abs_dw"].max()}
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    table["ratio"] = table["ours_s"] / table["ref_s"]
    table["fits_ratio"] = table["fits_s"] / table["ref_s"]
    return table[list(COLUMNS)]


def run(sizes: Sequence[tuple[int, int]] = SIZES, repeat: int = 1, seed: int = 0) -> pd.DataFrame:
    """:func:`compare` on :func:`factor_returns` at each (symbols, sessions)."""
    frames = []
    for n_symbols, n_sessions in sizes:
        returns, buckets = factor_returns(n_symbols, n_sessions, seed=seed)
        frames.append(compare(returns, buckets, repeat=repeat))
    return pd.concat(frames, ignore_index=True)


def profile_engine(n_symbols: int, n_sessions: int, engine: str, path: str) -> float:
    """cProfile of one engine's tournament at one size, written to ``path`` (pstats); returns seconds."""
    import cProfile
    import pstats

    returns, buckets = factor_returns(n_symbols, n_sessions)
    setup = prepare(returns, buckets)
    ours(dataclasses.replace(setup, windows=setup.windows[:1]), engine)  # warm-up
    prof = cProfile.Profile()
    prof.enable()
    ours(setup, engine)
    prof.disable()
    prof.dump_stats(path)
    return float(pstats.Stats(path).total_tt)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="median of this many calls per side")
    parser.add_argument("--small", action="store_true", help="N = 60 only")
    args = parser.parse_args(argv)
    table = run(SIZES[:1] if args.small else SIZES, repeat=args.repeat)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
