"""Steps 7-8: 500-session history with automated recovery, and the blocking health gate."""

from __future__ import annotations

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue, asset, asset_check

from portfolio_assets.assets._step import Step, preview_md
from portfolio_assets.assets.common import DATA_OWNERS, PARTITIONS
from portfolio_assets.assets.gates import record_gate
from portfolio_assets.assets.universe import calendars_of, fetch_returns, health_params
from portfolio_assets.fetch import coverage, fetch_and_recover, load_panel, window_bounds
from portfolio_assets.partitions import sessions_window
from portfolio_assets.quant.calendar import simple_returns
from portfolio_assets.reports.markdown import health_markdown
from portfolio_assets.resources import PortfolioSettings


@asset(
    group_name="history",
    partitions_def=PARTITIONS,
    deps=["selected_universe"],
    kinds={"python", "parquet"},
    owners=DATA_OWNERS,
    description=(
        "Step 7. 500 master sessions (sessions, not calendar days) of aligned closes for the winners "
        "+ baseline, with automated recovery: every MISSING/STALE/GAPS/BAD_TICKS symbol is re-fetched "
        "up to `data.recovery_attempts` times with exponential backoff. Parts: `returns` (simple "
        "returns), `health` (status before/after recovery), `recovery` (every attempt)."
    ),
)
def history_500d(context, settings: PortfolioSettings):
    with Step(context, settings, "history_500d", "history") as step:
        data = step.cfg.data
        winners = step.read("universe", "selected_universe")
        symbols = sorted(set(winners["symbol"]) | {step.cfg.selection.baseline})
        window = sessions_window(step.date, data.lookback_history + 1)
        start, end = window_bounds(window)
        step.params.update(sessions=data.lookback_history, attempts=data.recovery_attempts, symbols=len(symbols))
        calendars = calendars_of(step, symbols)
        before, after, log = fetch_and_recover(
            step.settings.source(), step.lake, symbols, calendars, window, step.date,
            health_params(step, symbols), data.recovery_attempts, data.recovery_backoff_s,
        )
        panel = load_panel(step.lake, symbols, calendars, window, step.date)
        rets = simple_returns(panel).iloc[1:]
        health = after.assign(status_before=before["status"], issues_before=before["issues"],
                              attempts=log.frame().groupby("symbol").size().reindex(after.index).fillna(0).astype(int))
        health = health.reset_index()
        step.write(panel.iloc[1:])
        step.write(rets, part="returns")
        step.write(health, part="health")
        step.write(log.frame(), part="recovery")
        step.write_file("data_health.md", health_markdown(health, step.partition, step.cfg.data.strict_health))
        for row in health.itertuples():
            if row.status_before != "OK" or row.status != "OK":
                step.event("health", symbol=row.symbol, before=row.status_before, after=row.status, issues=row.issues)
        return step.result(
            metrics={
                "symbols": len(symbols), "sessions": len(rets),
                "status_before": before["status"].value_counts().to_dict(),
                "status_after": after["status"].value_counts().to_dict(),
                "recovery_attempts": len(log.rows),
            },
            preview=health[["symbol", "status_before", "status", "attempts", "issues"]].sort_values("status"),
        )


@asset_check(
    asset=history_500d,
    blocking=True,
    partitions_def=PARTITIONS,
    description=(
        "Step 8, blocking. Every winner's history must be OK after recovery (gap-free on its own "
        "calendar, fresh, enough sessions, no bad ticks). strict_health: any unhealthy symbol is an "
        "ERROR and nothing downstream runs; otherwise a WARN and the symbols are dropped downstream."
    ),
)
def health_gate(context, settings: PortfolioSettings) -> AssetCheckResult:
    lake = settings.lakehouse()
    partition = context.partition_key
    strict = settings.resolved().config.data.strict_health
    health = lake.read_table("history", "history_500d", partition, "health")
    bad = health[health["status"] != "OK"]
    severity = AssetCheckSeverity.ERROR if strict else AssetCheckSeverity.WARN
    listing = ", ".join(f"{r.symbol} {r.status}" for r in bad.itertuples())
    description = (
        f"all {len(health)} symbols OK" if bad.empty
        else f"{len(bad)} unhealthy symbol(s) after recovery: {listing}"
        + ("" if strict else " (non-strict: dropped downstream)")
    )
    record_gate(settings, partition, "health_gate", passed=bad.empty, severity=severity.value,
                description=description, checked=[("history", "history_500d")], run_id=context.op_execution_context.run_id,
                details={"unhealthy": bad[["symbol", "status", "issues"]].to_dict("records")})
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


@asset(
    group_name="history",
    partitions_def=PARTITIONS,
    deps=["raw_pool"],
    kinds={"python", "parquet"},
    owners=DATA_OWNERS,
    description=(
        "500-session returns of the whole raw pool (not only the winners): the `raw_pool_ew` baseline "
        "and point-in-time re-selection in the tournament need them. Part `coverage`."
    ),
)
def raw_pool_history(context, settings: PortfolioSettings):
    with Step(context, settings, "raw_pool_history", "history") as step:
        pool = step.read("universe", "raw_pool")
        symbols = sorted(set(pool["symbol"]) | {step.cfg.selection.baseline})
        _, rets = fetch_returns(step, symbols, step.cfg.data.lookback_history)
        cov = coverage(rets).reset_index().rename(columns={"index": "symbol"})
        step.write(rets)
        step.write(cov, part="coverage")
        return step.result(metrics={"symbols": len(symbols), "sessions": len(rets),
                                    "mean_coverage": float(cov["coverage"].mean())},
                           preview=cov.sort_values("coverage").head(10))


def healthy_returns(step: Step) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    """History returns restricted to symbols whose health is OK; (returns, directions, dropped).

    Dropped symbols are recorded as events (metadata + ledger) by the calling asset.
    """
    rets = step.read("history", "history_500d", "returns")
    health = step.read("history", "history_500d", "health").set_index("symbol")
    winners = step.read("universe", "selected_universe").set_index("symbol")
    baseline = step.cfg.selection.baseline
    ok = [s for s in rets.columns if health.at[s, "status"] == "OK"]
    dropped = [s for s in rets.columns if s not in ok]
    if baseline in dropped:
        raise ValueError(f"baseline {baseline} is unhealthy ({health.at[baseline, 'status']}): nothing downstream can run")
    for s in dropped:
        step.event("dropped_unhealthy", symbol=s, status=health.at[s, "status"], issues=health.at[s, "issues"])
    directions = winners["direction"].reindex(ok).fillna("long")
    directions[baseline] = "long"
    return rets[ok], directions, dropped

