"""The whole graph on the `tradingview` source, pointed at the local scanner + chart fakes.

`development` with `PA_SOURCE__KIND=tradingview` and `PA_SOURCE__SETTINGS` (the fakes' settings,
`today` = the partition: a live scanner only answers for today), a generated universe of 64
symbols (40 US listings incl. AMEX:SPY, 12 crypto, 12 forex pairs), bars over the chart websocket.
"""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from portfolio_assets.lakehouse import Lakehouse
from portfolio_assets.ledger import verify_ledger
from portfolio_assets.sources.tradingview import ENV_SCANNER_BASE, ENV_WS_URL
from portfolio_assets_tests.conftest import (
    DEV_DATE,
    PREV_DATE,
    GraphRun,
    check_lines,
    copy_run,
    describe,
    ledger_records,
    partition_snapshot,
    run_graph_cli,
    step_failure_causes,
)
from portfolio_assets_tests.fakes.tradingview_fake import Reply, fake_tradingview

pytestmark = pytest.mark.slow

TODAY = dt.date.fromisoformat(DEV_DATE)
UNIVERSE = {"america": 40, "crypto": 12, "forex": 12}
PRESETS = ("bond__bond_etf_liquid", "crypto__crypto_momentum_long", "equity__equity_breakdown_short",
           "equity__equity_trend_long", "forex__forex_mtf_trend")


@pytest.fixture(scope="module")
def fake():
    with pytest.MonkeyPatch.context() as mp:
        for name in (ENV_SCANNER_BASE, ENV_WS_URL):
            mp.delenv(name, raising=False)
        with fake_tradingview(TODAY, universe=UNIVERSE) as running:
            yield running


def tv_env(run: GraphRun, fake, today: dt.date = TODAY) -> dict[str, str]:
    settings = fake.settings(today=today.isoformat())
    return run.env(PA_SOURCE__KIND="tradingview", PA_SOURCE__SETTINGS=json.dumps(settings),
                   PA_TV_SCANNER_BASE=fake.scanner.base_url, PA_TV_WS_URL=fake.chart.ws_url)


@pytest.fixture(scope="module")
def tv_run(fake, tmp_path_factory):
    base = tmp_path_factory.mktemp("tradingview_graph")
    run = GraphRun(base / "lakehouse", base / "dagster_home")
    n_requests = len(fake.scanner.requests)
    proc = run_graph_cli(run, DEV_DATE, env=tv_env(run, fake))
    fake.chart.wait_idle()
    return run, proc, fake.scanner.requests[n_requests:]


def test_whole_graph_succeeds_on_the_tradingview_fakes(tv_run, fake):
    run, proc, requests = tv_run
    assert proc.returncode == 0, describe(proc)
    checks = check_lines(proc.stdout)
    for check in ("history_500d:health_gate", "target_weights:weights_sanity", "audit_ledger:ledger_integrity"):
        assert checks[check].startswith("passed"), (check, checks)
    assert fake.chart.errors == [], "the client broke the chart protocol"
    assert {r.path for r in requests} == {"/america/scan", "/crypto/scan", "/forex/scan"}
    report = verify_ledger(run.ledger(), root=run.root, partition=DEV_DATE)
    assert report.ok, report.errors


def test_the_universe_is_realistic_and_keeps_the_baseline(tv_run):
    run, proc, _ = tv_run
    assert proc.returncode == 0, describe(proc)
    root = run.root
    pool = pd.read_parquet(root / "universe" / "raw_pool" / f"{DEV_DATE}.parquet")
    assert 20 <= len(pool) <= 64 and "AMEX:SPY" in set(pool["symbol"])
    assert {"equity", "crypto", "forex"} <= set(pool["asset_class"])
    health = pd.read_parquet(root / "history" / "history_500d__health" / f"{DEV_DATE}.parquet")
    assert "AMEX:SPY" in set(health["symbol"]) and (health["status"] == "OK").all()
    weights = pd.read_parquet(root / "allocation" / "target_weights" / f"{DEV_DATE}.parquet")
    production = weights[weights["is_production"]]
    assert len(production) >= 3
    assert abs(production["weight"].sum() - 1.0) < 1e-9
    orders = pd.read_parquet(root / "implementation" / "implementation_orders" / f"{DEV_DATE}.parquet")
    assert len(orders) and set(orders["action"]) <= {"BUY", "SELL", "HOLD"}
    prices = Lakehouse(root.parent, root.name).read_prices("AMEX:SPY")  # the columnar price store
    assert set(prices["source"]) == {"tradingview"}
    assert prices["time"].max() == pd.Timestamp(DEV_DATE, tz="UTC")


def test_todays_scans_are_stored_for_later_runs(tv_run):
    run, _, _ = tv_run
    stored = sorted(p.stem for p in (run.root / "scans" / DEV_DATE).glob("*.parquet"))
    assert stored == sorted(PRESETS)
    equity = pd.read_parquet(run.root / "discovery" / "equity_scan" / f"{DEV_DATE}.parquet")
    kept = pd.concat([pd.read_parquet(run.root / "scans" / DEV_DATE / f"{p}.parquet")
                      for p in PRESETS if p.startswith("equity")])
    assert sorted(equity["symbol"]) == sorted(kept["symbol"])


def test_a_past_partition_fails_clearly_instead_of_using_todays_scan(fake, tmp_path):
    run = GraphRun(tmp_path / "lakehouse", tmp_path / "dagster_home")
    proc = run_graph_cli(run, PREV_DATE, env=tv_env(run, fake, today=TODAY))
    assert proc.returncode == 1, describe(proc)
    scans = run.root / "scans"
    message = ("the live scanner only answers for today (2026-11-25); no stored scan for equity preset "
               f"equity_trend_long on {PREV_DATE} in {scans / PREV_DATE}")
    causes = step_failure_causes(run, proc)
    assert message in causes["equity_scan"]
    assert {"bond_scan", "crypto_scan", "equity_scan", "forex_scan"} == set(causes)
    outcomes = {r["asset"]: r["payload"] for r in ledger_records(run.ledger(PREV_DATE)) if r["kind"] == "outcome"}
    assert outcomes["equity_scan"]["status"] == "failed"
    assert outcomes["equity_scan"]["error"] == f"SourceError: {message}"
    assert not (run.root / "universe" / "raw_pool" / f"{PREV_DATE}.parquet").exists()
    assert not (scans / PREV_DATE).exists(), "a refused past scan must not store anything"


def test_a_malformed_scanner_answer_fails_the_run_and_keeps_the_stored_partition(tv_run, fake, tmp_path):
    run = copy_run(tv_run[0], tmp_path)
    kept = partition_snapshot(run.root, DEV_DATE)
    kept_scans = {p.name: p.read_bytes() for p in (run.root / "scans" / DEV_DATE).iterdir()}
    fake.scanner.script(Reply.json({"totalCount": 1, "data": [{"s": "AMEX:SPY", "d": ["SPY", 1.0]}]}))
    proc = run_graph_cli(run, PREV_DATE, env=tv_env(run, fake, today=dt.date.fromisoformat(PREV_DATE)))
    assert proc.returncode == 1, describe(proc)
    causes = step_failure_causes(run, proc)
    assert len(causes) == 1, causes  # the first scan step got the malformed answer, the others did not
    assert "SourceError: scanner row for 'AMEX:SPY' has 2 values for 19 columns" in next(iter(causes.values()))
    failed = [r for r in ledger_records(run.ledger(PREV_DATE))
              if r["kind"] == "outcome" and r["payload"]["status"] == "failed"]
    assert [r["payload"]["error"] for r in failed] == [
        "SourceError: scanner row for 'AMEX:SPY' has 2 values for 19 columns"]
    assert not (run.root / "universe" / "raw_pool" / f"{PREV_DATE}.parquet").exists()
    assert partition_snapshot(run.root, DEV_DATE) == kept
    assert {p.name: p.read_bytes() for p in (run.root / "scans" / DEV_DATE).iterdir()} == kept_scans
