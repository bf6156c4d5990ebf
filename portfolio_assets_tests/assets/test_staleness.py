"""Dagster's own stale status on our code and data versions (GraphQL `staleStatusByPartition`,
the query `portfolio-assets stale` runs), after a version bump and after a new bar."""

from __future__ import annotations

import json
import textwrap

import pytest
from dagster import AssetSelection, DagsterInstance

from portfolio_assets.backfills import stale_pairs
from portfolio_assets.manifest import PROJECT_ROOT, resolve
from portfolio_assets_tests.conftest import DEV_DATE, copy_run
from portfolio_assets_tests.graph_helpers import (
    DOWNSTREAM_OF_HISTORY,
    PARTITION,
    env,
    run_graph,
    step_errors,
    tables,
)

pytestmark = pytest.mark.slow

# `previous_target` reads the previous session's target (not today's history, so a failed gate does
# not block it), and its code version carries target_weights' (versions.with_upstream).
REGIME_CONE = {"market_regime", "previous_target", *DOWNSTREAM_OF_HISTORY} - tables("risk_buckets", "stats", "pairs")
FETCHERS = {*tables("returns_60d", "coverage"), *tables("history_500d", "returns", "health", "recovery"),
            *tables("raw_pool_history", "coverage"), "market_regime",
            *tables("tournament", "windows", "returns", "weights", "contexts")}


@pytest.fixture(scope="module")
def stored(dev_lakehouse, tmp_path_factory):
    """The development graph for PARTITION in a lakehouse and an on-disk instance: a copy of the
    session's development run (`portfolio-assets run`) with its instance."""
    assert PARTITION == DEV_DATE
    root = tmp_path_factory.mktemp("stale")
    run = copy_run(dev_lakehouse, root, with_instance=True)
    home, lake = run.instance_home, run.lakehouse
    with DagsterInstance.from_config(str(home)) as instance:
        yield root, home, lake, instance


def _stale(stored, workspace=None) -> dict[str, str]:
    from portfolio_assets.definitions import defs

    root, home, lake, instance = stored
    keys = [k for k in defs.resolve_asset_graph().get_all_asset_keys() if k.to_user_string() != "executions"]
    materialized = {k.to_user_string(): [PARTITION] for k in keys if PARTITION in instance.get_materialized_partitions(k)}
    with env(DAGSTER_HOME=str(home), PA_LAKEHOUSE=str(lake), PA_PROFILE="development"):
        pairs = stale_pairs(materialized, root / "graphql.log", **({"workspace": workspace} if workspace else {}))
    assert {p for _, p, _ in pairs} <= {PARTITION}
    return {asset: why for asset, _, why in pairs}


def test_a_fresh_run_is_not_stale(stored):
    assert _stale(stored) == {}


def test_a_regime_version_bump_makes_market_regime_and_its_downstream_stale_and_nothing_upstream(stored, tmp_path):
    bumped = tmp_path / "bumped_regimes.py"
    bumped.write_text(textwrap.dedent("""
        from portfolio_assets import versions

        versions.AREA_VERSIONS["regimes"] += 1

        from portfolio_assets.definitions import defs  # noqa: E402
    """))
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(json.dumps({"load_from": [{"python_file": {
        "relative_path": str(bumped), "attribute": "defs", "location_name": "portfolio_assets",
        "working_directory": str(PROJECT_ROOT)}}]}))
    stale = _stale(stored, workspace)
    assert set(stale) == REGIME_CONE | tables("tournament", "windows", "returns", "weights", "contexts")
    assert all("has a new code version" in why for why in stale.values())


def test_a_changed_bar_makes_the_assets_that_fetch_bars_stale(stored):
    """market_bars re-fingerprinted on a source whose bars changed before D: the assets that read
    bars are stale; fingerprinting the unchanged source again makes them fresh again."""
    _, _, lake, instance = stored
    settings = resolve("development").config.source.settings.model_dump(mode="json")
    changed = run_graph(lake, selection=AssetSelection.assets("market_bars"), instance=instance,
                        PA_SOURCE__SETTINGS=json.dumps({**settings, "perturb_after": "2026-11-20"}))
    assert changed.success, step_errors(changed)
    stale = _stale(stored)
    assert set(stale) == FETCHERS
    assert all(why == f"market_bars@{PARTITION} has a new data version" for why in stale.values()), stale
    same = run_graph(lake, selection=AssetSelection.assets("market_bars"), instance=instance)
    assert same.success
    assert _stale(stored) == {}
