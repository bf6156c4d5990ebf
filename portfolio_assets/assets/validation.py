"""Step 12: the walk-forward tournament, fanned out per engine over the Dagster executor.

    tournament_plan ──DynamicOut(batch)──> tournament_engines (one step per batch, in parallel)
          └──── contexts, streams ───────────────┴──> tournament_collect -> the five `tournament*` assets

Engines are batched round-robin, one batch per parallel worker (`executor.max_concurrent`): the
multiprocess executor runs the batches on both cores, celery on the workers; in-process (the
default) they run one after the other. Values between the ops travel as Parquet in the lakehouse
(never pickle), so every worker reads them from shared storage.
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
    graph_multi_asset,
    op,
)

from portfolio_assets.assets._step import Step, preview_md
from portfolio_assets.assets.common import OWNERS, PARTITIONS, outs
from portfolio_assets.manifest import Config
from portfolio_assets.progress import Progress
from portfolio_assets.resources import PortfolioSettings

# What the tournament reads, and what it only runs after: `history_500d` (its blocking health gate
# stops it) and `market_bars` (it fetches bars). It does not wait for `target_weights`, which waits
# for the book of the previous session: in a backfill the tournaments of all dates run in parallel.
UPSTREAM = ("history_500d__returns", "history_500d__health", "selected_universe", "raw_pool", "raw_pool_history",
            "risk_buckets", "market_regime")
ORDERING = ("history_500d", "market_bars")
TABLES = ("tournament", "tournament__windows", "tournament__returns", "tournament__weights", "tournament__contexts")


def tournament_settings(cfg: Config):
    """Walk-forward settings, engine and simulator parameters from the manifest."""
    from portfolio_assets.assets.allocation import audit_rules, engine_params
    from portfolio_assets.quant.selection import SelectionParams
    from portfolio_assets.quant.simulate import simulator_params
    from portfolio_assets.quant.tournament import TournamentSettings

    bt = cfg.backtest
    tset = TournamentSettings(
        pit=cfg.features.feat_pit_fidelity, prep=cfg.data.lookback_prep,
        selection=SelectionParams.from_config(cfg),
        risk_threshold=cfg.risk.threshold, risk_max_clusters=cfg.risk.max_clusters, min_overlap=cfg.data.min_overlap,
        regime=cfg.regime, spectral=cfg.features.feat_spectral_regimes,
        audit=audit_rules(cfg),
    )
    sim = simulator_params(bt)
    return tset, engine_params(cfg), sim, tuple(bt.simulators)


def engine_batches(cfg: Config) -> list[list[str]]:
    """Engines split round-robin into one batch per parallel worker: one step process per core
    instead of one per engine (each step process costs seconds of start-up)."""
    ex = cfg.executor
    n = 1 if ex.kind == "in_process" else ex.max_concurrent
    engines = list(cfg.optimization.engines)
    n = max(1, min(n, len(engines)))
    return [engines[i::n] for i in range(n)]


def point_in_time_pools(step: Step, windows, today_pool: pd.DataFrame) -> dict[int, tuple[pd.DataFrame, str]]:
    """The raw pool as of each window's last train session: the stored raw_pool partition of that
    date if there is one, else a re-scan of the source for that date. A source that cannot scan
    the past (the live TradingView scanner) gives today's pool, recorded as survivorship-biased."""
    from portfolio_assets.assets.universe import raw_pool_as_of
    from portfolio_assets.sources.base import SourceError

    source = step.settings.source()
    pools: dict[int, tuple[pd.DataFrame, str]] = {}
    for w in windows:
        day = w.train_last.date().isoformat()
        if step.lake.has_table("universe", "raw_pool", day):
            pools[w.k] = (step.lake.read_table("universe", "raw_pool", day).set_index("symbol"), f"stored {day}")
            continue
        try:
            pools[w.k] = (raw_pool_as_of(step.cfg, source, w.train_last.date()), f"scanned {day}")
        except SourceError as exc:
            step.event("survivorship_fallback", window=w.k, day=day, error=str(exc)[:300])
            pools[w.k] = (today_pool, "today (survivorship: the source cannot scan the past)")
    return pools


@op(
    ins={"history_500d__returns": In(pd.DataFrame), "history_500d__health": In(pd.DataFrame),
         "selected_universe": In(pd.DataFrame), "raw_pool": In(pd.DataFrame), "raw_pool_history": In(pd.DataFrame),
         "risk_buckets": In(pd.DataFrame), "market_regime": In(pd.DataFrame),
         **{name: In(Nothing) for name in ORDERING}},
    out={"contexts": Out(pd.DataFrame), "streams": Out(pd.DataFrame), "batches": DynamicOut(pd.DataFrame)},
    required_resource_keys={"settings", "price_cache"},
)
def tournament_plan(context, history_500d__returns: pd.DataFrame, history_500d__health: pd.DataFrame,
                    selected_universe: pd.DataFrame, raw_pool: pd.DataFrame, raw_pool_history: pd.DataFrame,
                    risk_buckets: pd.DataFrame, market_regime: pd.DataFrame):
    """Per-window contexts (point-in-time raw pool, universe, buckets, regime) and the return
    streams every engine shares; then one dynamic batch of engines per parallel worker."""
    from portfolio_assets.assets.universe import fetch_returns
    from portfolio_assets.quant.tournament import TodayContext, build_streams, plan_contexts
    from portfolio_assets.quant.walkforward import make_windows

    settings: PortfolioSettings = context.resources.settings
    with Step(context, settings, asset="tournament_plan", price_cache=context.resources.price_cache) as step:
        cfg = step.cfg
        baseline = cfg.selection.baseline
        tset, _, _, _ = tournament_settings(cfg)
        rets = history_500d__returns
        health = history_500d__health.set_index("symbol")
        winners = selected_universe.set_index("symbol")
        pool = raw_pool.set_index("symbol")
        raw = raw_pool_history.reindex(rets.index)
        ok = [s for s in rets.columns if health.at[s, "status"] == "OK"]
        windows = make_windows(rets.index, cfg.backtest.train, cfg.backtest.test, cfg.backtest.step)
        raw_returns = pd.concat([rets[ok], raw[[c for c in raw.columns if c not in ok]]], axis=1)
        pools = point_in_time_pools(step, windows, pool) if tset.pit else None
        if pools:
            needed = sorted(set().union(*(p.index for p, _ in pools.values())) - set(raw_returns.columns))
            if needed:
                _, extra = fetch_returns(step, needed, len(rets))
                raw_returns = pd.concat([raw_returns, extra.reindex(rets.index)], axis=1)
        today = TodayContext(
            universe=winners["direction"].reindex(ok).fillna("long"),
            buckets=risk_buckets.set_index("symbol")["bucket"],
            regime=str(market_regime["label"].iloc[-1]),
            raw_pool=pool["direction"],
        )
        contexts = plan_contexts(windows, raw_returns, baseline, tset, pools=pools, today=today)
        streams = build_streams(raw_returns, sorted(set(contexts["stream"])))
        step.params.update(windows=len(windows), pit=tset.pit, streams=streams.shape[1],
                           pool_sources=sorted(set(contexts["pool_source"])))
        step.metrics = {"windows": len(windows), "streams": streams.shape[1]}
    context.log.info(f"{len(windows)} windows, {streams.shape[1]} streams; point-in-time contexts: {tset.pit}")
    yield Output(contexts, output_name="contexts")
    yield Output(streams, output_name="streams")
    for i, batch in enumerate(engine_batches(cfg), 1):
        yield DynamicOutput(pd.DataFrame({"engine": batch}), mapping_key=f"batch_{i}", output_name="batches")


@op(
    out={"windows": Out(pd.DataFrame), "returns": Out(pd.DataFrame), "weights": Out(pd.DataFrame)},
    required_resource_keys={"settings"},
)
def tournament_engines(context, batch: pd.DataFrame, contexts: pd.DataFrame, streams: pd.DataFrame):
    """A batch of engines over every window and simulator (the steps that run in parallel)."""
    import time

    from portfolio_assets.quant.tournament import run_engine_tournament
    from portfolio_assets.quant.walkforward import make_windows

    cfg = context.resources.settings.resolved().config
    tset, params, sim, simulators = tournament_settings(cfg)
    windows = make_windows(streams.index, cfg.backtest.train, cfg.backtest.test, cfg.backtest.step)
    parts: dict[str, list[pd.DataFrame]] = {"windows": [], "returns": [], "weights": []}
    engines = list(batch["engine"])
    done = Progress(context.log.info, "tournament", len(engines) * len(windows), "engine windows")
    for i, name in enumerate(engines, 1):
        t0 = time.perf_counter()
        out = run_engine_tournament(name, streams, windows, contexts, cfg.selection.baseline, tset, params, sim,
                                    simulators)
        out["windows"]["seconds"] = time.perf_counter() - t0
        context.log.info(f"{name}: {len(windows)} windows x {len(simulators)} simulators in "
                         f"{time.perf_counter() - t0:.2f} s")
        for key, frame in out.items():
            parts[key].append(frame)
        done.advance(len(windows), note=f"engine {i}/{len(engines)} {name} done")
    return tuple(pd.concat(parts[k], ignore_index=True) for k in ("windows", "returns", "weights"))


@op(out={key: Out(pd.DataFrame) for key in TABLES}, required_resource_keys={"settings"})
def tournament_collect(context, windows: list[pd.DataFrame], returns: list[pd.DataFrame],
                       weights: list[pd.DataFrame], contexts: pd.DataFrame):
    """Stitch the engines' results into the `tournament` tables and record them."""
    from portfolio_assets.quant.tournament import summarize_tournament

    settings: PortfolioSettings = context.resources.settings
    with Step(context, settings, asset="tournament") as step:
        cfg = step.cfg
        step.params.update(train=cfg.backtest.train, test=cfg.backtest.test, step=cfg.backtest.step,
                           pit=cfg.features.feat_pit_fidelity, simulators=list(cfg.backtest.simulators),
                           slippage_bps=cfg.backtest.slippage_bps, commission_bps=cfg.backtest.commission_bps)
        win = pd.concat(windows, ignore_index=True).sort_values(["engine", "simulator", "k"], kind="mergesort")
        rets = pd.concat(returns, ignore_index=True).sort_values(["engine", "simulator", "session"], kind="mergesort")
        wts = pd.concat(weights, ignore_index=True).sort_values(["engine", "k", "stream"], kind="mergesort")
        summary = summarize_tournament(win, rets).sort_values("sharpe", ascending=False, kind="mergesort")
        seconds = win.groupby("engine")["seconds"].first().round(3).to_dict()
        for row in win[win["violations"].fillna("") != ""].itertuples():
            step.event("window_violation", engine=row.engine, window=int(row.k), violations=row.violations)
        for row in win[win["fallbacks"].fillna("") != ""].drop_duplicates(["engine", "k"]).itertuples():
            step.event("window_fallback", engine=row.engine, window=int(row.k), fallbacks=row.fallbacks)
        for row in win[win["relaxations"].fillna("") != ""].drop_duplicates(["engine", "k"]).itertuples():
            step.event("window_caps_relaxed", engine=row.engine, window=int(row.k), relaxations=row.relaxations)
        per_window = win.drop_duplicates(["engine", "k"])
        realized = summary[summary["simulator"] == "realized"] if "realized" in set(summary["simulator"]) else summary
        yield from step.emit(
            {"tournament": summary.reset_index(drop=True),
             "tournament__windows": win.drop(columns=["seconds"]).reset_index(drop=True),
             "tournament__returns": rets.reset_index(drop=True), "tournament__weights": wts.reset_index(drop=True),
             "tournament__contexts": contexts},
            metrics={"windows": int(win["k"].nunique()), "engines": int(win["engine"].nunique()),
                     "pit_fidelity": bool(cfg.features.feat_pit_fidelity),
                     "windows_with_violations": int((win["violations"].fillna("") != "").sum()),
                     "windows_with_fallbacks": int((per_window["engine_used"] != per_window["engine"]).sum()),
                     "windows_with_relaxed_caps": int((per_window["relaxations"].fillna("") != "").sum()),
                     "seconds_per_engine": seconds},
            preview=realized[["engine", "simulator", "cagr", "sharpe", "max_drawdown", "turnover_one_way", "costs_paid",
                              "n_fallbacks", "n_relaxed", "engines_used"]],
            extra={"all_engines": preview_md(summary, n=40)},
        )


@graph_multi_asset(
    name="tournament",
    outs=outs("tournament", 12, {
        "windows": "Per engine, simulator and window: train/test spans, metrics, fallbacks, audit violations",
        "returns": "Daily out-of-sample returns per engine and simulator",
        "weights": "Every window's weights per engine",
        "contexts": "Every window's point-in-time universe, buckets and regime, and where its pool came from",
    }, owners=OWNERS, kinds={"python", "parquet"}, description=(
        "Step 12. Walk-forward tournament over history_500d (train 252 / test 20 / step 20): every "
        "engine x simulator (`idealized`: drifting weights, zero friction; `realized`: + slippage "
        "and commission on traded notional, borrow on shorts, holdings carried). First window from an "
        "empty book. feat_pit_fidelity re-selects the universe, re-clusters and re-detects the regime "
        "from each window's train rows and audits every window's weights. Fanned out per engine.")),
    ins={**{name: AssetIn(name) for name in UPSTREAM}, **{name: AssetIn(name, dagster_type=Nothing) for name in ORDERING}},
    partitions_def=PARTITIONS,
)
def tournament(history_500d__returns, history_500d__health, selected_universe, raw_pool, raw_pool_history,
               risk_buckets, market_regime, history_500d, market_bars):
    """Wire the tournament: `tournament_plan` fans engine batches out, `tournament_engines` runs each
    batch, `tournament_collect` stitches the results into the five `tournament*` tables."""
    contexts, streams, batches = tournament_plan(
        history_500d__returns=history_500d__returns, history_500d__health=history_500d__health,
        selected_universe=selected_universe, raw_pool=raw_pool, raw_pool_history=raw_pool_history,
        risk_buckets=risk_buckets, market_regime=market_regime, history_500d=history_500d, market_bars=market_bars,
    )
    windows, returns, weights = batches.map(lambda b: tournament_engines(b, contexts, streams))
    tables = tournament_collect(windows.collect(), returns.collect(), weights.collect(), contexts)
    return dict(zip(TABLES, tables, strict=True))
