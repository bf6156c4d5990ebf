"""A dask executor built on Dagster's step-delegating executor.

Why not `dagster-dask`'s executor: in 0.29.27 it hands the `DagsterRun` to `client.submit`, which
`distributed` 2026.8 walks down to the run's partitions definition (that refuses iteration), so
every partitioned run fails; and it submits only the steps known before the run starts, so
dynamically mapped steps (the tournament's engine batches) would never run.

Here Dagster's own `StepDelegatingExecutor` drives the run (dynamic outputs, retries, blocking
checks all as usual) and this step handler launches each step on a dask worker as Dagster's
standard step command (`dagster api execute_step ...`). The step reports its events to the
instance itself, so workers need the same code, `DAGSTER_HOME` (instance storage) and lakehouse
path — on one host with a local cluster, or on hosts sharing them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

from dagster import executor
from dagster._core.definitions.executor_definition import multiple_process_executor_requirements
from dagster._core.events import DagsterEvent
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.step_delegating import (
    CheckStepHealthResult,
    StepDelegatingExecutor,
    StepHandler,
    StepHandlerContext,
)


def run_step_command(args: list[str], env: dict[str, str]) -> int:
    """Runs on a dask worker: Dagster's step command in a child process; returns its exit code.

    A bare `dagster` entry point runs as `<this worker's python> -m dagster`, so the worker's own
    environment is used even when its bin directory is not on PATH."""
    import sys

    if args and args[0] == "dagster":
        args = [sys.executable, "-m", "dagster", *args[1:]]
    return subprocess.run(args, env=env, check=False).returncode


class DaskStepHandler(StepHandler):
    """Launch each step as a dask task (a local cluster, or an existing scheduler)."""

    def __init__(self, scheduler_address: str | None, n_workers: int, threads_per_worker: int):
        self._address = scheduler_address
        self._n_workers = n_workers
        self._threads = threads_per_worker
        self._client: Any = None
        self._cluster: Any = None
        self._futures: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return "DaskStepHandler"

    def _get_client(self) -> Any:
        if self._client is None:
            from dask.distributed import Client, LocalCluster

            if self._address:
                self._client = Client(self._address)
            else:
                self._cluster = LocalCluster(n_workers=self._n_workers, threads_per_worker=self._threads,
                                             processes=True, dashboard_address=None)
                self._client = Client(self._cluster)
        return self._client

    @staticmethod
    def _step_key(ctx: StepHandlerContext) -> str:
        keys = ctx.execute_step_args.step_keys_to_execute
        if not keys or len(keys) != 1:
            raise ValueError(f"the dask step handler launches one step at a time, got {keys}")
        return keys[0]

    def launch_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        key = self._step_key(step_handler_context)
        args = list(step_handler_context.execute_step_args.get_command_args())
        future = self._get_client().submit(
            run_step_command, args, dict(os.environ), pure=False,
            key=f"{step_handler_context.execute_step_args.run_id}-{key}",
        )
        self._futures[key] = future
        yield DagsterEvent.step_worker_starting(
            step_handler_context.get_step_context(key),
            message=f'Submitted step "{key}" to the dask cluster.',
            metadata={"scheduler": self._address or "local cluster"},
        )

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        future = self._futures.get(self._step_key(step_handler_context))
        if future is None:
            return CheckStepHealthResult.unhealthy("step was never submitted to dask")
        if future.status == "error":
            return CheckStepHealthResult.unhealthy(f"dask task failed: {future.exception()!r}")
        if future.status == "finished" and future.result() != 0:
            return CheckStepHealthResult.unhealthy(f"step process exited with code {future.result()}")
        return CheckStepHealthResult.healthy()

    def terminate_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        future = self._futures.pop(self._step_key(step_handler_context), None)
        if future is not None:
            future.cancel()
        yield from ()


@executor(
    name="dask_steps",
    config_schema={
        "scheduler_address": str,
        "n_workers": int,
        "threads_per_worker": int,
    },
    requirements=multiple_process_executor_requirements(),
)
def dask_step_executor(init_context) -> StepDelegatingExecutor:
    cfg = init_context.executor_config
    handler = DaskStepHandler(cfg["scheduler_address"] or None, cfg["n_workers"], cfg["threads_per_worker"])
    return StepDelegatingExecutor(handler, retries=RetryMode.DISABLED, max_concurrent=cfg["n_workers"],
                                  sleep_seconds=0.2)
