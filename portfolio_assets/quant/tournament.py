"""The walk-forward tournament (step 12): engines x simulators on out-of-sample windows.

Per window the *context* is what an allocator could have known at the window's start. With
`pit` (feat_pit_fidelity) everything is rebuilt from data up to the last train session:
- the raw pool is the one discovered *as of that date* (given by the caller: a stored raw-pool
  partition, or a re-scan of the source for that date);
- the universe is re-selected from it by natural selection on the last `prep` train sessions;
- risk buckets are re-clustered and the regime re-detected on the train rows;
- every window's weights go through the production weights audit (`quant.weights_audit`).
Without it the context is today's universe, buckets and regime for every window: a look-ahead
(survivorship) the reports flag.

Streams are identified by `stream_id`: the symbol for a long, `SYMBOL#short` for a short's
synthetic-long stream, so one symbol can be a long in one window and a short in another without
any stream ever being negated twice. `plan_contexts` builds the contexts once (shared by every
engine); `run_engine_tournament` runs one engine over all windows with every simulator (the
unit the Dagster executor fans out). The first window starts from an empty book; a window's
`prev_weights` (turnover penalty) is the previous window's target, never today's holdings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from portfolio_assets.manifest import RegimeConfig
from portfolio_assets.quant.convention import synthetic_long
from portfolio_assets.quant.walkforward import WeightsDecision, Window, run_engine_walkforward
from portfolio_assets.quant.weights_audit import AuditRules, audit_weights

CONTEXT_COLUMNS = ("k", "stream", "symbol", "direction", "role", "bucket", "regime", "pool_source")
SHORT_SUFFIX = "#short"


def stream_id(symbol: str, direction: str) -> str:
    """The stream of `symbol` taken in `direction` (a short one carries the short suffix)."""
    return f"{symbol}{SHORT_SUFFIX}" if direction == "short" else symbol


def stream_direction(stream: str) -> str:
    """`short` for a short stream, else `long`."""
    return "short" if stream.endswith(SHORT_SUFFIX) else "long"


def stream_symbol(stream: str) -> str:
    """The symbol a stream is of."""
    return stream.removesuffix(SHORT_SUFFIX)


def build_streams(raw_returns: pd.DataFrame, streams: list[str]) -> pd.DataFrame:
    """Synthetic-long stream per id from raw returns (shorts negated exactly once)."""
    symbols = [stream_symbol(s) for s in streams]
    missing = sorted(set(symbols) - set(raw_returns.columns))
    if missing:
        raise ValueError(f"no returns for stream symbol(s) {missing[:5]}")
    raw = raw_returns[symbols].copy()
    raw.columns = streams
    directions = pd.Series({s: stream_direction(s) for s in streams})
    out = synthetic_long(raw, directions)
    out.attrs = {}
    return out


@dataclass(frozen=True)
class TournamentSettings:
    """What planning and the per-window audit need; built from the manifest by the caller
    (`assets.validation.tournament_settings`), no defaults here."""

    pit: bool
    prep: int
    selection: Any  # quant.selection.SelectionParams (from_config)
    risk_threshold: float
    risk_max_clusters: int
    min_overlap: int
    regime: RegimeConfig
    spectral: bool
    audit: AuditRules


@dataclass(frozen=True)
class TodayContext:
    """Today's universe, buckets and regime: the context of every window without `pit`."""

    universe: pd.Series  # symbol -> direction
    buckets: pd.Series  # symbol -> bucket
    regime: str
    raw_pool: pd.Series  # symbol -> direction


def _candidates(pool: pd.DataFrame) -> pd.DataFrame:
    return pool[["direction", "identity", "asset_class"]].assign(value_traded=pool["Value.Traded"])


def plan_contexts(
    windows: list[Window],
    raw_returns: pd.DataFrame,
    baseline: str,
    cfg: TournamentSettings,
    pools: dict[int, tuple[pd.DataFrame, str]] | None = None,
    today: TodayContext | None = None,
) -> pd.DataFrame:
    """One row per (window, stream) for the window's universe (`role` = universe) and raw pool
    (`role` = raw_pool), with bucket, regime and where the pool came from.

    `pools` (with pit): window k -> (raw pool as of the window's last train session indexed by
    symbol, its provenance). `today` (without pit): today's context.
    """
    from portfolio_assets.quant.clustering import hierarchical_clusters
    from portfolio_assets.quant.regimes import detect_regime
    from portfolio_assets.quant.selection import select_universe

    rows: list[dict[str, object]] = []
    for w in windows:
        if cfg.pit:
            if pools is None or w.k not in pools:
                raise ValueError(f"point-in-time tournament needs the raw pool of window {w.k}")
            pool, source = pools[w.k]
            train_raw = raw_returns.iloc[w.train_rows]
            cols = [s for s in pool.index if s in train_raw.columns]
            if baseline not in cols:
                cols.append(baseline)
            winners = select_universe(_candidates(pool.loc[[c for c in cols if c in pool.index]]),
                                      train_raw[cols].iloc[-cfg.prep:], cfg.selection).winners
            universe = pd.Series(winners["direction"].to_numpy(), index=winners["symbol"].to_numpy())
            ids = [stream_id(s, d) for s, d in universe.items()]
            train = build_streams(train_raw, ids)
            clusters = hierarchical_clusters(train, cfg.risk_threshold, cfg.risk_max_clusters, cfg.min_overlap).clusters
            base = train_raw[baseline]
            regime = detect_regime(base.loc[base.first_valid_index():], train_raw[[c for c in cols if c != baseline]],
                                   cfg.regime, spectral=cfg.spectral).label
            raw_pool = pool["direction"]
        else:
            if today is None:
                raise ValueError("a tournament without point-in-time contexts needs today's context")
            universe, regime, raw_pool, source = today.universe, today.regime, today.raw_pool, "today"
            clusters = pd.Series({stream_id(s, d): today.buckets.get(s, 0) for s, d in universe.items()})
        for s, d in universe.items():
            sid = stream_id(s, d)
            rows.append({"k": w.k, "stream": sid, "symbol": s, "direction": d, "role": "universe",
                         "bucket": int(clusters.get(sid, 0)), "regime": regime, "pool_source": source})
        for s, d in raw_pool.items():
            rows.append({"k": w.k, "stream": stream_id(s, d), "symbol": s, "direction": d, "role": "raw_pool",
                         "bucket": 0, "regime": regime, "pool_source": source})
    return pd.DataFrame(rows, columns=list(CONTEXT_COLUMNS))


WINDOW_DIAGNOSTICS = ("engine_used", "fallbacks", "relaxations", "violations", "audit_notes", "regime",
                      "n_buckets", "n_universe", "pool_source", "solver_status")
"""Per-window columns the tournament adds to the walk-forward table: the engine that produced
the weights, each fallback (`engine -> next: error`), each cap relaxation, the audit's
violations and notes (`"; "`-joined, empty when none), the context and the solver status."""


@dataclass(frozen=True)
class _WindowPlan:
    """One window's context rows as the fit needs them."""

    universe: list[str]
    clusters: pd.Series
    pool: list[str]
    regime: str
    pool_source: str

    @classmethod
    def all_of(cls, contexts: pd.DataFrame) -> dict[int, _WindowPlan]:
        """Window k -> its plan, in one pass over the contexts table."""
        is_uni = (contexts["role"] == "universe").to_numpy()
        k = contexts["k"].to_numpy()
        stream, bucket = contexts["stream"].to_numpy(), contexts["bucket"].to_numpy()
        regime, source = contexts["regime"].to_numpy(), contexts["pool_source"].to_numpy()
        plans = {}
        for key in pd.unique(k):
            rows = k == key
            uni, pool = rows & is_uni, rows & ~is_uni
            first = int(np.flatnonzero(rows)[0])
            universe = list(stream[uni])
            plans[int(key)] = cls(universe, pd.Series(bucket[uni], index=universe), list(stream[pool]),
                                  str(regime[first]), str(source[first]))
        return plans


def _fit_factory(engine: str, contexts: pd.DataFrame, baseline: str, cfg: TournamentSettings, params: Any):
    from portfolio_assets.quant.engines import EngineInputs, run_engine

    plans = _WindowPlan.all_of(contexts)
    state: dict[str, pd.Series | None] = {"prev": None}

    def fit(window: Window, train: pd.DataFrame) -> WeightsDecision:
        plan = plans[window.k]
        universe, clusters, regime = plan.universe, plan.clusters, plan.regime
        inputs = EngineInputs(
            returns=train[universe], clusters=clusters, regime=regime, prev_weights=state["prev"],
            baseline=baseline, raw_pool_returns=train[plan.pool] if engine == "raw_pool_ew" else None,
        )
        result = run_engine(engine, inputs, params)
        weights = result.weights[result.weights > 0]
        state["prev"] = weights
        violations: list[str] = []
        notes: list[str] = []
        if cfg.pit:
            dropped = result.diagnostics.get("dropped_symbols") or {}
            report = audit_weights(
                engine, weights, clusters.drop(list(dropped), errors="ignore"), cfg.audit, baseline=baseline,
                engine_used=result.engine_used, regime=regime, relaxations=result.relaxations,
                aggressor_weight=result.diagnostics.get("aggressor_weight"),
                aggressors=result.diagnostics.get("aggressors"), train_returns=train,
            )
            violations, notes = report.violations, report.notes
        return WeightsDecision(weights, {
            "engine_used": result.engine_used,
            "fallbacks": "; ".join(f"{f.engine} -> {f.fallback_to}: {f.error}" for f in result.fallbacks),
            "relaxations": "; ".join(result.relaxations),
            "violations": "; ".join(violations),
            "audit_notes": "; ".join(notes),
            "regime": regime,
            "n_buckets": int(clusters.nunique()),
            "n_universe": len(universe),
            "pool_source": plan.pool_source,
            "solver_status": str(result.diagnostics.get("solver_status") or ""),
        })

    return fit


def run_engine_tournament(
    engine: str,
    streams: pd.DataFrame,
    windows: list[Window],
    contexts: pd.DataFrame,
    baseline: str,
    cfg: TournamentSettings,
    engine_params,
    simulator_params,
    simulators: tuple[str, ...],
) -> dict[str, pd.DataFrame]:
    """One engine over every window and simulator. Returns `windows`, `returns`, `weights` tables."""
    fit = _fit_factory(engine, contexts, baseline, cfg, engine_params)
    directions = pd.Series({s: stream_direction(s) for s in streams.columns})
    wf = run_engine_walkforward(engine, streams, directions, windows, fit, simulator_params, simulators)
    diag = pd.DataFrame([dict(d.diagnostics) for d in wf.decisions], index=[w.k for w in wf.windows])
    table = wf.window_table().join(diag, on="k")
    rets = wf.returns_frame()
    rets.index.name = "session"
    long = rets.reset_index().melt(id_vars="session", var_name="simulator", value_name="ret").assign(engine=engine)
    weights = wf.weights_frame()
    weights = weights.loc[:, (weights > 0).any()].reset_index().melt(id_vars="k", var_name="stream", value_name="weight")
    weights = weights[weights["weight"] > 0].assign(engine=engine)
    return {"windows": table, "returns": long[["session", "engine", "simulator", "ret"]], "weights": weights}


def summarize_tournament(windows: pd.DataFrame, returns: pd.DataFrame) -> pd.DataFrame:
    """Summary per engine x simulator from the stitched daily returns (metrics.summarize), with
    `n_fallbacks` (windows where `engine_used != engine`), `n_relaxed` (windows with relaxed caps),
    `n_violations` (windows the audit flagged) and `engines_used` (`"hrp x3, inverse_vol x1"`):
    a row whose weights came from another engine says so."""
    from portfolio_assets.quant.metrics import summarize

    rows = []
    for (engine, simulator), g in returns.groupby(["engine", "simulator"], sort=True):
        w = windows[(windows["engine"] == engine) & (windows["simulator"] == simulator)]
        series = g.set_index("session")["ret"].sort_index()
        rows.append({
            "engine": engine, "simulator": simulator,
            **summarize(series, float(w["turnover_one_way"].sum()), float(w["costs_paid"].sum())),
            "n_fallbacks": int((w["engine_used"] != w["engine"]).sum()),
            "n_relaxed": int((w["relaxations"].fillna("") != "").sum()),
            "n_violations": int((w["violations"].fillna("") != "").sum()),
            "engines_used": ", ".join(f"{e} x{c}" for e, c in w["engine_used"].value_counts().sort_index().items()),
        })
    return pd.DataFrame(rows)
