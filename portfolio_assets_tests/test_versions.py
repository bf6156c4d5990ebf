"""Code versions: the rule that derives them, and the guard that keeps the version table honest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from portfolio_assets import versions
from portfolio_assets.versions import AREA_VERSIONS, ASSETS, asset_code_version, snapshot_problems


def test_the_committed_snapshot_matches_the_sources_and_versions():
    """Fails when an area's files changed and neither its version nor the snapshot was updated:
    bump `AREA_VERSIONS[area]` if results can change, then `portfolio-assets versions --refresh`."""
    assert snapshot_problems() == []


def test_a_version_bump_changes_exactly_the_assets_that_use_the_area(monkeypatch):
    before = {a: asset_code_version(a) for a in ASSETS}
    monkeypatch.setitem(AREA_VERSIONS, "regimes", AREA_VERSIONS["regimes"] + 1)
    changed = {a for a in ASSETS if asset_code_version(a) != before[a]}
    assert changed == {"market_regime", "tournament"}  # risk_buckets, target_weights... keep theirs
    v = AREA_VERSIONS
    assert asset_code_version("market_regime").endswith(
        f"regimes.{v['regimes']},reports.{v['reports']},sources.{v['sources']}")
    assert asset_code_version("run_manifest") == "w1"


def test_a_bump_makes_the_whole_downstream_cone_new_and_nothing_upstream(monkeypatch):
    """With the upstream fingerprint, Dagster reports market_regime *and everything downstream*
    stale after a regimes bump (it compares code versions), and nothing upstream of it."""
    from portfolio_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
               for k in graph.get_all_asset_keys()}
    ops = {k.to_user_string(): a.node_def.name for a in defs.assets for k in a.keys}

    def full() -> dict[str, str]:
        return versions.with_upstream({k: asset_code_version(op) for k, op in ops.items()}, parents)

    before = full()
    monkeypatch.setitem(AREA_VERSIONS, "regimes", AREA_VERSIONS["regimes"] + 1)
    changed = {k for k, v in full().items() if v != before[k]}
    regime = next(n for n in graph.get_all_asset_keys() if n.to_user_string() == "market_regime")
    downstream = {k.to_user_string() for k in graph.get_all_asset_keys()
                  if k != regime and regime in _ancestors(graph, k)}
    assert changed == {"market_regime", *downstream} | {k for k in ops if k.startswith("tournament")}
    assert {"target_weights", "reports", "audit_ledger", "implementation_orders"} <= changed
    assert not changed & {"history_500d", "risk_buckets", "raw_pool", "run_manifest", "holdings"}


def _ancestors(graph, key) -> set:
    seen, stack = set(), [key]
    while stack:
        for parent in graph.get(stack.pop()).parent_keys:
            if parent not in seen and parent != key:
                seen.add(parent)
                stack.append(parent)
    return seen


def test_every_area_has_sources_and_every_used_area_a_version():
    used = {area for _, areas in ASSETS.values() for area in areas}
    assert used <= set(AREA_VERSIONS) and set(AREA_VERSIONS) == set(versions.AREA_SOURCES)
    for area in AREA_VERSIONS:
        assert versions.area_files(area), f"area {area} has no source file in this checkout"


@pytest.fixture
def package_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the package and a snapshot of it (what `--refresh` would write)."""
    package = tmp_path / "portfolio_assets"
    shutil.copytree(versions.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    snapshot = tmp_path / "snapshot.json"
    versions.refresh_snapshot(package, snapshot)
    return package, snapshot


def test_guard_fails_on_a_code_change_without_a_version_bump(package_copy, monkeypatch):
    package, snapshot = package_copy
    module = package / "quant" / "regimes.py" if (package / "quant" / "regimes.py").exists() else next(
        (package / "quant" / "regimes").rglob("*.py"))
    module.write_text(module.read_text() + "\n\ndef new_rule(x):\n    return x * 2\n")
    problems = snapshot_problems(package, snapshot)
    current = AREA_VERSIONS["regimes"]
    assert len(problems) == 1 and problems[0].startswith("regimes: its source files changed but "
                                                           f"AREA_VERSIONS['regimes'] is still {current}")
    monkeypatch.setitem(AREA_VERSIONS, "regimes", current + 1)  # bumped, snapshot not refreshed: still flagged
    assert snapshot_problems(package, snapshot) == [
        f"regimes: version {current} -> {current + 1} not recorded; run `portfolio-assets versions --refresh`"]
    versions.refresh_snapshot(package, snapshot)
    assert snapshot_problems(package, snapshot) == []


def test_guard_ignores_comments_docstrings_and_formatting(package_copy):
    package, snapshot = package_copy
    module = package / "quant" / "orders.py"
    text = module.read_text()
    module.write_text(text.replace('"""Implementation orders', '"""Orders (reworded docstring)', 1) + "\n# a comment\n")
    assert snapshot_problems(package, snapshot) == []
