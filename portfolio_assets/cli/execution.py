"""Running the job: launch or re-execute a run in process, recognise a run whose launcher is gone, and
summarize a finished run (runbook steps, alerts, clearance, where its outputs are)."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

from portfolio_assets.cli.common import EXIT_FAILED, EXIT_OK, PROFILE_TAG, _err, _log_path
from portfolio_assets.manifest import resolve

if TYPE_CHECKING:
    from dagster import AssetsDefinition, Definitions, NodeDefinition


# ---- running ---------------------------------------------------------------------------------------
def _quiet_run(fn):
    """Run `fn()` with Dagster's console log in DAGSTER_HOME/cli-logs (the terminal shows the progress
    logger's lines); `PA_LOG_LEVEL=DEBUG` (or INFO) streams Dagster's log instead."""
    level = os.environ.get("PA_LOG_LEVEL", "WARNING").upper()
    quiet = level not in ("DEBUG", "INFO")
    loggers = {"progress": {}} if quiet else {"console": {"config": {"log_level": level}}}
    saved = None
    log_path = _log_path("cli")
    if quiet:  # step processes inherit fd 2: Dagster's process-level messages go to the log file
        sys.stderr.flush()
        saved, log_file = os.dup(2), open(log_path, "ab")  # noqa: SIM115 (closed in finally)
        os.dup2(log_file.fileno(), 2)
    try:
        result = fn({"loggers": loggers})
    finally:
        if saved is not None:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log_file.close()
    if quiet:
        print(f"dagster log: {log_path}")
    return result


def _launch_tags() -> dict[str, str]:
    """Tags every run this CLI launches carries: its profile, and its resolved alert sinks (`--set`
    included), so whoever delivers its alerts (this CLI or the daemon's sensors) uses them."""
    from portfolio_assets.alerts import run_tags

    overrides = json.loads(os.environ.get("PA_CLI_OVERRIDES") or "{}")
    resolved = resolve(os.environ["PA_PROFILE"], cli_overrides=overrides)
    return {PROFILE_TAG: resolved.profile, **run_tags(resolved.config.alerts)}


LAUNCHER_TAG = "portfolio_assets/launcher"  # host:pid of the CLI process a run executes in (in-process runs)


def this_process() -> str:
    """`host:pid` of this process (the launcher tag's value; a `backfill` command's `COMMAND_TAG`)."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def _launcher_tag() -> dict[str, str]:
    return {LAUNCHER_TAG: this_process()}


def launcher_gone(run: Any) -> int | None:
    """The pid of the CLI process that ran `run` in-process on this host, when that process no
    longer exists (killed: Dagster still says STARTED); None when alive, elsewhere or unknown."""
    import socket

    host, _, pid = run.tags.get(LAUNCHER_TAG, "").rpartition(":")
    if run.is_finished or host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return int(pid)
    except PermissionError:  # exists, owned by someone else
        return None
    return None


def execute(partition: str, asset_keys: list[Any] | None, tags: dict[str, str] | None = None, job: str = "daily",
            run_config: dict[str, Any] | None = None) -> Any:
    """Run a job (the daily graph or a selection of it; `accept`, `audit`) for one partition on the
    persistent instance, in this process (the executor of the manifest runs the steps)."""
    from dagster import DagsterInstance, execute_job, reconstructable

    from portfolio_assets import definitions

    getter = {"daily": definitions.get_daily_job, "audit": definitions.get_audit_job,
              "accept": definitions.get_accept_job}[job]
    all_tags = {"dagster/partition": partition, **_launch_tags(), **_launcher_tag(), **(tags or {})}

    def go(config: dict[str, Any]) -> Any:
        with DagsterInstance.get() as instance:
            return execute_job(reconstructable(getter), instance=instance, tags=all_tags, asset_selection=asset_keys,
                               run_config={**config, **(run_config or {})})

    return _quiet_run(go)


def reexecute(parent_run_id: str, partition: str, steps: list[str]) -> Any:
    """Dagster re-execution of `parent_run_id` (of `partition`) from `steps` on (shown as a
    re-execution of it in the UI); the steps not selected are read from storage."""
    from dagster import DagsterInstance, ReexecutionOptions, execute_job, reconstructable

    from portfolio_assets.definitions import get_daily_job

    tags = {"dagster/partition": partition, **_launch_tags(), **_launcher_tag()}

    def go(config: dict[str, Any]) -> Any:
        with DagsterInstance.get() as instance:
            return execute_job(reconstructable(get_daily_job), instance=instance, run_config=config, tags=tags,
                               reexecution_options=ReexecutionOptions(parent_run_id=parent_run_id, step_selection=steps))

    return _quiet_run(go)


def _asset_definitions(defs: Definitions) -> list[AssetsDefinition]:
    """The code location's asset definitions (a TypeError names anything else, such as an `AssetSpec`:
    it has no runbook step and no op to select)."""
    from dagster import AssetsDefinition

    assets = list(defs.assets or ())
    others = sorted({type(a).__name__ for a in assets if not isinstance(a, AssetsDefinition)})
    if others:
        raise TypeError(f"runbook steps need AssetsDefinition objects, the definitions also hold {', '.join(others)}")
    return [a for a in assets if isinstance(a, AssetsDefinition)]


def _node_name(node: NodeDefinition | None, what: str) -> str:
    if node is None:
        raise TypeError(f"{what} has no op to select")
    return node.name


def runbook_steps() -> list[int]:
    """The runbook step numbers of the daily graph's assets (their `runbook/step` tags), sorted."""
    from portfolio_assets.assets.common import STEP_TAG
    from portfolio_assets.definitions import defs
    from portfolio_assets.jobs import DAILY_SELECTION

    daily = DAILY_SELECTION.resolve(defs.resolve_asset_graph())
    steps = {int(spec.tags[STEP_TAG]) for assets_def in _asset_definitions(defs) for spec in assets_def.specs
             if STEP_TAG in spec.tags and spec.key in daily}
    steps |= {int(spec.metadata[STEP_TAG]) for checks_def in defs.asset_checks or () for spec in checks_def.check_specs
              if STEP_TAG in spec.metadata}
    return sorted(steps)


def start_step_selection(step: int) -> list[str]:
    """Dagster step selections for "runbook step `step` and everything after": each asset (or
    check) of the daily graph whose `runbook/step` tag (metadata for checks) is >= `step`, with
    all its downstream steps (`op*`). The mapping comes from the definitions, not a table here."""
    from dagster import GraphDefinition

    from portfolio_assets.assets.common import STEP_TAG
    from portfolio_assets.definitions import defs
    from portfolio_assets.jobs import DAILY_SELECTION

    daily = DAILY_SELECTION.resolve(defs.resolve_asset_graph())
    queries = []
    for assets_def in _asset_definitions(defs):
        steps = [int(spec.tags[STEP_TAG]) for spec in assets_def.specs if STEP_TAG in spec.tags]
        if not steps or min(steps) < step or not assets_def.keys <= daily:
            continue
        node = assets_def.node_def
        # A graph-backed asset's steps are its ops: select from its first op on.
        queries.append(f"{node.name}.{node.nodes_in_topological_order[0].name}*" if isinstance(node, GraphDefinition)
                       else f"{node.name}*")
    for checks_def in defs.asset_checks or ():
        if any(int(spec.metadata.get(STEP_TAG, 0)) >= step for spec in checks_def.check_specs):
            queries.append(f"{_node_name(checks_def.node_def, 'asset check ' + str(checks_def))}*")
    return sorted(queries)


def summarize_run(result: Any, partition: str) -> int:
    """Print what materialized and every check result; return the exit code."""
    from dagster import DagsterEventType

    materialized, checks, failures = [], [], []
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialized.append(event.asset_key.to_user_string())
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            ev = event.event_specific_data
            status = "passed" if ev.passed else f"FAILED ({ev.severity.value})"
            desc = ev.description or ""
            checks.append(f"  {ev.asset_key.to_user_string()}:{ev.check_name}: {status} {desc}".rstrip())
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            from portfolio_assets.alerts import root_cause

            failures.append(f"  step {event.step_key}: {root_cause(event.event_specific_data.error)}")
    print(f"\npartition {partition}: {len(materialized)} asset(s) materialized")
    if checks:
        print("checks:")
        print("\n".join(checks))
    if failures:
        print("failed steps:")
        print("\n".join(failures))
    print(f"run id: {result.run_id} ({'success' if result.success else 'FAILURE'})")
    _deliver_alerts(result.run_id)
    return EXIT_OK if result.success else EXIT_FAILED


def _deliver_alerts(run_id: str) -> None:
    """Alerts for a run the CLI started, to the sinks of this command's resolved config (`--set`
    included; the daemon's sensors do the same for UI runs and find the sinks in the run's tag).
    Delivery is idempotent per alert and sink, so nothing is sent twice; what a sink did not take
    is printed and waits in the dead letter."""
    from dagster import DagsterInstance

    from portfolio_assets.alerts import AlertDeliveryError, deliver_run

    resolved = resolve(os.environ["PA_PROFILE"], cli_overrides=json.loads(os.environ.get("PA_CLI_OVERRIDES") or "{}"))
    with DagsterInstance.get() as instance:
        try:
            delivery = deliver_run(instance, run_id, resolved=resolved)
        except AlertDeliveryError as exc:
            _err(f"alert delivery failed: {exc}")
            return
    for alert in delivery.alerts:
        print(f"alert: {alert.text()}")
    report = delivery.report
    if report.sent or report.redelivered:
        sinks = sorted({sink for _, sink in report.sent + report.redelivered})
        print(f"alerts delivered to {', '.join(sinks)} (sinks from {delivery.sinks_from})"
              + (f"; {len(report.redelivered)} from the dead letter" if report.redelivered else ""))
    for line in report.problems():
        _err(f"alert delivery: {line}")


def clearance(partition: str) -> list[str]:
    """`implementation_clearance` of a partition now (the rule orders and accept follow)."""
    from dagster import DagsterInstance

    from portfolio_assets.assets.gates import implementation_clearance
    from portfolio_assets.resources import PortfolioSettings

    with DagsterInstance.get() as instance:
        return implementation_clearance(instance, PortfolioSettings(), partition)


def where_outputs(partition: str) -> None:
    """Print where a date's weights, orders, reports and ledger are (marking those not produced, and
    orders refused by `clearance` with the reasons), then a DuckDB `sql` example."""
    from portfolio_assets.lakehouse import Lakehouse

    lake = Lakehouse(profile=os.environ["PA_PROFILE"])
    orders = lake.table_path("implementation", "implementation_orders", partition)
    refused = clearance(partition) if orders.exists() else []
    print("outputs:")
    for label, path in (
        ("weights", lake.root / "allocation" / "target_weights" / f"{partition}.parquet"),
        ("orders", orders),
        ("reports", lake.reports_dir(partition) / "index.html"),
        ("ledger", lake.ledger_path(partition)),
    ):
        note = "" if path.exists() else "  (not produced)"
        if label == "orders" and refused:
            note = "  (REFUSED, no orders: " + "; ".join(refused) + ")"
        print(f"  {label:8s} {path}{note}")
    print(f"  query with DuckDB: portfolio-assets sql --profile {lake.profile} \"SELECT * FROM target_weights\"")
