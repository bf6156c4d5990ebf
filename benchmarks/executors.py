"""The executors: the `tournament` asset alone per executor, and the whole graph on celery.

The `graph` section left every upstream table of `tournament` in its lakehouse and instance; here
only the tournament asset (plan, the dynamically mapped engine batches, collect) runs again with
the in_process executor, the multiprocess one (step subprocesses) and celery: a `redis-server`
broker on a free port and two `dagster-celery` workers started for the row (`celery_local.py`; the
row says why when redis-server is not installed). `ratio` = executor / in_process. Before each run
the tournament's tables are deleted (a run that "succeeds" without running its mapped engine
batches cannot pass on the previous run's files); after it, the multiprocess and celery rows say
whether their tables equal the in_process run's (frame hashes) and where the steps ran (none may
run in the bench's own process). `portfolio_assets_tests/benchmarks/test_bench.py` asserts these
notes: the bench's executor runs are also the suite's executor tests.

Then the whole daily graph: `portfolio-assets run` with `executor.kind: celery` on a fresh
`s3://` lakehouse (moto's S3 server on localhost, `object_store.moto_s3`) and `DAGSTER_HOME`, on two
fresh workers started with the run's settings in their environment (docs/deployment.md), each with
its own `PA_CACHE_DIR` and so its own working copy of the bucket, as on two hosts that share only
the bucket, the broker and Dagster's instance; against the `graph` section's in-process
materialization of the same partition (on a local folder): its wall time as the ratio, and the
tables the bucket holds compared by content hash (all but `run_manifest`, which records the
executor).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.graph import GraphRun, cli, cli_env, last_lines
from benchmarks.table import Recorder, Row
from portfolio_assets_tests.graph_helpers import environment, run_error, run_tournament_only, table_hashes


def _error(exc: Exception) -> str:
    return f"ERROR {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


TOURNAMENT_TABLES = "validation/tournament"  # the asset's tables: `tournament` and `tournament__<part>`


def tournament_tables(lakehouse: Path, run: GraphRun) -> dict[str, str]:
    """`{relative path: frame hash}` of the partition's tournament tables."""
    found = table_hashes(lakehouse / run.profile, run.partition)
    return {k: v for k, v in found.items() if k.startswith(TOURNAMENT_TABLES)}


def _drop_tournament_tables(run: GraphRun) -> None:
    for path in (run.lakehouse / run.profile / "validation").glob(f"tournament*/{run.partition}.parquet"):
        path.unlink()  # the next run must write them again, not find them


def step_pids(result: Any) -> dict[str, int]:
    """`{step key: pid}` of a run's successful steps (an in-process `execute_job` result)."""
    from dagster import DagsterEventType

    return {e.step_key: e.pid for e in result.all_events if e.event_type == DagsterEventType.STEP_SUCCESS}


def where_steps_ran(pids: dict[str, int], own: int, whose: str) -> str:
    """`N steps in P process(es), none <whose>; engine batches: ...` (FAILED when a step ran in
    process `own`: the bench's, or the CLI run's)."""
    batches = sorted(k.removeprefix("tournament.tournament_engines[").rstrip("]") for k in pids
                     if k.startswith("tournament.tournament_engines["))
    where = f"FAILED: a step ran in {whose}" if own in pids.values() else f"none {whose}"
    return f"{len(pids)} steps in {len(set(pids.values()))} process(es), {where}; engine batches: {', '.join(batches)}"


def cli_run_pids(dagster_home: Path, log: Path) -> tuple[int, dict[str, int]]:
    """(the run process's pid, `{step key: pid}`) of the CLI run whose output is `log`, from the
    instance's event log (`run id: ID (success)` in the output names the run)."""
    import re

    from dagster import DagsterEventType, DagsterInstance

    found = re.search(r"^run id: (\S+) \(success\)$", log.read_text(errors="replace"), re.M)
    if found is None:
        raise ValueError(f"no successful run id in {log}")
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        started = instance.all_logs(found.group(1), of_type=DagsterEventType.RUN_START)
        steps = {e.step_key: e.dagster_event.pid
                 for e in instance.all_logs(found.group(1), of_type=DagsterEventType.STEP_SUCCESS)}
    if len(started) != 1:
        raise ValueError(f"run {found.group(1)}: {len(started)} RUN_START events")
    return started[0].dagster_event.pid, steps


def _timed_run(kind: str, run: GraphRun, reference: dict[str, str] | None) -> tuple[float, str, dict[str, str]]:
    """Run the tournament asset on `kind`: (wall seconds, note, its tables' hashes). With a
    `reference`, the note says whether the tables equal it and where the steps ran."""
    _drop_tournament_tables(run)
    t0 = time.perf_counter()
    try:
        res = run_tournament_only(kind, run.partition, run.instance)
    except Exception as exc:  # an executor that cannot start here is a row, not the end of the bench
        return time.perf_counter() - t0, _error(exc), {}
    seconds = time.perf_counter() - t0
    if not res.success:
        return seconds, f"FAILED {run_error(res)}", {}
    tables = tournament_tables(run.lakehouse, run)
    if reference is None:
        return seconds, "ok", tables
    differ = sorted(k for k in tables.keys() | reference.keys() if tables.get(k) != reference.get(k))
    same = (f"the same {len(tables)} tournament tables as in_process" if not differ
            else f"tournament tables differ from in_process: {differ}")
    where = where_steps_ran(step_pids(res), os.getpid(), "the bench's")
    status = "FAILED" if differ or "FAILED" in where else "ok"
    return seconds, f"{status}; {same}; {where}", tables


def executor_section(rec: Recorder, run: GraphRun, root: Path, workers: int = 2) -> None:
    from portfolio_assets.celery_local import celery_workers, free_port, local_redis, redis_server_path

    if not run.result.success:
        rec.add(Row("celery", "tournament asset only, per executor", note="not run: the graph section failed"))
        return
    home = str(run.instance.root_directory)
    # A parallel executor in the settings: the plan fans the engines out into one batch per worker
    # (`validation.engine_batches`) in every run here, the in_process reference included.
    base = dict(PA_PROFILE=run.profile, PA_LAKEHOUSE=str(run.lakehouse), PA_CLI_OVERRIDES=None, DAGSTER_HOME=home,
                PA_EXECUTOR__KIND='"multiprocess"')
    from portfolio_assets.resources import _source_cached

    with environment(**base):
        # Start from a fresh market source, as every step process and worker does (the synthetic
        # source's prices depend on its request history in the last bits: a source question, not
        # an executor one); the graph section left its source cached in this process.
        _source_cached.cache_clear()
        local, note, reference = _timed_run("in_process", run, None)
        rec.add(Row("celery", "tournament asset only, in_process executor", run.profile, seconds=local, note=note))
        seconds, note, _ = _timed_run("multiprocess", run, reference)
        rec.add(Row("celery", "tournament asset only, multiprocess executor", run.profile, seconds=seconds,
                    ref_seconds=local, note=f"{note}; step subprocesses; ref = in_process"))
    if redis_server_path() is None:
        rec.add(Row("celery", f"tournament asset only, celery executor ({workers} workers)", run.profile,
                    note="not run: redis-server is not installed (Debian package redis-server)"))
        return
    port = free_port()
    with environment(**base, PA_EXECUTOR__CELERY__BROKER=f'"redis://127.0.0.1:{port}/0"'), \
            contextlib.ExitStack() as stack:
        with rec.stage("celery", f"start redis-server + {workers} dagster-celery workers", run.profile) as row:
            try:
                broker = stack.enter_context(local_redis(root / "redis", port))
                stack.enter_context(celery_workers(broker, workers, root / "celery_workers"))
                row.note = "ok (until every worker answers a ping)"
            except Exception as exc:
                row.note = _error(exc)
                return
        seconds, note, _ = _timed_run("celery", run, reference)
        rec.add(Row("celery", f"tournament asset only, celery executor ({workers} workers)", run.profile,
                    seconds=seconds, ref_seconds=local, note=f"{note}; Redis broker, steps in workers; ref = in_process"))


def whole_graph_on_celery(rec: Recorder, run: GraphRun, root: Path, workers: int = 2) -> None:
    """The daily graph through the CLI on `workers` celery workers (module docstring)."""
    from benchmarks.object_store import moto_s3
    from portfolio_assets.celery_local import celery_workers, free_port, local_redis, redis_server_path

    stage = f"daily graph: CLI run on celery ({workers} workers)"
    if redis_server_path() is None:
        rec.add(Row("celery", stage, run.profile, note="not run: redis-server is not installed (Debian package redis-server)"))
        return
    try:
        import moto  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as exc:
        rec.add(Row("celery", stage, run.profile, note=f"not run: {exc.name} is not installed (extras test, bench)"))
        return
    stage += ", each its own working copy of an s3:// lakehouse, vs in-process materialize"
    port, url = free_port(), "s3://pa-bench/celery"
    hosts = [root / f"host-w{i}" for i in range(1, workers + 1)]
    with moto_s3("pa-bench") as (aws, _):
        env = {**cli_env(root / "unused", root / "dagster_home", run.profile), **aws, "PA_LAKEHOUSE": url,
               "PA_CACHE_DIR": str(root / "host-cli"), "PA_EXECUTOR__KIND": '"celery"',
               "PA_EXECUTOR__CELERY__BROKER": f'"redis://127.0.0.1:{port}/0"'}
        settings = {k: v for k, v in env.items() if k.startswith(("PA_", "AWS_")) or k == "DAGSTER_HOME"}
        with environment(PA_CLI_OVERRIDES=None, **settings), contextlib.ExitStack() as stack:
            try:
                broker = stack.enter_context(local_redis(root / "redis", port))
                stack.enter_context(celery_workers(broker, workers, root / "celery_workers",
                                                   worker_env=[{"PA_CACHE_DIR": str(h)} for h in hosts]))
            except Exception as exc:
                rec.add(Row("celery", stage, run.profile, note=_error(exc)))
                return
            code, wall = cli(["run", "--profile", run.profile, "--date", run.partition], env, root / "cli_run.log")
        if code != 0:
            rec.add(Row("celery", stage, run.partition, seconds=wall,
                        note=f"FAILED exit {code}: {last_lines(root / 'cli_run.log', 2)}"))
            return
        from portfolio_assets.lakehouse import Lakehouse
        from portfolio_assets.ledger import verify_ledger

        with environment(PA_CACHE_DIR=str(root / "host-reader")):  # what the bucket holds, in a fresh copy
            lake = Lakehouse(url, run.profile)
            stored = lake.root
            report = verify_ledger(lake.ledger_path(run.partition), root=stored, partition=run.partition)
            ledger = "the bucket's ledger verifies" if report.ok else f"FAILED the bucket's ledger: {report}"
    ours, ref = table_hashes(stored, run.partition), table_hashes(run.lakehouse / run.profile, run.partition)
    manifest = f"run/run_manifest/{run.partition}.parquet"
    differ = sorted(k for k in ours.keys() | ref.keys() if k != manifest and ours.get(k) != ref.get(k))
    same = f"the same {len(ref) - 1} tables (all but run_manifest)" if not differ else f"FAILED tables differ: {differ}"
    copies = sum(any(h.glob(f"lakes/*/{run.profile}/*/*/{run.partition}.parquet")) for h in hosts)
    try:
        run_pid, pids = cli_run_pids(root / "dagster_home" / "profiles" / run.profile, root / "cli_run.log")
        where = where_steps_ran(pids, run_pid, "the run's")
    except Exception as exc:
        where = _error(exc)
    rec.add(Row("celery", stage, run.partition, seconds=wall, ref_seconds=run.wall_s,
                note=f"{same}; {where}; {copies} of {workers} workers' working copies hold tables; {ledger}; moto's S3 on "
                     "localhost, fresh bucket, workers started first; ref = section graph's materialize"))


def celery_section(rec: Recorder, run: GraphRun, root: Path) -> None:
    """The `celery` section: the tournament per executor, then the whole graph on celery."""
    executor_section(rec, run, root / "tournament")
    whole_graph_on_celery(rec, run, root / "graph")
