"""`status`, `versions`, `sql` and `manifest-schema`: read-only looks at a profile and the code."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from portfolio_assets.cli.common import EXIT_FAILED, EXIT_OK, _err, _partition_date, _setup_env
from portfolio_assets.cli.execution import launcher_gone
from portfolio_assets.manifest import resolve


def cmd_status(args: argparse.Namespace) -> int:
    """Runs of a partition (ids for `run --start-step N --run-id ID`), each asset's latest
    materialization, the gate checks."""
    from dagster import AssetRecordsFilter, DagsterInstance, RunsFilter

    from portfolio_assets.assets.common import STEP_TAG
    from portfolio_assets.assets.gates import GATES, implementation_clearance, latest_evaluation
    from portfolio_assets.definitions import defs
    from portfolio_assets.lakehouse import Lakehouse
    from portfolio_assets.resources import PortfolioSettings

    resolved = _setup_env(args)
    partition = _partition_date(args.date)
    graph = defs.resolve_asset_graph()
    with DagsterInstance.get() as instance:
        print(f"profile {resolved.profile}, partition {partition}")
        runs = instance.get_run_records(RunsFilter(tags={"dagster/partition": partition}), limit=20)
        print("runs (newest first):" if runs else "runs: none")
        for rec in runs:
            run = rec.dagster_run
            started = dt.datetime.fromtimestamp(rec.create_timestamp.timestamp(), dt.UTC).isoformat(timespec="seconds")
            origin = (f", re-execution of {run.parent_run_id}" if run.parent_run_id else "") + (
                f", backfill {run.tags['dagster/backfill']}" if "dagster/backfill" in run.tags else "") + (
                f", selection of {len(run.asset_selection)} asset(s)" if run.asset_selection else "")
            gone = launcher_gone(run)
            killed = f" (its process {gone} is gone: killed; resume it with run --start-step N --run-id)" if gone else ""
            print(f"  {run.run_id}  {run.status.value:9s} {run.job_name} {started}{origin}{killed}")
        keys = sorted(graph.get_all_asset_keys(),
                      key=lambda k: (int(graph.get(k).tags.get(STEP_TAG, 99)), k.to_user_string()))
        missing = 0
        print("assets:")
        for key in keys:
            records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, asset_partitions=[partition]),
                                                      limit=1).records
            missing += not records and key.to_user_string() != "executions"
            when = dt.datetime.fromtimestamp(records[0].timestamp, dt.UTC).isoformat(timespec="seconds") if records else ""
            materialization = records[0].asset_materialization if records else None
            refused = materialization.metadata.get("refused") if materialization is not None else None
            note = f" (REFUSED: {refused.value})" if refused is not None else ""
            print(f"  {key.to_user_string():28s} {'materialized ' + when + note if records else 'not materialized'}")
        print("gate checks (latest evaluation for this partition):")
        failed = 0
        for check in GATES:
            ev = latest_evaluation(instance, check, partition)
            status = "never evaluated" if ev is None else (
                "passed" if ev.passed else f"FAILED ({ev.severity.value}): {ev.description or ''}")
            failed += ev is not None and not ev.passed
            print(f"  {check.to_user_string():34s} {status}")
        problems = implementation_clearance(instance, PortfolioSettings(), partition)
    print("implementation: " + ("cleared (every gate passed; ledger verified, sealed and anchored)" if not problems
                                else "REFUSED (no orders may be used or accepted): " + "; ".join(problems)))
    print(f"reports: {Lakehouse(profile=resolved.profile).reports_dir(partition) / 'index.html'}")
    return EXIT_OK if not missing and not failed and not problems else EXIT_FAILED


def cmd_versions(args: argparse.Namespace) -> int:
    """Every asset's code version; `--refresh` records the source snapshot the guard test reads."""
    from portfolio_assets import versions

    if args.refresh:
        print(f"wrote {versions.refresh_snapshot()}")
    for asset in sorted(versions.ASSETS):
        print(f"  {asset:24s} {versions.asset_code_version(asset)}")
    problems = versions.snapshot_problems()
    for problem in problems:
        _err(problem)
    return EXIT_FAILED if problems else EXIT_OK


def cmd_sql(args: argparse.Namespace) -> int:
    """`sql`: run a query over the profile's DuckDB views and print at most `--max-rows` rows; a failing
    query raises `ValueError` (exit 2)."""
    from portfolio_assets.lakehouse import Lakehouse

    resolved = resolve(args.profile)
    import duckdb

    con = Lakehouse(profile=resolved.profile).duckdb()
    try:
        frame = con.execute(args.query).fetchdf()
    except duckdb.Error as exc:
        raise ValueError(f"query failed: {exc}") from None
    print(frame.to_string(max_rows=args.max_rows))
    return EXIT_OK


def cmd_manifest_schema(args: argparse.Namespace) -> int:
    """`manifest-schema`: write the manifest's JSON schema to `configs/manifest.schema.json`, or with
    `--check` exit 1 if that file is out of date."""
    from portfolio_assets.manifest import DEFAULT_SCHEMA, json_schema

    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if args.check:
        if DEFAULT_SCHEMA.read_text() != text:
            _err(f"{DEFAULT_SCHEMA} is out of date: run `portfolio-assets manifest-schema`")
            return EXIT_FAILED
        print(f"{DEFAULT_SCHEMA} is up to date")
        return EXIT_OK
    DEFAULT_SCHEMA.write_text(text)
    print(f"wrote {DEFAULT_SCHEMA}")
    return EXIT_OK
