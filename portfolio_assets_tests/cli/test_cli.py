"""The operator's CLI: exit codes, messages, resume and backfill (on the small `development` profile).

Runs go through the real CLI in subprocesses against a temporary lakehouse and DAGSTER_HOME; the
in-process executor keeps them fast (the executor is a manifest setting: PA_EXECUTOR__KIND).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from portfolio_assets.manifest import PROJECT_ROOT

CLI = str(Path(sys.executable).with_name("portfolio-assets"))
D1, D2 = "2026-11-24", "2026-11-25"


def cli(*args: str, home: Path, lake: Path, extra: dict[str, str] | None = None, timeout: int = 300):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PA_")}
    env.update(DAGSTER_HOME=str(home), PA_LAKEHOUSE=str(lake), PA_EXECUTOR__KIND="in_process", **(extra or {}))
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=PROJECT_ROOT)


@pytest.fixture
def dirs(tmp_path):
    home, lake = tmp_path / "home", tmp_path / "lake"
    home.mkdir()
    return home, lake


def test_bad_inputs_exit_2_with_the_reason(dirs, tmp_path):
    home, lake = dirs
    r = cli("run", "--profile", "nope", home=home, lake=lake)
    assert r.returncode == 2 and "--profile: unknown profile 'nope'" in r.stderr
    r = cli("run", "--profile", "development", "--date", "2026-11-26", home=home, lake=lake)
    assert r.returncode == 2 and "partition 2026-11-26 is not a XNYS trading session" in r.stderr
    r = cli("run", "--set", "selection.top_n=0", home=home, lake=lake)
    assert r.returncode == 2 and "$.selection.top_n" in r.stderr
    bad = tmp_path / "m.json"
    bad.write_text('{"default_profile": "a", "profiles": {"a": {"selection": {"top_n": "x"}}}}')
    r = cli("run", home=home, lake=lake, extra={"PA_MANIFEST": str(bad)})
    assert r.returncode == 2 and f"{bad}: $.profiles.a.selection.top_n:" in r.stderr
    r = cli("run", "--start-step", "12", home=home, lake=lake)
    assert r.returncode == 2 and "--start-step needs --run-id YYYYMMDD-HHMMSS" in r.stderr
    r = cli("run", "--start-step", "12", "--run-id", "2026-11-25", home=home, lake=lake)
    assert r.returncode == 2 and "run id '2026-11-25' is not YYYYMMDD-HHMMSS" in r.stderr
    assert not lake.exists() or not any(lake.rglob("*.parquet"))  # nothing was written


def _counts(home: Path, names: list[str], partition: str) -> dict[str, int]:
    os.environ["DAGSTER_HOME"] = str(home)
    instance = DagsterInstance.get()
    try:
        return {n: len(instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(n), asset_partitions=[partition]), limit=100).records) for n in names}
    finally:
        instance.dispose()


STEP_12_PLUS = ["tournament", "reports", "golden_artifacts", "audit_ledger", "implementation_orders"]
RISK_PLUS = ["risk_buckets", "target_weights", *STEP_12_PLUS]  # risk_buckets and what depends on it
UPSTREAM = ["run_manifest", "raw_pool", "history_500d", "selected_universe", "market_regime"]  # not downstream


def test_run_backfill_resume_and_verify(dirs):
    home, lake = dirs
    for day in (D1, D2):
        r = cli("run", "--profile", "development", "--date", day, home=home, lake=lake)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert "audit_ledger:ledger_integrity: passed" in r.stdout
    base = {d: _counts(home, RISK_PLUS + UPSTREAM, d) for d in (D1, D2)}
    assert all(v == 1 for d in base.values() for v in d.values())

    r = cli("backfill", "--profile", "development", "--from", D1, "--to", D2, "--select", "risk_buckets+",
            home=home, lake=lake)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "2/2 succeeded" in r.stdout
    for day in (D1, D2):
        after = _counts(home, RISK_PLUS + UPSTREAM, day)
        assert all(after[n] == 2 for n in RISK_PLUS), after
        assert all(after[n] == 1 for n in UPSTREAM), after

    r = cli("run", "--profile", "development", "--start-step", "12", "--run-id", "20261125-180000",
            home=home, lake=lake)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    after = _counts(home, RISK_PLUS + UPSTREAM, D2)
    assert all(after[n] == 3 for n in STEP_12_PLUS) and after["target_weights"] == 2, after
    ledger = lake / "development" / "ledger" / D2 / "audit.jsonl"
    kinds = [json.loads(line)["kind"] for line in ledger.read_text().splitlines()]
    assert kinds.count("genesis") == 1 and kinds.count("resume") == 2  # backfill + resume continue the chain

    ok = cli("verify-ledger", str(ledger), home=home, lake=lake)
    assert ok.returncode == 0, ok.stdout
    lines = ledger.read_text().splitlines()
    rec = json.loads(lines[3])
    rec["payload"]["tampered"] = True
    tampered = ledger.with_name("tampered.jsonl")
    tampered.write_text("\n".join([*lines[:3], json.dumps(rec, sort_keys=True, separators=(",", ":")), *lines[4:]]) + "\n")
    bad = cli("verify-ledger", str(tampered), "--root", str(lake / "development"), home=home, lake=lake)
    assert bad.returncode == 1 and "line 4: hash mismatch (record content changed)" in bad.stdout

    status = cli("status", "--profile", "development", "--date", D2, home=home, lake=lake)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "history_500d:health_gate" in status.stdout and "passed" in status.stdout

    audit = cli("audit", "--profile", "development", "--date", D2, home=home, lake=lake)
    assert audit.returncode == 0, audit.stdout[-2000:] + audit.stderr[-2000:]
    assert "target_weights:weights_sanity: passed" in audit.stdout

    acc = cli("accept", "--profile", "development", "--date", D2, home=home, lake=lake)
    assert acc.returncode == 0 and "accepted 2026-11-25" in acc.stdout
    assert (lake / "development" / "state" / "holdings.parquet").exists()
    shutil.rmtree(home)


def test_failed_gate_run_exits_1_names_the_check_and_alerts(dirs):
    home, lake = dirs
    r = cli("run", "--profile", "development", "--date", D2, "--set", "optimization.max_beta_min_variance=0.000001",
            home=home, lake=lake)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "target_weights:weights_sanity: FAILED (ERROR)" in r.stdout
    assert "implementation_orders" not in r.stdout.split("checks:")[0].split("materialized")[-1]
    assert f"alert: [ERROR] portfolio_assets check_failure — target_weights:weights_sanity — partition {D2}" in r.stdout
    alerts = [json.loads(x) for x in (lake / "development" / "alerts" / "alerts.jsonl").read_text().splitlines()]
    assert {a["subject"] for a in alerts} >= {"target_weights:weights_sanity", "run daily_portfolio"}
    assert not (lake / "development" / "implementation" / "implementation_orders" / f"{D2}.parquet").exists()
