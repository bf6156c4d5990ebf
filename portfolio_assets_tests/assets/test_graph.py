"""The whole graph through Dagster on the `development` profile, and its gates.

The tests of the default run (`full_run`) start from a copy of the session's shared `development`
run and its Dagster instance (conftest `dev_lakehouse`), and re-run parts of it in-process. The
others materialize in-process on their own temporary lakehouse with other settings (the
`development` profile is a small universe; a whole run takes ~10-20 s).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pandas as pd
import pytest
from dagster import AssetSelection, DagsterInstance

from portfolio_assets.lakehouse import Lakehouse
from portfolio_assets.ledger import verify_ledger
from portfolio_assets_tests.conftest import DEV_DATE, copy_run
from portfolio_assets_tests.graph_helpers import (
    ALL_ASSETS,
    DOWNSTREAM_OF_HISTORY,
    PARTITION,
    check_results,
    env,
    materialized,
    run_graph,
    step_errors,
)

NEVER_HEALS = json.dumps({
    "seed": 11, "n_equities": 80, "n_etfs": 16, "n_crypto": 12, "n_forex": 8,
    "faults": {"seed": 3, "missing_bars": {"n": 10, "sessions": 2, "heal_after": None},
               "stale": {"n": 4, "bars": 3, "heal_after": None}},
})


@pytest.fixture(scope="module")
def full_run(dev_lakehouse, tmp_path_factory):
    """The session's development run for PARTITION (`portfolio-assets run`): a copy of its lakehouse
    and of its Dagster instance, which the tests below re-run parts of."""
    assert PARTITION == DEV_DATE
    run = copy_run(dev_lakehouse, tmp_path_factory.mktemp("full_run"), with_instance=True)
    with DagsterInstance.from_config(str(run.instance_home)) as instance:
        yield run.lakehouse, instance


def test_whole_graph_materializes_with_every_gate_passing(full_run):
    from portfolio_assets.assets.gates import GATES, latest_evaluation
    from portfolio_assets.definitions import defs

    lake, instance = full_run
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert {k.to_user_string() for k in keys if PARTITION in instance.get_materialized_partitions(k)} == ALL_ASSETS
    latest = {check.name: latest_evaluation(instance, check, PARTITION) for check in GATES}
    assert {name: ev is not None and ev.passed for name, ev in latest.items()} == {
        "health_gate": True, "weights_sanity": True, "ledger_integrity": True}
    lh = Lakehouse(lake, "development")
    orders = lh.read_table("implementation", "implementation_orders", PARTITION)
    weights = lh.read_table("allocation", "target_weights", PARTITION)
    prod = weights[weights["is_production"]]
    assert prod["weight"].sum() == pytest.approx(1.0)
    # from an empty book every production holding is an order to open (shorts are SELLs)
    assert set(orders["symbol"]) == set(prod["symbol"])
    assert (orders.set_index("symbol")["target_net_weight"] == prod.set_index("symbol")["net_weight"]).all()
    assert verify_ledger(lh.ledger_path(PARTITION), root=lh.root).ok
    assert (lh.reports_dir(PARTITION) / "index.html").exists()


def test_a_weight_has_its_risk_bucket_or_none_and_its_asset_class(full_run):
    """A symbol's bucket in `target_weights` is its `risk_buckets` bucket; a raw-pool symbol outside
    the selection (held only by raw_pool_ew) has none (it used to read bucket 0, which no bucket is),
    and its asset class and sector come from its raw-pool row (they used to be empty)."""
    lake, _ = full_run
    lh = Lakehouse(lake, "development")
    weights = lh.read_table("allocation", "target_weights", PARTITION)
    buckets = lh.read_table("risk", "risk_buckets", PARTITION).set_index("symbol")["bucket"]
    pool = lh.read_table("universe", "raw_pool", PARTITION).groupby("symbol")[["asset_class", "sector"]].first()
    assert str(weights["bucket"].dtype) == "Int64" and buckets.min() >= 1
    outside = weights[~weights["symbol"].isin(buckets.index)]
    assert len(outside) > 0 and set(outside["engine"]) == {"raw_pool_ew"}
    assert outside["bucket"].isna().all()
    inside = weights[weights["symbol"].isin(buckets.index)]
    assert (inside["bucket"].to_numpy() == buckets.reindex(inside["symbol"]).to_numpy()).all()
    assert (outside["asset_class"].to_numpy() == pool["asset_class"].reindex(outside["symbol"]).to_numpy()).all()
    assert outside["asset_class"].notna().all()
    text = (lh.reports_dir(PARTITION) / "weights.md").read_text()
    assert "Bucket —: a raw-pool symbol outside the selection, held only by `raw_pool_ew`." in text
    assert f"| — | {sorted(outside['symbol'])[0]} |" in text and "\n| 0 |" not in text


def test_recovery_ran_for_real_on_injected_faults(full_run):
    lake, _ = full_run
    health = Lakehouse(lake, "development").read_table("history", "history_500d", PARTITION, "health")
    repaired = health[health["status_before"] != "OK"]
    assert len(repaired) >= 1, "the development profile injects faults into the most liquid names"
    assert (repaired["status"] == "OK").all() and (repaired["attempts"] >= 1).all()


def test_outputs_are_queryable_with_duckdb(full_run):
    lake, _ = full_run
    con = Lakehouse(lake, "development").duckdb()
    n = con.execute("SELECT count(*) FROM target_weights WHERE partition = ?", [PARTITION]).fetchone()[0]
    assert n > 10
    engines = {r[0] for r in con.execute("SELECT DISTINCT engine FROM tournament").fetchall()}
    assert {"market", "raw_pool_ew", "equal_weight", "hrp", "barbell"} <= engines


def test_every_materialization_carries_its_content_hash_and_standard_metadata(full_run):
    """Data version = content hash of the stored file = the hash the ledger's outcome recorded;
    row count and column schema as Dagster's standard metadata; the file is where `path` says."""
    from dagster import AssetKey, AssetRecordsFilter

    from portfolio_assets.ledger import file_hash
    from portfolio_assets_tests.conftest import ledger_records

    lake, instance = full_run
    lh = Lakehouse(lake, "development")
    recorded = {name: entry["hash"] for rec in ledger_records(lh.ledger_path(PARTITION)) if rec["kind"] == "outcome"
                for name, entry in rec["payload"].get("outputs", {}).items()}  # the latest outcome wins
    for name in sorted(ALL_ASSETS):
        (record,) = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(name), asset_partitions=[PARTITION]), limit=1).records
        mat = record.asset_materialization
        version = mat.tags["dagster/data_version"]
        path = mat.metadata["path"].value
        assert version == file_hash(path) == recorded[name], name
        assert mat.metadata["dagster/row_count"].value == len(pd.read_parquet(path)), name
        assert mat.metadata["dagster/column_schema"].value.columns, name
        assert mat.tags.get("dagster/code_version"), name


def test_sql_views_show_no_index_columns_and_one_partition_column(full_run):
    lake, _ = full_run
    con = Lakehouse(lake, "development").duckdb()
    for (view,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall():
        columns = [c[0] for c in con.execute(f'DESCRIBE "{view}"').fetchall()]
        assert not [c for c in columns if c.startswith("__index")], (view, columns)
        assert "partition_1" not in columns and columns.count("partition") <= 1, (view, columns)
    assert con.execute("SELECT partition, profile FROM run_manifest").fetchall() == [(PARTITION, "development")]


def test_strict_health_with_unrecoverable_fault_stops_the_run_at_the_gate(tmp_path):
    result = run_graph(tmp_path, PA_SOURCE__SETTINGS=NEVER_HEALS, PA_DATA__RECOVERY_BACKOFF_S="0")
    assert not result.success
    gate = check_results(result)["health_gate"]
    assert not gate.passed and gate.severity.value == "ERROR"
    assert "unhealthy symbol(s) after recovery" in gate.description
    assert "GAPS" in gate.description or "STALE" in gate.description
    done = materialized(result)
    assert "history_500d" in done  # stored (designed for: the check runs after the asset)
    assert not (done & DOWNSTREAM_OF_HISTORY), done & DOWNSTREAM_OF_HISTORY


def test_non_strict_health_drops_and_records_unhealthy_symbols(tmp_path):
    result = run_graph(tmp_path, PA_SOURCE__SETTINGS=NEVER_HEALS, PA_DATA__STRICT_HEALTH="false",
                       PA_DATA__RECOVERY_BACKOFF_S="0")
    assert result.success, step_errors(result)
    gate = check_results(result)["health_gate"]
    assert not gate.passed and gate.severity.value == "WARN"
    lh = Lakehouse(tmp_path, "development")
    health = lh.read_table("history", "history_500d", PARTITION, "health")
    bad = set(health.loc[health["status"] != "OK", "symbol"])
    assert bad
    # the gate's message names each symbol with its health row's finding (status first, then where)
    for row in health[health["status"] != "OK"].itertuples():
        assert row.issues.startswith(row.status) and f"{row.symbol} ({row.issues})" in gate.description
    buckets = set(lh.read_table("risk", "risk_buckets", PARTITION)["symbol"])
    assert not (bad & buckets)
    records = [json.loads(x) for x in lh.ledger_path(PARTITION).read_text().splitlines()]
    dropped = {e["symbol"] for r in records if r["kind"] == "outcome"
               for e in r["payload"].get("events", []) if e["kind"] == "dropped_unhealthy"}
    assert dropped == bad
    assert "implementation_orders" in materialized(result)  # a WARN gate does not block


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_failed_weights_gate_leaves_no_orders_alerts_and_blocks_a_later_run(tmp_path):
    from portfolio_assets.sensors import deliver_run_alerts

    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    instance = DagsterInstance.ephemeral()
    sinks = json.dumps([{"kind": "jsonl"}, {"kind": "webhook", "url_env": "PA_TEST_HOOK"}])
    try:
        overrides = dict(PA_OPTIMIZATION__MAX_BETA_MIN_VARIANCE="0.000001", PA_ALERTS__SINKS=sinks,
                         PA_TEST_HOOK=f"http://127.0.0.1:{server.server_port}/alert")
        result = run_graph(tmp_path, instance=instance, **overrides)
        assert not result.success
        gate = check_results(result)["weights_sanity"]
        assert not gate.passed and "min_variance: beta to AMEX:SPY" in gate.description
        assert "implementation_orders" not in materialized(result)
        lh = Lakehouse(tmp_path, "development")
        assert not lh.has_table("implementation", "implementation_orders", PARTITION)

        with env(PA_LAKEHOUSE=str(tmp_path), **overrides):
            texts = deliver_run_alerts(instance, result.run_id, "development")
        assert any("target_weights:weights_sanity" in t and PARTITION in t for t in texts)
        lines = [json.loads(x) for x in (lh.root / "alerts" / "alerts.jsonl").read_text().splitlines()]
        gate_alert = next(a for a in lines if a["subject"] == "target_weights:weights_sanity")
        assert gate_alert["partition"] == PARTITION and gate_alert["severity"] == "ERROR"
        assert "beta" in gate_alert["reason"]
        assert any(a["subject"] == "target_weights:weights_sanity" for a in _Hook.received)
        # delivering again sends nothing twice
        with env(PA_LAKEHOUSE=str(tmp_path), **overrides):
            deliver_run_alerts(instance, result.run_id, "development")
        assert len((lh.root / "alerts" / "alerts.jsonl").read_text().splitlines()) == len(lines)

        # a later run of implementation_orders alone is refused: Dagster's latest gate evaluation failed
        later = run_graph(tmp_path, selection=AssetSelection.assets("implementation_orders"), instance=instance,
                          **overrides)
        assert not later.success
        assert "refusing to implement: weights_sanity: latest evaluation FAILED" in step_errors(later)["implementation_orders"]
    finally:
        server.shutdown()


def test_implementation_refuses_when_gate_predates_the_stored_data(full_run, tmp_path):
    lake, instance = full_run
    # re-materialize target_weights with a different production engine, but not its check
    step = AssetSelection.assets("target_weights", "target_weights__diagnostics")
    changed = run_graph(lake, selection=step, instance=instance, checks=False,
                        PA_OPTIMIZATION__PRODUCTION_ENGINE="hrp")
    assert changed.success
    assert "weights_sanity" not in check_results(changed)
    later = run_graph(lake, selection=AssetSelection.assets("implementation_orders"), instance=instance)
    assert not later.success
    msg = step_errors(later)["implementation_orders"]
    assert "weights_sanity: latest evaluation predates the stored data of target_weights" in msg, msg
    # and the ledger: target_weights was written after the audit's seal
    assert f"the ledger of {PARTITION} is not sealed since target_weights was materialized" in msg, msg
    # restore: the whole tail with its checks passes again
    again = run_graph(lake, selection=step.downstream(), instance=instance)
    assert again.success, step_errors(again)


def test_a_later_run_never_evaluated_gate_refuses_in_another_instance(full_run):
    """The decision is read from this instance's check records: a fresh instance has none."""
    lake, _ = full_run
    later = run_graph(lake, selection=AssetSelection.assets("implementation_orders"))
    assert not later.success
    assert "health_gate: never evaluated for 2026-11-25" in step_errors(later)["implementation_orders"]


def test_tampered_artifact_fails_ledger_integrity_and_blocks_orders(full_run):
    lake, _ = full_run
    lh = Lakehouse(lake, "development")
    path = lh.table_path("risk", "risk_buckets", PARTITION)
    df = pd.read_parquet(path)
    df.loc[df.index[0], "bucket"] = int(df["bucket"].max()) + 7
    df.to_parquet(path)
    orders = lh.table_path("implementation", "implementation_orders", PARTITION)
    orders.unlink()
    result = run_graph(lake, selection=AssetSelection.assets("audit_ledger").downstream())
    assert not result.success
    gate = check_results(result)["ledger_integrity"]
    assert not gate.passed and "artifact risk/risk_buckets/2026-11-25.parquet changed since it was recorded" in gate.description
    assert not orders.exists()


def test_a_book_whose_previous_session_is_still_being_written_is_refused_naming_the_writer(tmp_path, monkeypatch):
    """Runs of consecutive sessions at once: the later book starts from the previous session's,
    which another command or run is writing. The step waits for it (`_previous.WRITER_WAIT_S`, cut
    to a second here); still written then, it refuses naming the writer (the command holding the
    previous session's writer lock, or a Dagster run of it in progress, as the UI or a backfill
    launches) instead of starting from an empty book or blaming a gap. The lock of the command
    that launched the run (a `backfill`, for its own runs) does not count, nor does a run whose CLI
    process is gone; with nobody writing, the first book is built."""
    import os
    import re
    import socket
    import subprocess
    import sys

    from dagster import DagsterRun, DagsterRunStatus

    from portfolio_assets import cli
    from portfolio_assets.assets import _previous
    from portfolio_assets.backfills import COMMAND_TAG
    from portfolio_assets.cli.execution import LAUNCHER_TAG

    monkeypatch.setattr(_previous, "WRITER_WAIT_S", 1.0)
    prev, book = "2026-11-24", AssetSelection.assets("run_manifest", "holdings")
    instance = DagsterInstance.ephemeral()
    with env(PA_LAKEHOUSE=str(tmp_path), PA_PROFILE="development"):
        with cli.partition_lock([prev], f"run --date {prev}"):
            locked = run_graph(tmp_path, selection=book, instance=instance)
            own = run_graph(tmp_path, selection=book, instance=instance,
                            tags={COMMAND_TAG: f"{socket.gethostname()}:{os.getpid()}"})
    assert not locked.success
    refusal = re.compile(
        rf"ValueError: the book of {PARTITION} starts from the previous session's, and {prev} is still being "
        rf"written \(the command \{{\"pid\": {os.getpid()}, \"command\": \"run --date {prev}\", \"started\": "
        rf"\"[^\"]+\", \"host\": \"{re.escape(socket.gethostname())}\"\}}\) after \d+ s: run {PARTITION} again "
        rf"once that has finished")
    cause = step_errors(locked)["holdings"].split(" | ")[-1]
    assert refusal.fullmatch(cause), cause
    assert own.success, step_errors(own)  # the lock is held on behalf of this run: nothing to wait for

    ui_run = "bbbbbbbb-0000-4000-8000-000000000001"
    instance.add_run(DagsterRun(job_name="daily_portfolio", run_id=ui_run, status=DagsterRunStatus.STARTED,
                                tags={"dagster/partition": prev}))
    running = run_graph(tmp_path, selection=book, instance=instance)
    cause = step_errors(running)["holdings"].split(" | ")[-1]
    assert re.fullmatch(
        rf"ValueError: the book of {PARTITION} starts from the previous session's, and {prev} is still being "
        rf"written \(Dagster run\(s\) {ui_run}\) after \d+ s: run {PARTITION} again once that has finished",
        cause), cause

    instance.report_run_canceled(instance.get_run_by_id(ui_run))
    # A CLI run of the previous session whose process was killed still says STARTED: not a writer.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    instance.add_run(DagsterRun(job_name="daily_portfolio", run_id="bbbbbbbb-0000-4000-8000-000000000003",
                                status=DagsterRunStatus.STARTED,
                                tags={"dagster/partition": prev, LAUNCHER_TAG: f"{socket.gethostname()}:{gone.pid}"}))
    alone = run_graph(tmp_path, selection=book, instance=instance)
    assert alone.success, step_errors(alone)
    assert Lakehouse(tmp_path, "development").read_table("implementation", "holdings", PARTITION).empty


def test_a_book_waits_for_the_previous_sessions_run_and_starts_from_the_book_it_stores(tmp_path):
    """A Dagster run of the previous session is in progress when the book's step starts (the
    previous book is not stored yet: the input loads nothing). The step waits; the run stores a
    book and ends; the step reads that book (not what its input loaded) and carries it over."""
    from dagster import DagsterRun, DagsterRunStatus

    from portfolio_assets.holdings import HOLDINGS_COLUMNS

    prev, book = "2026-11-24", AssetSelection.assets("run_manifest", "holdings")
    lake = Lakehouse(tmp_path, "development")
    stored = pd.DataFrame({"symbol": ["NYSE:AAA", "NASDAQ:BBB"], "direction": ["long", "short"],
                           "weight": [0.6, 0.4], "net_weight": [0.6, -0.4], "last_traded": [prev, prev]},
                          columns=list(HOLDINGS_COLUMNS))
    instance = DagsterInstance.ephemeral()
    writer = "bbbbbbbb-0000-4000-8000-000000000002"
    instance.add_run(DagsterRun(job_name="daily_portfolio", run_id=writer, status=DagsterRunStatus.STARTED,
                                tags={"dagster/partition": prev}))

    def previous_run_finishes() -> None:
        import time

        time.sleep(1.5)
        lake.write_table("implementation", "holdings", prev, stored)
        instance.report_run_canceled(instance.get_run_by_id(writer))  # ends: no longer in progress

    finisher = threading.Thread(target=previous_run_finishes)
    with env(PA_LAKEHOUSE=str(tmp_path), PA_PROFILE="development"):
        finisher.start()
        try:
            result = run_graph(tmp_path, selection=book, instance=instance)
        finally:
            finisher.join()
    assert result.success, step_errors(result)
    got = lake.read_table("implementation", "holdings", PARTITION)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), stored)
    logs = [e.message for e in instance.all_logs(result.run_id) if e.step_key == "holdings"]
    assert any(f"waiting for holdings of the previous session {prev}: Dagster run(s) {writer} is writing it" in m
               for m in logs), logs
    assert any(f"holdings of {prev} is written (waited " in m for m in logs), logs


def _materialize_dates(lake, instance, asset: str, partitions: list[str], *, ranged: bool):
    """Materialize `asset` over `partitions`: one run for the whole range (what a backfill's
    single-run policy launches) or one run per date (the daily job)."""
    from dagster import materialize

    from portfolio_assets.definitions import defs

    runs = ([{"dagster/asset_partition_range_start": partitions[0], "dagster/asset_partition_range_end": partitions[-1]}]
            if ranged else [{"dagster/partition": p} for p in partitions])
    with env(PA_LAKEHOUSE=str(lake), PA_PROFILE="development"):
        return [materialize(list(defs.assets), selection=AssetSelection.assets(asset), tags=tags,
                            partition_key=tags.get("dagster/partition"), resources=defs.resources,
                            instance=instance, raise_on_error=False) for tags in runs]


def _books_with_executions(lake, instance, partitions, executed, *, ranged: bool):
    """`holdings` over `partitions` after storing `executed` as the accepted executions of the
    range's first date."""
    Lakehouse(lake, "development").write_table("implementation", "executions", partitions[0], executed)
    return _materialize_dates(lake, instance, "holdings", partitions, ranged=ranged)


def test_a_range_of_books_in_one_run_equals_the_books_date_by_date(tmp_path):
    """The book chains the dates, so its backfill policy is one run for a range: the chain computed
    in one step must store, date by date, exactly the books of one run per date, with one ledger
    intent/outcome pair per date (each outcome the hash of its own file), one materialization per
    date whose metadata is that date's, and a data version that is the content hash for one date
    and the hash of the `{date: content hash}` list for a range."""
    import hashlib

    from dagster import AssetKey

    from portfolio_assets.assets.common import PARTITIONS
    from portfolio_assets.io_manager import content_version
    from portfolio_assets.ledger import Ledger, file_hash

    keys = PARTITIONS.get_partition_keys()
    at = keys.index(PARTITION)
    dates = keys[at - 2:at + 1]
    executed = pd.DataFrame({"symbol": ["AAA", "BBB"], "direction": ["long", "short"], "action": ["BUY", "SELL"],
                             "ordered_delta_net_weight": [0.25, -0.1], "delta_net_weight": [0.25, -0.05],
                             "source": ["orders as proposed", "fills"]})
    one, many = tmp_path / "ranged", tmp_path / "daily"
    ranged_instance, daily_instance = DagsterInstance.ephemeral(), DagsterInstance.ephemeral()
    (ranged,) = _books_with_executions(one, ranged_instance, dates, executed, ranged=True)
    daily = _books_with_executions(many, daily_instance, dates, executed, ranged=False)
    assert ranged.success and all(r.success for r in daily), [step_errors(r) for r in (ranged, *daily)]

    lh, by_date = Lakehouse(one, "development"), Lakehouse(many, "development")
    hashes = {}
    for d in dates:
        path = lh.table_path("implementation", "holdings", d)
        assert file_hash(path) == file_hash(by_date.table_path("implementation", "holdings", d)), d
        hashes[d] = file_hash(path)
        assert content_version(lh.read_table("implementation", "holdings", d)) == hashes[d]
    assert lh.read_table("implementation", "holdings", dates[0]).empty  # the first book
    later = lh.read_table("implementation", "holdings", dates[2]).set_index("symbol")
    assert later["net_weight"].to_dict() == {"AAA": 0.25, "BBB": -0.05}
    assert (later["last_traded"] == dates[0]).all()

    for d in dates:
        assert verify_ledger(lh.ledger_path(d), root=lh.root).ok
        records = [r for r in Ledger(lh.ledger_path(d), d).records() if r.get("asset") == "holdings"]
        assert [r["kind"] for r in records] == ["intent", "outcome"], d
        outcome = records[1]["payload"]
        assert outcome["status"] == "ok" and outcome["outputs"]["holdings"]["hash"] == hashes[d]
    assert records[0]["payload"]["inputs"] == {f"executions@{dates[1]}": "missing",
                                               f"holdings@{dates[1]}": "computed in this run", "run_manifest": "missing"}

    events = {m.partition: m for m in ranged.asset_materializations_for_node("holdings")}
    assert sorted(events) == dates
    range_hash = hashlib.sha256(json.dumps(sorted(hashes.items())).encode()).hexdigest()
    for d, event in events.items():
        assert event.metadata["partition"].value == d
        assert event.metadata["content_hash"].value == hashes[d]
        assert event.metadata["positions"].value == (0 if d == dates[0] else 2)
        assert event.metadata["dagster/row_count"].value == event.metadata["positions"].value
        assert event.tags["dagster/data_version"] == range_hash
    for d, result in zip(dates, daily, strict=True):
        (event,) = result.asset_materializations_for_node("holdings")
        assert event.tags["dagster/data_version"] == hashes[d] == event.metadata["content_hash"].value
    assert ranged_instance.get_latest_materialization_event(AssetKey("holdings")).asset_materialization.partition == dates[-1]


def test_previous_targets_of_a_range_in_one_run_equal_them_date_by_date(tmp_path):
    """`previous_target` (single-run backfill policy) of a range: each date stores the production
    rows of the previous session's target, or an empty table when none is stored, exactly as one
    run per date does, with one ledger record pair per date."""
    from portfolio_assets.assets.common import PARTITIONS
    from portfolio_assets.ledger import Ledger, file_hash

    keys = PARTITIONS.get_partition_keys()
    at = keys.index(PARTITION)
    dates = keys[at - 2:at + 1]
    target = pd.DataFrame({"symbol": ["AAA", "BBB", "AAA"], "engine": ["hrp", "hrp", "min_variance"],
                           "net_weight": [0.6, -0.4, 1.0], "is_production": [True, True, False],
                           "weight": [0.6, 0.4, 1.0]})
    results = {}
    for name, ranged in (("ranged", True), ("daily", False)):
        lake = tmp_path / name
        lh = Lakehouse(lake, "development")
        # Stand-ins for stored targets: the session before the range and its first date (none on the second).
        lh.write_table("allocation", "target_weights", keys[at - 3], target)
        lh.write_table("allocation", "target_weights", dates[0], target.assign(net_weight=[0.5, -0.5, 1.0]))
        runs = _materialize_dates(lake, DagsterInstance.ephemeral(), "previous_target", dates, ranged=ranged)
        assert all(r.success for r in runs), [step_errors(r) for r in runs]
        results[name] = (lh, runs)
    (lh, _), (daily, _) = results["ranged"], results["daily"]
    for d in dates:
        assert file_hash(lh.table_path("reporting", "previous_target", d)) == \
            file_hash(daily.table_path("reporting", "previous_target", d)), d
        (intent, outcome) = [r for r in Ledger(lh.ledger_path(d), d).records() if r.get("asset") == "previous_target"]
        assert outcome["payload"]["outputs"]["previous_target"]["hash"] == file_hash(lh.table_path("reporting", "previous_target", d))
    first = lh.read_table("reporting", "previous_target", dates[0])
    assert first.to_dict("list") == {"symbol": ["AAA", "BBB"], "engine": ["hrp", "hrp"], "net_weight": [0.6, -0.4],
                                     "is_production": [True, True]}
    assert lh.read_table("reporting", "previous_target", dates[1])["net_weight"].tolist() == [0.5, -0.5]
    assert lh.read_table("reporting", "previous_target", dates[2]).empty  # dates[1] has no stored target
    assert intent["payload"]["inputs"] == {f"target_weights@{dates[1]}": "missing"}


def test_a_range_of_books_after_a_gap_is_refused(tmp_path):
    """A range whose first date follows a missing book is refused as a single date is, naming the
    range to materialize first, and stores none of its books."""
    from portfolio_assets.assets.common import PARTITIONS

    keys = PARTITIONS.get_partition_keys()
    at = keys.index(PARTITION)
    instance = DagsterInstance.ephemeral()
    first = _books_with_executions(tmp_path, instance, [keys[at - 4]], pd.DataFrame(
        columns=["symbol", "direction", "action", "ordered_delta_net_weight", "delta_net_weight", "source"]),
        ranged=False)
    assert first[0].success
    (gap,) = _books_with_executions(tmp_path, instance, keys[at - 2:at + 1], pd.DataFrame(
        columns=["symbol", "direction", "action", "ordered_delta_net_weight", "delta_net_weight", "source"]),
        ranged=True)
    assert step_errors(gap)["holdings"].split(" | ")[-1] == (
        f"ValueError: holdings of the previous session {keys[at - 3]} are not stored (the latest book is "
        f"{keys[at - 4]}): materialize them first, e.g. portfolio-assets backfill --from {keys[at - 4]} "
        f"--to {keys[at - 3]} --select holdings")
    assert Lakehouse(tmp_path, "development").stored_partitions("implementation", "holdings") == [keys[at - 4]]


def test_the_book_is_what_was_traded(tmp_path):
    """accept (the `executions` asset) of the previous session's orders minus one symbol becomes
    the next session's book: dust HOLDs and the untraded order are not positions."""
    from portfolio_assets.definitions import defs
    from portfolio_assets.holdings import executed_orders

    instance = DagsterInstance.ephemeral()
    prev = "2026-11-24"
    first = run_graph(tmp_path, partition=prev, instance=instance)
    assert first.success, step_errors(first)
    lh = Lakehouse(tmp_path, "development")
    orders = lh.read_table("implementation", "implementation_orders", prev)
    assert lh.read_table("implementation", "holdings", prev).empty  # the first book
    skipped = orders.loc[orders["action"] == "BUY", "symbol"].iloc[0]
    trades = executed_orders(orders, not_traded=[skipped])
    with env(PA_LAKEHOUSE=str(tmp_path), PA_PROFILE="development"):
        from dagster import materialize

        accepted = materialize([*defs.assets], selection=AssetSelection.assets("executions"), partition_key=prev,
                               resources=defs.resources, instance=instance, run_config={"ops": {"executions": {
                                   "config": {"trades": trades.to_dict("records"), "orders_version": "v"}}}})
    assert accepted.success
    second = run_graph(tmp_path, instance=instance)
    assert second.success, step_errors(second)
    book = lh.read_table("implementation", "holdings", PARTITION).set_index("symbol")
    traded = orders[orders["action"].isin(["BUY", "SELL"]) & (orders["symbol"] != skipped)].set_index("symbol")
    assert set(book.index) == set(traded.index)  # no HOLD (dust) and no untraded symbol
    assert (book["net_weight"] == traded["delta_net_weight"].reindex(book.index)).all()
    assert (book["last_traded"] == prev).all()
    now = lh.read_table("implementation", "implementation_orders", PARTITION).set_index("symbol")
    assert (now["current_net_weight"].reindex(book.index) == book["net_weight"]).all()
