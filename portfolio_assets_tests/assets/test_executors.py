"""The tournament's fan-out under the default in-process executor and the multiprocess one."""

from __future__ import annotations

import os

import pytest

from portfolio_assets.ledger import frame_hash

pytestmark = pytest.mark.slow
PROFILE, PARTITION = "development", "2026-11-25"
TABLES = ("tournament", "tournament__windows", "tournament__returns", "tournament__weights", "tournament__contexts")


@pytest.fixture(scope="module")
def stored_upstream(tmp_path_factory):
    from dagster import AssetSelection

    from portfolio_assets.assets.validation import UPSTREAM
    from portfolio_assets.lakehouse import Lakehouse
    from portfolio_assets_tests.graph_helpers import (
        environment,
        materialize_partition,
        persistent_instance,
        run_error,
    )

    root = tmp_path_factory.mktemp("executors")
    with environment(PA_PROFILE=PROFILE, PA_LAKEHOUSE=str(root / "lake"), PA_CLI_OVERRIDES=None,
                     PA_EXECUTOR__KIND="multiprocess"), persistent_instance(root / "home") as instance:
        upstream = AssetSelection.assets(*UPSTREAM).upstream().required_multi_asset_neighbors()
        result = materialize_partition(PARTITION, instance, selection=upstream)
        assert result.success, run_error(result)
        yield instance, Lakehouse(root / "lake", PROFILE)


def _hashes(lake) -> dict[str, str]:
    return {name: frame_hash(lake.read_table("validation", name, PARTITION)) for name in TABLES}


def test_multiprocess_fans_the_engines_out_and_equals_in_process(stored_upstream):
    from dagster import DagsterEventType

    from portfolio_assets_tests.graph_helpers import run_error, run_tournament_only

    instance, lake = stored_upstream
    local = run_tournament_only("in_process", PARTITION, instance)
    assert local.success, run_error(local)
    expected = _hashes(lake)
    parallel = run_tournament_only("multiprocess_spawn", PARTITION, instance)  # see the helper's docstring
    assert parallel.success, run_error(parallel)
    assert _hashes(lake) == expected
    pids = {e.step_key: e.pid for e in parallel.all_events if e.event_type == DagsterEventType.STEP_SUCCESS}
    batches = {k for k in pids if k.startswith("tournament.tournament_engines[")}
    assert batches == {"tournament.tournament_engines[batch_1]", "tournament.tournament_engines[batch_2]"}
    assert os.getpid() not in pids.values()  # each step in its own process
