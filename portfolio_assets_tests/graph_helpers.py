"""Helpers for tests that materialize the asset graph in-process on a temporary lakehouse."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetSelection, DagsterEventType, DagsterInstance, materialize

from portfolio_assets.bench import environment

PARTITION = "2026-11-25"


env = environment  # the one helper, shared with the bench


def run_graph(lake: Path, profile: str = "development", partition: str = PARTITION,
              selection: AssetSelection | None = None, instance: DagsterInstance | None = None, **env_extra: str):
    """Materialize (a selection of) the graph in-process; returns the ExecuteInProcessResult."""
    from portfolio_assets.definitions import defs

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


ALL_ASSETS = {
    "run_manifest", "equity_scan", "crypto_scan", "bond_scan", "forex_scan", "raw_pool", "returns_60d",
    "selected_universe", "enriched_universe", "history_500d", "raw_pool_history", "risk_buckets", "market_regime",
    "target_weights", "tournament", "reports", "golden_artifacts", "audit_ledger", "implementation_orders",
}
DOWNSTREAM_OF_HISTORY = {"risk_buckets", "market_regime", "target_weights", "tournament", "reports",
                         "golden_artifacts", "audit_ledger", "implementation_orders"}

__all__ = ["ALL_ASSETS", "DOWNSTREAM_OF_HISTORY", "PARTITION", "check_results", "env", "materialized",
           "run_graph", "step_errors"]
