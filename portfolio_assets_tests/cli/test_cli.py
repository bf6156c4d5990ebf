"""The operator's CLI: exit codes, messages, re-execution, Dagster backfills, accept (on `development`).

Runs go through the real CLI in processes of their own (`conftest.run_cli`: forked from a warm
zygote) against a temporary lakehouse and DAGSTER_HOME; the in-process executor keeps them fast
(the executor is a manifest setting: PA_EXECUTOR__KIND).
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
from portfolio_assets_tests.conftest import DEV_DATE, PREV_DATE, run_cli, run_cli_in_process

CLI = str(Path(sys.executable).with_name("portfolio-assets"))
D0, D1, D2 = "2026-11-23", PREV_DATE, DEV_DATE  # D2: the session's shared development run (conftest)


def cli_env(home: Path, lake: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PA_")}
    env.update(DAGSTER_HOME=str(home), PA_LAKEHOUSE=str(lake), PA_EXECUTOR__KIND="in_process", **(extra or {}))
    return env


def cli(*args: str, home: Path, lake: Path, extra: dict[str, str] | None = None,
        timeout: float | None = None):
    return run_cli(list(args), cli_env(home, lake, extra), timeout=timeout)


def out(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


@pytest.fixture
def dirs(tmp_path):
    home, lake = tmp_path / "home", tmp_path / "lake"
    home.mkdir()
    return home, lake


@pytest.fixture
def instance_of(monkeypatch):
    """`instance_of(home)`: the Dagster instance the CLI wrote to (the profile's, under `home`)."""
    opened = []

    def open_(home: Path, profile: str = "development") -> DagsterInstance:
        monkeypatch.setenv("DAGSTER_HOME", str(home / "profiles" / profile))
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
     f"portfolio-assets: upstream partitions outside --select 'equity_scan' are not materialized: run_manifest at "
     f"{D1}, {D2}. Materialize them first: portfolio-assets backfill --profile development --from {D1} --to {D2} "
     f"--select key:run_manifest\n"),
    # issue 18 #2: the README's example on a fresh profile names every missing upstream asset (up
    # through the ones they need in turn) and the one backfill that materializes them first.
    (("backfill", "--profile", "development", "--from", D1, "--to", "2026-11-27", "--select", "risk_buckets+"),
     "upstream partitions outside --select 'risk_buckets+' are not materialized: bond_scan, crypto_scan, "
     "enriched_universe, equity_scan, forex_scan, history_500d, holdings, market_bars, market_regime, previous_target, "
     f"raw_pool, raw_pool_history, returns_60d, run_manifest, selected_universe at {D1}, {D2}, 2026-11-27. Materialize them "
     f"first: portfolio-assets backfill --profile development --from {D1} --to 2026-11-27 --select 'key:bond_scan or "
     "key:crypto_scan or key:enriched_universe or key:equity_scan or key:forex_scan or key:history_500d or "
     "key:holdings or key:market_bars or key:market_regime or key:previous_target or key:raw_pool or key:raw_pool_history "
     "or key:returns_60d or "
     "key:run_manifest or key:selected_universe'\n"),
    (("backfill", "--profile", "development", "--from", D1, "--to", D2, "--select", "nonsense"),
     "--select 'nonsense': AssetKey(s) ['nonsense'] were selected"),
    (("backfill", "--profile", "development", "--from", D1, "--to", D2, "--select", "key:(("),
     "portfolio-assets: --select 'key:((': Invalid selection string: key:((\n"),
    (("backfill", "--profile", "development", "--from", D1, "--to", D2, "--select", ""),
     "portfolio-assets: --select is empty\n"),
    # issue 18 #1: --start-step outside the runbook's steps is refused before the run id is looked up.
    (("run", "--profile", "development", "--start-step", "99", "--run-id", "0" * 8),
     "portfolio-assets: --start-step 99: not a runbook step; the daily graph's steps are "
     "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15\n"),
    (("run", "--profile", "development", "--start-step", "0", "--run-id", "0" * 8),
     "portfolio-assets: --start-step 0: not a runbook step"),
    (("run", "--profile", "development", "--start-step", "12", "--run-id", "00000000-0000-0000-0000-000000000000"),
     "portfolio-assets: --run-id 00000000-0000-0000-0000-000000000000: no such run in"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_bad_input_is_exit_2_with_one_line_and_nothing_written(args, message, dirs):
    """In this process (`run_cli_in_process`: bad input is refused before any Dagster work); the
    next test takes a bad input through the installed program."""
    home, lake = dirs
    r = run_cli_in_process(list(args), cli_env(home, lake))
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


def test_run_then_reexecute_from_step_12_status_verify_audit_and_accept(dev_run_copy, instance_of):
    """From the session's `run --profile development --date D2` (a copy of its lakehouse and instance)."""
    home, lake = dev_run_copy.dagster_home, dev_run_copy.lakehouse
    assert "audit_ledger:ledger_integrity: passed" in dev_run_copy.stdout, dev_run_copy.stdout
    run_id = dev_run_copy.stdout.split("run id: ")[1].split()[0]

    status = cli("status", "--profile", "development", "--date", D2, home=home, lake=lake)
    assert status.returncode == 0, out(status)
    assert f"  {run_id}  SUCCESS   daily_portfolio" in status.stdout
    for gate in ("history_500d:health_gate", "target_weights:weights_sanity", "audit_ledger:ledger_integrity"):
        assert re.search(rf"^  {gate} +passed$", status.stdout, flags=re.M), status.stdout

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


@pytest.mark.parametrize("command", ["audit", "recover"])
def test_audit_or_recover_of_a_partition_never_materialized_exits_2_before_any_run(dirs, instance_of, command):
    """A date with no stored table (a typo, or today before the day's run) is refused before a run:
    the run could only fail step by step there and send error alerts to every sink."""
    home, lake = dirs
    proc = cli(command, "--profile", "development", "--date", D0, home=home, lake=lake)
    assert proc.returncode == 2, out(proc)
    assert proc.stderr.strip() == (
        f"portfolio-assets: nothing to {command}: partition {D0} of profile 'development' has no stored table; "
        f"materialize it first (portfolio-assets run --profile development --date {D0}); nothing was run")
    assert instance_of(home).get_runs_count() == 0
    assert not (lake / "development" / "ledger").exists() and not (lake / "development" / "alerts").exists()


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
    Dagster job backfill, every partition succeeded, one run of the selection per date, tagged with
    the backfill and the command that holds the dates' locks, queued by the daemon."""
    from portfolio_assets.backfills import COMMAND_TAG
    from portfolio_assets.cli.selection import selection_keys

    home, lake = dirs
    r = cli("backfill", "--profile", "development", "--from", D0, "--to", D2, "--select", "run_manifest+",
            home=home, lake=lake)
    assert r.returncode == 0, out(r)
    assert "no dagster-daemon running: started one for this backfill" in r.stdout
    assert "3/3 partition(s) succeeded" in r.stdout
    backfill_id = re.search(r"^backfill (\w+) submitted", r.stdout, re.M).group(1)
    instance = instance_of(home)
    backfill = instance.get_backfill(backfill_id)
    assert backfill.status.value == "COMPLETED_SUCCESS"
    assert not backfill.is_asset_backfill and backfill.partition_names == [D0, D1, D2]
    runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert all(run.status.value == "SUCCESS" for run in runs)
    assert sorted(run.tags["dagster/partition"] for run in runs) == [D0, D1, D2]
    wanted = set(selection_keys("run_manifest+"))
    assert all(run.asset_selection == wanted for run in runs), [sorted(map(str, r.asset_selection or ())) for r in runs]
    (command,) = {run.tags[COMMAND_TAG] for run in runs}  # host:pid of the command holding the locks
    assert re.fullmatch(r"[^:]+:\d+", command), command
    for day in (D0, D1, D2):
        assert _count(instance, "equity_scan", day) == 1 and _count(instance, "holdings", day) == 1
    # The temporary daemon stopped and its heartbeats were wiped: the next command can tell at once
    # that no daemon runs (a stopped daemon's last heartbeat looked alive for up to 90 s).
    assert instance.get_daemon_heartbeats() == {}

    # The selection's upstream now exists: a backfill of the scans alone is accepted.
    again = cli("backfill", "--profile", "development", "--from", D1, "--to", D2, "--select", "equity_scan",
                home=home, lake=lake)
    assert again.returncode == 0 and "2/2 partition(s) succeeded" in again.stdout, out(again)
    assert "no dagster-daemon running: started one for this backfill" in again.stdout


def test_backfill_stale_rounds_share_one_temporary_daemon_started_after_the_first_submission(dirs, monkeypatch):
    """`backfill --stale` runs round after round: one temporary daemon for the whole command, started
    after the first round's backfill is submitted (its first iteration finds it), restarted after
    each later round's submission (the new daemon's first iteration finds it: no wait for the next
    30-s iteration) and stopped after the last round. A daemon per round waited up to 40 s at each new round for the stopped one's
    heartbeat to go stale. Dagster's side (submission, the daemon, the runs) is replaced by fakes:
    what is tested is the command's order of events."""
    from portfolio_assets import backfills

    home, lake = dirs
    events: list[str] = []

    class FakeDaemon:
        def __init__(self, instance, log):
            self.started = subprocess.Popen([sys.executable, "-c", "pass"])
            self.started.wait()

        def __enter__(self):
            events.append("daemon started")
            return self

        def __exit__(self, *exc):
            events.append("daemon stopped")

        def restart(self):
            events.append("daemon restarted")
            return True

    rounds = iter([[("reports", D1, "code version changed"), ("reports", D2, "code version changed")],
                   [("implementation_orders", D2, "parent reports changed")], []])

    def stale_pairs(materialized, log=None):
        events.append("stale?")
        return next(rounds)

    def launch(targets, tags, title, log=None):
        events.append(f"submit {title.split('(')[-1].rstrip(')')}: {sorted(targets.items())}")
        return f"bf{len(events)}"

    def watch(instance, backfill_id, partitions, say, daemon):
        assert isinstance(daemon, FakeDaemon)
        events.append(f"watch {backfill_id}")
        progress = backfills.BackfillProgress(partitions)
        for part in partitions:
            progress.runs[part] = {f"run-{part}": "SUCCESS"}
        return progress

    monkeypatch.setattr(backfills, "BackfillDaemon", FakeDaemon)
    monkeypatch.setattr(backfills, "stale_pairs", stale_pairs)
    monkeypatch.setattr(backfills, "launch_backfill", launch)
    monkeypatch.setattr(backfills, "watch_backfill", watch)
    r = run_cli_in_process(["backfill", "--profile", "development", "--from", D1, "--to", D2, "--stale"],
                           cli_env(home, lake))
    assert r.returncode == 0, out(r)
    assert events == [
        "stale?", f"submit stale, round 1: [('reports', ['{D1}', '{D2}'])]", "daemon started", "watch bf2",
        "stale?", f"submit stale, round 2: [('implementation_orders', ['{D2}'])]", "daemon restarted",
        "watch bf6", "stale?", "daemon stopped",
    ]
    assert r.stdout.count("no dagster-daemon running: started one for this backfill") == 1
    assert f"nothing is stale in {D1}..{D2}" in r.stdout


class _Run:
    def __init__(self, launcher: str | None, finished: bool = False) -> None:
        from portfolio_assets import cli as cli_module

        self.tags = {} if launcher is None else {cli_module.LAUNCHER_TAG: launcher}
        self.is_finished = finished


def test_launcher_gone_names_the_dead_process_of_an_unfinished_run_only():
    """issue 18 #3: a run whose CLI process was killed stays STARTED in Dagster; `status` flags it
    and `run --start-step N --run-id` marks it failed so it can be resumed."""
    import socket

    from portfolio_assets.cli import launcher_gone

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    assert launcher_gone(_Run(f"{host}:{dead.pid}")) == dead.pid
    assert launcher_gone(_Run(f"{host}:{os.getpid()}")) is None  # alive
    assert launcher_gone(_Run(f"{host}:{dead.pid}", finished=True)) is None  # Dagster knows how it ended
    assert launcher_gone(_Run(f"elsewhere.example:{dead.pid}")) is None  # another host: cannot tell
    assert launcher_gone(_Run(None)) is None  # launched by the daemon or the UI


def _locked(lock: Path) -> bool:
    """True when another process holds `lock` exclusively (a shared lock is refused at once)."""
    import fcntl

    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing the descriptor releases a lock taken on it
    return False


def test_verify_ledger_of_a_run_still_writing_says_in_progress_and_of_a_killed_one_fails(dirs):
    """issue 18 #4: a ledger a live run is writing is "in progress" (exit 3), not FAIL; once that
    run is killed the same ledger fails (exit 1). The run is frozen (SIGSTOP) right after an intent
    without its outcome, so the check does not race it, and only while it does not hold the
    ledger's append lock: frozen inside an append, it would keep verify-ledger's shared read lock
    waiting for ever (this test once hung for 10 minutes that way)."""
    import signal
    import time

    from portfolio_assets.ledger.lock import _lock_path

    home, lake = dirs
    env = {k: v for k, v in os.environ.items() if not k.startswith("PA_")}
    env.update(DAGSTER_HOME=str(home), PA_LAKEHOUSE=str(lake), PA_EXECUTOR__KIND="in_process")
    ledger = lake / "development" / "ledger" / D2 / "audit.jsonl"
    proc = subprocess.Popen([CLI, "run", "--profile", "development", "--date", D2], env=env, cwd=PROJECT_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:  # no wall-clock limit: the run ends (and fails the test) if no intent is ever caught
            assert proc.poll() is None, "the run ended before an open intent was caught"
            records = [json.loads(x) for x in ledger.read_text().splitlines() if x.strip()] if ledger.exists() else []
            if records and records[-1]["kind"] == "intent":
                os.killpg(proc.pid, signal.SIGSTOP)
                records = [json.loads(x) for x in ledger.read_text().splitlines() if x.strip()]
                if records[-1]["kind"] == "intent" and not _locked(_lock_path(ledger)):
                    break
                os.killpg(proc.pid, signal.SIGCONT)
            time.sleep(0.05)
        run_id = records[-1]["run_id"]
        frozen = cli("verify-ledger", str(ledger), home=home, lake=lake)
        assert frozen.returncode == 3, out(frozen)
        assert f"in progress: run(s) {run_id} still writing this ledger" in frozen.stdout
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = cli("verify-ledger", str(ledger), home=home, lake=lake)
        assert killed.returncode == 1 and "in progress" not in killed.stdout, out(killed)
        assert "has no outcome" in killed.stdout
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
