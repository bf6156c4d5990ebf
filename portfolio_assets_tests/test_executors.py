"""The graph on every executor (`jobs.executor_for`): the same tables as in-process.

Multiprocess: the development profile's upstream of `tournament` is materialized in-process into a
temporary lakehouse once for the module; then only the `tournament` graph asset runs, once with the
in_process executor (the reference tables) and once with the multiprocess executor (each step in
its own process). It must write the reference tables again (frame hashes; the tables are deleted
before the run, so a run that "succeeds" without running the dynamically mapped engine batches
fails here instead of passing on the previous run's files), and every step must have run outside
this process.

Celery (SPEC §7, issue 15): the whole daily graph through `portfolio-assets run` with
`executor.kind: celery`, on a `redis-server` on a free port and two `dagster-celery worker start`
processes, all started here, on a fresh lakehouse; every table must equal the in-process CLI run's
(the session's `dev_lakehouse`), and every step must have run in a worker.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from portfolio_assets.celery_local import redis_server_path

pytestmark = pytest.mark.slow

PROFILE = "development"
PARTITION = "2026-11-25"  # a closed XNYS session inside the synthetic market's range
TOURNAMENT_TABLES = (None, "windows", "returns", "weights", "contexts")
BATCHES = {"tournament.tournament_engines[batch_1]", "tournament.tournament_engines[batch_2]"}
NO_REDIS = "redis-server is not installed (Debian package redis-server; .ci/run installs it)"


@dataclass
class Stored:
    instance: Any
    lake: Any
    root: Path
    expected: dict[str, str]  # the in-process run's tournament tables (frame hashes)


def tournament_hashes(lake, partition: str = PARTITION) -> dict[str, str]:
    from portfolio_assets.ledger import frame_hash

    return {part or "tournament": frame_hash(lake.read_table("validation", "tournament", partition, part))
            for part in TOURNAMENT_TABLES}


def drop_tournament_tables(lake) -> None:
    for path in lake.root.glob(f"validation/tournament*/{PARTITION}.parquet"):
        path.unlink()  # the next run must write them again, not find them


def step_pids(result) -> dict[str, int]:
    from dagster import DagsterEventType

    return {e.step_key: e.pid for e in result.all_events if e.event_type == DagsterEventType.STEP_SUCCESS}


def engine_batches(pids: dict[str, int]) -> set[str]:
    """The step keys of the tournament's mapped engine batches."""
    return {k for k in pids if k.startswith("tournament.tournament_engines[")}


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Every upstream asset of `tournament` stored, and the in-process tournament's tables."""
    from dagster import AssetSelection

    from portfolio_assets.assets.validation import UPSTREAM
    from portfolio_assets.lakehouse import Lakehouse
    from portfolio_assets.resources import _source_cached
    from portfolio_assets_tests.graph_helpers import (
        environment,
        materialize_partition,
        persistent_instance,
        run_error,
        run_tournament_only,
    )

    root = tmp_path_factory.mktemp("executors")
    # The settings' executor is a parallel one, so the plan fans the engines out into two batches
    # (`engine_batches`) in every run here, the in-process reference included.
    with environment(PA_PROFILE=PROFILE, PA_LAKEHOUSE=str(root / "lake"), PA_CLI_OVERRIDES=None,
                     PA_EXECUTOR__KIND="multiprocess",
                     DAGSTER_HOME=str(root / "dagster_home")), \
            persistent_instance(root / "dagster_home") as instance:
        upstream = AssetSelection.assets(*UPSTREAM).upstream().required_multi_asset_neighbors()
        result = materialize_partition(PARTITION, instance, selection=upstream)
        assert result.success, run_error(result)
        lake = Lakehouse(root / "lake", PROFILE)
        # Start from a fresh market source, as every step process and worker does (the synthetic
        # source's prices depend on its request history in the last bits: a source question, not
        # an executor one).
        _source_cached.cache_clear()
        local = run_tournament_only("in_process", PARTITION, instance)
        assert local.success, run_error(local)
        pids = step_pids(local)
        assert set(pids.values()) == {os.getpid()}
        assert engine_batches(pids) == BATCHES
        yield Stored(instance, lake, root, tournament_hashes(lake))


def test_multiprocess_fans_the_engines_out_and_equals_in_process(stored):
    from portfolio_assets_tests.graph_helpers import run_error, run_tournament_only

    drop_tournament_tables(stored.lake)
    parallel = run_tournament_only("multiprocess_spawn", PARTITION, stored.instance)  # see the helper's docstring
    assert parallel.success, run_error(parallel)
    assert tournament_hashes(stored.lake) == stored.expected
    pids = step_pids(parallel)
    assert engine_batches(pids) == BATCHES
    assert os.getpid() not in pids.values()  # each step in its own process


def test_executor_for_celery_points_at_the_configured_broker():
    from portfolio_assets.jobs import executor_for
    from portfolio_assets.manifest import CeleryConfig, ExecutorConfig

    ex = executor_for(ExecutorConfig(kind="celery", celery=CeleryConfig(broker="redis://10.0.0.5:6380/2")))
    assert ex.name == "celery"
    applied = ex.apply_config_mapping({})
    assert applied.success
    assert applied.value["config"]["broker"] == "redis://10.0.0.5:6380/2"
    assert applied.value["config"]["backend"] == "redis://10.0.0.5:6380/2"  # results through the broker's Redis


def test_broker_must_be_a_redis_url():
    from pydantic import ValidationError

    from portfolio_assets.manifest import CeleryConfig

    with pytest.raises(ValidationError, match="should match pattern"):
        CeleryConfig(broker="amqp://guest@localhost//")
    assert CeleryConfig(broker="redis://h:1/0").result_backend == "redis://h:1/0"
    assert CeleryConfig(broker="redis://h:1/0", backend="redis://h:1/1").result_backend == "redis://h:1/1"


def flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested JSON value as `{dotted.path: leaf}`."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


@pytest.mark.skipif(redis_server_path() is None, reason=NO_REDIS)
def test_the_daily_graph_on_two_celery_workers_stores_the_in_process_tables(dev_lakehouse, tmp_path):
    """`portfolio-assets run` of the whole daily graph with `executor.kind: celery`, on a fresh
    lakehouse and two workers (Redis and both workers started here, with the run's settings in
    their environment, as docs/deployment.md says), stores exactly the tables of the in-process run
    of the same partition (the session's `dev_lakehouse`, a CLI run too), with every gate passed
    and every step executed in a worker process, the tournament's two engine batches included.
    `run_manifest` records the resolved settings, so it differs in the executor's settings and
    nothing else."""
    import pandas as pd
    from dagster import DagsterEventType, DagsterInstance

    from portfolio_assets.celery_local import celery_workers, free_port, local_redis
    from portfolio_assets_tests.conftest import (
        DEV_DATE,
        GraphRun,
        check_lines,
        describe,
        run_graph_cli,
        table_hashes,
    )
    from portfolio_assets_tests.graph_helpers import environment

    run = GraphRun(tmp_path / "lakehouse", tmp_path / "dagster_home")
    port = free_port()
    env = run.env(PA_EXECUTOR__KIND='"celery"', PA_EXECUTOR__CELERY__BROKER=f'"redis://127.0.0.1:{port}/0"')
    worker_env = {k: v for k, v in env.items() if k.startswith("PA_") or k == "DAGSTER_HOME"}
    with environment(PA_CLI_OVERRIDES=None, **worker_env), \
            local_redis(tmp_path / "redis", port) as broker, \
            celery_workers(broker, 2, tmp_path / "workers") as workers:
        assert len(workers) == 2
        proc = run_graph_cli(run, DEV_DATE, env=env)
    assert proc.returncode == 0, describe(proc)
    checks = check_lines(proc.stdout)
    assert len(checks) == 3 and all(v.startswith("passed") for v in checks.values()), checks

    got, want = table_hashes(run.root, DEV_DATE), table_hashes(dev_lakehouse.root, DEV_DATE)
    assert len(want) > 30 and set(got) == set(want)
    manifest = f"run/run_manifest/{DEV_DATE}.parquet"
    assert sorted(t for t in want if got[t] != want[t]) == [manifest]
    ours, theirs = (flat(json.loads(pd.read_parquet(root / manifest)["config_json"].iloc[0]))
                    for root in (run.root, dev_lakehouse.root))
    assert {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)} == {
        "executor.kind", "executor.celery.broker"}
    assert (ours["executor.kind"], theirs["executor.kind"]) == ("celery", "in_process")

    run_id = re.search(r"^run id: (\S+) \(success\)$", proc.stdout, re.M).group(1)
    with DagsterInstance.from_config(str(run.instance_home)) as instance:
        started = instance.all_logs(run_id, of_type=DagsterEventType.RUN_START)
        steps = {e.step_key: e.dagster_event.pid
                 for e in instance.all_logs(run_id, of_type=DagsterEventType.STEP_SUCCESS)}
    assert len(started) == 1 and len(steps) > 25, steps
    assert engine_batches(steps) == BATCHES
    run_process = started[0].dagster_event.pid
    assert run_process not in steps.values(), steps  # every step ran in a celery worker
    print(f"\ncelery: {len(steps)} steps in {len(set(steps.values()))} worker process(es)")
