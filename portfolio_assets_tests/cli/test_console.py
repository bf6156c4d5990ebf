"""The console: `--verbose` on the commands that run Dagster (issue 18: Dagster's DEBUG only with it)."""

from __future__ import annotations

import os

from portfolio_assets import cli


def test_verbose_streams_dagsters_debug_log(tmp_path, monkeypatch):
    """`--verbose` (on every command that runs Dagster) is PA_LOG_LEVEL=DEBUG for the command."""
    monkeypatch.setenv("PA_LOG_LEVEL", "WARNING")  # restored after the test
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PA_LAKEHOUSE", str(tmp_path / "lake"))
    monkeypatch.setenv("PA_PROFILE", "demo")
    assert cli.build_parser().parse_args(["status"]).verbose is False
    cli.main(["status", "--profile", "demo", "--date", "2026-11-25", "--verbose"])
    assert os.environ["PA_LOG_LEVEL"] == "DEBUG"
