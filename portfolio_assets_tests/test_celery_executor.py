"""The tournament on two dagster-celery workers through a Redis broker (SPEC §7): same tables as in-process.

The development profile's upstream of `tournament` is materialized in-process into a temporary
lakehouse; then only the `tournament` graph asset runs, once with the in_process executor and
once with `jobs.executor_for(ExecutorConfig(kind="celery", ...))` (a reconstructable job on a
persistent temporary instance) against a `redis-server` on a free port and two
`dagster-celery worker start` processes, all started here. Both runs must write identical tables
(frame hashes), and every step of the celery run, including the dynamically mapped engine batches,
must have run in a worker process, not in this one. The tables are deleted between the runs, so a
celery run that "succeeds" without running the mapped batches fails here instead of passing on
the in-process run's files.
"""

from __future__ import annotations

import os

import pytest

from portfolio_assets.celery_local import redis_server_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(redis_server_path() is None,
                       reason="redis-server is not installed (Debian package redis-server; .ci/run installs it)"),
]

PROFILE = "development"
PARTITION = "2026-11-25"  # a closed XNYS session inside the synthetic market's range
TOURNAMENT_TABLES = (None, "windows", "returns", "weights", "contexts")


@pytest.fixture(scope="module")
def stored_upstream(tmp_path_factory):
    """(instance, partition, lakehouse, root) with every upstream asset of `tournament` stored; the
    broker URL of the workers started later is already in the environment (`PA_EXECUTOR__CELERY__BROKER`)."""
    from dagster import AssetSelection

    from portfolio_assets.assets.validation import UPSTREAM
    from portfolio_assets.celery_local import free_port
    from portfolio_assets.lakehouse import Lakehouse
    from portfolio_assets_tests.graph_helpers import (
        environment,
        materialize_partition,
        persistent_instance,
        run_error,
    )

    root = tmp_path_factory.mktemp("celery")
    port = free_port()
    with environment(PA_PROFILE=PROFILE, PA_LAKEHOUSE=str(root / "lake"), PA_CLI_OVERRIDES=None,
                     PA_EXECUTOR__KIND="celery", PA_EXECUTOR__CELERY__BROKER=f'"redis://127.0.0.1:{port}/0"',
                     DAGSTER_HOME=str(root / "dagster_home")), \
            persistent_instance(root / "dagster_home") as instance:
        upstream = AssetSelection.assets(*UPSTREAM).upstream().required_multi_asset_neighbors()
        result = materialize_partition(PARTITION, instance, selection=upstream)
        assert result.success, run_error(result)
        yield instance, PARTITION, Lakehouse(root / "lake", PROFILE), root, port


def tournament_hashes(lake, partition: str) -> dict[str, str]:
    from portfolio_assets.ledger import frame_hash

    return {part or "tournament": frame_hash(lake.read_table("validation", "tournament", partition, part))
            for part in TOURNAMENT_TABLES}


def step_pids(result) -> dict[str, int]:
    from dagster import DagsterEventType

    return {e.step_key: e.pid for e in result.all_events if e.event_type == DagsterEventType.STEP_SUCCESS}


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


def test_tournament_on_two_celery_workers_equals_in_process(stored_upstream):
    from portfolio_assets.celery_local import celery_workers, local_redis
    from portfolio_assets.resources import _source_cached
    from portfolio_assets_tests.graph_helpers import run_error, run_tournament_only

    instance, partition, lake, root, port = stored_upstream
    # Start from a fresh market source, as every worker does (the synthetic source's prices depend
    # on its request history in the last bits: a source question, not an executor one).
    _source_cached.cache_clear()
    local = run_tournament_only("in_process", partition, instance)
    assert local.success, run_error(local)
    expected = tournament_hashes(lake, partition)
    for path in lake.root.glob(f"validation/tournament*/{partition}.parquet"):
        path.unlink()  # the celery run must write them again, not find them

    # The fixture's environment (profile, lakehouse, broker URL, DAGSTER_HOME) is still set: the
    # workers inherit it, as deployed workers must share the run's settings and storage.
    with local_redis(root / "redis", port) as broker, celery_workers(broker, 2, root / "workers") as workers:
        assert len(workers) == 2
        distributed = run_tournament_only("celery", partition, instance)
    assert distributed.success, run_error(distributed)
    assert tournament_hashes(lake, partition) == expected

    steps = step_pids(distributed)
    batches = {k for k in steps if k.startswith("tournament.tournament_engines[")}
    assert batches == {"tournament.tournament_engines[batch_1]", "tournament.tournament_engines[batch_2]"}
    assert {"tournament.tournament_plan", "tournament.tournament_collect"} <= set(steps)
    assert all(pid != os.getpid() for pid in steps.values()), steps  # ran in the celery workers
    assert set(step_pids(local).values()) == {os.getpid()}
    print(f"\ncelery steps ran in {len(set(steps.values()))} worker process(es): {sorted(set(steps.values()))}")
