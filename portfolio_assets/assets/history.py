"""Steps 7-8: the market-data fingerprint, 500-session history with automated recovery, the blocking
health gate, and the raw pool's 500-session returns."""

from __future__ import annotations

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetIn,
    MetadataValue,
    asset,
    asset_check,
    multi_asset,
)

from portfolio_assets.assets._step import Step, preview_md
from portfolio_assets.assets.common import DATA_OWNERS, PARTITIONS, STEP_TAG, after, attrs, outs
from portfolio_assets.assets.universe import (
    bar_windows,
    calendars_of,
    fetch_returns,
    health_params,
    widest_starts,
)
from portfolio_assets.fetch import coverage, fetch_and_recover, first_fetch, load_panel
from portfolio_assets.ledger import frame_hash
from portfolio_assets.partitions import sessions_window
from portfolio_assets.quant.calendar import simple_returns
from portfolio_assets.reports.markdown import health_markdown
from portfolio_assets.resources import PortfolioSettings, PriceCache

KINDS = {"python", "parquet"}
GATE_LISTED = 10  # unhealthy symbols the health gate's message names (`history_500d__health` has them all)


def regime_warmup(cfg) -> int:
    """Sessions of baseline history `market_regime` reads before the 500-session window
    (`quant.regimes.history_sessions`: the volatility percentile, the 3-year reference and the
    drawdown need full windows)."""
    from portfolio_assets.quant.regimes import history_sessions

    return history_sessions(cfg.regime)


@asset(
    **attrs("market_bars", 4),
    kinds=KINDS,
    owners=DATA_OWNERS,
    description=(
        "The source's bars as this partition's assets read them, fingerprinted: per raw-pool symbol "
        "(+ baseline) the bars <= D over the history window (the baseline over the regime's longer "
        "one), with their content hash. Its data version changes when the source delivers a new or "
        "corrected bar, which makes every asset that fetches bars stale for this partition "
        "(`portfolio-assets stale --check-market-data`). This is the run's first fetch of those "
        "windows: stored once in the price store and read back by every asset of the run that "
        "needs a window inside them."
    ),
)
def market_bars(context, settings: PortfolioSettings, price_cache: PriceCache, raw_pool: pd.DataFrame):
    """The run's first fetch of the partition's bar windows into the price store (the baseline's with
    the regime warm-up); stores per symbol the first and last bar, bar count and content hash."""
    with Step(context, settings, price_cache=price_cache) as step:
        cfg, source = step.cfg, step.settings.source()
        baseline = cfg.selection.baseline
        (start, end), long = bar_windows(cfg, step.date)
        symbols = sorted(set(raw_pool["symbol"]) | {baseline})
        # The run's first fetch of every symbol's widest window: stored once, read back by every
        # asset of the run that needs a window inside it (`fetch.first_fetch`).
        scope, widest = step.fetch_scope, widest_starts(step, symbols)
        delivered = first_fetch(source, step.lake, [s for s in symbols if s != baseline], start, end,
                                scope=scope, widest=widest, say=context.log.info)
        delivered.update(first_fetch(source, step.lake, [baseline], *long, scope=scope, widest=widest,
                                     say=context.log.info))
        rows = []
        for symbol in symbols:
            bars = delivered[symbol]
            rows.append({"symbol": symbol, "first_bar": str(bars["time"].min().date()) if len(bars) else None,
                         "last_bar": str(bars["time"].max().date()) if len(bars) else None,
                         "bars": len(bars), "bars_hash": frame_hash(bars.reset_index(drop=True))})
        table = pd.DataFrame(rows)
        step.params.update(symbols=len(symbols), window=[str(start), str(end)], baseline_window=[str(d) for d in long])
        yield from step.emit(table, metrics={"symbols": len(table), "bars": int(table["bars"].sum())},
                             preview=table.sort_values("bars").head(10))


@multi_asset(
    name="history_500d",
    outs=outs("history_500d", 7, {
        "returns": "Simple returns of the 500-session closes (sessions x symbols)",
        "health": "Per-symbol health before and after recovery, the attempts and the issues",
        "recovery": "Every recovery attempt: symbol, attempt, status before and after, error",
    }, owners=DATA_OWNERS, kinds=KINDS, description=(
        "Step 7. 500 master sessions (sessions, not calendar days) of aligned closes for the winners "
        "+ baseline, with automated recovery: every MISSING/STALE/GAPS/BAD_TICKS symbol is re-fetched "
        "up to `data.recovery_attempts` times with exponential backoff. Writes `data_health.md`.")),
    ins=after("market_bars"),
    partitions_def=PARTITIONS,
)
def history_500d(context, settings: PortfolioSettings, price_cache: PriceCache, selected_universe: pd.DataFrame):
    """Fetch and recover `data.lookback_history` sessions for the winners + baseline, write
    `data_health.md`, and store closes, returns, health before/after recovery and every attempt."""
    with Step(context, settings, price_cache=price_cache) as step:
        data = step.cfg.data
        symbols = sorted(set(selected_universe["symbol"]) | {step.cfg.selection.baseline})
        window = sessions_window(step.date, data.lookback_history + 1)
        step.params.update(sessions=data.lookback_history, attempts=data.recovery_attempts, symbols=len(symbols))
        calendars = calendars_of(step, symbols)
        view: dict[str, pd.DataFrame] = {}
        before, healed, log = fetch_and_recover(
            step.settings.source(), step.lake, symbols, calendars, window, step.date,
            health_params(step, symbols), data.recovery_attempts, data.recovery_backoff_s, say=context.log.info,
            scope=step.fetch_scope, widest=widest_starts(step, symbols), view=view,
        )
        panel = load_panel(step.lake, symbols, calendars, window, step.date, view=view)
        rets = simple_returns(panel).iloc[1:]
        health = healed.assign(status_before=before["status"], issues_before=before["issues"],
                               attempts=log.frame().groupby("symbol").size().reindex(healed.index).fillna(0).astype(int))
        health = health.reset_index()
        report = health_markdown(health, step.partition, data.strict_health)
        folder, _ = step.publish(lambda stage: (stage / "data_health.md").write_text(report))
        for row in health.itertuples():
            if row.status_before != "OK" or row.status != "OK":
                step.event("health", symbol=row.symbol, before=row.status_before, after=row.status, issues=row.issues)
        yield from step.emit(
            {"history_500d": panel.iloc[1:], "history_500d__returns": rets, "history_500d__health": health,
             "history_500d__recovery": log.frame()},
            metrics={
                "symbols": len(symbols), "sessions": len(rets),
                "status_before": before["status"].value_counts().to_dict(),
                "status_after": healed["status"].value_counts().to_dict(),
                "recovery_attempts": len(log.rows),
            },
            preview=health[["symbol", "status_before", "status", "attempts", "issues"]].sort_values("status"),
            extra={"data_health": MetadataValue.path(str(step.lake.files_dir(step.asset, step.partition) / "data_health.md")),
                   "folder": MetadataValue.path(str(folder))},
        )


def health_gate_description(health: pd.DataFrame, strict: bool) -> str:
    """The health gate's message: each unhealthy symbol (the first `GATE_LISTED`) with what its
    health row found (the day of a bad tick, the last bar of a stale one, ...), so it says where to
    look, e.g. for an unadjusted split "NYSE:XOM (BAD_TICKS: 1 bar(s), first 2020-08-31)"."""
    bad = health[health["status"] != "OK"]
    if bad.empty:
        return f"all {len(health)} symbols OK"
    named = [f"{r.symbol} ({r.issues})" if r.issues else f"{r.symbol} {r.status}" for r in bad.itertuples()]
    listing = ", ".join(named[:GATE_LISTED]) + (
        f", and {len(named) - GATE_LISTED} more (all in history_500d__health)" if len(named) > GATE_LISTED else "")
    return (f"{len(bad)} unhealthy symbol(s) after recovery: {listing}"
            + ("" if strict else " (non-strict: dropped downstream)"))


@asset_check(
    asset="history_500d",
    blocking=True,
    partitions_def=PARTITIONS,
    additional_ins={"health": AssetIn("history_500d__health")},
    metadata={STEP_TAG: "8"},
    description=(
        "Step 8, blocking. Every winner's history must be OK after recovery (gap-free on its own "
        "calendar, fresh, enough sessions, no bad ticks). strict_health: any unhealthy symbol is an "
        "ERROR and nothing that reads a history table runs; otherwise a WARN and the symbols are "
        "dropped downstream."
    ),
)
def health_gate(context, settings: PortfolioSettings, health: pd.DataFrame) -> AssetCheckResult:
    """Blocking check: passes only when every symbol of `history_500d__health` is OK after recovery.
    Under `data.strict_health` a failure is an ERROR and withdraws the stored orders; otherwise a WARN."""
    strict = settings.resolved().config.data.strict_health
    bad = health[health["status"] != "OK"]
    severity = AssetCheckSeverity.ERROR if strict else AssetCheckSeverity.WARN
    description = health_gate_description(health, strict)
    if not bad.empty and strict:
        from portfolio_assets.assets.implementation import withdraw_orders

        withdraw_orders(context, settings, f"health_gate FAILED: {description}")
    return AssetCheckResult(
        passed=bad.empty,
        severity=severity,
        description=description,
        metadata={
            "strict_health": strict,
            "unhealthy": len(bad),
            "statuses": MetadataValue.json(health["status"].value_counts().to_dict()),
            "table": preview_md(bad[["symbol", "status", "issues"]] if len(bad) else health[["symbol", "status"]]),
        },
    )


@multi_asset(
    name="raw_pool_history",
    outs=outs("raw_pool_history", 7, {"coverage": "Share of sessions with a return per raw-pool symbol"},
              owners=DATA_OWNERS, kinds=KINDS, description=(
                  "500-session returns of the whole raw pool (not only the winners): the `raw_pool_ew` "
                  "baseline and point-in-time re-selection in the tournament need them.")),
    ins=after("market_bars"),
    partitions_def=PARTITIONS,
)
def raw_pool_history(context, settings: PortfolioSettings, price_cache: PriceCache, raw_pool: pd.DataFrame):
    """Fetch `data.lookback_history` sessions of returns for the whole raw pool + baseline
    (`fetch_returns`, bad ticks masked, not health-gated) and store them with each symbol's coverage."""
    with Step(context, settings, price_cache=price_cache) as step:
        symbols = sorted(set(raw_pool["symbol"]) | {step.cfg.selection.baseline})
        _, rets = fetch_returns(step, symbols, step.cfg.data.lookback_history)
        cov = coverage(rets).reset_index().rename(columns={"index": "symbol"})
        yield from step.emit({"raw_pool_history": rets, "raw_pool_history__coverage": cov},
                             metrics={"symbols": len(symbols), "sessions": len(rets),
                                      "mean_coverage": float(cov["coverage"].mean())},
                             preview=cov.sort_values("coverage").head(10))


def healthy_returns(step: Step, returns: pd.DataFrame, health: pd.DataFrame,
                    winners: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    """History returns restricted to symbols whose health is OK; (returns, directions, dropped).

    Dropped symbols are recorded as events (metadata + ledger) of the calling asset.
    """
    health = health.set_index("symbol")
    winners = winners.set_index("symbol")
    baseline = step.cfg.selection.baseline
    ok = [s for s in returns.columns if health.at[s, "status"] == "OK"]
    dropped = [s for s in returns.columns if s not in ok]
    if baseline in dropped:
        raise ValueError(f"baseline {baseline} is unhealthy ({health.at[baseline, 'status']}): nothing downstream can run")
    for s in dropped:
        step.event("dropped_unhealthy", symbol=s, status=health.at[s, "status"], issues=health.at[s, "issues"])
    directions = winners["direction"].reindex(ok).fillna("long")
    directions[baseline] = "long"
    return returns[ok], directions, dropped
