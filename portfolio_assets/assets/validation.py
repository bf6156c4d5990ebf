"""Step 12: the walk-forward tournament, fanned out per engine over the Dagster executor.

    tournament_plan ──DynamicOut(engine)──> tournament_engine (one step per engine, in parallel)
          └────────── contexts ──────────────────┴──> tournament_collect -> `tournament` tables

The multiprocess executor runs the engine steps on both cores; the dask profile runs them on a
dask cluster. Values between the ops travel as Parquet in the lakehouse (never pickle), so every
worker reads them from shared storage.
"""

from __future__ import annotations

import pandas as pd
from dagster import (
    AssetIn,
    DynamicOut,
    DynamicOutput,
    In,
    Nothing,
    Out,
    Output,
    graph_asset,
    op,
)

from portfolio_assets.assets._step import Step, preview_md
from portfolio_assets.assets.common import OWNERS, PARTITIONS
from portfolio_assets.resources import PortfolioSettings

UPSTREAM = ("history_500d", "raw_pool_history", "risk_buckets", "market_regime", "target_weights", "selected_universe")


def load_tournament(settings: PortfolioSettings, partition: str):
    """Everything the tournament needs, read from stored upstream partitions."""
    from portfolio_assets.assets.allocation import audit_rules, engine_params
    from portfolio_assets.quant.convention import synthetic_long
    from portfolio_assets.quant.regimes import RegimeParams
    from portfolio_assets.quant.selection import SelectionParams
    from portfolio_assets.quant.simulate import SimulatorParams
    from portfolio_assets.quant.tournament import TournamentData, TournamentSettings
    from portfolio_assets.quant.walkforward import make_windows

    lake = settings.lakehouse()
    cfg = settings.resolved().config
    baseline = cfg.selection.baseline
    rets = lake.read_table("history", "history_500d", partition, "returns")
    health = lake.read_table("history", "history_500d", partition, "health").set_index("symbol")
    winners = lake.read_table("universe", "selected_universe", partition).set_index("symbol")
    pool = lake.read_table("universe", "raw_pool", partition).set_index("symbol")
    raw = lake.read_table("history", "raw_pool_history", partition).reindex(rets.index)
    ok = [s for s in rets.columns if health.at[s, "status"] == "OK"]
    directions = pd.concat([winners["direction"], pool["direction"]]).groupby(level=0).first()
    directions[baseline] = "long"
    raw_syms = [s for s in raw.columns if s not in ok]
    union = pd.concat([rets[ok], raw[raw_syms]], axis=1)
    streams = synthetic_long(union, directions.reindex(union.columns).fillna("long"))
    buckets = lake.read_table("risk", "risk_buckets", partition).set_index("symbol")["bucket"]
    regime = str(lake.read_table("risk", "market_regime", partition)["label"].iloc[-1])
    candidates = pool[["direction", "identity", "asset_class"]].assign(value_traded=pool["Value.Traded"])
    data = TournamentData(
        streams=streams, directions=directions.reindex(streams.columns).fillna("long"), winners=ok,
        raw_pool=[s for s in pool.index if s in streams.columns], raw_candidates=candidates,
        raw_returns=pd.concat([raw, rets[[baseline]]], axis=1).loc[:, lambda d: ~d.columns.duplicated()],
        today_clusters=buckets, today_regime=regime, baseline=baseline,
    )
    sel, bt = cfg.selection, cfg.backtest
    tset = TournamentSettings(
        pit=cfg.features.feat_pit_fidelity, prep=cfg.data.lookback_prep,
        selection=SelectionParams(threshold=sel.threshold, max_clusters=sel.max_clusters, top_n=sel.top_n,
                                  min_momentum=sel.min_momentum, min_overlap=cfg.data.min_overlap,
                                  xs_momentum=cfg.features.feat_xs_momentum, baseline=baseline),
        risk_threshold=cfg.risk.threshold, risk_max_clusters=cfg.risk.max_clusters, min_overlap=cfg.data.min_overlap,
        regime=RegimeParams.from_mapping(cfg.regime.model_dump()), spectral=cfg.features.feat_spectral_regimes,
        audit=audit_rules(cfg),
    )
    windows = make_windows(streams.index, bt.train, bt.test, bt.step)
    sim = SimulatorParams(slippage_bps=bt.slippage_bps, commission_bps=bt.commission_bps,
                          borrow_bps_annual=bt.borrow_bps_annual)
    return data, tset, windows, engine_params(cfg), sim, tuple(bt.simulators), list(cfg.optimization.engines)


@op(
    ins={name: In(Nothing) for name in UPSTREAM},
    out={"contexts": Out(pd.DataFrame), "engines": DynamicOut(pd.DataFrame)},
    required_resource_keys={"settings"},
)
def tournament_plan(context):
    """Per-window contexts (point-in-time universe, buckets, regime), shared by every engine."""
    from portfolio_assets.quant.tournament import plan_contexts

    data, tset, windows, _, _, _, engines = load_tournament(context.resources.settings, context.partition_key)
    context.log.info(f"{len(windows)} windows x {len(engines)} engines; point-in-time contexts: {tset.pit}")
    yield Output(plan_contexts(data, windows, tset), output_name="contexts")
    for engine in engines:
        yield DynamicOutput(pd.DataFrame({"engine": [engine]}), mapping_key=engine, output_name="engines")


@op(
    out={"windows": Out(pd.DataFrame), "returns": Out(pd.DataFrame), "weights": Out(pd.DataFrame)},
    required_resource_keys={"settings"},
)
def tournament_engine(context, engine: pd.DataFrame, contexts: pd.DataFrame):
    """One engine over every window, both simulators (one parallel step per engine)."""
    import time

    from portfolio_assets.quant.tournament import run_engine_tournament

    name = str(engine["engine"].iloc[0])
    t0 = time.perf_counter()
    data, tset, windows, params, sim, simulators, _ = load_tournament(context.resources.settings, context.partition_key)
    out = run_engine_tournament(name, data, windows, contexts, tset, params, sim, simulators)
    out["windows"]["seconds"] = time.perf_counter() - t0
    context.log.info(f"{name}: {len(windows)} windows in {time.perf_counter() - t0:.2f} s")
    return out["windows"], out["returns"], out["weights"]


@op(required_resource_keys={"settings"})
def tournament_collect(context, windows: list[pd.DataFrame], returns: list[pd.DataFrame],
                       weights: list[pd.DataFrame], contexts: pd.DataFrame) -> None:
    """Stitch the engines' results into the `tournament` tables and record them."""
    from portfolio_assets.quant.tournament import summarize_tournament

    settings: PortfolioSettings = context.resources.settings
    with Step(context, settings, "tournament", "validation") as step:
        cfg = step.cfg
        step.params.update(train=cfg.backtest.train, test=cfg.backtest.test, step=cfg.backtest.step,
                           pit=cfg.features.feat_pit_fidelity, simulators=list(cfg.backtest.simulators),
                           slippage_bps=cfg.backtest.slippage_bps, commission_bps=cfg.backtest.commission_bps)
        win = pd.concat(windows, ignore_index=True).sort_values(["engine", "simulator", "k"], kind="mergesort")
        rets = pd.concat(returns, ignore_index=True).sort_values(["engine", "simulator", "session"], kind="mergesort")
        wts = pd.concat(weights, ignore_index=True).sort_values(["engine", "k", "symbol"], kind="mergesort")
        summary = summarize_tournament(win, rets).sort_values("sharpe", ascending=False, kind="mergesort")
        seconds = win.groupby("engine")["seconds"].first().round(3).to_dict()
        step.write(summary.reset_index(drop=True))
        step.write(win.drop(columns=["seconds"]).reset_index(drop=True), part="windows")
        step.write(rets.reset_index(drop=True), part="returns")
        step.write(wts.reset_index(drop=True), part="weights")
        step.write(contexts, part="contexts")
        for row in win[win["violations"].fillna("") != ""].itertuples():
            step.event("window_violation", engine=row.engine, window=int(row.k), violations=row.violations)
        for row in win[win["fallbacks"].fillna("") != ""].drop_duplicates(["engine", "k"]).itertuples():
            step.event("window_fallback", engine=row.engine, window=int(row.k), fallbacks=row.fallbacks)
        realized = summary[summary["simulator"] == "realized"] if "realized" in set(summary["simulator"]) else summary
        context.add_output_metadata(step.dagster_metadata(
            metrics={"windows": int(win["k"].nunique()), "engines": int(win["engine"].nunique()),
                     "pit_fidelity": bool(cfg.features.feat_pit_fidelity),
                     "windows_with_violations": int((win["violations"].fillna("") != "").sum()),
                     "seconds_per_engine": seconds},
            preview=realized[["engine", "simulator", "cagr", "sharpe", "max_drawdown", "turnover_one_way", "costs_paid"]],
            extra={"all_engines": preview_md(summary, n=40)},
        ))


@graph_asset(
    name="tournament",
    group_name="validation",
    partitions_def=PARTITIONS,
    ins={name: AssetIn(name, dagster_type=Nothing) for name in UPSTREAM},
    kinds={"python", "parquet"},
    owners=OWNERS,
    description=(
        "Step 12. Walk-forward tournament over history_500d (train 252 / test 20 / step 20): every "
        "engine x simulator (`idealized`: drifting weights, zero friction; `realized`: + slippage "
        "and commission on traded notional, borrow on shorts, holdings carried). First window from an "
        "empty book. feat_pit_fidelity re-selects the universe, re-clusters and re-detects the regime "
        "from each window's train rows and audits every window's weights. Fanned out per engine."
    ),
)
def tournament(history_500d, raw_pool_history, risk_buckets, market_regime, target_weights, selected_universe):
    contexts, engines = tournament_plan(
        history_500d=history_500d, raw_pool_history=raw_pool_history, risk_buckets=risk_buckets,
        market_regime=market_regime, target_weights=target_weights, selected_universe=selected_universe,
    )
    windows, returns, weights = engines.map(lambda e: tournament_engine(e, contexts))
    return tournament_collect(windows.collect(), returns.collect(), weights.collect(), contexts)

