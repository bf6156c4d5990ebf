"""The walk-forward tournament (step 12): engines x simulators on out-of-sample windows.

Per window the *context* is what an allocator would have known at the window's start:
- with `pit` (feat_pit_fidelity) everything is recomputed from the train rows only — the
  universe is re-selected from the raw pool on the last `prep` train sessions (natural
  selection, same parameters), risk buckets are re-clustered, the regime is re-detected — and
  every window's weights go through the production weights audit;
- without it the context is today's (universe, buckets, regime): a look-ahead the reports flag.

`plan_contexts` computes the contexts once (shared by every engine); `run_engine_tournament` runs
one engine over all windows with both simulators (the unit the Dagster executor fans out).
The first window starts from an empty book; a window's `prev_weights` (for the turnover
penalty) is the previous window's target, never today's holdings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from portfolio_assets.quant.walkforward import WeightsDecision, Window, run_engine_walkforward
from portfolio_assets.quant.weights_audit import AuditRules, audit_weights

CONTEXT_COLUMNS = ("k", "symbol", "bucket", "direction", "regime")


@dataclass(frozen=True)
class TournamentData:
    """Everything the tournament reads, as synthetic-long streams on one session index."""

    streams: pd.DataFrame  # union of winners and raw pool, synthetic-long, sessions x symbols
    directions: pd.Series  # every column's direction
    winners: list[str]  # today's filtered universe (healthy winners incl. baseline)
    raw_pool: list[str]  # today's raw pool symbols with data
    raw_candidates: pd.DataFrame  # raw pool as selection candidates (direction, identity, asset_class, value_traded)
    raw_returns: pd.DataFrame  # raw (not synthetic-long) returns of the raw pool, for re-selection
    today_clusters: pd.Series
    today_regime: str
    baseline: str


@dataclass(frozen=True)
class TournamentSettings:
    pit: bool
    prep: int = 60
    selection: object | None = None  # quant.selection.SelectionParams
    risk_threshold: float = 0.45
    risk_max_clusters: int = 25
    min_overlap: int = 20
    regime: object | None = None  # quant.regimes.RegimeParams
    spectral: bool = False
    audit: AuditRules = field(default_factory=AuditRules)


def plan_contexts(data: TournamentData, windows: list[Window], cfg: TournamentSettings) -> pd.DataFrame:
    """One row per (window, symbol in that window's universe): bucket, direction, regime."""
    from portfolio_assets.quant.clustering import hierarchical_clusters
    from portfolio_assets.quant.regimes import detect_regime
    from portfolio_assets.quant.selection import select_universe

    rows = []
    for w in windows:
        if cfg.pit:
            train_raw = data.raw_returns.iloc[w.train_rows]
            prep = train_raw.iloc[-cfg.prep:]
            chosen = select_universe(data.raw_candidates, prep, cfg.selection).winners["symbol"]
            universe = [s for s in chosen if s in data.streams.columns]
            train = data.streams.iloc[w.train_rows][universe]
            clusters = hierarchical_clusters(train, cfg.risk_threshold, cfg.risk_max_clusters, cfg.min_overlap).clusters
            base = data.raw_returns.iloc[w.train_rows][data.baseline]
            others = train_raw.drop(columns=[data.baseline])
            regime = detect_regime(base.loc[base.first_valid_index():], others, cfg.regime, spectral=cfg.spectral).label
        else:
            universe, clusters, regime = data.winners, data.today_clusters, data.today_regime
        for s in universe:
            rows.append({"k": w.k, "symbol": s, "bucket": int(clusters.get(s, 0)), "direction": data.directions[s],
                         "regime": regime})
    return pd.DataFrame(rows, columns=list(CONTEXT_COLUMNS))


def _fit_factory(engine: str, data: TournamentData, contexts: pd.DataFrame, cfg: TournamentSettings, params):
    from portfolio_assets.quant.engines import EngineInputs, run_engine

    by_k = {k: g for k, g in contexts.groupby("k")}
    state: dict[str, pd.Series | None] = {"prev": None}

    def fit(window: Window, train: pd.DataFrame) -> WeightsDecision:
        ctx = by_k[window.k]
        universe = list(ctx["symbol"])
        clusters = pd.Series(ctx["bucket"].to_numpy(), index=universe)
        regime = str(ctx["regime"].iloc[0])
        inputs = EngineInputs(
            returns=train[universe],
            clusters=clusters,
            regime=regime,
            prev_weights=state["prev"],
            baseline=data.baseline,
            raw_pool_returns=train[[s for s in data.raw_pool if s in train.columns]],
        )
        result = run_engine(engine, inputs, params)
        weights = result.weights[result.weights > 0]
        state["prev"] = weights
        violations: list[str] = []
        if cfg.pit:
            violations = audit_weights(
                engine, weights, clusters, cfg.audit, regime=regime,
                aggressor_weight=result.diagnostics.get("aggressor_weight"),
                train_returns=train, baseline=data.baseline,
            )
        return WeightsDecision(weights, {
            "engine_used": result.engine_used,
            "fallbacks": "; ".join(f"{f.engine} -> {f.fallback_to}: {f.error}" for f in result.fallbacks),
            "violations": "; ".join(violations),
            "regime": regime,
            "n_buckets": int(clusters.nunique()),
            "n_universe": len(universe),
        })

    return fit


def run_engine_tournament(
    engine: str,
    data: TournamentData,
    windows: list[Window],
    contexts: pd.DataFrame,
    cfg: TournamentSettings,
    engine_params,
    simulator_params,
    simulators: tuple[str, ...],
) -> dict[str, pd.DataFrame]:
    """One engine over every window and simulator. Returns `windows`, `returns`, `weights` tables."""
    fit = _fit_factory(engine, data, contexts, cfg, engine_params)
    wf = run_engine_walkforward(engine, data.streams, data.directions, windows, fit, simulator_params, simulators)
    diag = pd.DataFrame([dict(d.diagnostics) for d in wf.decisions], index=[w.k for w in wf.windows])
    table = wf.window_table().join(diag, on="k")
    rets = wf.returns_frame()
    rets.index.name = "session"
    long = rets.reset_index().melt(id_vars="session", var_name="simulator", value_name="ret").assign(engine=engine)
    weights = wf.weights_frame()
    weights = weights.loc[:, (weights > 0).any()].reset_index().melt(id_vars="k", var_name="symbol", value_name="weight")
    weights = weights[weights["weight"] > 0].assign(engine=engine)
    return {"windows": table, "returns": long[["session", "engine", "simulator", "ret"]], "weights": weights}


def summarize_tournament(windows: pd.DataFrame, returns: pd.DataFrame) -> pd.DataFrame:
    """Summary per engine x simulator from the stitched daily returns (metrics.summarize)."""
    from portfolio_assets.quant.metrics import summarize

    rows = []
    for (engine, simulator), g in returns.groupby(["engine", "simulator"], sort=True):
        w = windows[(windows["engine"] == engine) & (windows["simulator"] == simulator)]
        series = g.set_index("session")["ret"].sort_index()
        rows.append({
            "engine": engine, "simulator": simulator,
            **summarize(series, float(w["turnover_one_way"].sum()), float(w["costs_paid"].sum())),
            "n_fallbacks": int((w["fallbacks"].fillna("") != "").sum()),
            "n_violations": int((w["violations"].fillna("") != "").sum()),
        })
    return pd.DataFrame(rows)
