"""Step 11: every engine's target weights, and the blocking `weights_sanity` check."""

from __future__ import annotations

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetIn, MetadataValue, asset_check, multi_asset

from portfolio_assets.assets._step import Step, preview_md
from portfolio_assets.assets.common import OWNERS, PARTITIONS, after, outs
from portfolio_assets.assets.history import healthy_returns
from portfolio_assets.manifest import Config
from portfolio_assets.quant.convention import publish_net_weights, synthetic_long
from portfolio_assets.quant.weights_audit import AuditRules, audit_weights, train_streams
from portfolio_assets.quant.weights_audit import audit_rules as build_audit_rules
from portfolio_assets.resources import PortfolioSettings


def engine_params(cfg: Config):
    """EngineParams from the manifest (`quant.engines.engine_params`, the one mapping)."""
    from portfolio_assets.quant.engines import engine_params as build

    return build(cfg)


def audit_rules(cfg: Config) -> AuditRules:
    """AuditRules from the manifest (`quant.weights_audit.audit_rules`, the one mapping)."""
    return build_audit_rules(cfg)


def raw_pool_streams(raw_pool_history: pd.DataFrame, raw_pool: pd.DataFrame) -> pd.DataFrame:
    """Synthetic-long 500-session streams of the raw pool (for `raw_pool_ew`)."""
    directions = raw_pool.set_index("symbol")["direction"].reindex(raw_pool_history.columns).fillna("long")
    return synthetic_long(raw_pool_history, directions)


@multi_asset(
    name="target_weights",
    outs=outs("target_weights", 11, {
        "diagnostics": "Per engine: the engine used, fallbacks, aggressor weight, regime, solver status",
    }, owners=OWNERS, kinds={"python", "parquet", "clarabel"}, description=(
        "Step 11. Every engine's weights on the last `backtest.train` sessions of the synthetic-long "
        "streams (market, raw_pool_ew, equal_weight, inverse_vol, min_variance, risk_parity, hrp, "
        "herc, max_sharpe, barbell) with bucket (empty for a raw-pool symbol outside the selection, "
        "held only by raw_pool_ew), direction, `weight` and signed `net_weight`; the "
        "manifest's production engine is flagged. Fully invested, per-asset cap, bucket cap; the "
        "turnover penalty starts from the book (`holdings`); every fallback is recorded.")),
    ins=after("history_500d"),
    partitions_def=PARTITIONS,
)
def target_weights(context, settings: PortfolioSettings, history_500d__returns: pd.DataFrame,
                   history_500d__health: pd.DataFrame, selected_universe: pd.DataFrame, risk_buckets: pd.DataFrame,
                   market_regime: pd.DataFrame, raw_pool_history: pd.DataFrame, raw_pool: pd.DataFrame,
                   enriched_universe: pd.DataFrame, holdings: pd.DataFrame):
    """Run every manifest engine on the healthy winners' last `backtest.train` synthetic-long
    sessions, with buckets, regime and the book as turnover anchor; stores weights and diagnostics."""
    from portfolio_assets.quant.engines import EngineInputs, run_engine

    with Step(context, settings) as step:
        cfg = step.cfg
        rets, directions, dropped = healthy_returns(step, history_500d__returns, history_500d__health, selected_universe)
        streams = synthetic_long(rets, directions).iloc[-cfg.backtest.train:]
        buckets = risk_buckets.set_index("symbol")["bucket"]
        regime = str(market_regime["label"].iloc[-1])
        raw = raw_pool_streams(raw_pool_history, raw_pool).reindex(streams.index)
        # asset class and sector of a selected symbol: the enriched universe's (with provenance); of a
        # raw-pool symbol outside the selection (held only by raw_pool_ew): its raw-pool scan row's
        enriched = enriched_universe.set_index("symbol")[["asset_class", "sector"]]
        pool = raw_pool.groupby("symbol")[["asset_class", "sector"]].first()
        classes = pd.concat([enriched, pool.drop(enriched.index, errors="ignore")])
        prev = holdings.set_index("symbol")["weight"] if len(holdings) else None  # an empty book: no penalty anchor
        params = engine_params(cfg)
        step.params.update(engines=cfg.optimization.engines, production=cfg.optimization.production_engine,
                           regime=regime, train_sessions=len(streams), dropped=dropped, book_positions=len(holdings))
        inputs = EngineInputs(returns=streams, clusters=buckets.reindex(streams.columns), regime=regime,
                              prev_weights=prev, baseline=cfg.selection.baseline, raw_pool_returns=raw)
        all_directions = pd.concat([directions, raw_pool.set_index("symbol")["direction"]]).groupby(level=0).first()
        frames, diags, seconds = [], [], {}
        for engine in cfg.optimization.engines:
            res = run_engine(engine, inputs, params)
            for fb in res.fallbacks:
                step.event("engine_fallback", engine=fb.engine, error=fb.error, fallback_to=fb.fallback_to)
            w = res.weights[res.weights > 0]
            dirs = all_directions.reindex(w.index).fillna("long")
            frames.append(pd.DataFrame({
                "engine": engine, "symbol": w.index, "bucket": buckets.reindex(w.index).astype("Int64").array,
                "direction": dirs.to_numpy(), "weight": w.to_numpy(),
                "net_weight": publish_net_weights(w, dirs).to_numpy(),
                "is_production": engine == cfg.optimization.production_engine, "engine_used": res.engine_used,
                "asset_class": classes["asset_class"].reindex(w.index).to_numpy(),
                "sector": classes["sector"].reindex(w.index).to_numpy(),
            }))
            caps = res.caps
            diags.append({"engine": engine, "engine_used": res.engine_used,
                          "fallbacks": "; ".join(f"{f.engine} -> {f.fallback_to}: {f.error}" for f in res.fallbacks),
                          "relaxations": "; ".join(res.relaxations),
                          "cap_max_weight": caps.max_weight if caps else None,
                          "cap_cluster_cap": caps.cluster_cap if caps else None,
                          "dropped_symbols": "; ".join(sorted(res.diagnostics.get("dropped_symbols") or {})),
                          "aggressors": "; ".join(f"{b}:{s}" for b, s in
                                                  sorted((res.diagnostics.get("aggressors") or {}).items())),
                          "aggressor_weight": res.diagnostics.get("aggressor_weight"), "regime": regime,
                          "n_holdings": len(w), "max_weight": float(w.max()),
                          "solver_status": res.diagnostics.get("solver_status")})
            for note in res.relaxations:
                step.event("caps_relaxed", engine=engine, engine_used=res.engine_used, relaxation=note)
            seconds[engine] = round(float(res.diagnostics.get("seconds") or 0.0), 4)
        table = pd.concat(frames, ignore_index=True)
        prod = table[table["is_production"]].sort_values("weight", ascending=False)
        yield from step.emit(
            {"target_weights": table, "target_weights__diagnostics": pd.DataFrame(diags)},
            metrics={"engines": len(cfg.optimization.engines), "production_engine": cfg.optimization.production_engine,
                     "regime": regime, "fallbacks": int(sum(1 for d in diags if d["fallbacks"])),
                     "relaxed": int(sum(1 for d in diags if d["relaxations"])),
                     "production_engine_used": next(d["engine_used"] for d in diags
                                                    if d["engine"] == cfg.optimization.production_engine),
                     "production_holdings": len(prod), "seconds_per_engine": seconds},
            preview=prod[["symbol", "direction", "bucket", "weight", "net_weight", "sector"]],
            extra={"diagnostics": preview_md(pd.DataFrame(diags))},
        )


@asset_check(
    asset="target_weights",
    blocking=True,
    partitions_def=PARTITIONS,
    additional_ins={"diagnostics": AssetIn("target_weights__diagnostics"), "risk_buckets": AssetIn("risk_buckets"),
                    "returns": AssetIn("history_500d__returns")},
    description=(
        "Blocking. Every engine: weights sum to 1, no NaN or negative weight, per-asset and bucket "
        "caps hold (honest baselines market/raw_pool_ew/equal_weight exempt from caps), min_variance's "
        "beta to the baseline within the manifest limit, barbell's aggressor budget equals the regime's."
    ),
)
def weights_sanity(context, settings: PortfolioSettings, target_weights: pd.DataFrame, diagnostics: pd.DataFrame,
                   risk_buckets: pd.DataFrame, returns: pd.DataFrame) -> AssetCheckResult:
    """Blocking check: audits every engine's weights (`quant.weights_audit.audit_weights`) and flags
    engines with no weights; any violation is an ERROR and withdraws the partition's stored orders."""
    cfg = settings.resolved().config
    diags = diagnostics.set_index("engine")
    buckets = risk_buckets.set_index("symbol")["bucket"]
    # The weights are on synthetic-long streams: shorts' raw returns are turned into their streams.
    directions = target_weights.drop_duplicates("symbol").set_index("symbol")["direction"]
    hist = train_streams(returns.iloc[-cfg.backtest.train:], directions)
    rules = audit_rules(cfg)
    violations: list[str] = []
    notes: list[str] = []
    for engine, g in target_weights.groupby("engine", sort=False):
        w = g.set_index("symbol")["weight"]
        d = diags.loc[engine] if engine in diags.index else None
        dropped = [s for s in str(d["dropped_symbols"] or "").split("; ") if s] if d is not None else []
        aggressors = ({int(b): s for b, s in (p.split(":", 1) for p in str(d["aggressors"] or "").split("; ") if p)}
                      if d is not None else None)
        agg = d["aggressor_weight"] if d is not None else None
        report = audit_weights(
            engine, w, buckets.drop(dropped, errors="ignore"), rules, baseline=cfg.selection.baseline,
            engine_used=str(d["engine_used"]) if d is not None else None,
            regime=str(d["regime"]) if d is not None else None,
            aggressor_weight=None if agg is None or pd.isna(agg) else float(agg), aggressors=aggressors,
            relaxations=[r for r in str(d["relaxations"] or "").split("; ") if r] if d is not None else (),
            train_returns=hist,
        )
        violations += report.violations
        notes += [f"{engine}: {n}" for n in report.notes]
    missing = sorted(set(cfg.optimization.engines) - set(target_weights["engine"]))
    violations += [f"{e}: no weights" for e in missing]
    passed = not violations
    description = "all engines within the rules" if passed else f"{len(violations)} violation(s): " + " | ".join(violations)
    if not passed:
        from portfolio_assets.assets.implementation import withdraw_orders

        withdraw_orders(context, settings, f"weights_sanity FAILED: {description[:500]}")
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=description[:1000],
        metadata={"violations": MetadataValue.json(violations), "notes": MetadataValue.json(notes),
                  "engines": int(target_weights["engine"].nunique())},
    )
