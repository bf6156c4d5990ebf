"""The one code location: every asset, check, job, schedule, sensor and resource."""

from __future__ import annotations

import importlib

from dagster import (
    AssetSelection,
    Definitions,
    JobDefinition,
    define_asset_job,
    load_asset_checks_from_modules,
    load_assets_from_modules,
)

from portfolio_assets.assets.common import PARTITIONS
from portfolio_assets.io import ParquetIOManager
from portfolio_assets.jobs import DAILY_JOB, daily_job, executor_for
from portfolio_assets.progress import progress_logger
from portfolio_assets.resources import PortfolioSettings
from portfolio_assets.schedules import daily_after_close
from portfolio_assets.sensors import alert_on_check_warnings, alert_on_failed_run

ASSET_MODULE_NAMES = (
    "run", "discovery", "universe", "history", "risk", "allocation", "validation", "reporting", "audit", "implementation",
)
ASSET_MODULES = [importlib.import_module(f"portfolio_assets.assets.{m}") for m in ASSET_MODULE_NAMES]
AUDIT_JOB = "audit_gates"

audit_job = define_asset_job(
    AUDIT_JOB,
    selection=AssetSelection.checks_for_assets("history_500d", "target_weights", "audit_ledger"),
    partitions_def=PARTITIONS,
    description="Re-evaluate the blocking gate checks on the stored data of a partition (`make audit`).",
)

settings = PortfolioSettings()

defs = Definitions(
    assets=load_assets_from_modules(ASSET_MODULES),
    asset_checks=load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[daily_job, audit_job],
    schedules=[daily_after_close],
    sensors=[alert_on_failed_run, alert_on_check_warnings],
    resources={"settings": settings, "io_manager": ParquetIOManager(settings=settings)},
    loggers={"progress": progress_logger},
    executor=executor_for(settings.resolved().config.executor),
)


def get_daily_job() -> JobDefinition:
    """Module-level accessors so `reconstructable` can rebuild the jobs in step processes."""
    return defs.resolve_job_def(DAILY_JOB)


def get_audit_job() -> JobDefinition:
    return defs.resolve_job_def(AUDIT_JOB)
