"""The one code location: every asset, check, job, schedule, sensor and resource.

Each module of `portfolio_assets/assets/` is loaded with its own name as the group
(`assets/universe.py` -> group `universe`), so a group is named once, by the file its assets
live in. Cross-cutting policy is applied here, once: code versions extended with the upstream's
(`versions.with_upstream`) and the check that
every dependency names an asset we define (a misspelt input or dependency is a definitions error
instead of a silently created stub asset).

Backfill policies (docs/ARCHITECTURE.md, "Backfills"): every asset but two keeps Dagster's default,
one run per partition tagged `dagster/partition` (per-partition check evaluations and ledgers, the
per-partition run queue limit, retry of one date from the UI). The two that read the previous
session have a single-run policy: `holdings` (the book chains the dates, which Dagster's backfill
daemon would otherwise store one per 30-s iteration) and `previous_target` (one run per date made it
a wave of runs of its own); each computes its range in one run, one ledger record pair per date.
"""

from __future__ import annotations

import importlib

from dagster import (
    AssetsDefinition,
    Definitions,
    JobDefinition,
    colored_console_logger,
    load_asset_checks_from_modules,
    load_assets_from_modules,
    map_asset_specs,
)

from portfolio_assets.io_manager import LakehouseIOManager
from portfolio_assets.jobs import (
    ACCEPT_JOB,
    AUDIT_JOB,
    DAILY_JOB,
    accept_job,
    audit_job,
    daily_job,
    executor_for,
)
from portfolio_assets.progress import progress_logger
from portfolio_assets.resources import PortfolioSettings, PriceCache
from portfolio_assets.schedules import daily_after_close
from portfolio_assets.sensors import alert_on_check_warnings, alert_on_failed_run
from portfolio_assets.versions import with_upstream

GROUPS = ("run", "discovery", "universe", "history", "risk", "allocation", "validation", "reporting", "audit",
          "implementation")
ASSET_MODULES = {group: importlib.import_module(f"portfolio_assets.assets.{group}") for group in GROUPS}


def _with_upstream_code_versions(loaded: list[AssetsDefinition]) -> list[AssetsDefinition]:
    """Each asset's code version extended with its ancestors' (`versions.with_upstream`)."""
    own = {key.to_user_string(): a.code_versions_by_key[key] for a in loaded for key in a.keys}
    parents = {key.to_user_string(): {p.to_user_string() for p in deps} for a in loaded
               for key, deps in a.asset_deps.items()}
    full = with_upstream(own, parents)
    return list(map_asset_specs(
        lambda spec: spec.replace_attributes(code_version=full[spec.key.to_user_string()]), loaded))


assets = _with_upstream_code_versions([
    a for group, module in ASSET_MODULES.items()
    for a in load_assets_from_modules([module], group_name=group)])
asset_checks = load_asset_checks_from_modules(list(ASSET_MODULES.values()))
groups = {key.to_user_string(): group for a in assets for key, group in a.group_names_by_key.items()}

settings = PortfolioSettings()

defs = Definitions(
    assets=assets,
    asset_checks=asset_checks,
    jobs=[daily_job, audit_job, accept_job],
    schedules=[daily_after_close],
    sensors=[alert_on_failed_run, alert_on_check_warnings],
    resources={
        "settings": settings,
        "price_cache": PriceCache(settings=settings),
        "io_manager": LakehouseIOManager(settings=settings, groups=groups),
    },
    # progress: the CLI's lines; console: Dagster's own log, for `--verbose` / PA_LOG_LEVEL=DEBUG|INFO
    loggers={"progress": progress_logger, "console": colored_console_logger},
    executor=executor_for(settings.resolved().config.executor),
)


def undefined_dependencies(definitions: Definitions) -> dict[str, list[str]]:
    """`{asset or check: [upstream keys no asset of ours defines]}` (empty when every dependency resolves)."""
    defined = {key for a in definitions.assets or [] for key in a.keys}
    graph = definitions.resolve_asset_graph()
    out: dict[str, list[str]] = {}
    for key in sorted(defined, key=lambda k: k.to_user_string()):
        missing = sorted(p.to_user_string() for p in graph.get(key).parent_keys if p not in defined)
        if missing:
            out[key.to_user_string()] = missing
    for check in graph.asset_check_keys:
        if check.asset_key not in defined:
            out[check.to_user_string()] = [check.asset_key.to_user_string()]
    return out


_undefined = undefined_dependencies(defs)
if _undefined:
    raise ValueError(f"dependencies on assets that no module defines (a typo?): {_undefined}")


def get_daily_job() -> JobDefinition:
    """Module-level accessors so `reconstructable` can rebuild the jobs in step processes."""
    return defs.resolve_job_def(DAILY_JOB)


def get_audit_job() -> JobDefinition:
    """The audit job, resolved from `defs` (see `get_daily_job`)."""
    return defs.resolve_job_def(AUDIT_JOB)


def get_accept_job() -> JobDefinition:
    """The accept job, resolved from `defs` (see `get_daily_job`)."""
    return defs.resolve_job_def(ACCEPT_JOB)
