"""`portfolio_assets.backfills`: a backfill that cannot be submitted says where to look (the
backfills themselves run in `cli/test_cli.py`, `cli/test_ui.py` and the bench)."""

from __future__ import annotations

from pathlib import Path

import pytest

from portfolio_assets.backfills import GraphQLError, launch_job_backfill


def test_a_code_location_that_does_not_load_names_the_log_with_its_error(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    """Dagster reports a code location that failed to load only as a missing partition set; the
    reason (here a source folder that does not exist where the code server runs) is in the log."""
    for name in ("PA_PROFILE", "PA_CLI_OVERRIDES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PA_LAKEHOUSE", str(tmp_path / "lake"))
    monkeypatch.setenv("PA_SOURCE__KIND", "files")
    monkeypatch.setenv("PA_SOURCE__SETTINGS__PATH", "no-such-export")
    (tmp_path / "home").mkdir()
    log = tmp_path / "backfill.log"
    with pytest.raises(GraphQLError) as err:
        launch_job_backfill("daily_portfolio", ["2026-11-25"], None, {}, "t", log=log)
    assert str(err.value) == (
        "PartitionSetNotFoundError: Partition set daily_portfolio_partition_set could not be found."
        f"; see {log}")
    assert "'no-such-export' is not a directory" in log.read_text()
