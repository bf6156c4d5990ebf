"""The tournament's fan-out on every executor (`jobs.executor_for`): the same tables as in-process.

The development profile's upstream of `tournament` is materialized in-process into a temporary
lakehouse once for the module; then only the `tournament` graph asset runs: once with the
in_process executor (the reference tables), then with the multiprocess executor (each step in its
own process) and with celery (SPEC §7): a `redis-server` on a free port and two `dagster-celery
worker start` processes, all started here, through `jobs.executor_for(ExecutorConfig(kind="celery",
...))` on a persistent temporary instance. Each must write the reference tables again (frame
hashes), and every step must have run outside this process, the dynamically mapped engine batches
included. The tables are deleted before each run, so a run that "succeeds" without running the
mapped batches fails here instead of passing on the previous run's files.
"""

from __future__ import annotations

import os
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
    port: int
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
    """Every upstream asset of `tournament` stored, and the in-process tournament's tables; the
    broker URL of the workers started later is already in the environment
    (`PA_EXECUTOR__CELERY__BROKER`), which the workers inherit as deployed workers share the run's
    settings and storage."""
    from dagster import AssetSelection

    from portfolio_assets.assets.validation import UPSTREAM
    from portfolio_assets.celery_local import free_port
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
    port = free_port()
    # The settings' executor is a parallel one, so the plan fans the engines out into two batches
    # (`engine_batches`) in every run here, the in-process reference included.
    with environment(PA_PROFILE=PROFILE, PA_LAKEHOUSE=str(root / "lake"), PA_CLI_OVERRIDES=None,
                     PA_EXECUTOR__KIND="multiprocess", PA_EXECUTOR__CELERY__BROKER=f'"redis://127.0.0.1:{port}/0"',
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
        yield Stored(instance, lake, root, port, tournament_hashes(lake))


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


@pytest.mark.skipif(redis_server_path() is None, reason=NO_REDIS)
def test_tournament_on_two_celery_workers_equals_in_process(stored):
    from portfolio_assets.celery_local import celery_workers, local_redis
    from portfolio_assets_tests.graph_helpers import run_error, run_tournament_only

    drop_tournament_tables(stored.lake)
    with local_redis(stored.root / "redis", stored.port) as broker, \
            celery_workers(broker, 2, stored.root / "workers") as workers:
        assert len(workers) == 2
        distributed = run_tournament_only("celery", PARTITION, stored.instance)
    assert distributed.success, run_error(distributed)
    assert tournament_hashes(stored.lake) == stored.expected

    steps = step_pids(distributed)
    assert engine_batches(steps) == BATCHES
    assert {"tournament.tournament_plan", "tournament.tournament_collect"} <= set(steps)
    assert all(pid != os.getpid() for pid in steps.values()), steps  # ran in the celery workers
    print(f"\ncelery steps ran in {len(set(steps.values()))} worker process(es): {sorted(set(steps.values()))}")
