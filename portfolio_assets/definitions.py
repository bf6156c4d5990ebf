"""The one code location: every asset, check, job, schedule, sensor and resource."""

from __future__ import annotations

import importlib

from dagster import Definitions, JobDefinition, load_asset_checks_from_modules, load_assets_from_modules

from portfolio_assets.io import ParquetIOManager
from portfolio_assets.jobs import DAILY_JOB, daily_job, executor_for
from portfolio_assets.resources import PortfolioSettings

ASSET_MODULE_NAMES = ("run", "discovery", "universe")
ASSET_MODULES = [importlib.import_module(f"portfolio_assets.assets.{m}") for m in ASSET_MODULE_NAMES]

settings = PortfolioSettings()

defs = Definitions(
    assets=load_assets_from_modules(ASSET_MODULES),
    asset_checks=load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[daily_job],
    resources={"settings": settings, "io_manager": ParquetIOManager(settings=settings)},
    executor=executor_for(settings.resolved().config.executor),
)


def get_daily_job() -> JobDefinition:
    """Module-level accessor so `reconstructable` can rebuild the job in step processes."""
    return defs.resolve_job_def(DAILY_JOB)
