"""The `tournament` asset alone on the graph section's stored upstream, per executor.

The `graph` section left every upstream table of `tournament` in its lakehouse and instance; here
only the tournament asset (plan, the dynamically mapped engine batches, collect) runs again with
the in_process executor, the multiprocess one (step subprocesses) and celery: a `redis-server`
broker on a free port and two `dagster-celery` workers started for the row (`celery_local.py`; the
row says why when redis-server is not installed). `ratio` = executor / in_process.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from benchmarks.graph import GraphRun
from benchmarks.table import Recorder, Row
from portfolio_assets_tests.graph_helpers import environment, run_error, run_tournament_only


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
