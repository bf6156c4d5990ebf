"""The tournament on a local dask cluster through Dagster (SPEC §7): same tables as in-process.

The development profile's upstream of `tournament` is materialized in-process into a temporary
lakehouse; then only the `tournament` graph asset runs, once with the in_process executor and
once with `jobs.executor_for(ExecutorConfig(kind="dask", dask=DaskConfig(n_workers=2)))` (a
reconstructable job on a persistent temporary instance, as the dask executor requires). Both
runs must write identical tables (frame hashes), and the engine batch steps must have run in the
dask workers' processes. The tables are deleted between the runs, so a dask run that "succeeds"
without running the dynamically mapped engine batches (dagster-dask submits only the steps of the
static plan) fails here instead of passing on the in-process run's files.

The dask executor is ours (`portfolio_assets/dask_executor.py`): dagster-dask 0.29.27's own
executor cannot submit a partitioned run to distributed 2026.8 and would skip dynamic steps.
"""

from __future__ import annotations

import os
import time

import pytest

pytestmark = pytest.mark.slow

PROFILE = "development"
PARTITION = "2026-11-25"  # a closed XNYS session inside the synthetic market's range
TOURNAMENT_TABLES = (None, "windows", "returns", "weights", "contexts")


@pytest.fixture(scope="module")
def stored_upstream(tmp_path_factory):
    """(instance, partition, lakehouse) with every upstream asset of `tournament` stored."""
    from dagster import AssetSelection

    from portfolio_assets.assets.validation import UPSTREAM
    from portfolio_assets.bench import environment, materialize_partition, persistent_instance, run_error
    from portfolio_assets.lakehouse import Lakehouse

    root = tmp_path_factory.mktemp("dask")
    partition = PARTITION
    with environment(PA_PROFILE=PROFILE, PA_LAKEHOUSE=str(root / "lake"), PA_CLI_OVERRIDES=None, PA_EXECUTOR__KIND="dask"), \
            persistent_instance(root / "dagster_home") as instance:
        upstream = AssetSelection.assets(*UPSTREAM).upstream().required_multi_asset_neighbors()
        result = materialize_partition(partition, instance, selection=upstream)
        assert result.success, run_error(result)
        yield instance, partition, Lakehouse(root / "lake", PROFILE)


def tournament_hashes(lake, partition: str) -> dict[str, str]:
    from portfolio_assets.ledger import frame_hash

    return {part or "tournament": frame_hash(lake.read_table("validation", "tournament", partition, part))
            for part in TOURNAMENT_TABLES}


def step_pids(result) -> dict[str, int]:
    from dagster import DagsterEventType

    return {e.step_key: e.pid for e in result.all_events if e.event_type == DagsterEventType.STEP_SUCCESS}


def test_tournament_on_a_local_dask_cluster_equals_in_process(stored_upstream):
    from portfolio_assets.bench import run_error, run_tournament_only
    from portfolio_assets.resources import _source_cached

    instance, partition, lake = stored_upstream
    # Start from a fresh market source, as every dask worker does: SyntheticMarket's prices depend
    # on its request history in the last bits (checkpoint block sums, see the report), which is a
    # source-determinism question, not an executor one.
    _source_cached.cache_clear()
    t0 = time.perf_counter()
    local = run_tournament_only("in_process", partition, instance)
    t_local = time.perf_counter() - t0
    assert local.success, run_error(local)
    expected = tournament_hashes(lake, partition)
    for path in lake.root.glob(f"validation/tournament*/{partition}.parquet"):
        path.unlink()  # the dask run must write them again, not find them

    t0 = time.perf_counter()
    distributed = run_tournament_only("dask", partition, instance)
    t_dask = time.perf_counter() - t0
    error = run_error(distributed)
    assert distributed.success, error
    print(f"tournament only: in_process {t_local:.1f} s, dask (2 workers) {t_dask:.1f} s")
    assert tournament_hashes(lake, partition) == expected

    steps = step_pids(distributed)
    batches = {k for k in steps if k.startswith("tournament.tournament_engines[")}
    assert batches == {"tournament.tournament_engines[batch_1]", "tournament.tournament_engines[batch_2]"}
    assert {"tournament.tournament_plan", "tournament.tournament_collect"} <= set(steps)
    assert all(pid != os.getpid() for pid in steps.values()), steps  # ran in the dask workers
    assert set(step_pids(local).values()) == {os.getpid()}
    print(f"\ntournament ({PROFILE}, {partition}): in_process {t_local:.1f} s, "
          f"dask local cluster (2 workers, incl. start-up) {t_dask:.1f} s")
