"""The operator's CLI: exit codes, messages, re-execution, Dagster backfills, accept (on `development`).

Runs go through the real CLI in subprocesses against a temporary lakehouse and DAGSTER_HOME; the
in-process executor keeps them fast (the executor is a manifest setting: PA_EXECUTOR__KIND).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, RunsFilter

from portfolio_assets.manifest import PROJECT_ROOT

CLI = str(Path(sys.executable).with_name("portfolio-assets"))
D0, D1, D2 = "2026-11-23", "2026-11-24", "2026-11-25"


def cli(*args: str, home: Path, lake: Path, extra: dict[str, str] | None = None, timeout: int = 600):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PA_")}
    env.update(DAGSTER_HOME=str(home), PA_LAKEHOUSE=str(lake), PA_EXECUTOR__KIND="in_process", **(extra or {}))
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=PROJECT_ROOT)


def out(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


@pytest.fixture
def dirs(tmp_path):
    home, lake = tmp_path / "home", tmp_path / "lake"
    home.mkdir()
    return home, lake


@pytest.fixture
def instance_of(monkeypatch):
    """`instance_of(home)`: the Dagster instance the CLI wrote to."""
    opened = []

    def open_(home: Path) -> DagsterInstance:
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        opened.append(DagsterInstance.get())
        return opened[-1]

    yield open_
    for instance in opened:
        instance.dispose()


BAD = [
    (("run", "--profile", "nope"), "--profile: unknown profile 'nope'"),
    (("run", "--profile", "development", "--date", "2026-11-26"), "partition 2026-11-26 is not a XNYS trading session"),
    (("run", "--profile", "development", "--date", "1994-12-30"),
     "partition 1994-12-30 is before the first partition 1995-01-03 (manifest calendar.first_partition)"),
    (("run", "--profile", "development", "--set", 'calendar.first_partition="2031-06-02"'),
     "$.calendar: need start < first_partition < end"),
    (("run", "--profile", "development", "--date", "2031-01-02"), "partition 2031-01-02 is after the end of the master calendar"),
    (("run", "--set", "selection.top_n=0"), "$.selection.top_n"),
    (("run", "--profile", "development", "--date", "2019-06-03"),
     "partition 2019-06-03 needs 301 sessions of history from 2018-03-22; the source (synthetic) serves "
     "AMEX:SPY from 2019-01-02"),
    (("run", "--start-step", "12"), "--start-step N and --run-id ID go together"),
    (("run", "--start-step", "12", "--run-id", "20261125-180000"),
     "--run-id 20261125-180000: no such run in"),
    (("run", "--profile", "development", "--date", D2, "--select", "nonsense"),
     "--select 'nonsense': AssetKey(s) ['nonsense'] were selected"),
    (("run", "--profile", "development", "--date", D2, "--select", "key:(("), "--select 'key:((': Invalid selection"),
    (("run", "--profile", "development", "--date", D2, "--select", " "), "--select is empty"),
    (("backfill", "--profile", "development", "--from", D2, "--to", D1), f"--from {D2} is after --to {D1}"),
    (("backfill", "--profile", "development", "--from", D1, "--to", D2, "--select", "equity_scan"),
     f"upstream partitions outside the selection are not materialized: run_manifest@{D1}, run_manifest@{D2}"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_bad_input_is_exit_2_with_one_line_and_nothing_written(args, message, dirs):
    home, lake = dirs
    r = cli(*args, home=home, lake=lake)
    assert r.returncode == 2 and message in r.stderr, out(r)
    assert "Traceback" not in r.stderr
    assert not lake.exists() or not any(lake.rglob("*.parquet"))


def test_a_bad_manifest_names_the_file_and_the_json_path(dirs, tmp_path):
    home, lake = dirs
    bad = tmp_path / "m.json"
    bad.write_text('{"default_profile": "a", "profiles": {"a": {"selection": {"top_n": "x"}}}}')
    r = cli("run", home=home, lake=lake, extra={"PA_MANIFEST": str(bad)})
    assert r.returncode == 2 and f"{bad}: $.profiles.a.selection.top_n:" in r.stderr


def _count(instance: DagsterInstance, name: str, partition: str) -> int:
    return len(instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(name), asset_partitions=[partition]), limit=100).records)


STEP_12_PLUS = ["tournament", "tournament__windows", "reports", "golden_artifacts", "audit_ledger",
                "implementation_orders"]
BEFORE_12 = ["run_manifest", "raw_pool", "history_500d", "market_regime", "target_weights", "holdings"]


def test_run_then_reexecute_from_step_12_status_verify_audit_and_accept(dirs, instance_of):
    home, lake = dirs
    r = cli("run", "--profile", "development", "--date", D2, home=home, lake=lake)
    assert r.returncode == 0 and "audit_ledger:ledger_integrity: passed" in r.stdout, out(r)
    run_id = r.stdout.split("run id: ")[1].split()[0]

    status = cli("status", "--profile", "development", "--date", D2, home=home, lake=lake)
    assert status.returncode == 0, out(status)
    assert f"  {run_id}  SUCCESS   daily_portfolio" in status.stdout
    assert "history_500d:health_gate" in status.stdout and "passed" in status.stdout

    again = cli("run", "--profile", "development", "--start-step", "12", "--run-id", run_id, home=home, lake=lake)
    assert again.returncode == 0, out(again)
    assert f"re-executing run {run_id} from step 12" in again.stdout
    child_id = again.stdout.split("run id: ")[1].split()[0]
    instance = instance_of(home)
    child = instance.get_run_by_id(child_id)
    assert child.parent_run_id == run_id and child.root_run_id == run_id  # a re-execution in Dagster's records
    assert child.tags["dagster/partition"] == D2
    assert all(_count(instance, n, D2) == 2 for n in STEP_12_PLUS), {n: _count(instance, n, D2) for n in STEP_12_PLUS}
    assert all(_count(instance, n, D2) == 1 for n in BEFORE_12), {n: _count(instance, n, D2) for n in BEFORE_12}

    ledger = lake / "development" / "ledger" / D2 / "audit.jsonl"
    kinds = [json.loads(line)["kind"] for line in ledger.read_text().splitlines()]
    assert kinds.count("genesis") == 1 and kinds.count("resume") == 1  # the re-execution continues the chain
    ok = cli("verify-ledger", str(ledger), home=home, lake=lake)
    assert ok.returncode == 0, out(ok)
    lines = ledger.read_text().splitlines()
    rec = json.loads(lines[3])
    rec["payload"]["tampered"] = True
    tampered = ledger.with_name("tampered.jsonl")
    tampered.write_text("\n".join([*lines[:3], json.dumps(rec, sort_keys=True, separators=(",", ":")), *lines[4:]]) + "\n")
    bad = cli("verify-ledger", str(tampered), "--root", str(lake / "development"), home=home, lake=lake)
    assert bad.returncode == 1 and "line 4: hash mismatch (record content changed)" in bad.stdout
    tampered.unlink()

    audit = cli("audit", "--profile", "development", "--date", D2, home=home, lake=lake)
    assert audit.returncode == 0 and "target_weights:weights_sanity: passed" in audit.stdout, out(audit)

    orders = __import__("pandas").read_parquet(
        lake / "development" / "implementation" / "implementation_orders" / f"{D2}.parquet")
    skipped = orders.loc[orders["action"] == "BUY", "symbol"].iloc[0]
    wrong = cli("accept", "--profile", "development", "--date", D2, "--not-traded", "NYSE:NOPE", home=home, lake=lake)
    assert wrong.returncode == 2 and "not traded: ['NYSE:NOPE'] have no BUY/SELL order" in wrong.stderr, out(wrong)
    acc = cli("accept", "--profile", "development", "--date", D2, "--not-traded", skipped, home=home, lake=lake)
    assert acc.returncode == 0, out(acc)
    n_trades = int(orders["action"].isin(["BUY", "SELL"]).sum())
    assert f"accepted {D2}: {n_trades - 1} of {n_trades} order(s) executed" in acc.stdout
    executions = __import__("pandas").read_parquet(lake / "development" / "implementation" / "executions" / f"{D2}.parquet")
    assert set(executions["symbol"]) == set(orders.loc[orders["action"].isin(["BUY", "SELL"]), "symbol"])
    assert executions.set_index("symbol").at[skipped, "delta_net_weight"] == 0.0
    assert _count(instance, "executions", D2) == 1


def test_failed_gate_run_exits_1_names_the_check_alerts_and_accept_refuses(dirs):
    home, lake = dirs
    r = cli("run", "--profile", "development", "--date", D2, "--set", "optimization.max_beta_min_variance=0.000001",
            home=home, lake=lake)
    assert r.returncode == 1, out(r)
    assert "target_weights:weights_sanity: FAILED (ERROR)" in r.stdout
    assert f"alert: [ERROR] portfolio_assets check_failure — target_weights:weights_sanity — partition {D2}" in r.stdout
    alerts = [json.loads(x) for x in (lake / "development" / "alerts" / "alerts.jsonl").read_text().splitlines()]
    assert {a["subject"] for a in alerts} >= {"target_weights:weights_sanity", "run daily_portfolio"}
    assert not (lake / "development" / "implementation" / "implementation_orders" / f"{D2}.parquet").exists()
    acc = cli("accept", "--profile", "development", "--date", D2, home=home, lake=lake)
    assert acc.returncode == 2 and f"no implementation_orders for {D2}" in acc.stderr, out(acc)


def test_backfill_is_a_dagster_backfill_with_a_temporary_daemon(dirs, instance_of):
    """Three dates of `run_manifest+` (the manifest and one layer below: scans and the book): one
    Dagster backfill, every partition succeeded, runs tagged with it and queued by the daemon."""
    home, lake = dirs
    r = cli("backfill", "--profile", "development", "--from", D0, "--to", D2, "--select", "run_manifest+",
            home=home, lake=lake, timeout=1200)
    assert r.returncode == 0, out(r)
    assert "no dagster-daemon running: started one for this backfill" in r.stdout
    assert "3/3 partition(s) succeeded" in r.stdout
    backfill_id = re.search(r"^backfill (\w+) submitted", r.stdout, re.M).group(1)
    instance = instance_of(home)
    backfill = instance.get_backfill(backfill_id)
    assert backfill.status.value == "COMPLETED_SUCCESS"
    runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert {run.tags["dagster/partition"] for run in runs} == {D0, D1, D2}
    assert all(run.status.value == "SUCCESS" for run in runs)
    for day in (D0, D1, D2):
        assert _count(instance, "equity_scan", day) == 1 and _count(instance, "holdings", day) == 1
    assert not instance.get_daemon_heartbeats() or not __import__(
        "portfolio_assets.backfills", fromlist=["daemon_alive"]).daemon_alive(instance, wait_s=35)  # stopped

    # The selection's upstream now exists: a backfill of the scans alone is accepted.
    again = cli("backfill", "--profile", "development", "--from", D1, "--to", D2, "--select", "equity_scan",
                home=home, lake=lake, timeout=1200)
    assert again.returncode == 0 and "2/2 partition(s) succeeded" in again.stdout, out(again)
