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
    assert asset_code_version("market_regime").endswith(f"regimes.{AREA_VERSIONS['regimes']},reports.1,sources.1")
    assert asset_code_version("run_manifest") == "w1"


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
    assert len(problems) == 1 and problems[0].startswith("regimes: its source files changed but "
                                                           "AREA_VERSIONS['regimes'] is still 1")
    monkeypatch.setitem(AREA_VERSIONS, "regimes", 2)  # bumped, snapshot not refreshed: still flagged
    assert snapshot_problems(package, snapshot) == [
        "regimes: version 1 -> 2 not recorded; run `portfolio-assets versions --refresh`"]
    versions.refresh_snapshot(package, snapshot)
    assert snapshot_problems(package, snapshot) == []


def test_guard_ignores_comments_docstrings_and_formatting(package_copy):
    package, snapshot = package_copy
    module = package / "quant" / "orders.py"
    text = module.read_text()
    module.write_text(text.replace('"""Implementation orders', '"""Orders (reworded docstring)', 1) + "\n# a comment\n")
    assert snapshot_problems(package, snapshot) == []
