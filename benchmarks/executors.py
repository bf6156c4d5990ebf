"""The executors: the `tournament` asset alone per executor, and the whole graph on celery.

The `graph` section left every upstream table of `tournament` in its lakehouse and instance; here
only the tournament asset (plan, the dynamically mapped engine batches, collect) runs again with
the in_process executor, the multiprocess one (step subprocesses) and celery: a `redis-server`
broker on a free port and two `dagster-celery` workers started for the row (`celery_local.py`; the
row says why when redis-server is not installed). `ratio` = executor / in_process.

Then the whole daily graph: `portfolio-assets run` with `executor.kind: celery` on a fresh
lakehouse and `DAGSTER_HOME`, on two fresh workers started with the run's settings in their
environment (docs/deployment.md), against the `graph` section's in-process materialization of the
same partition (also on a fresh lakehouse): its wall time as the ratio, and its tables compared by
content hash (all but `run_manifest`, which records the executor).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from benchmarks.graph import GraphRun, cli, cli_env, last_lines
from benchmarks.table import Recorder, Row
from portfolio_assets_tests.graph_helpers import environment, run_error, run_tournament_only, table_hashes


def _error(exc: Exception) -> str:
    return f"ERROR {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


def _timed_run(kind: str, run: GraphRun) -> tuple[float, str]:
    t0 = time.perf_counter()
    try:
        res = run_tournament_only(kind, run.partition, run.instance)
        note = "ok" if res.success else f"FAILED {run_error(res)}"
    except Exception as exc:  # an executor that cannot start here is a row, not the end of the bench
        note = _error(exc)
    return time.perf_counter() - t0, note


def executor_section(rec: Recorder, run: GraphRun, root: Path, workers: int = 2) -> None:
    from portfolio_assets.celery_local import celery_workers, free_port, local_redis, redis_server_path

    if not run.result.success:
        rec.add(Row("celery", "tournament asset only, per executor", note="not run: the graph section failed"))
        return
    home = str(run.instance.root_directory)
    base = dict(PA_PROFILE=run.profile, PA_LAKEHOUSE=str(run.lakehouse), PA_CLI_OVERRIDES=None, DAGSTER_HOME=home)
    with environment(**base):
        local, note = _timed_run("in_process", run)
        rec.add(Row("celery", "tournament asset only, in_process executor", run.profile, seconds=local, note=note))
        seconds, note = _timed_run("multiprocess", run)
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
        seconds, note = _timed_run("celery", run)
        rec.add(Row("celery", f"tournament asset only, celery executor ({workers} workers)", run.profile,
                    seconds=seconds, ref_seconds=local, note=f"{note}; Redis broker, steps in workers; ref = in_process"))


def whole_graph_on_celery(rec: Recorder, run: GraphRun, root: Path, workers: int = 2) -> None:
    """The daily graph through the CLI on `workers` celery workers (module docstring)."""
    from portfolio_assets.celery_local import celery_workers, free_port, local_redis, redis_server_path

    stage = f"daily graph: CLI run on celery ({workers} workers) vs in-process materialize"
    if redis_server_path() is None:
        rec.add(Row("celery", stage, run.profile, note="not run: redis-server is not installed (Debian package redis-server)"))
        return
    port, lake = free_port(), root / "lakehouse"
    env = {**cli_env(lake, root / "dagster_home", run.profile), "PA_EXECUTOR__KIND": '"celery"',
           "PA_EXECUTOR__CELERY__BROKER": f'"redis://127.0.0.1:{port}/0"'}
    settings = {k: v for k, v in env.items() if k.startswith("PA_") or k == "DAGSTER_HOME"}
    with environment(PA_CLI_OVERRIDES=None, **settings), contextlib.ExitStack() as stack:
        try:
            broker = stack.enter_context(local_redis(root / "redis", port))
            stack.enter_context(celery_workers(broker, workers, root / "celery_workers"))
        except Exception as exc:
            rec.add(Row("celery", stage, run.profile, note=_error(exc)))
            return
        code, wall = cli(["run", "--profile", run.profile, "--date", run.partition], env, root / "cli_run.log")
    if code != 0:
        rec.add(Row("celery", stage, run.partition, seconds=wall,
                    note=f"FAILED exit {code}: {last_lines(root / 'cli_run.log', 2)}"))
        return
    ours, ref = (table_hashes(where / run.profile, run.partition) for where in (lake, run.lakehouse))
    manifest = f"run/run_manifest/{run.partition}.parquet"
    differ = sorted(k for k in ours.keys() | ref.keys() if k != manifest and ours.get(k) != ref.get(k))
    same = f"the same {len(ref) - 1} tables (all but run_manifest)" if not differ else f"FAILED tables differ: {differ}"
    rec.add(Row("celery", stage, run.partition, seconds=wall, ref_seconds=run.wall_s,
                note=f"{same}; fresh lakehouse, workers started first; ref = section graph's materialize"))


def celery_section(rec: Recorder, run: GraphRun, root: Path) -> None:
    """The `celery` section: the tournament per executor, then the whole graph on celery."""
    executor_section(rec, run, root / "tournament")
    whole_graph_on_celery(rec, run, root / "graph")
