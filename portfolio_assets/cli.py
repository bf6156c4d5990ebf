"""`portfolio-assets`: run, re-execute, backfill, stale, accept, audit, status, UI, SQL, versions, bench.

Exit codes: 0 ok; 1 a run or check failed (the reason is printed); 2 bad input (manifest, profile,
date, selection, run id, arguments, a missing signing key, a partition another command is
writing), refused before Dagster is involved; 3 `verify-ledger` of a ledger that a live run is
still writing ("in progress", not a failure); 4 (`verify-ledger`) every check that could run
passed but the ledger is signed and no key was configured to check the signatures.

Selections (`--select`) are Dagster's asset selection syntax, as in the UI (`risk_buckets+` is one
layer downstream, `risk_buckets*` or `risk_buckets+++` all of it); the only addition, Dagster's own
rule for steps that compute several tables at once, is that selecting one table of such a step
selects all of them (`AssetSelection.required_multi_asset_neighbors`).
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

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_IN_PROGRESS, EXIT_SIGNATURES_UNCHECKED = 0, 1, 2, 3, 4
DAGSTER_YAML = PROJECT_ROOT / "configs" / "dagster.yaml"
PROFILE_TAG = "portfolio_assets/profile"


def _err(msg: str) -> None:
    print(f"portfolio-assets: {msg}", file=sys.stderr)


def dagster_home() -> Path:
    """The persistent Dagster instance of the profile in `PA_PROFILE`: `<base>/profiles/<profile>`,
    base = DAGSTER_HOME (env, else `<project>/.dagster_home`), so the UI, `status` and every run of a
    profile see only that profile's runs and materializations (one instance per profile; the asset
    keys stay those of the one code location). Without `PA_PROFILE`, the base itself.

    The base's dagster.yaml (a missing one is copied from `configs/dagster.yaml`; an existing one keeps
    its settings, but `telemetry: enabled: false` and `nux: enabled: false` (no onboarding pop-up) are
    merged into it when missing or different, and the change is reported on stderr) is the settings
    file of every profile's instance (copied into it when different).
    """
    given = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home").resolve()
    # A process that already chose its profile's instance (or a child of one) names the base's child.
    base = given.parent.parent if given.parent.name == PROFILES_DIR else given
    _prepare_home(base)
    profile = os.environ.get("PA_PROFILE")
    home = base
    if profile:
        from portfolio_assets.manifest import PROFILE_RE

        if not PROFILE_RE.fullmatch(profile):
            raise ValueError(f"invalid profile name {profile!r}")
        home = base / PROFILES_DIR / profile
        home.mkdir(parents=True, exist_ok=True)
        settings = (base / "dagster.yaml").read_bytes()
        target = home / "dagster.yaml"
        if not target.exists() or target.read_bytes() != settings:
            tmp = target.with_name(f".dagster.yaml.{os.getpid()}.tmp")
            tmp.write_bytes(settings)
            os.replace(tmp, target)
    os.environ["DAGSTER_HOME"] = str(home)
    # `telemetry: enabled: false` does not stop the daemon's upload thread (it reads this variable):
    # every daemon, webserver and code server this command starts inherits it.
    os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"
    _init_instance_storage(home)
    return home


PROFILES_DIR = "profiles"


def _prepare_home(home: Path) -> None:
    """`home`/dagster.yaml: created from the template, telemetry and nux merged in (reported)."""
    import yaml

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


def check_history(partition: str) -> None:
    """Refuse, before any run, a date the source cannot serve with enough history: the baseline's
    bars must cover the 500-session history window (+1 session for the first return). The regime's
    warm-up before that window is read as far as the source has it (`market_regime` records how many
    baseline sessions it used; a short warm-up leaves the 3-year reference undefined, not wrong)."""
    from portfolio_assets.fetch import window_bounds
    from portfolio_assets.partitions import sessions_window
    from portfolio_assets.resources import PortfolioSettings
    from portfolio_assets.sources.base import SourceError

    settings = PortfolioSettings()
    cfg = settings.resolved().config
    sessions = cfg.data.lookback_history + 1
    window = sessions_window(partition, sessions)
    start, end = window_bounds(window)
    baseline = cfg.selection.baseline
    try:
        bars = settings.source().bars(baseline, start, end)
    except SourceError as exc:
        raise ValueError(f"partition {partition}: the source cannot serve the baseline {baseline}: {exc}") from None
    first = _first_day(bars)
    if first is None or first > window[0].date():
        raise ValueError(
            f"partition {partition} needs {sessions} sessions of history from {window[0].date()}; the source "
            f"({cfg.source.kind}) serves {baseline} from {first or 'no date at all'}")


def _first_day(bars: Any) -> dt.date | None:
    import pandas as pd

    if bars is None or len(bars) == 0:
        return None
    return pd.to_datetime(bars["time"], utc=True).min().date()


def _date_range(date_from: str, date_to: str) -> list[str]:
    """The trading dates D1..D2 (both validated; D1 <= D2)."""
    from portfolio_assets.partitions import master_sessions

    d1, d2 = _partition_date(date_from), _partition_date(date_to)
    if d1 > d2:
        raise ValueError(f"--from {d1} is after --to {d2}")
    return [d.date().isoformat() for d in master_sessions(d1, d2)]


def _log_path(kind: str) -> Path:
    """A log file under `DAGSTER_HOME/cli-logs/` (not `logs/`: Dagster's daemon treats that folder
    as its telemetry outbox and moves it away)."""
    path = dagster_home() / "cli-logs" / f"{kind}-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def check_preconditions(resolved: Any) -> None:
    """What a run needs before anything is touched (archived, cleared, written): a signing key when
    the profile signs its ledger (`ledger.signing`), well-formed key variables."""
    from portfolio_assets.ledger import signer_from_env

    signer = signer_from_env()  # a malformed key variable is refused here, naming the variable
    signing = resolved.config.ledger.signing
    if resolved.config.features.feat_audit_ledger and signing != "none" and signer is None:
        raise ValueError(f"profile {resolved.profile!r} signs its ledger ({signing}) but no key is set: export "
                         "PA_LEDGER_HMAC_KEY or PA_LEDGER_ED25519_KEY (nothing was run, archived or changed)")


WRITER_LOCK = "writer.lock"


def _running_runs(partition: str) -> list[str]:
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    if not os.environ.get("DAGSTER_HOME"):  # every command sets it (dagster_home()) before locking
        return []
    with DagsterInstance.get() as instance:
        records = instance.get_run_records(RunsFilter(
            tags={"dagster/partition": partition},
            statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.QUEUED]), limit=5)
    return [r.dagster_run.run_id for r in records]


class partition_lock:  # noqa: N801 (a context manager used like a function)
    """One writer per partition: an exclusive `fcntl` lock on `<profile>/ledger/<date>/writer.lock`
    for every partition a command materializes, taken before anything is run and held until the
    command ends (the kernel releases it if the process dies, kill -9 included). A second `run`,
    `backfill`, `accept` or `audit` of a locked partition is refused up front, naming the holder
    and its Dagster runs; nothing is archived or changed."""

    def __init__(self, partitions: list[str], command: str):
        from portfolio_assets.lakehouse import Lakehouse

        self.lake = Lakehouse(profile=os.environ["PA_PROFILE"])
        self.partitions = partitions
        self.command = command
        self.fds: list[int] = []

    def __enter__(self) -> partition_lock:
        import fcntl
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = len(self.partitions) + 512  # one descriptor per locked partition, and room for the run
        if soft != resource.RLIM_INFINITY and soft < wanted:
            if hard != resource.RLIM_INFINITY and hard < wanted:
                raise ValueError(f"locking {len(self.partitions)} partitions needs {wanted} open files, the limit is "
                                 f"{hard}: split the range")
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        try:
            for partition in self.partitions:
                path = self.lake.ledger_path(partition).with_name(WRITER_LOCK)
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
                    os.close(fd)
                    runs = _running_runs(partition)
                    raise ValueError(
                        f"partition {partition} of profile {self.lake.profile} is being written by another command "
                        f"({holder}){'; its run(s): ' + ', '.join(runs) if runs else ''}: wait for it to finish "
                        f"(`portfolio-assets status --date {partition}`); nothing was run, archived or changed"
                    ) from None
                self.fds.append(fd)
                info = json.dumps({"pid": os.getpid(), "command": self.command,
                                   "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
                os.ftruncate(fd, 0)
                os.pwrite(fd, info.encode(), 0)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        for fd in self.fds:
            os.close(fd)  # closing the descriptor releases the lock
        self.fds = []


# ---- selections ------------------------------------------------------------------------------------
def selection_keys(selection: str | None) -> list[Any]:
    """Asset keys of a Dagster selection string within the daily job (default: the whole daily
    graph), widened to whole multi-table steps; a one-line error for a bad or empty selection."""
    from dagster import AssetSelection

    from portfolio_assets.definitions import defs
    from portfolio_assets.jobs import DAILY_SELECTION

    graph = defs.resolve_asset_graph()
    if selection is None:
        chosen = DAILY_SELECTION
    else:
        if not selection.strip():
            raise ValueError("--select is empty")
        try:
            chosen = AssetSelection.from_string(selection)
            keys = chosen.resolve(graph)
        except Exception as exc:  # Dagster's parser raises several types; the message is what matters
            raise ValueError(f"--select {selection!r}: {str(exc).splitlines()[0]}") from None
        if not keys:
            raise ValueError(f"--select {selection!r} matches no asset")
    keys = (chosen | chosen.required_multi_asset_neighbors()).resolve(graph)
    return sorted(keys, key=lambda k: k.to_user_string())


def missing_upstream(instance: Any, keys: list[Any], partitions: list[str]) -> list[str]:
    """`asset@partition` of every upstream partition outside the selection that Dagster has no
    materialization of (the book's own chain is checked by `holdings`' rule)."""
    from portfolio_assets.assets.implementation import missing_book
    from portfolio_assets.definitions import defs
    from portfolio_assets.lakehouse import Lakehouse

    graph = defs.resolve_asset_graph()
    selected = set(keys)
    missing = []
    # Upstream of the selection, and on upward through every asset that is missing a partition (its
    # own inputs must then be there too), so that materializing what is listed is enough.
    frontier, seen = {p for k in keys for p in graph.get(k).parent_keys} - selected, set()
    while frontier:
        parent = frontier.pop()
        seen.add(parent)
        if parent.to_user_string() == "executions":  # optional: a session nobody traded has none
            continue  # (holdings' own chain, the previous session's book, is checked below)
        have = instance.get_materialized_partitions(parent)
        lacking = [f"{parent.to_user_string()}@{p}" for p in partitions if p not in have]
        if lacking:
            missing += lacking
            frontier |= set(graph.get(parent).parent_keys) - selected - seen
    missing.sort()
    holdings = [k for k in keys if k.to_user_string() == "holdings"]
    if holdings and partitions:
        from portfolio_assets.partitions import master_sessions

        first = partitions[0]
        before = master_sessions(end=first)
        previous = before[-2].date().isoformat() if len(before) > 1 else None
        lake = Lakehouse(profile=os.environ["PA_PROFILE"])
        stored = lake.stored_partitions("implementation", "holdings")
        if previous and previous not in stored and missing_book(stored, first, previous):
            missing.append(f"holdings@{previous}")
    return missing


def missing_upstream_message(missing: list[str], profile: str, selection: str | None) -> str:
    """One line: the missing upstream partitions per asset, and the backfill that materializes
    them first (their assets, widened to whole steps by the CLI, over the dates they miss)."""
    by_asset: dict[str, list[str]] = {}
    for item in missing:
        asset, part = item.rsplit("@", 1)
        by_asset.setdefault(asset, []).append(part)
    # One table of a multi-table step names the whole step (the CLI selects all of its tables).
    steps = sorted({a for a in by_asset if a.split("__")[0] == a or a.split("__")[0] not in by_asset})
    parts = sorted({p for ps in by_asset.values() for p in ps})
    by_dates: dict[tuple[str, ...], list[str]] = {}
    for asset in steps:
        by_dates.setdefault(tuple(sorted(by_asset[asset])), []).append(asset)
    listed = "; ".join(f"{', '.join(assets)} at {', '.join(dates)}" for dates, assets in sorted(by_dates.items()))
    first = (f"portfolio-assets backfill --profile {profile} --from {parts[0]} --to {parts[-1]} "
             f"--select {shlex.quote(' or '.join(f'key:{a}' for a in steps))}")
    return (f"upstream partitions outside --select {selection!r} are not materialized: {listed}. "
            f"Materialize them first: {first}")


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


def _launcher_tag() -> dict[str, str]:
    import socket

    return {LAUNCHER_TAG: f"{socket.gethostname()}:{os.getpid()}"}


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


def runbook_steps() -> list[int]:
    """The runbook step numbers of the daily graph's assets (their `runbook/step` tags), sorted."""
    from portfolio_assets.assets.common import STEP_TAG
    from portfolio_assets.definitions import defs
    from portfolio_assets.jobs import DAILY_SELECTION

    daily = DAILY_SELECTION.resolve(defs.resolve_asset_graph())
    steps = {int(spec.tags[STEP_TAG]) for assets_def in defs.assets for spec in assets_def.specs
             if STEP_TAG in spec.tags and spec.key in daily}
    steps |= {int(spec.metadata[STEP_TAG]) for checks_def in defs.asset_checks for spec in checks_def.check_specs
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
    for assets_def in defs.assets:
        steps = [int(spec.tags[STEP_TAG]) for spec in assets_def.specs if STEP_TAG in spec.tags]
        if not steps or min(steps) < step or not assets_def.keys <= daily:
            continue
        node = assets_def.node_def
        # A graph-backed asset's steps are its ops: select from its first op on.
        queries.append(f"{node.name}.{node.nodes_in_topological_order[0].name}*" if isinstance(node, GraphDefinition)
                       else f"{node.name}*")
    for checks_def in defs.asset_checks:
        if any(int(spec.metadata.get(STEP_TAG, 0)) >= step for spec in checks_def.check_specs):
            queries.append(f"{checks_def.node_def.name}*")
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


def cmd_run(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from portfolio_assets.jobs import DAILY_JOB

    resolved = _setup_env(args)
    if (args.run_id is None) != (args.start_step is None):
        raise ValueError("--start-step N and --run-id ID go together: re-execute run ID from step N "
                         "(`portfolio-assets status` lists a partition's run ids)")
    t0 = time.time()
    if args.run_id is not None:
        if args.date or args.select:
            raise ValueError("a re-execution takes its partition and steps from --run-id and --start-step; "
                             "drop --date/--select")
        known = runbook_steps()
        if args.start_step not in known:
            raise ValueError(f"--start-step {args.start_step}: not a runbook step; the daily graph's steps are "
                             f"{', '.join(map(str, known))}")
        steps = start_step_selection(args.start_step)
        with DagsterInstance.get() as instance:
            parent = instance.get_run_by_id(args.run_id)
            gone = launcher_gone(parent) if parent is not None else None
            if gone is not None:  # killed mid-run: record it as failed in Dagster, then it can be resumed
                instance.report_run_failed(parent, f"the process that ran it (pid {gone}) is gone: killed")
                parent = instance.get_run_by_id(args.run_id)
                print(f"run {args.run_id} was killed (its process {gone} is gone): marked FAILURE in Dagster")
        if parent is None:
            raise ValueError(f"--run-id {args.run_id}: no such run in {os.environ['DAGSTER_HOME']} "
                             f"(`portfolio-assets status --date D` lists a partition's runs)")
        if parent.job_name != DAILY_JOB or "dagster/partition" not in parent.tags:
            raise ValueError(f"--run-id {args.run_id} is a run of {parent.job_name!r}, not of the daily graph")
        if not parent.is_finished:
            raise ValueError(f"--run-id {args.run_id} is still {parent.status.value}: wait for it to finish")
        if parent.asset_selection:  # Dagster re-executes only steps of the parent's own plan
            raise ValueError(f"--run-id {args.run_id} ran a selection of {len(parent.asset_selection)} asset(s), not "
                             f"the daily graph: resume a run of the whole graph (`portfolio-assets status --date "
                             f"{parent.tags['dagster/partition']}` marks selections) or run --select again")
        partition = parent.tags["dagster/partition"]
        check_preconditions(resolved)
        with partition_lock([partition], f"run --start-step {args.start_step} --run-id {args.run_id}"):
            print(f"profile {resolved.profile}, partition {partition}: re-executing run {args.run_id} "
                  f"from step {args.start_step} ({', '.join(steps)})")
            result = reexecute(args.run_id, partition, steps)
    else:
        partition = _partition_date(args.date)
        keys = selection_keys(args.select) if args.select else None
        check_history(partition)
        check_preconditions(resolved)
        scope = "the daily graph" if keys is None else f"{len(keys)} asset(s)"
        with partition_lock([partition], f"run --date {partition}" + (f" --select {args.select}" if args.select else "")):
            print(f"profile {resolved.profile} ({' -> '.join(resolved.resolved_from)}), partition {partition}, {scope}")
            result = execute(partition, keys)
    code = summarize_run(result, partition)
    print(f"wall time {time.time() - t0:.1f} s")
    where_outputs(partition)
    return code


STALE_ROUNDS = 10  # rounds of `backfill --stale` before giving up (the graph is ~15 steps deep)


def cmd_backfill(args: argparse.Namespace) -> int:
    """A Dagster partition backfill, run to completion (see `backfills.py`). With `--stale`: what
    Dagster reports stale in the range, round after round (an asset re-materialized with new data
    makes its children stale in turn) until nothing is stale."""
    from dagster import DagsterInstance

    from portfolio_assets import backfills

    resolved = _setup_env(args)
    dates = _date_range(args.date_from, args.date_to)
    log = _log_path("backfill")
    title = f"{resolved.profile} {dates[0]}..{dates[-1]}"
    if args.stale and args.select:
        raise ValueError("--stale re-materializes what Dagster reports stale: drop --select")
    keys = selection_keys(args.select)  # a bad selection is refused before the source is read
    check_history(dates[0])
    check_preconditions(resolved)
    with partition_lock(dates, f"backfill {dates[0]}..{dates[-1]}"), DagsterInstance.get() as instance:
        if not args.stale:
            missing = missing_upstream(instance, keys, dates)
            if missing:
                raise ValueError(missing_upstream_message(missing, resolved.profile, args.select))
            return _backfill(instance, {k.to_user_string(): dates for k in keys}, dates, title, log)
        for round_ in range(1, STALE_ROUNDS + 1):
            pairs = backfills.stale_pairs(_materialized(instance, selection_keys(None), dates), log)
            if not pairs:
                print(f"nothing is stale in {dates[0]}..{dates[-1]}")
                return EXIT_OK
            targets: dict[str, list[str]] = {}
            for asset, part, _ in pairs:
                targets.setdefault(asset, []).append(part)
            code = _backfill(instance, targets, sorted({p for _, p, _ in pairs}), f"{title} (stale, round {round_})", log)
            if code != EXIT_OK:
                return code
    raise RuntimeError(f"still stale after {STALE_ROUNDS} rounds of backfill --stale")


def _backfill(instance: Any, targets: dict[str, list[str]], partitions: list[str], title: str, log: Path) -> int:
    from portfolio_assets import backfills

    print(f"backfill {len(partitions)} partition(s) x {len(targets)} asset(s), {title}; log: {log}")
    with backfills.BackfillDaemon(instance, log) as daemon:
        if daemon.started is not None:
            print(f"no dagster-daemon running: started one for this backfill (pid {daemon.started.pid})")
        backfill_id = backfills.launch_backfill(targets, _launch_tags(), title, log)
        print(f"backfill {backfill_id} submitted (the UI's backfills page shows it; Ctrl-C cancels it)")
        t0 = time.time()
        try:
            progress = backfills.watch_backfill(instance, backfill_id, partitions, print, daemon)
        except KeyboardInterrupt:
            _err(f"canceling backfill {backfill_id} ...")
            backfills.cancel_backfill(backfill_id, log)
            progress = backfills.watch_backfill(instance, backfill_id, partitions, print, daemon)
            print(f"backfill {backfill_id} canceled: {len(progress.succeeded)}/{len(partitions)} partition(s) succeeded")
            return EXIT_FAILED
    print(f"backfill {backfill_id}: {len(progress.succeeded)}/{len(partitions)} partition(s) succeeded in "
          f"{time.time() - t0:.1f} s" + (f"; failed: {', '.join(progress.failed)}" if progress.failed else ""))
    return EXIT_OK if not progress.failed and len(progress.succeeded) == len(partitions) else EXIT_FAILED


def _materialized(instance: Any, keys: list[Any], dates: list[str]) -> dict[str, list[str]]:
    """`{asset: [partitions in dates with a materialization]}` (stale status applies to those)."""
    wanted = set(dates)
    out = {}
    for key in keys:
        have = sorted(instance.get_materialized_partitions(key) & wanted)
        if have:
            out[key.to_user_string()] = have
    return out


def cmd_stale(args: argparse.Namespace) -> int:
    """List the (asset, partition) pairs Dagster reports stale, with their root cause."""
    from dagster import DagsterInstance

    from portfolio_assets import backfills

    _setup_env(args)
    log = _log_path("stale")
    with DagsterInstance.get() as instance:
        if args.date_from or args.date_to:
            dates = _date_range(args.date_from or args.date_to, args.date_to or args.date_from)
        else:
            dates = sorted(instance.get_materialized_partitions(_key("run_manifest")))
        if args.check_market_data and dates:
            print(f"re-fingerprinting the source's bars (market_bars) for {len(dates)} partition(s) ...")
            for day in dates:
                with partition_lock([day], f"stale --check-market-data ({day})"):
                    result = execute(day, [_key("market_bars")], {"portfolio_assets/check": "market_data"})
                if not result.success:
                    return summarize_run(result, day)
        pairs = backfills.stale_pairs(_materialized(instance, selection_keys(None), dates), log)
    for asset, part, why in pairs:
        print(f"{part}  {asset:28s} {why}")
    print(f"{len(pairs)} stale (asset, partition) pair(s) in {len(dates)} partition(s)"
          + (f"; re-materialize them: portfolio-assets backfill --stale --from {dates[0]} --to {dates[-1]}"
             if pairs else ""))
    return EXIT_OK


def _key(name: str) -> Any:
    from dagster import AssetKey

    return AssetKey(name)


def cmd_verify_ledger(args: argparse.Namespace) -> int:
    from portfolio_assets.ledger import (
        LedgerError,
        format_report,
        read_anchor,
        signer_from_env,
        verify_ledger,
    )

    path = Path(args.path)
    if path.is_dir():
        path = path / "audit.jsonl"
    if not path.exists():
        raise ValueError(f"no ledger at {path}")
    root = Path(args.root) if args.root else _guess_profile_root(path)
    partition, profile = _path_binding(path)
    if args.no_anchor:
        anchor = None
    else:
        try:
            anchor = read_anchor(path)
        except LedgerError as exc:
            anchor = {"invalid": str(exc)}
    report = verify_ledger(path, root=root, signer=signer_from_env(), require_signatures=args.require_signatures or None,
                           partition=partition, profile=profile, anchor=anchor, require_anchor=not args.no_anchor)
    print(format_report(report))
    if not report.ok:
        live = _runs_still_writing(path)
        if live:
            print(f"in progress: run(s) {', '.join(live)} still writing this ledger (Dagster: not finished, their "
                  f"process alive); verify again when they end")
            return EXIT_IN_PROGRESS
        return EXIT_FAILED
    if report.signatures_unchecked and not args.no_signatures:
        _err(f"signatures not checked: {report.signed} of {report.n_records} record(s) are signed but no key is "
             "configured (PA_LEDGER_HMAC_KEY, or PA_LEDGER_ED25519_PUBLIC_KEY to verify without the secret); without "
             "it a re-chained forgery passes every other check (docs/ledger.md). --no-signatures accepts that.")
        return EXIT_SIGNATURES_UNCHECKED
    return EXIT_OK


def _runs_still_writing(path: Path) -> list[str]:
    """Run ids named in the ledger at `path` that Dagster has not seen finish and whose process is
    not known to be gone (a killed run is not "in progress"). Empty without a Dagster home."""
    import json as json_

    ids = []
    with path.open() as fh:
        for line in fh:
            try:
                run_id = json_.loads(line).get("run_id")
            except ValueError:
                continue  # a torn last line: the verifier reports it
            if run_id and run_id not in ids:
                ids.append(run_id)
    if not ids or not (os.environ.get("DAGSTER_HOME") or (PROJECT_ROOT / ".dagster_home").exists()):
        return []
    from dagster import DagsterInstance

    _, profile = _path_binding(path)
    if profile and not os.environ.get("PA_PROFILE"):
        os.environ["PA_PROFILE"] = profile  # the ledger's profile owns the instance that ran it
    dagster_home()
    with DagsterInstance.get() as instance:
        runs = [instance.get_run_by_id(i) for i in ids]
    return [r.run_id for r in runs if r is not None and not r.is_finished and launcher_gone(r) is None]


def _guess_profile_root(path: Path) -> Path | None:
    """`<root>/<profile>/ledger/<date>/audit.jsonl` -> `<root>/<profile>`."""
    parts = path.resolve().parts
    if len(parts) >= 4 and parts[-3] == "ledger":
        return Path(*parts[:-3])
    return None


def _path_binding(path: Path) -> tuple[str | None, str | None]:
    """(partition, profile) a ledger's path names: `<profile>/ledger/<YYYY-MM-DD>/audit.jsonl`; the
    records must be of that partition and profile (a ledger copied from another date fails)."""
    parts = path.resolve().parts
    if len(parts) >= 4 and parts[-3] == "ledger":
        try:
            dt.date.fromisoformat(parts[-2])
        except ValueError:
            return None, None
        return parts[-2], parts[-4]
    return None, None


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
            refused = records[0].asset_materialization.metadata.get("refused") if records else None
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


def cmd_audit(args: argparse.Namespace) -> int:
    """Run the blocking gate checks for a partition; non-zero on any failure (never implement then)."""
    resolved = _setup_env(args)
    partition = _partition_date(args.date)
    check_preconditions(resolved)
    with partition_lock([partition], f"audit --date {partition}"):
        code = summarize_run(execute(partition, None, job="audit"), partition)
    problems = clearance(partition)
    print("implementation: " + ("cleared (every gate passed; ledger verified, sealed and anchored)" if not problems
                                else "REFUSED: " + "; ".join(problems)))
    return code


def cmd_recover(args: argparse.Namespace) -> int:
    """Re-run history recovery and the health gate, then everything downstream of them up to the
    orders, so the re-sealed ledger covers the recovered history (`executions` is only ever written
    by `accept`). A failed gate stops the run there and leaves implementation refused."""
    resolved = _setup_env(args)
    partition = _partition_date(args.date)
    check_preconditions(resolved)
    keys = [k for k in selection_keys("history_500d*") if k.to_user_string() != "executions"]
    with partition_lock([partition], f"recover --date {partition}"):
        code = summarize_run(execute(partition, keys, {"portfolio_assets/recover": "true"}), partition)
    problems = clearance(partition)
    print("implementation: " + ("cleared (every gate passed; ledger verified, sealed and anchored)" if not problems
                                else "REFUSED: " + "; ".join(problems)))
    return code


def cmd_accept(args: argparse.Namespace) -> int:
    """Record what was executed of a partition's orders (the `executions` asset)."""
    resolved = _setup_env(args)
    partition = _partition_date(args.date)
    check_preconditions(resolved)
    with partition_lock([partition], f"accept --date {partition}"):
        return _accept(args, resolved, partition)


def _accept(args: argparse.Namespace, resolved: Any, partition: str) -> int:
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

    from portfolio_assets.assets.gates import implementation_clearance
    from portfolio_assets.holdings import executed_orders, read_fills
    from portfolio_assets.lakehouse import Lakehouse
    from portfolio_assets.resources import PortfolioSettings

    lake = Lakehouse(profile=resolved.profile)
    with DagsterInstance.get() as instance:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("implementation_orders"), asset_partitions=[partition]), limit=1).records
        if not records or not lake.has_table("implementation", "implementation_orders", partition):
            raise ValueError(f"no implementation_orders for {partition} in profile {resolved.profile}: nothing to accept")
        # The same rule as implementation_orders: gates, and the ledger as it is on disk now.
        problems = implementation_clearance(instance, PortfolioSettings(), partition)
        if problems:
            raise ValueError(f"refusing to accept {partition} (nothing booked): " + "; ".join(problems))
    orders = lake.read_table("implementation", "implementation_orders", partition)
    if orders.empty:
        raise ValueError(f"the orders of {partition} were refused (no orders stored): nothing to accept")
    not_traded = [s.strip() for s in (args.not_traded or "").split(",") if s.strip()]
    fills = read_fills(Path(args.fills)) if args.fills else None
    trades = executed_orders(orders, not_traded=not_traded, fills=fills)
    config = {"trades": trades.to_dict("records"),
              "orders_version": records[0].asset_materialization.tags.get("dagster/data_version", "unknown")}
    result = execute(partition, None, {"portfolio_assets/accept": "true"}, job="accept",
                     run_config={"ops": {"executions": {"config": config}}})
    code = summarize_run(result, partition)
    if code == EXIT_OK:
        executed = int((trades["delta_net_weight"] != 0).sum())
        print(f"accepted {partition}: {executed} of {len(trades)} order(s) executed; the book of the next session "
              f"(`holdings`) includes them")
    return code


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


# `dagster dev` warns on every start that `dg dev` supersedes it; `dg` (dagster-dg-cli, some twenty
# more packages and a `[tool.dg]` project layout) is not installed, so the launcher runs the `dagster`
# script with that one warning filtered (by its exact text) and every other warning left as it is.
DAGSTER_DEV_LAUNCHER = (
    "import runpy, sys, warnings; import dagster; "
    "warnings.filterwarnings('ignore', message='Function `dev_command` is superseded', "
    "category=dagster.SupersessionWarning); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


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
    cmd = [sys.executable, "-c", DAGSTER_DEV_LAUNCHER, str(exe if exe.exists() else shutil.which("dagster") or exe),
           "dev", "-h", args.host, "-p", str(args.port), "-w", str(PROJECT_ROOT / "workspace.yaml")]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        _err(f"warning: --host {args.host} exposes the UI (no authentication) beyond this machine")
    print(f"Dagster UI on http://{args.host}:{args.port} (profile {resolved.profile}, DAGSTER_HOME {home})",
          flush=True)
    # SIGTERM stops it like Ctrl-C. SIGINT is handled here too, *before* the child starts: a command
    # started in the background (`&`, nohup, a service manager) inherits SIGINT ignored, and an
    # ignored signal stays ignored across exec, so `dagster dev` would ignore the SIGINT forwarded to
    # it; a handled one is reset to the default by exec, and `dagster dev` shuts down on it.
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env={**os.environ, "DAGSTER_HOME": str(home)},
                            start_new_session=True)
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
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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

    select_help = "Dagster asset selection (e.g. 'risk_buckets*' = it and everything downstream; default: all)"
    r = sub.add_parser("run", help="materialize the graph for one trading date, or re-execute a run from a step")
    common(r)
    r.add_argument("--select", help=select_help)
    r.add_argument("--start-step", type=int, help="re-execute run --run-id from runbook step N on (Dagster re-execution)")
    r.add_argument("--run-id", help="the Dagster run id to re-execute (what `run` prints; `status` lists them)")
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("backfill", help="a Dagster backfill of a selection over a date range, run to completion")
    common(b, date=False)
    b.add_argument("--from", dest="date_from", required=True)
    b.add_argument("--to", dest="date_to", required=True)
    b.add_argument("--select", help=select_help)
    b.add_argument("--stale", action="store_true", help="re-materialize exactly what Dagster reports stale in the range")
    b.set_defaults(func=cmd_backfill)

    st = sub.add_parser("stale", help="the (asset, partition) pairs Dagster reports stale, with the root cause")
    common(st, date=False)
    st.add_argument("--from", dest="date_from")
    st.add_argument("--to", dest="date_to")
    st.add_argument("--check-market-data", action="store_true",
                    help="first re-fingerprint the source's bars (market_bars) so new or corrected bars show")
    st.set_defaults(func=cmd_stale)

    v = sub.add_parser("verify-ledger", help="verify an audit.jsonl (links, hashes, pairing, files, signatures)")
    v.add_argument("path")
    v.add_argument("--root", help="profile root that output paths are relative to (default: inferred)")
    v.add_argument("--require-signatures", action="store_true")
    v.add_argument("--no-signatures", action="store_true",
                   help="accept a signed ledger verified without its key (exit 0 instead of 4; docs/ledger.md)")
    v.add_argument("--no-anchor", action="store_true",
                   help="do not require HEAD.json (an unsealed ledger: truncation cannot be ruled out)")
    v.set_defaults(func=cmd_verify_ledger)

    s = sub.add_parser("status", help="a date's runs (their ids), what is materialized, gate results")
    common(s)
    s.set_defaults(func=cmd_status)

    a = sub.add_parser("audit", help="run the blocking gate checks for a date; non-zero on any failure")
    common(a)
    a.set_defaults(func=cmd_audit)

    rc = sub.add_parser("recover", help="re-run history recovery and the health gate for a date")
    common(rc)
    rc.set_defaults(func=cmd_recover)

    ac = sub.add_parser("accept", help="record what was executed of a date's orders (the next book starts from it)")
    common(ac)
    ac.add_argument("--not-traded", metavar="SYM,SYM", help="orders that were not executed at all")
    ac.add_argument("--fills", metavar="FILE", help="CSV/Parquet of executed changes: symbol, delta_net_weight")
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

    ve = sub.add_parser("versions", help="every asset's code version; --refresh records the source snapshot")
    ve.add_argument("--refresh", action="store_true")
    ve.set_defaults(func=cmd_versions)

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
    except BrokenPipeError:  # `portfolio-assets status | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
