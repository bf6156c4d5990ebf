"""One writer per partition (issue 17, case 11): `partition_lock` as `run`, `backfill`, `accept`,
`audit` and `recover` take it, without a whole-graph run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from portfolio_assets import cli
from portfolio_assets.partitions import master_sessions


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("PA_PROFILE", "demo")
    monkeypatch.setenv("PA_LAKEHOUSE", str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return tmp_path / "demo"


def test_an_overlapping_range_is_refused_naming_the_holder_and_released_after(lake):
    first = [d.date().isoformat() for d in master_sessions("2026-11-02", "2026-11-25")]
    with cli.partition_lock(first, "backfill 2026-11-02..2026-11-25"):
        holder = json.loads((lake / "ledger" / "2026-11-25" / "writer.lock").read_text())
        assert holder["pid"] == os.getpid() and holder["command"] == "backfill 2026-11-02..2026-11-25"
        with pytest.raises(ValueError) as refused:
            with cli.partition_lock(["2026-11-27", "2026-11-25"], "backfill 2026-11-25..2026-11-27"):
                pass
        assert str(refused.value).startswith(
            "partition 2026-11-25 of profile demo is being written by another command ({\"pid\": ")
        assert str(refused.value).endswith("nothing was run, archived or changed")
        # the refused command released what it had taken before the conflict
        with cli.partition_lock(["2026-11-27"], "run --date 2026-11-27"):
            pass
    with cli.partition_lock(["2026-11-25"], "run --date 2026-11-25"):
        pass  # released when the first command ended


def test_a_lock_held_by_another_process_is_released_when_it_dies(lake, tmp_path):
    script = ("import os, sys, time; os.environ['PA_PROFILE']='demo'; os.environ['PA_LAKEHOUSE']=sys.argv[1]\n"
              "from portfolio_assets import cli\n"
              "with cli.partition_lock(['2026-11-25'], 'run --date 2026-11-25'):\n"
              "    print('locked', flush=True); time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=rf'"pid": {holder.pid}, "command": "run --date 2026-11-25"'):
            with cli.partition_lock(["2026-11-25"], "accept --date 2026-11-25"):
                pass
    finally:
        holder.kill()  # kill -9: the kernel releases the lock
        holder.wait()
    with cli.partition_lock(["2026-11-25"], "accept --date 2026-11-25"):
        pass


def test_a_dagster_run_in_progress_from_the_ui_refuses_a_command_and_a_finished_or_killed_one_does_not(
        lake, tmp_path, monkeypatch):
    """Runs launched from the UI, the schedule or a daemon backfill do not take the file lock; a
    command does not start beside one that is still in progress (issue 17: one writer per partition)."""
    from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    def add(run_id: str, status: DagsterRunStatus, partition: str, **tags: str) -> None:
        with DagsterInstance.get() as instance:
            instance.add_run(DagsterRun(job_name="daily_portfolio", run_id=run_id, status=status,
                                        tags={"dagster/partition": partition, **tags}))

    ui_run = "aaaaaaaa-0000-4000-8000-000000000001"
    add(ui_run, DagsterRunStatus.STARTED, "2026-11-25")
    add("aaaaaaaa-0000-4000-8000-000000000002", DagsterRunStatus.SUCCESS, "2026-11-24")
    # a CLI run whose process was killed (Dagster still says STARTED): not in progress
    add("aaaaaaaa-0000-4000-8000-000000000003", DagsterRunStatus.STARTED, "2026-11-23",
        **{"portfolio_assets/launcher": f"{__import__('socket').gethostname()}:{2**22 + 12345}"})
    with pytest.raises(ValueError) as refused:
        with cli.partition_lock(["2026-11-24", "2026-11-25"], "backfill 2026-11-24..2026-11-25"):
            pass
    assert str(refused.value) == (
        "partition 2026-11-25 of profile demo has a Dagster run in progress (launched from the UI, the schedule "
        f"or a backfill): {ui_run}: wait for it to finish (`portfolio-assets status --date 2026-11-25`); "
        "nothing was run, archived or changed")
    with cli.partition_lock(["2026-11-23", "2026-11-24"], "backfill 2026-11-23..2026-11-24"):
        pass  # finished and killed runs do not hold a partition; the refused command released its locks
    with pytest.raises(ValueError, match=f"^partition 2026-11-25 of profile demo has a Dagster run in progress .*{ui_run}"):
        with cli.partition_lock(["2026-11-25"], "run --date 2026-11-25"):
            pass

