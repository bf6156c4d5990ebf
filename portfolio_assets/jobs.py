"""Jobs and the executor chosen by the active profile's `executor` section."""

from __future__ import annotations

import warnings

from dagster import (
    AssetSelection,
    ExecutorDefinition,
    define_asset_job,
    in_process_executor,
    multiprocess_executor,
)

from portfolio_assets.assets.common import PARTITIONS
from portfolio_assets.manifest import ExecutorConfig

DAILY_JOB = "daily_portfolio"
AUDIT_JOB = "audit_gates"
ACCEPT_JOB = "accept_executions"
# Everything a trading date computes. `executions` is left out: it is a fact an operator states
# (`portfolio-assets accept`), never something a whole-graph run produces.
DAILY_SELECTION = AssetSelection.all() - AssetSelection.assets("executions")
GATE_ASSETS = ("history_500d", "target_weights", "audit_ledger")

# `holdings` and `previous_target` have a single-run backfill policy (a backfill computes their
# range in one run); a job selecting them with the other assets resolves to one partition per run,
# which is what every job here runs. Dagster warns about the mix each time such a job is resolved.
warnings.filterwarnings("ignore", message=r"Asset job .* materializes assets with varying BackfillPolicies")


def executor_for(cfg: ExecutorConfig) -> ExecutorDefinition:
    """in_process (default: fastest on 2 cores), multiprocess (both cores), or celery (dagster-celery
    workers on one or several hosts, through the Redis broker of `executor.celery`)."""
    if cfg.kind == "in_process":
        return in_process_executor
    if cfg.kind == "celery":
        from celery.exceptions import DuplicateTaskNameWarning
        from dagster_celery import celery_executor

        # dagster-celery registers its one task (`execute_plan`) again for every step it submits;
        # celery >= 5.5 warns on each re-registration, and the callable is the same code each time.
        warnings.filterwarnings("ignore", message="Task name 'execute_plan' is already registered",
                                category=DuplicateTaskNameWarning)

        return celery_executor.configured({"broker": cfg.celery.broker, "backend": cfg.celery.result_backend})
    # forkserver with the code location preloaded: each step process forks from a warm server
    # instead of re-importing dagster, pandas and the definitions (seconds per step otherwise).
    return multiprocess_executor.configured({
        "max_concurrent": cfg.max_concurrent,
        "start_method": {"forkserver": {"preload_modules": ["portfolio_assets.definitions"]}},
    })


daily_job = define_asset_job(
    DAILY_JOB,
    selection=DAILY_SELECTION,
    partitions_def=PARTITIONS,
    description="The whole graph for one trading date: discovery to orders, with every check.",
)

audit_job = define_asset_job(
    AUDIT_JOB,
    selection=AssetSelection.checks_for_assets(*GATE_ASSETS),
    partitions_def=PARTITIONS,
    description="Re-evaluate the blocking gate checks on the stored data of a partition (`make audit`).",
)

accept_job = define_asset_job(
    ACCEPT_JOB,
    selection=AssetSelection.assets("executions"),
    partitions_def=PARTITIONS,
    description="Record what was executed of a partition's orders (`portfolio-assets accept`).",
)
