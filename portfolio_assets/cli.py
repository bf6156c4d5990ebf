"""`portfolio-assets`: run, resume, backfill, audit, recover, verify the ledger, status, UI, SQL, bench.

Exit codes: 0 ok; 1 a run or check failed (the reason is printed); 2 bad input (manifest, profile,
date, arguments).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from portfolio_assets.manifest import PROJECT_ROOT, ManifestError, parse_cli_overrides, resolve

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DAGSTER_YAML = PROJECT_ROOT / "configs" / "dagster.yaml"
GATE_CHECKS = ("history_500d:health_gate", "target_weights:weights_sanity", "audit_ledger:ledger_integrity")


def _err(msg: str) -> None:
    print(f"portfolio-assets: {msg}", file=sys.stderr)


def dagster_home() -> Path:
    """The persistent DAGSTER_HOME (env, else `<project>/.dagster_home`) with our dagster.yaml.

    A missing dagster.yaml is copied from `configs/dagster.yaml`. An existing one keeps its settings,
    but `telemetry: enabled: false` and `nux: enabled: false` (no onboarding pop-up) are merged into it
    when missing or different, and the change is reported on stderr (never a silently stale file).
    """
    import yaml

    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    tmp = target.with_name(f".dagster.yaml.{os.getpid()}.tmp")  # write-then-rename: readers never see half a file
    if not target.exists():
        shutil.copyfile(DAGSTER_YAML, tmp)
        os.replace(tmp, target)
    try:
        config = yaml.safe_load(target.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{target} is not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{target} must be a mapping of Dagster instance settings, not a {type(config).__name__}")
    fixed = []
    for section in ("telemetry", "nux"):
        current = config.get(section) if isinstance(config.get(section), dict) else {}
        if current.get("enabled") is not False:
            config[section] = {**current, "enabled": False}
            fixed.append(f"{section}.enabled")
    if fixed:
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(tmp, target)
        _err(f"updated {target}: set {', '.join(fixed)} to false (telemetry off, no onboarding pop-up)")
    os.environ["DAGSTER_HOME"] = str(home)
    _init_instance_storage(home)
    return home


def _init_instance_storage(home: Path) -> None:
    """Create the instance's SQLite storages once, under a file lock: two commands starting at the
    same moment on a fresh DAGSTER_HOME could otherwise both stamp the schema (two alembic heads,
    an unusable instance; dagster-io/dagster#27390)."""
    from dagster import DagsterInstance

    from portfolio_assets.lakehouse import file_lock

    marker = home / ".storage-initialized"
    if marker.exists():
        return
    with file_lock(marker):
        if not marker.exists():
            with DagsterInstance.get():
                pass
            marker.touch()


def _setup_env(args: argparse.Namespace) -> Any:
    """Resolve the profile once (clear errors before any Dagster work) and export it to steps."""
    overrides = parse_cli_overrides(getattr(args, "set", None) or [])
    resolved = resolve(args.profile, cli_overrides=overrides)
    os.environ["PA_PROFILE"] = resolved.profile
    os.environ["PA_CLI_OVERRIDES"] = json.dumps(overrides, sort_keys=True)
    dagster_home()
    return resolved


def _partition_date(text: str | None) -> str:
    from portfolio_assets.partitions import latest_closed_session, validate_partition_date

    if text is None:
        return latest_closed_session().isoformat()
    return validate_partition_date(text).isoformat()


def _selection_keys(selection: str | None, start_step: int | None) -> list[Any] | None:
    """Asset keys for a selection string (Dagster syntax, e.g. `risk_buckets+`) or a resume step."""
    from dagster import AssetKey, AssetSelection

    from portfolio_assets.assets.common import STEPS
    from portfolio_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    if start_step is not None:
        names = [name for step, keys in STEPS.items() if step >= start_step for name in keys]
        return [AssetKey(n) for n in names]
    if selection is None or selection == "*":
        return None
    # The runbook's `name+` means "name and everything downstream" (Dagster's own `+` is one layer;
    # its `name*` is the whole downstream): translate that one form, pass anything else through.
    if selection.endswith("+") and not selection.endswith("++") and "," not in selection and " " not in selection:
        selection = selection[:-1] + "*"
    keys = AssetSelection.from_string(selection).resolve(graph)
    if not keys:
        raise ValueError(f"selection {selection!r} matches no asset")
    return sorted(keys, key=lambda k: k.to_user_string())


def execute(partition: str, asset_keys: list[Any] | None, tags: dict[str, str] | None = None) -> Any:
    """Run the daily job (or a subset) for one partition on the persistent instance.

    The terminal shows one progress line per finished step and check (`progress` logger); Dagster's
    full event log goes to `<DAGSTER_HOME>/logs/cli-<time>.log` and to the UI's run page.
    `PA_LOG_LEVEL=DEBUG` (or INFO) streams Dagster's console log to the terminal instead.
    """
    from dagster import DagsterInstance, execute_job, reconstructable

    from portfolio_assets.definitions import get_daily_job

    level = os.environ.get("PA_LOG_LEVEL", "WARNING").upper()
    all_tags = {"dagster/partition": partition, "portfolio_assets/profile": os.environ["PA_PROFILE"], **(tags or {})}
    quiet = level not in ("DEBUG", "INFO")
    loggers = {"progress": {}} if quiet else {"console": {"config": {"log_level": level}}}
    log_path = dagster_home() / "logs" / f"cli-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
    saved = None
    if quiet:  # step processes inherit fd 2: Dagster's process-level messages go to the log file
        log_path.parent.mkdir(parents=True, exist_ok=True)
        sys.stderr.flush()
        saved, log_file = os.dup(2), open(log_path, "ab")  # noqa: SIM115 (closed in finally)
        os.dup2(log_file.fileno(), 2)
    try:
        with DagsterInstance.get() as instance:
            result = execute_job(
                reconstructable(get_daily_job), instance=instance, tags=all_tags, asset_selection=asset_keys,
                run_config={"loggers": loggers},
            )
    finally:
        if saved is not None:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log_file.close()
    if quiet:
        print(f"dagster log: {log_path}")
    return result


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


def where_outputs(partition: str) -> None:
    from portfolio_assets.lakehouse import Lakehouse

    lake = Lakehouse(profile=os.environ["PA_PROFILE"])
    print("outputs:")
    for label, path in (
        ("weights", lake.root / "allocation" / "target_weights" / f"{partition}.parquet"),
        ("orders", lake.root / "implementation" / "implementation_orders" / f"{partition}.parquet"),
        ("reports", lake.reports_dir(partition) / "index.html"),
        ("ledger", lake.ledger_path(partition)),
    ):
        print(f"  {label:8s} {path}{'' if path.exists() else '  (not produced)'}")
    print(f"  query with DuckDB: portfolio-assets sql --profile {lake.profile} \"SELECT * FROM target_weights\"")


def cmd_run(args: argparse.Namespace) -> int:
    resolved = _setup_env(args)
    if args.run_id and args.start_step is None:
        raise ValueError("--run-id is the runbook's resume id: use it with --start-step N")
    if args.start_step is not None:
        if not args.run_id:
            raise ValueError("--start-step needs --run-id YYYYMMDD-HHMMSS (the run being resumed)")
        partition = _resume_partition(args.run_id)
    else:
        partition = _partition_date(args.date)
    keys = _selection_keys(args.select, args.start_step)
    scope = "all assets" if keys is None else f"{len(keys)} asset(s)"
    print(f"profile {resolved.profile} ({' -> '.join(resolved.resolved_from)}), partition {partition}, {scope}")
    t0 = time.time()
    result = execute(partition, keys, {"portfolio_assets/resume_of": args.run_id} if args.run_id else None)
    code = summarize_run(result, partition)
    print(f"wall time {time.time() - t0:.1f} s")
    where_outputs(partition)
    return code


def _resume_partition(run_id: str) -> str:
    """`YYYYMMDD-HHMMSS` -> the trading date it names (validated)."""
    try:
        stamp = dt.datetime.strptime(run_id, "%Y%m%d-%H%M%S")
    except ValueError:
        raise ValueError(f"run id {run_id!r} is not YYYYMMDD-HHMMSS") from None
    return _partition_date(stamp.date().isoformat())


def cmd_backfill(args: argparse.Namespace) -> int:
    from portfolio_assets.partitions import master_sessions

    _setup_env(args)
    d1, d2 = _partition_date(args.date_from), _partition_date(args.date_to)
    dates = [d.date().isoformat() for d in master_sessions(d1, d2)]
    keys = _selection_keys(args.select, None)
    print(f"backfill {len(dates)} trading date(s) {d1}..{d2}, selection {args.select or '*'}")
    codes, t0 = [], time.time()
    for i, partition in enumerate(dates, 1):
        t1 = time.time()
        result = execute(partition, keys, {"portfolio_assets/backfill": f"{d1}..{d2}"})
        print(f"[{i}/{len(dates)}] {partition}: {'ok' if result.success else 'FAILED'} in {time.time() - t1:.1f} s")
        if not result.success:
            summarize_run(result, partition)
        codes.append(EXIT_OK if result.success else EXIT_FAILED)
    print(f"backfill wall time {time.time() - t0:.1f} s; {codes.count(EXIT_OK)}/{len(codes)} succeeded")
    return max(codes, default=EXIT_OK)


def cmd_verify_ledger(args: argparse.Namespace) -> int:
    from portfolio_assets.ledger import format_report, signer_from_env, verify_ledger

    path = Path(args.path)
    if path.is_dir():
        path = path / "audit.jsonl"
    if not path.exists():
        raise ValueError(f"no ledger at {path}")
    root = Path(args.root) if args.root else _guess_profile_root(path)
    report = verify_ledger(path, root=root, signer=signer_from_env(), require_signatures=args.require_signatures or None)
    print(format_report(report))
    return EXIT_OK if report.ok else EXIT_FAILED


def _guess_profile_root(path: Path) -> Path | None:
    """`<root>/<profile>/ledger/<date>/audit.jsonl` -> `<root>/<profile>`."""
    parts = path.resolve().parts
    if len(parts) >= 4 and parts[-3] == "ledger":
        return Path(*parts[:-3])
    return None


def cmd_status(args: argparse.Namespace) -> int:
    from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, DagsterInstance

    from portfolio_assets.definitions import defs
    from portfolio_assets.lakehouse import Lakehouse

    resolved = _setup_env(args)
    partition = _partition_date(args.date)
    instance = DagsterInstance.get()
    print(f"profile {resolved.profile}, partition {partition}")
    missing = 0
    from portfolio_assets.assets.common import STEPS

    order = {name: (step, i) for step, names in STEPS.items() for i, name in enumerate(names)}
    keys = sorted(defs.resolve_asset_graph().get_all_asset_keys(),
                  key=lambda k: (order.get(k.to_user_string(), (99, 0)), k.to_user_string()))
    for key in keys:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
        ).records
        missing += not records
        when = dt.datetime.fromtimestamp(records[0].timestamp, dt.UTC).isoformat(timespec="seconds") if records else ""
        print(f"  {key.to_user_string():24s} {'materialized ' + when if records else 'not materialized'}")
    print("gate checks (latest evaluation for this partition):")
    failed = 0
    for check in GATE_CHECKS:
        asset, name = check.split(":")
        status = "never evaluated"
        for ex in instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(AssetKey(asset), name), limit=50
        ):
            ev = ex.event.dagster_event.event_specific_data if ex.event and ex.event.dagster_event else None
            if ev is not None and getattr(ev, "partition", None) in (partition, None):
                status = "passed" if ev.passed else f"FAILED ({ev.severity.value}): {ev.description or ''}"
                failed += not ev.passed
                break
        print(f"  {check:34s} {status}")
    print(f"reports: {Lakehouse(profile=resolved.profile).reports_dir(partition) / 'index.html'}")
    return EXIT_OK if not missing and not failed else EXIT_FAILED


def cmd_audit(args: argparse.Namespace) -> int:
    """Run the blocking gate checks for a partition; non-zero on any failure (never implement then)."""
    from dagster import DagsterInstance, execute_job, reconstructable

    from portfolio_assets.definitions import get_audit_job

    _setup_env(args)
    partition = _partition_date(args.date)
    result = execute_job(
        reconstructable(get_audit_job), instance=DagsterInstance.get(),
        tags={"dagster/partition": partition, "portfolio_assets/profile": os.environ["PA_PROFILE"]},
    )
    return summarize_run(result, partition)


def cmd_recover(args: argparse.Namespace) -> int:
    from dagster import AssetKey

    _setup_env(args)
    partition = _partition_date(args.date)
    result = execute(partition, [AssetKey("history_500d")], {"portfolio_assets/recover": "true"})
    return summarize_run(result, partition)


def cmd_accept(args: argparse.Namespace) -> int:
    from portfolio_assets.holdings import accept_implementation
    from portfolio_assets.lakehouse import Lakehouse

    resolved = _setup_env(args)
    partition = _partition_date(args.date)
    lake = Lakehouse(profile=resolved.profile)
    if not lake.has_table("implementation", "implementation_orders", partition):
        raise ValueError(f"no implementation_orders for {partition} in profile {resolved.profile}: nothing to accept")
    held = accept_implementation(lake, partition)
    print(f"accepted {partition}: {len(held)} holding(s) are now the current book ({lake.state_path('holdings.parquet')})")
    return EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    """`dagster dev` (webserver + daemon) on the persistent DAGSTER_HOME, loading `workspace.yaml`
    (the same code location name as `pyproject.toml`).

    `dagster dev` runs in its own session: Ctrl-C or SIGTERM reach only this process, which forwards
    one SIGINT, so `dagster dev`'s clean shutdown of the webserver and the daemon is never cut short
    by a second signal. A second Ctrl-C kills the whole `dagster dev` process group.
    """
    import signal

    resolved = _setup_env(args)  # resolves the profile and prepares DAGSTER_HOME (dagster_home())
    home = Path(os.environ["DAGSTER_HOME"])
    exe = Path(sys.executable).with_name("dagster")
    cmd = [str(exe if exe.exists() else shutil.which("dagster") or exe), "dev", "-h", args.host,
           "-p", str(args.port), "-w", str(PROJECT_ROOT / "workspace.yaml")]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        _err(f"warning: --host {args.host} exposes the UI (no authentication) beyond this machine")
    print(f"Dagster UI on http://{args.host}:{args.port} (profile {resolved.profile}, DAGSTER_HOME {home})",
          flush=True)
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env={**os.environ, "DAGSTER_HOME": str(home)},
                            start_new_session=True)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it like Ctrl-C
    try:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            _err("stopping the Dagster webserver and daemon (Ctrl-C again to kill them)")
            proc.send_signal(signal.SIGINT)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_sql(args: argparse.Namespace) -> int:
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


def cmd_bench(args: argparse.Namespace) -> int:
    from portfolio_assets.bench import main as bench_main

    return bench_main(args)


def cmd_import_closes(args: argparse.Namespace) -> int:
    """A CSV of closes (+ optional universe CSV) into the files-source layout (docs/real-data.md)."""
    from portfolio_assets.sources.files_export import export_closes, read_closes_csv, read_universe_csv

    closes = read_closes_csv(Path(args.csv))
    universe = read_universe_csv(Path(args.universe)) if args.universe else None
    dest = export_closes(closes, Path(args.dest), universe)
    counts = closes.notna().sum()
    classes = "every symbol an equity (no --universe)" if universe is None else "universe.csv from --universe"
    print(f"wrote {len(counts)} symbol(s), {int(counts.sum())} bars ({closes.index[0]} .. {closes.index[-1]}) "
          f"to {dest / 'bars'}; {classes}")
    print("closes only: open = high = low = close, volume unknown (liquidity filters are skipped and recorded)")
    print("run on it (D: a trading date your data covers): portfolio-assets run --date D "
          f"--set source.kind=files --set source.settings.path={shlex.quote(str(dest))}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="portfolio-assets", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, date: bool = True) -> None:
        sp.add_argument("--profile", help="manifest profile (default: PA_PROFILE or the manifest's default)")
        sp.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a setting (JSON value)")
        if date:
            sp.add_argument("--date", help="trading date YYYY-MM-DD (default: the latest closed XNYS session)")

    r = sub.add_parser("run", help="materialize the graph for one trading date (or resume from a step)")
    common(r)
    r.add_argument("--select", help="asset selection: 'NAME+' = NAME and everything downstream; any other "
                                    "Dagster selection string is passed through (default: everything)")
    r.add_argument("--start-step", type=int, help="resume: re-run the assets of steps >= N plus implementation")
    r.add_argument("--run-id", help="resume id YYYYMMDD-HHMMSS (its date is the partition)")
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("backfill", help="re-materialize a selection for every trading date in a range")
    common(b, date=False)
    b.add_argument("--from", dest="date_from", required=True)
    b.add_argument("--to", dest="date_to", required=True)
    b.add_argument("--select", help="'NAME+' = NAME and everything downstream, or a Dagster selection string")
    b.set_defaults(func=cmd_backfill)

    v = sub.add_parser("verify-ledger", help="verify an audit.jsonl (links, hashes, pairing, files, signatures)")
    v.add_argument("path")
    v.add_argument("--root", help="profile root that output paths are relative to (default: inferred)")
    v.add_argument("--require-signatures", action="store_true")
    v.set_defaults(func=cmd_verify_ledger)

    s = sub.add_parser("status", help="what is materialized for a date, gate results, where reports are")
    common(s)
    s.set_defaults(func=cmd_status)

    a = sub.add_parser("audit", help="run the blocking gate checks for a date; non-zero on any failure")
    common(a)
    a.set_defaults(func=cmd_audit)

    rc = sub.add_parser("recover", help="re-run history recovery and the health gate for a date")
    common(rc)
    rc.set_defaults(func=cmd_recover)

    ac = sub.add_parser("accept", help="accept a date's orders as executed: they become the current holdings")
    common(ac)
    ac.set_defaults(func=cmd_accept)

    u = sub.add_parser("ui", help="start the Dagster UI (and daemon) on 127.0.0.1")
    common(u, date=False)
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=3000)
    u.set_defaults(func=cmd_ui)

    q = sub.add_parser("sql", help="run SQL over every stored asset (DuckDB views)")
    q.add_argument("--profile")
    q.add_argument("query")
    q.add_argument("--max-rows", type=int, default=60)
    q.set_defaults(func=cmd_sql)

    m = sub.add_parser("manifest-schema", help="write (or --check) configs/manifest.schema.json")
    m.add_argument("--check", action="store_true")
    m.set_defaults(func=cmd_manifest_schema)

    ic = sub.add_parser("import-closes", help="convert a CSV of closes into the files source's layout")
    ic.add_argument("csv", help="first column a date, one column per EXCHANGE:TICKER symbol")
    ic.add_argument("dest", help="the directory to write (bars/ and universe.csv)")
    ic.add_argument("--universe", help="CSV: symbol, asset_class, calendar, sector, industry, description, "
                                       "currency, direction (default: every symbol an equity on XNYS)")
    ic.set_defaults(func=cmd_import_closes)

    be = sub.add_parser("bench", help="time the stages and compare with reference implementations")
    be.add_argument("--quick", action="store_true", help="smaller scale universes, no Dagster sections")
    be.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown to PATH")
    be.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ManifestError as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    except ValueError as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
