"""`portfolio_assets.cli.common`: what a command exports to the processes it starts."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from portfolio_assets.cli.common import _setup_env


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding an export folder `data/`; the command's environment variables
    restored afterwards (monkeypatch)."""
    for name in ("PA_PROFILE", "PA_CLI_OVERRIDES", "PA_SOURCE__KIND", "PA_SOURCE__SETTINGS__PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PA_LAKEHOUSE", str(tmp_path / "lake"))
    (tmp_path / "work" / "data" / "bars").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path / "work"


def _exported(*items: str) -> dict:
    _setup_env(argparse.Namespace(profile="demo", set=list(items)))
    return json.loads(os.environ["PA_CLI_OVERRIDES"])


@pytest.mark.parametrize("given", [["source.settings.path=data"], ['source.settings={"path": "data"}']])
def test_a_relative_export_folder_reaches_other_processes_as_an_absolute_path(isolated: Path, given: list[str]):
    """A backfill's code server and daemon run in the project folder: a relative path used to name
    another folder there, and their code location failed to load (the CLI showed a traceback)."""
    exported = _exported("source.kind=files", *given)
    assert exported["source.settings.path"] == str(isolated / "data")
    assert list(exported)[-1] == "source.settings.path"  # applied after a whole source.settings={...}


def test_a_relative_path_from_the_environment_is_pinned_too(isolated: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PA_SOURCE__KIND", "files")
    monkeypatch.setenv("PA_SOURCE__SETTINGS__PATH", "data")
    assert _exported() == {"source.settings.path": str(isolated / "data")}


def test_an_absolute_path_is_exported_as_given(isolated: Path):
    assert _exported("source.kind=files", f"source.settings.path={isolated / 'data'}") == {
        "source.kind": "files", "source.settings.path": str(isolated / "data")}


@pytest.mark.parametrize("given", ["lake", "./lake", "file://{cwd}/lake"])
def test_a_relative_or_url_lakehouse_reaches_other_processes_as_an_absolute_path(
        isolated: Path, monkeypatch: pytest.MonkeyPatch, given: str):
    """A backfill's runs used to write `<project>/lake` while the command locked and read `./lake`
    (seen: one backfill split one partition across both folders)."""
    monkeypatch.setenv("PA_LAKEHOUSE", given.format(cwd=isolated))
    _exported()
    assert os.environ["PA_LAKEHOUSE"] == str(isolated / "lake")


def test_a_relative_manifest_reaches_other_processes_as_an_absolute_path(isolated: Path,
                                                                           monkeypatch: pytest.MonkeyPatch):
    from portfolio_assets.manifest import DEFAULT_MANIFEST

    (isolated / "my.json").write_bytes(DEFAULT_MANIFEST.read_bytes())
    monkeypatch.setenv("PA_MANIFEST", "my.json")
    _exported()
    assert os.environ["PA_MANIFEST"] == str(isolated / "my.json")
