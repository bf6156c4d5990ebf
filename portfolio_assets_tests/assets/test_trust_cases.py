"""Issue 17, replayed on a materialized `development` partition: every numbered case is refused
or detected, with its exit code and message (docs/ledger.md has the table).

| case | attack / situation                                   | expected                                           |
|------|------------------------------------------------------|----------------------------------------------------|
| 1    | ledger edited after audit_ledger; run orders          | rc 1 "refusing to implement: the ledger fails ..."   |
| 2    | a gate side file says "passed"                        | ignored: gates are Dagster check records            |
| 3    | accept after the refusal                              | rc 2 "refusing to accept ... (nothing booked)"      |
| 4    | earlier orders after a refusal                        | empty orders table, `sql` 0 rows, status REFUSED    |
| 5    | accept books targets                                  | executions = BUY/SELL orders only, no size-0 HOLD   |
| 6    | no ledger / a chain never sealed (kill before 14)     | rc 1 with the real reason; `audit` rc 1             |
| 7    | cut after the seal + HEAD.json re-written (no key)    | refused against Dagster's anchor                    |
| 8    | another date's ledger copied in                       | verify-ledger rc 1 "partition ..., expected ..."    |
| 10   | cached bars <= D changed                              | verify-ledger rc 1 "price data ... changed"         |
| 11   | a second run of a partition being written            | rc 2 up front naming the holder; nothing archived   |
| 13   | signing on, no key                                    | rc 2 before any run; nothing archived or changed    |

Truncation at every position, forgeries with and without the key: portfolio_assets_tests/ledger/.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from portfolio_assets.ledger import canonical_json, read_anchor
from portfolio_assets.price_store import PriceStore, parse_ref
from portfolio_assets_tests.conftest import (
    CLI,
    DEV_DATE,
    PROJECT_ROOT,
    RUN_TIMEOUT_S,
    GraphRun,
    describe,
    ledger_records,
    partition_snapshot,
    run_cli,
    run_graph_cli,
)

pytestmark = pytest.mark.slow


def clone(run: GraphRun, dest: Path) -> GraphRun:
    """A private copy of the lakehouse *and* its Dagster instance (the gates' check records)."""
    shutil.copytree(run.lakehouse, dest / "lakehouse", symlinks=True)
    shutil.copytree(run.dagster_home, dest / "dagster_home", symlinks=True)
    return GraphRun(dest / "lakehouse", dest / "dagster_home", run.profile)


@pytest.fixture
def trusted(dev_lakehouse: GraphRun, tmp_path: Path) -> GraphRun:
    return clone(dev_lakehouse, tmp_path)


def orders_path(run: GraphRun) -> Path:
    return run.root / "implementation" / "implementation_orders" / f"{DEV_DATE}.parquet"


def cli(run: GraphRun, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(list(args), run.env(**env), timeout=RUN_TIMEOUT_S)


def write_lines(path: Path, records: list[dict]) -> None:
    path.write_bytes(b"".join(canonical_json(r) + b"\n" for r in records))


def test_cases_1_to_4_an_edited_ledger_refuses_orders_and_accept_and_leaves_no_orders(trusted: GraphRun):
    run = trusted
    assert len(pd.read_parquet(orders_path(run))) > 0  # precondition: orders of the first run
    ledger = run.ledger()
    records = ledger_records(ledger)
    records[3]["payload"]["params"]["edited"] = True
    write_lines(ledger, records)
    # case 2: a side file claiming the gate passed decides nothing
    side = run.root / "state" / "gates" / DEV_DATE / "ledger_integrity.json"
    side.parent.mkdir(parents=True)
    side.write_text(json.dumps({"passed": True}))

    proc = run_graph_cli(run, DEV_DATE, "--select", "implementation_orders")
    assert proc.returncode == 1, describe(proc)
    reason = "refusing to implement: the ledger fails verification now: line 4: hash mismatch (record content changed)"
    assert reason in proc.stdout, describe(proc)
    assert "orders   " in proc.stdout and "(REFUSED, no orders: the ledger fails verification now" in proc.stdout
    # case 4: the earlier orders are no longer readable anywhere
    assert pd.read_parquet(orders_path(run)).empty
    sql = cli(run, "sql", "--profile", run.profile, "SELECT count(*) AS n FROM implementation_orders")
    assert sql.returncode == 0 and sql.stdout.split()[-1] == "0", describe(sql)
    status = cli(run, "status", "--profile", run.profile, "--date", DEV_DATE)
    assert status.returncode == 1, describe(status)
    assert "implementation: REFUSED (no orders may be used or accepted): the ledger fails verification now" in status.stdout
    assert "(REFUSED: refusing to implement: the ledger fails verification now" in status.stdout
    refusal = [r for r in ledger_records(ledger) if r["asset"] == "implementation_orders" and r["kind"] == "outcome"][-1]
    assert refusal["payload"]["status"] == "failed" and refusal["payload"]["error"].startswith("Failure: " + reason)

    # case 3: accept applies the same rule and books nothing
    accept = cli(run, "accept", "--profile", run.profile, "--date", DEV_DATE)
    assert accept.returncode == 2, describe(accept)
    assert f"refusing to accept {DEV_DATE} (nothing booked): " in accept.stderr
    assert not (run.root / "implementation" / "executions").exists()


def test_case_5_accept_books_trades_not_targets(trusted: GraphRun):
    run = trusted
    orders = pd.read_parquet(orders_path(run))
    holds = orders[orders["action"] == "HOLD"]
    assert len(holds) and (orders["action"].isin(["BUY", "SELL"])).any()  # precondition: both kinds
    accept = cli(run, "accept", "--profile", run.profile, "--date", DEV_DATE)
    assert accept.returncode == 0, describe(accept)
    done = pd.read_parquet(run.root / "implementation" / "executions" / f"{DEV_DATE}.parquet")
    trades = orders[orders["action"].isin(["BUY", "SELL"])]
    assert sorted(done["symbol"]) == sorted(trades["symbol"])
    assert not set(done["symbol"]) & set(holds.loc[holds["size"] == 0, "symbol"])
    assert done["delta_net_weight"].tolist() == trades.set_index("symbol").loc[done["symbol"], "delta_net_weight"].tolist()
    outcome = [r for r in ledger_records(run.ledger()) if r["asset"] == "executions" and r["kind"] == "outcome"][-1]
    assert outcome["payload"]["status"] == "ok"
    assert outcome["payload"]["params"]["gates"]["audit_ledger:ledger_integrity"]["passed"] is True


def test_case_6_no_ledger_gives_the_real_reason(trusted: GraphRun):
    run = trusted
    shutil.rmtree(run.ledger().parent)
    proc = run_graph_cli(run, DEV_DATE, "--select", "implementation_orders")
    assert proc.returncode == 1, describe(proc)
    assert f"refusing to implement: no ledger for {DEV_DATE} (ledger/{DEV_DATE}/audit.jsonl does not exist)" in proc.stdout
    assert "LedgerError" not in proc.stdout + proc.stderr
    assert pd.read_parquet(orders_path(run)).empty


def test_case_6_a_chain_never_sealed_fails_audit_and_is_not_implemented(trusted: GraphRun):
    """What a kill before audit_ledger leaves: the chain up to step 13, its HEAD.json naming the
    last record written, no seal. `audit` fails (and withdraws the orders); implementation refuses."""
    run = trusted
    ledger = run.ledger()
    records = ledger_records(ledger)
    seal = next(i for i, r in enumerate(records) if r["kind"] == "close")
    kept = records[:seal]
    write_lines(ledger, kept)
    head = ledger.with_name("HEAD.json")
    anchor = json.loads(head.read_text())
    head.write_text(json.dumps({**anchor, "seq": kept[-1]["seq"], "hash": kept[-1]["hash"], "records": len(kept),
                                "seal_seq": None, "seal_hash": None}))
    ok = cli(run, "verify-ledger", str(ledger))
    assert ok.returncode == 0, describe(ok)  # a consistent, unsealed chain

    audit = cli(run, "audit", "--profile", run.profile, "--date", DEV_DATE)
    assert audit.returncode == 1, describe(audit)
    assert (f"audit_ledger:ledger_integrity: FAILED (ERROR) 1 problem(s): the ledger of {DEV_DATE} is not sealed "
            "(no audit_ledger seal: did a run stop before step 14?)") in audit.stdout
    assert "implementation: REFUSED: " in audit.stdout
    assert pd.read_parquet(orders_path(run)).empty  # the failed gate withdrew the earlier orders

    proc = run_graph_cli(run, DEV_DATE, "--select", "implementation_orders")
    assert proc.returncode == 1, describe(proc)
    assert f"the ledger of {DEV_DATE} is not sealed" in proc.stdout


def test_case_7_a_cut_chain_with_a_rewritten_anchor_is_refused_against_dagsters_copy(trusted: GraphRun):
    """Without a key a forger can cut the file and re-write HEAD.json consistently: the file alone
    verifies (the documented limit), but the head Dagster recorded is gone, so nothing is implemented."""
    run = trusted
    ledger = run.ledger()
    records = ledger_records(ledger)
    seal = next(i for i, r in enumerate(records) if r["kind"] == "close")
    kept = records[:seal + 1]  # up to and including the seal: the records after it are cut
    kept = kept[:-1]  # and the seal too
    write_lines(ledger, kept)
    anchor = read_anchor(ledger)
    ledger.with_name("HEAD.json").write_text(json.dumps(
        {**anchor, "seq": kept[-1]["seq"], "hash": kept[-1]["hash"], "records": len(kept), "seal_seq": None,
         "seal_hash": None}))
    assert cli(run, "verify-ledger", str(ledger)).returncode == 0
    proc = run_graph_cli(run, DEV_DATE, "--select", "implementation_orders")
    assert proc.returncode == 1, describe(proc)
    assert (f"the ledger does not contain the head Dagster recorded (seq {records[seal]['seq']}, "
            f"{records[seal]['hash'][:16]}...): it was truncated or replaced") in proc.stdout


def test_cases_8_and_10_a_copied_ledger_and_changed_price_data_fail_verification(trusted: GraphRun):
    run = trusted
    other = run.root / "ledger" / "2026-11-27"
    shutil.copytree(run.ledger().parent, other)
    copied = cli(run, "verify-ledger", str(other))
    assert copied.returncode == 1, describe(copied)
    assert f"line 1: partition '{DEV_DATE}', expected '2026-11-27'" in copied.stdout
    assert f"anchor is of partition '{DEV_DATE}', not '2026-11-27'" in copied.stdout

    seal = next(r for r in ledger_records(run.ledger()) if r["kind"] == "close")
    rel = sorted(seal["payload"]["seal"]["price_data"])[0]
    symbol, _, _ = parse_ref(rel)  # a (symbol, range) of the columnar price store
    # A forger edits the symbol's last bar <= D in every part (Parquet file) that holds it.
    edited = 0
    for part in PriceStore(run.root / "prices").part_paths():
        table = pq.read_table(part)
        frame = table.to_pandas()
        mine = frame.index[(frame["symbol"] == symbol) & (frame["time"].dt.date <= pd.Timestamp(DEV_DATE).date())]
        if len(mine):
            last_day = frame.loc[mine, "time"].max()
            frame.loc[mine[frame.loc[mine, "time"] == last_day], "close"] *= 1.01
            pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), part)
            edited += 1
    assert edited
    changed = cli(run, "verify-ledger", str(run.ledger()))
    assert changed.returncode == 1, describe(changed)
    assert f"price data {rel} changed since the seal (bars <= {DEV_DATE})" in changed.stdout


def test_case_11_a_second_writer_of_a_partition_is_refused_up_front(trusted: GraphRun):
    run = trusted
    lock = run.ledger().with_name("writer.lock")
    first = subprocess.Popen([str(CLI), "run", "--profile", run.profile, "--date", DEV_DATE], env=run.env(),
                             cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while True:  # until the first run holds the partition (or ends: asserted below)
            if first.poll() is not None:
                break
            if lock.exists():
                fd = os.open(lock, os.O_RDONLY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except BlockingIOError:
                    break
                finally:
                    os.close(fd)
            time.sleep(0.2)
        assert first.poll() is None, "the first run ended before it could be raced"
        second = run_graph_cli(run, DEV_DATE)
        backfill = cli(run, "backfill", "--profile", run.profile, "--from", DEV_DATE, "--to", DEV_DATE)
    finally:
        out, err = first.communicate(timeout=RUN_TIMEOUT_S)
    assert first.returncode == 0, f"{out[-3000:]}\n{err[-3000:]}"
    for refused in (second, backfill):
        assert refused.returncode == 2, describe(refused)
        assert f"partition {DEV_DATE} of profile {run.profile} is being written by another command (" in refused.stderr
        assert f'"pid": {first.pid}, "command": "run --date {DEV_DATE}"' in refused.stderr, describe(refused)
        assert "nothing was run, archived or changed" in refused.stderr
    archives = list((run.ledger().parent / "archive").glob("audit-*.jsonl"))
    assert len(archives) == 1  # the first run's archive of the previous chain; the refused ones moved nothing
    verify = cli(run, "verify-ledger", str(run.ledger()))
    assert verify.returncode == 0, describe(verify)
    assert len(pd.read_parquet(orders_path(run))) > 0


def test_case_13_signing_without_a_key_is_refused_before_anything_changes(trusted: GraphRun):
    run = trusted
    before = partition_snapshot(run.root, DEV_DATE)
    proc = run_graph_cli(run, DEV_DATE, "--set", 'ledger.signing="hmac"')
    assert proc.returncode == 2, describe(proc)
    assert ("profile 'development' signs its ledger (hmac) but no key is set: export PA_LEDGER_HMAC_KEY or "
            "PA_LEDGER_ED25519_KEY (nothing was run, archived or changed)") in proc.stderr
    assert partition_snapshot(run.root, DEV_DATE) == before
    assert not (run.ledger().parent / "archive").exists()


def test_case_12_each_profile_has_its_own_instance(trusted: GraphRun):
    """After `development` runs, `demo`'s instance (what `ui --profile demo` and `status --profile
    demo` open) holds no development run or materialization."""
    from dagster import AssetKey, DagsterInstance

    run = trusted
    demo = cli(run, "status", "--profile", "demo", "--date", DEV_DATE)
    assert "profile demo, partition" in demo.stdout and "runs: none" in demo.stdout, describe(demo)
    assert "materialized 20" not in demo.stdout and "lakehouse/development" not in demo.stdout
    assert (run.dagster_home / "profiles" / "demo" / "dagster.yaml").exists()
    with DagsterInstance.from_config(str(run.dagster_home / "profiles" / "demo")) as instance:
        assert instance.get_runs() == []
        assert not instance.get_materialized_partitions(AssetKey("target_weights"))
    with DagsterInstance.from_config(str(run.instance_home)) as instance:
        assert DEV_DATE in instance.get_materialized_partitions(AssetKey("target_weights"))
    dev = cli(run, "status", "--profile", run.profile, "--date", DEV_DATE)
    assert "implementation: cleared (every gate passed; ledger verified, sealed and anchored)" in dev.stdout, describe(dev)
