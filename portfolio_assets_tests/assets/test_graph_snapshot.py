"""The asset graph as code builds it, against the committed snapshot and the SPEC §2 contract.

`graph_snapshot.json` records every asset key with its group, upstream keys and kinds, and every
asset check key with its blocking flag. Any change to the graph (a new asset, a renamed or
re-grouped one, a changed dependency, a check that stopped blocking) fails
`test_graph_matches_snapshot` with a readable diff, so graph changes are reviewed on purpose.

Regenerate the snapshot after an intended change, then review and commit the JSON diff:

    PA_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest portfolio_assets_tests/assets/test_graph_snapshot.py -q

The contract tests below (keys, groups, blocking gates, descriptions/owners/kinds, no stub assets)
do not read the snapshot, so regenerating it can never hide a contract violation.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import AssetKey, Definitions, asset

from portfolio_assets.definitions import defs

SNAPSHOT = Path(__file__).with_name("graph_snapshot.json")
REPO_ROOT = Path(__file__).resolve().parents[2]

# SPEC §2: these keys are a contract (more may be added, none removed or renamed).
CONTRACT_GROUPS = {
    "run_manifest": "run",
    "equity_scan": "discovery",
    "crypto_scan": "discovery",
    "bond_scan": "discovery",
    "forex_scan": "discovery",
    "raw_pool": "universe",
    "returns_60d": "universe",
    "selected_universe": "universe",
    "enriched_universe": "universe",
    "history_500d": "history",
    "risk_buckets": "risk",
    "market_regime": "risk",
    "target_weights": "allocation",
    "tournament": "validation",
    "reports": "reporting",
    "golden_artifacts": "reporting",
    "audit_ledger": "audit",
    "implementation_orders": "implementation",
}
CONTRACT_BLOCKING_CHECKS = {
    "history_500d:health_gate",
    "target_weights:weights_sanity",
    "audit_ledger:ledger_integrity",
}
OWNER = re.compile(r"^(team:[A-Za-z0-9_.-]+|[^@\s]+@[^@\s]+\.[^@\s]+)$")


def graph_snapshot(definitions: Definitions) -> dict[str, Any]:
    """The reviewed facts of the graph, as plain JSON (sorted, so the file diffs cleanly)."""
    graph = definitions.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "kinds": sorted(node.kinds),
            "code_version": node.code_version,
        }
    checks = {
        ck.to_user_string(): {"blocking": bool(graph.get(ck).blocking)}
        for ck in sorted(graph.asset_check_keys, key=lambda c: c.to_user_string())
    }
    return {"assets": assets, "checks": checks}


def snapshot_text(snap: dict[str, Any]) -> str:
    return json.dumps(snap, indent=2, sort_keys=True) + "\n"


def describe_diff(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    """What changed, one line per key and field, for the assertion message."""
    lines = []
    for section in ("assets", "checks"):
        exp, act = expected.get(section, {}), actual.get(section, {})
        lines += [f"{section}: + {k} {act[k]}" for k in sorted(act.keys() - exp.keys())]
        lines += [f"{section}: - {k} (in the snapshot, not in the code)" for k in sorted(exp.keys() - act.keys())]
        for k in sorted(exp.keys() & act.keys()):
            for field in sorted(exp[k].keys() | act[k].keys()):
                if exp[k].get(field) != act[k].get(field):
                    lines.append(f"{section}: ~ {k}.{field}: snapshot {exp[k].get(field)!r} != code {act[k].get(field)!r}")
    return "\n".join(lines)


def stub_keys(definitions: Definitions) -> set[str]:
    """Keys in the graph that no AssetsDefinition of ours defines (e.g. a `deps=` typo, which
    Dagster silently turns into an external, non-materializable stub asset)."""
    graph = definitions.resolve_asset_graph()
    defined = {k for a in definitions.assets or [] for k in getattr(a, "keys", [])}
    return {
        k.to_user_string()
        for k in graph.get_all_asset_keys()
        if k not in defined or not graph.get(k).is_materializable
    }


@pytest.fixture(scope="module")
def graph():
    return defs.resolve_asset_graph()


def test_graph_matches_snapshot():
    actual = graph_snapshot(defs)
    if os.environ.get("PA_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(snapshot_text(actual))
    assert SNAPSHOT.exists(), f"no {SNAPSHOT.name}: run with PA_UPDATE_SNAPSHOT=1 to create it"
    expected = json.loads(SNAPSHOT.read_text())
    assert expected == actual, (
        "the asset graph differs from graph_snapshot.json; if intended, regenerate it with "
        "PA_UPDATE_SNAPSHOT=1 and review the diff:\n" + describe_diff(expected, actual)
    )
    # The committed file is exactly what regeneration writes (no hand-edited ordering drift).
    assert SNAPSHOT.read_text() == snapshot_text(actual)


def test_snapshot_diff_names_what_changed():
    """The diff helper reports additions, removals and field changes (the failure message is useful)."""
    before = {"assets": {"a": {"group": "g", "deps": [], "kinds": ["python"]},
                         "b": {"group": "g", "deps": ["a"], "kinds": ["python"]}},
              "checks": {"a:c": {"blocking": True}}}
    after = {"assets": {"a": {"group": "h", "deps": [], "kinds": ["python"]},
                        "x": {"group": "g", "deps": ["a"], "kinds": ["python"]}},
             "checks": {"a:c": {"blocking": False}}}
    diff = describe_diff(before, after).splitlines()
    assert "assets: ~ a.group: snapshot 'g' != code 'h'" in diff
    assert "assets: - b (in the snapshot, not in the code)" in diff
    assert any(line.startswith("assets: + x ") for line in diff)
    assert "checks: ~ a:c.blocking: snapshot True != code False" in diff
    assert describe_diff(before, before) == ""


def test_no_stub_assets(graph):
    assert stub_keys(defs) == set(), "keys not defined by our asset modules (typo in deps=/ins=?)"
    defined = {k for a in defs.assets for k in a.keys}
    assert graph.get_all_asset_keys() == defined
    for ck in graph.asset_check_keys:
        assert ck.asset_key in defined, f"check {ck.to_user_string()} targets an asset we do not define"


def test_stub_detection_catches_a_deps_typo():
    """The detector itself: a `deps=` typo yields a stub key that `stub_keys` reports."""

    @asset(deps=["raw_pol"])
    def downstream() -> None: ...

    assert stub_keys(Definitions(assets=[downstream])) == {"raw_pol"}


def test_a_misspelt_dependency_is_a_definitions_error():
    """A typo in an input is refused by Dagster when the definitions load; a typo in a `deps=`
    entry (which Dagster would turn into a stub) by the check definitions.py runs at import."""
    from dagster import AssetIn, DagsterInvalidDefinitionError

    from portfolio_assets.definitions import undefined_dependencies

    @asset(ins={"pool": AssetIn("raw_pol")})
    def typo_input(pool):
        return pool

    with pytest.raises(DagsterInvalidDefinitionError, match='Input asset .*raw_pol.* is not produced'):
        Definitions.validate_loadable(Definitions(assets=[*defs.assets, typo_input], resources=defs.resources))

    @asset(deps=["raw_pol"])
    def typo_dep() -> None: ...

    assert undefined_dependencies(Definitions(assets=[*defs.assets, typo_dep], resources=defs.resources)) == {
        "typo_dep": ["raw_pol"]}
    assert undefined_dependencies(defs) == {}


def test_no_asset_declares_string_deps_for_data():
    """Every edge of the graph is an input (typed, or an ordering-only `Nothing` input made with
    `common.after`), never a bare `deps=` entry."""
    for assets_def in defs.assets:
        for key in assets_def.keys:
            spec_deps = {d.asset_key for d in assets_def.get_asset_spec(key).deps}
            inputs = set(assets_def.keys_by_input_name.values())
            assert spec_deps <= inputs, f"{key.to_user_string()}: deps without an input: {spec_deps - inputs}"


def test_every_asset_has_the_code_version_of_the_versions_table(graph):
    from portfolio_assets.versions import asset_code_version, with_upstream

    own = {}
    for assets_def in defs.assets:
        for key in assets_def.keys:
            own[key.to_user_string()] = asset_code_version(assets_def.node_def.name)
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
               for k in graph.get_all_asset_keys()}
    expected = with_upstream(own, parents)
    assert {k.to_user_string(): graph.get(k).code_version for k in graph.get_all_asset_keys()} == expected
    assert all(graph.get(k).code_version for k in graph.get_all_asset_keys())


def test_a_failed_health_gate_blocks_every_reader_of_a_history_table(graph):
    """Dagster blocks the consumers of the checked key (`history_500d`): every asset that reads
    another table of the history step must therefore also wait for `history_500d` itself."""
    history = {k for k in graph.get_all_asset_keys() if k.to_user_string().startswith("history_500d")}
    readers = {k for k in graph.get_all_asset_keys() if graph.get(k).parent_keys & history} - history
    assert {r.to_user_string() for r in readers} >= {"risk_buckets", "market_regime", "target_weights", "tournament",
                                                       "reports"}
    for reader in readers:
        assert AssetKey("history_500d") in graph.get(reader).parent_keys, reader.to_user_string()


def test_runbook_steps_never_decrease_downstream(graph):
    """`run --start-step N` re-executes each asset of step >= N with everything downstream of it:
    that is "steps >= N" only if no asset feeds an asset of an earlier step."""
    from portfolio_assets.assets.common import STEP_TAG

    for key in graph.get_all_asset_keys():
        step = int(graph.get(key).tags[STEP_TAG])
        for parent in graph.get(key).parent_keys:
            if parent not in (key, AssetKey("executions")):  # the previous session's book and trades
                assert int(graph.get(parent).tags[STEP_TAG]) <= step, (parent.to_user_string(), key.to_user_string())


def test_contract_asset_keys_and_groups(graph):
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    missing = sorted(set(CONTRACT_GROUPS) - keys)
    assert not missing, f"SPEC §2 contract assets missing: {missing}"
    wrong = {k: graph.get(AssetKey(k)).group_name for k, g in CONTRACT_GROUPS.items()
             if graph.get(AssetKey(k)).group_name != g}
    assert not wrong, f"contract assets in the wrong group (expected {CONTRACT_GROUPS}): {wrong}"
    # Every group in the graph is one of the spec's groups (no stray `default` group).
    assert {graph.get(k).group_name for k in graph.get_all_asset_keys()} <= set(CONTRACT_GROUPS.values())


def test_contract_checks_exist_and_block(graph):
    checks = {ck.to_user_string(): graph.get(ck) for ck in graph.asset_check_keys}
    missing = sorted(CONTRACT_BLOCKING_CHECKS - checks.keys())
    assert not missing, f"SPEC §2 gate checks missing: {missing}"
    not_blocking = sorted(k for k in CONTRACT_BLOCKING_CHECKS if not checks[k].blocking)
    assert not not_blocking, f"gate checks that must be blocking but are not: {not_blocking}"


def test_contract_lineage_order(graph):
    """Gates sit between the steps they guard: orders come after the ledger and the weights, the
    ledger after the reports and the tournament, and everything after the run manifest."""
    def ancestors(name: str) -> set[str]:
        return _ancestors(graph, AssetKey(name))

    assert {"audit_ledger", "target_weights", "history_500d", "run_manifest"} <= ancestors("implementation_orders")
    assert {"reports", "tournament", "target_weights"} <= ancestors("audit_ledger")
    assert {"history_500d", "risk_buckets", "market_regime"} <= ancestors("target_weights")
    for key in graph.get_all_asset_keys():
        # `executions` are facts an operator states (`accept`), outside any run of the daily graph.
        if key not in (AssetKey("run_manifest"), AssetKey("executions")):
            assert "run_manifest" in ancestors(key.to_user_string()), f"{key.to_user_string()} does not follow step 1"


def _ancestors(graph, key: AssetKey) -> set[str]:
    seen: set[AssetKey] = set()
    stack = [key]
    while stack:
        for parent in graph.get(stack.pop()).parent_keys:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return {k.to_user_string() for k in seen - {key}}


def test_every_asset_has_description_owner_and_kinds(graph):
    problems = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node, name = graph.get(key), key.to_user_string()
        if len((node.description or "").strip()) < 20:
            problems.append(f"{name}: no real description ({node.description!r})")
        if not node.owners:
            problems.append(f"{name}: no owner")
        problems += [f"{name}: malformed owner {o!r}" for o in node.owners if not OWNER.match(o)]
        if not node.kinds:
            problems.append(f"{name}: no kinds")
    for ck in graph.asset_check_keys:
        if not (graph.get(ck).description or "").strip():
            problems.append(f"check {ck.to_user_string()}: no description")
    assert not problems, "\n".join(problems)


def test_code_location_named_the_same_everywhere():
    """SPEC §2: one entry module, named the same in pyproject.toml and workspace.yaml."""
    tool = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["dagster"]
    workspace = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())["load_from"]
    assert len(workspace) == 1
    entry = workspace[0]["python_module"]
    assert entry["module_name"] == tool["module_name"] == "portfolio_assets.definitions"
    assert entry["location_name"] == tool["code_location_name"]
