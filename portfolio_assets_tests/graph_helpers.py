"""Helpers for tests (and `benchmarks/`) that materialize the asset graph in-process on a
temporary lakehouse, or run the `tournament` asset alone with a chosen executor."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import AssetSelection, DagsterEventType, DagsterInstance, materialize

PARTITION = "2026-11-25"
# Tables that are not in a partition's own asset folders: the shared price cache, op-to-op
# intermediates (per Dagster run id) and the TradingView source's stored scans.
NON_PARTITION_DIRS = ("prices", "_intermediate", "scans")
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}  # errors: see run_error


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or unset, with None) environment variables for the block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


env = environment  # the short name the graph tests use


def run_graph(lake: Path, profile: str = "development", partition: str = PARTITION,
              selection: AssetSelection | None = None, instance: DagsterInstance | None = None,
              checks: bool = True, tags: dict[str, str] | None = None, **env_extra: str):
    """Materialize (a selection of) the daily graph in-process; returns the ExecuteInProcessResult.

    A selection is widened to whole multi-table steps (Dagster's `required_multi_asset_neighbors`,
    as the UI and the CLI do). `checks=False` leaves every asset check out of the widened selection
    (`AssetSelection.without_checks()` alone is undone by the widening, which brings checks back).
    `tags` are the run's tags."""
    from portfolio_assets.definitions import defs
    from portfolio_assets.jobs import DAILY_SELECTION

    selection = DAILY_SELECTION if selection is None else selection | selection.required_multi_asset_neighbors()
    if not checks:
        selection = selection.without_checks()
    with env(PA_LAKEHOUSE=str(lake), PA_PROFILE=profile, **env_extra):
        return materialize(
            list(defs.assets) + list(defs.asset_checks), partition_key=partition, resources=defs.resources,
            selection=selection, raise_on_error=False, instance=instance, tags=tags,
        )


def table_paths(root: Path, partition: str | None = None) -> list[Path]:
    """Every stored asset table `<group>/<asset>/<date>.parquet` under the profile root `root` (of
    `partition`, if given)."""
    name = f"{partition}.parquet" if partition else "*.parquet"
    return sorted(p for p in root.glob(f"*/*/{name}") if p.parent.parent.name not in NON_PARTITION_DIRS)


def table_hashes(root: Path, partition: str | None = None) -> dict[str, str]:
    """`{relative path: ledger.file_hash}` (frame hash of the table's content) of every stored table."""
    from portfolio_assets.ledger import file_hash

    return {p.relative_to(root).as_posix(): file_hash(p) for p in table_paths(root, partition)}


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
    *tables("tournament", "windows", "returns", "weights", "contexts"), "previous_target", "reports", "golden_artifacts",
    "audit_ledger", "implementation_orders",
}
# What reads a history table (all blocked by a failed health gate) and everything after it.
DOWNSTREAM_OF_HISTORY = {
    *tables("risk_buckets", "stats", "pairs"), "market_regime", *tables("target_weights", "diagnostics"),
    *tables("tournament", "windows", "returns", "weights", "contexts"), "reports", "golden_artifacts", "audit_ledger",
    "implementation_orders",
}



# ------------------------------------------------------------------ whole graph / tournament only
def materialize_partition(partition: str, instance: DagsterInstance, selection: AssetSelection | None = None):
    """`dagster.materialize` of the daily graph (or `selection`) for one partition, in-process, with
    the console logger quiet (the events are in the result); settings come from the environment."""
    from portfolio_assets.definitions import defs
    from portfolio_assets.jobs import DAILY_SELECTION

    return materialize([*defs.assets, *defs.asset_checks], partition_key=partition, resources=defs.resources,
                       instance=instance, selection=DAILY_SELECTION if selection is None else selection,
                       raise_on_error=False, run_config=QUIET_RUN_CONFIG)


def persistent_instance(home: Path) -> DagsterInstance:
    """An on-disk (SQLite) instance under `home`: step processes and celery workers must reach the
    run's storage, which an ephemeral in-memory instance cannot offer."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return DagsterInstance.local_temp(str(home))


def tournament_only_job(kind: str, n_workers: int = 2) -> Any:
    """The `tournament` asset alone (upstream read from storage) with an explicit executor."""
    from dagster import Definitions, define_asset_job

    from portfolio_assets.assets.common import PARTITIONS
    from portfolio_assets.definitions import defs
    from portfolio_assets.jobs import executor_for
    from portfolio_assets.manifest import ExecutorConfig
    from portfolio_assets.resources import PortfolioSettings

    cfg = ExecutorConfig(kind=kind, max_concurrent=n_workers,  # type: ignore[arg-type]
                         celery=PortfolioSettings().resolved().config.executor.celery)
    job = define_asset_job(f"tournament_{kind}",
                           selection=AssetSelection.assets("tournament").required_multi_asset_neighbors(),
                           partitions_def=PARTITIONS, executor_def=executor_for(cfg))
    local = Definitions(assets=list(defs.assets), asset_checks=list(defs.asset_checks), resources=defs.resources,
                        jobs=[job])
    return local.resolve_job_def(job.name)


def tournament_job_in_process() -> Any:
    return tournament_only_job("in_process")


def tournament_job_multiprocess() -> Any:
    return tournament_only_job("multiprocess")


def tournament_job_multiprocess_spawn() -> Any:
    """The multiprocess executor with freshly spawned step processes. The production setting forks
    each step from a forkserver, which keeps the environment of the moment it started: in a
    long-lived test process that already ran other graphs (a pytest-xdist worker), that is another
    test's `PA_*` settings. A spawned step process reads the environment of this run."""
    from dagster import multiprocess_executor

    job = tournament_only_job("multiprocess")
    return job.with_executor_def(multiprocess_executor.configured(
        {"max_concurrent": 2, "start_method": {"spawn": {}}}))


def tournament_job_celery() -> Any:
    return tournament_only_job("celery")


TOURNAMENT_JOBS = {"in_process": tournament_job_in_process, "multiprocess": tournament_job_multiprocess,
                   "multiprocess_spawn": tournament_job_multiprocess_spawn, "celery": tournament_job_celery}


def run_tournament_only(kind: str, partition: str, instance: DagsterInstance):
    """Execute the tournament-only job for `partition` (reconstructable: step processes and celery
    workers rebuild it from this module, so the working directory must be the project root)."""
    from dagster import execute_job, reconstructable

    return execute_job(reconstructable(TOURNAMENT_JOBS[kind]), instance=instance,
                       tags={"dagster/partition": partition}, run_config=QUIET_RUN_CONFIG)


def run_error(result) -> str:
    """Why a run failed, in one line: a failed blocking check's description, else the first failed
    step's error, else the run failure's error (e.g. an executor that could not start); '' for a
    successful run."""
    if result.success:
        return ""
    step, run = "", ""
    for event in result.all_events:
        data = event.event_specific_data
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION and not data.passed:
            return f"check {data.asset_key.to_user_string()}:{data.check_name} failed: {data.description}"
        error = getattr(data, "error", None)
        if error is None:
            continue
        message = error.message.strip().splitlines()[0] if error.message.strip() else error.cls_name
        if event.event_type == DagsterEventType.STEP_FAILURE and not step:
            step = f"{event.step_key}: {message}"
        elif event.event_type == DagsterEventType.RUN_FAILURE and not run:
            run = message
    return step or run or "run failed (no error recorded)"


__all__ = ["ALL_ASSETS", "DOWNSTREAM_OF_HISTORY", "PARTITION", "QUIET_RUN_CONFIG", "TOURNAMENT_JOBS",
           "check_results", "env", "environment", "materialize_partition", "materialized", "persistent_instance",
           "run_error", "run_graph", "run_tournament_only", "step_errors", "tables", "tournament_only_job"]
