"""Helpers for tests that materialize the asset graph in-process on a temporary lakehouse."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetSelection, DagsterEventType, DagsterInstance, materialize

from portfolio_assets.bench import environment

PARTITION = "2026-11-25"


env = environment  # the one helper, shared with the bench


def run_graph(lake: Path, profile: str = "development", partition: str = PARTITION,
              selection: AssetSelection | None = None, instance: DagsterInstance | None = None,
              checks: bool = True, **env_extra: str):
    """Materialize (a selection of) the daily graph in-process; returns the ExecuteInProcessResult.

    A selection is widened to whole multi-table steps (Dagster's `required_multi_asset_neighbors`,
    as the UI and the CLI do). `checks=False` leaves every asset check out of the widened selection
    (`AssetSelection.without_checks()` alone is undone by the widening, which brings checks back)."""
    from portfolio_assets.definitions import defs
    from portfolio_assets.jobs import DAILY_SELECTION

    selection = DAILY_SELECTION if selection is None else selection | selection.required_multi_asset_neighbors()
    if not checks:
        selection = selection.without_checks()
    with env(PA_LAKEHOUSE=str(lake), PA_PROFILE=profile, **env_extra):
        return materialize(
            list(defs.assets) + list(defs.asset_checks), partition_key=partition, resources=defs.resources,
            selection=selection, raise_on_error=False, instance=instance,
        )


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.all_events
            if e.event_type == DagsterEventType.ASSET_MATERIALIZATION}


def check_results(result) -> dict[str, object]:
    return {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events
            if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION}


def step_errors(result) -> dict[str, str]:
    """Step key -> the error message with every cause's message appended."""
    out = {}
    for e in result.all_events:
        if e.event_type == DagsterEventType.STEP_FAILURE:
            err, parts = e.event_specific_data.error, []
            while err is not None:
                parts.append(err.message.strip())
                err = err.cause
            out[e.step_key] = " | ".join(parts)
    return out


def tables(step: str, *parts: str) -> set[str]:
    """The asset keys of a multi-table step: `step` and `step__<part>`."""
    return {step, *(f"{step}__{part}" for part in parts)}


# Every asset of the daily graph (everything but `executions`, which `accept` records).
ALL_ASSETS = {
    "run_manifest", "equity_scan", "crypto_scan", "bond_scan", "forex_scan", *tables("raw_pool", "audit"),
    "market_bars", *tables("returns_60d", "coverage"), *tables("selected_universe", "audit"), "enriched_universe",
    *tables("history_500d", "returns", "health", "recovery"), *tables("raw_pool_history", "coverage"),
    *tables("risk_buckets", "stats", "pairs"), "market_regime", "holdings", *tables("target_weights", "diagnostics"),
    *tables("tournament", "windows", "returns", "weights", "contexts"), "reports", "golden_artifacts", "audit_ledger",
    "implementation_orders",
}
# What reads a history table (all blocked by a failed health gate) and everything after it.
DOWNSTREAM_OF_HISTORY = {
    *tables("risk_buckets", "stats", "pairs"), "market_regime", *tables("target_weights", "diagnostics"),
    *tables("tournament", "windows", "returns", "weights", "contexts"), "reports", "golden_artifacts", "audit_ledger",
    "implementation_orders",
}

__all__ = ["ALL_ASSETS", "DOWNSTREAM_OF_HISTORY", "PARTITION", "check_results", "env", "materialized",
           "run_graph", "step_errors", "tables"]
