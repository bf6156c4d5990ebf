"""Allocation engines: plain functions from train returns to long-only weights.

Every engine reads an :class:`EngineInputs` (synthetic-long *simple daily* returns, sessions x
symbols, ``NaN`` where a symbol had no bar; risk buckets; regime; previous weights) and an
:class:`EngineParams` (built from the manifest by :func:`engine_params`), and returns weights
(``pd.Series`` symbol -> float, non-negative, sum 1). :func:`run_engine` runs one engine with
its recorded fallback chain and returns an :class:`EngineResult`.

Units. Returns are simple daily returns; means are daily, covariances daily (return^2). The
turnover coefficient ``kappa`` is in daily-return units (see :class:`EngineParams`).

Where things are (one module per idea):

============== ===============================================================================
module         contents
============== ===============================================================================
moments        pairwise co-moment kernel, sample / Ledoit-Wolf covariance, antifragility score
caps           caps, their relaxation on small universes (:func:`feasible_caps`), projection
simple         market, raw_pool_ew, equal_weight (benchmarks), inverse_vol
hierarchical   HRP, HERC
convex, conic  min_variance, risk_parity, max_sharpe (closed form / Newton, else Clarabel directly)
barbell        HRP core + antifragile aggressors, budget by regime, its few-bucket rule
base, params   inputs, outputs, failures, the universe an engine keeps; EngineParams
============== ===============================================================================

Universe and missing data. An estimating engine first drops symbols with fewer than
``min_observations`` non-NaN returns or zero variance (``diagnostics["dropped_symbols"]``);
moments are pairwise (see :mod:`.moments`). Late listings are used on their own sessions.

Caps. The optimizing engines (everything but the benchmarks ``market``, ``raw_pool_ew``,
``equal_weight``) are fully invested, long-only, hold at most ``max_weight`` per symbol and
``cluster_cap`` per risk bucket; on a universe where no such book exists the caps are relaxed to
the feasible minimum (:mod:`.caps`) and the relaxation is recorded (``EngineResult.caps``).

Never an exception on data. Any universe from one symbol up runs: a failing engine (solver
status, degenerate data, too few buckets for barbell, no symbol with enough data) walks its
``fallback_chain``, then the terminal ``TERMINAL_ENGINE`` (1/N over the universe, which needs
no estimate); each step is a :class:`FallbackEvent`. Only bad input (``ValueError``: malformed
frames, unknown names) raises, and :class:`EngineError` when the ``force_fail`` hook fails the
terminal engine too.

Turnover penalty. With ``params.turnover_penalty`` and ``inputs.prev_weights``, the convex
engines add ``kappa * ||w - w_prev||_1`` to their objective; rule-based engines have no
objective, so ``diagnostics["turnover_penalty"]`` says it does not apply.

Why own code rather than riskfolio-lib / skfolio: pairwise (NaN-aware) moments, the bucket cap
and the L1 turnover term in one documented formulation, run hundreds of times per tournament,
heavy imports kept out of the code location. Cross-checked in the tests: HRP = riskfolio-lib =
skfolio (1e-10), HERC = riskfolio-lib (1e-10), ERC = riskfolio-lib = skfolio, capped min-variance
= skfolio, Ledoit-Wolf = scikit-learn, closed forms (inverse-vol, 2-asset min-variance and
tangency).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from portfolio_assets.constants import BENCHMARK_ENGINES, ENGINE_NAMES, SOLVER_ENGINES, TERMINAL_ENGINE
from portfolio_assets.quant.engines.barbell import barbell, barbell_budget, barbell_caps
from portfolio_assets.quant.engines.base import (
    EngineError,
    EngineFailure,
    EngineInputs,
    EngineOutput,
    EngineResult,
    FallbackEvent,
)
from portfolio_assets.quant.engines.caps import (
    CAP_TOL,
    Caps,
    CapsInfeasibleError,
    apply_caps,
    cap_status,
    check_caps_feasible,
    feasible_caps,
    within_caps,
)
from portfolio_assets.quant.engines.convex import max_sharpe, min_variance, risk_contributions, risk_parity
from portfolio_assets.quant.engines.hierarchical import herc, herc_weights, hrp, hrp_weights
from portfolio_assets.quant.engines.params import EngineParams, engine_params
from portfolio_assets.quant.engines.simple import equal_weight, inverse_vol, market, raw_pool_ew
from portfolio_assets.quant.moments import (
    Covariance,
    antifragility_scores,
    correlation_from_covariance,
    ledoit_wolf_covariance,
    sample_covariance,
)

__all__ = [
    "BENCHMARK_ENGINES", "CAP_TOL", "ENGINES", "ENGINE_NAMES", "SOLVER_ENGINES", "Caps", "CapsInfeasibleError",
    "Covariance", "EngineError", "EngineFailure", "EngineInputs", "EngineOutput", "EngineParams", "EngineResult",
    "FallbackEvent", "antifragility_scores", "apply_caps", "barbell_budget", "barbell_caps", "cap_status",
    "check_caps_feasible", "correlation_from_covariance", "engine_params", "feasible_caps", "herc_weights",
    "hrp_weights", "ledoit_wolf_covariance", "risk_contributions", "run_engine", "sample_covariance",
]  # fmt: skip

Engine = Callable[[EngineInputs, EngineParams], EngineOutput]

ENGINES: dict[str, Engine] = {
    "market": market,
    "raw_pool_ew": raw_pool_ew,
    "equal_weight": equal_weight,
    "inverse_vol": inverse_vol,
    "min_variance": min_variance,
    "risk_parity": risk_parity,
    "hrp": hrp,
    "herc": herc,
    "max_sharpe": max_sharpe,
    "barbell": barbell,
}


def _validated(out: EngineOutput, engine: str, clusters: pd.Series) -> pd.Series:
    """Check an engine's weights: finite, non-negative, sum 1, within the caps it enforced."""
    w = out.weights.astype(float)
    if not np.isfinite(w.to_numpy()).all():
        raise EngineFailure(f"{engine}: non-finite weights")
    if (w < -CAP_TOL).any() or abs(w.sum() - 1.0) > CAP_TOL:
        raise EngineFailure(f"{engine}: weights not long-only / fully invested (sum {w.sum():.8f})")
    if (w < 0).any() or abs(w.sum() - 1.0) > 1e-12:  # solver noise; exact rules stay exact (1/N)
        w = w.clip(lower=0.0)
        w = w / w.sum()
    if engine not in BENCHMARK_ENGINES:
        if out.caps is None:
            raise EngineFailure(f"{engine}: no caps recorded")
        labels = clusters.reindex(w.index).to_numpy()
        if not within_caps(w.to_numpy(), labels, out.caps.max_weight, out.caps.cluster_cap):
            status = cap_status(w, clusters, out.caps.max_weight, out.caps.cluster_cap)
            raise EngineFailure(f"{engine}: caps violated: {status}")
    return w


def _l1_turnover(weights: pd.Series, prev: pd.Series | None) -> float:
    """||w - w_prev||_1 over the union of both indices (empty book: ||w||_1 = 1)."""
    if prev is None:
        return float(weights.abs().sum())
    union = weights.index.union(prev.index)
    return float((weights.reindex(union, fill_value=0.0) - prev.reindex(union, fill_value=0.0)).abs().sum())


def _penalty_label(engine: str, inputs: EngineInputs, params: EngineParams) -> str:
    if engine not in SOLVER_ENGINES:
        return f"not applicable: {engine} has no objective to penalize"
    if not params.turnover_penalty:
        return "off"
    if inputs.prev_weights is None:
        return "off: no prev_weights (empty book)"
    return f"applied: kappa={params.kappa}"


def fallback_chain(name: str, params: EngineParams) -> list[str]:
    """``name``, its configured fallbacks, then ``TERMINAL_ENGINE`` (each engine once)."""
    chain = [name, *params.fallback_chain.get(name, ())]
    return chain if TERMINAL_ENGINE in chain else [*chain, TERMINAL_ENGINE]


@functools.cache
def _blas() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def run_engine(name: str, inputs: EngineInputs, params: EngineParams) -> EngineResult:
    """Run engine ``name``; on failure walk :func:`fallback_chain` and record each step.

    A failure is an :class:`EngineFailure` (solver status other than optimal, non-finite or
    invalid weights, degenerate data, or the ``force_fail`` hook) or a numpy ``LinAlgError``.
    Bad input (``ValueError``) is raised as is: another engine would not fix it.

    BLAS runs on one thread inside: the engines' matrices are small (N symbols, N <= a few
    hundred), where threads gain nothing, and on a loaded 2-core machine every hand-off to a
    sleeping OpenBLAS thread can wait a scheduler slice (measured: a 200 x 200 Cholesky after
    other work took 2.2 ms median and up to 250 ms with 2 threads, 0.4 ms with one).
    """
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; engines: {', '.join(ENGINE_NAMES)}")
    with _blas().limit(limits=1, user_api="blas"):
        return _run_chain(name, inputs, params)


def _run_chain(name: str, inputs: EngineInputs, params: EngineParams) -> EngineResult:
    chain = fallback_chain(name, params)
    fallbacks: list[FallbackEvent] = []
    errors: list[str] = []
    for position, engine in enumerate(chain):
        started = time.perf_counter()
        try:
            if engine in params.force_fail:
                raise EngineFailure(f"{engine}: forced failure (params.force_fail hook)")
            out = ENGINES[engine](inputs, params)
            weights = _validated(out, engine, inputs.clusters)
        except (EngineFailure, np.linalg.LinAlgError) as exc:
            errors.append(f"{engine}: {exc}")
            if position + 1 < len(chain):
                fallbacks.append(FallbackEvent(engine, str(exc), chain[position + 1]))
            continue
        diagnostics = {
            **out.diagnostics,
            "caps": out.caps.as_dict() if out.caps is not None else None,
            "turnover_penalty": _penalty_label(engine, inputs, params),
            "l1_turnover": _l1_turnover(weights, inputs.prev_weights),
            "n_holdings": int((weights > 0).sum()),
            "seconds": time.perf_counter() - started,
        }
        return EngineResult(weights, name, engine, fallbacks, diagnostics, out.caps)
    raise EngineError(f"engine {name!r}: fallback chain {chain} exhausted; errors: " + " | ".join(errors),
                      fallbacks)
