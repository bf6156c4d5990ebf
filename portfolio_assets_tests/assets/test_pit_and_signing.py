"""Point in time through the whole graph, a signed ledger, the schedule, enrichment provenance."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
from dagster import build_schedule_context

from portfolio_assets.lakehouse import Lakehouse
from portfolio_assets.ledger import HmacSigner, file_hash, verify_ledger
from portfolio_assets_tests.graph_helpers import PARTITION, check_results, run_graph, step_errors

DEV_SOURCE = {"seed": 11, "n_equities": 80, "n_etfs": 16, "n_crypto": 12, "n_forex": 8}


def _tables(lake) -> dict[str, str]:
    root = Lakehouse(lake, "development").root
    return {str(p.relative_to(root)): file_hash(p) for p in sorted(root.glob(f"*/*/{PARTITION}.parquet"))
            if p.parts[-3] not in ("prices", "run")}


def test_changing_data_after_d_changes_no_asset_of_partition_d(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ra = run_graph(a, PA_SOURCE__SETTINGS=json.dumps(DEV_SOURCE))
    rb = run_graph(b, PA_SOURCE__SETTINGS=json.dumps({**DEV_SOURCE, "perturb_after": PARTITION}))
    assert ra.success and rb.success, (step_errors(ra), step_errors(rb))
    ta, tb = _tables(a), _tables(b)
    assert len(ta) >= 25 and ta == tb
    # the perturbation is real: the next session differs
    from portfolio_assets.sources.synthetic import SyntheticMarket

    nxt = dt.date(2026, 11, 27)
    one = SyntheticMarket(DEV_SOURCE).bars("AMEX:SPY", nxt, nxt)
    two = SyntheticMarket({**DEV_SOURCE, "perturb_after": PARTITION}).bars("AMEX:SPY", nxt, nxt)
    assert float(one["close"].iloc[0]) != float(two["close"].iloc[0])


def test_signed_ledger_verifies_with_the_key_and_fails_without(tmp_path):
    key = "a3f1" * 16
    result = run_graph(tmp_path, selection=None, PA_LEDGER__SIGNING="hmac", PA_LEDGER__REQUIRE_SIGNATURES="true",
                       PA_LEDGER_HMAC_KEY=key)
    assert result.success, step_errors(result)
    assert check_results(result)["ledger_integrity"].passed
    lh = Lakehouse(tmp_path, "development")
    path = lh.ledger_path(PARTITION)
    records = [json.loads(x) for x in path.read_text().splitlines()]
    assert all(r.get("sig") for r in records) and key not in path.read_text()
    assert verify_ledger(path, root=lh.root, signer=HmacSigner(bytes.fromhex(key))).ok
    wrong = verify_ledger(path, root=lh.root, signer=HmacSigner(b"another-key-of-32-bytes-length!!"))
    assert not wrong.ok


def test_signing_configured_without_a_key_fails_at_step_one(tmp_path):
    result = run_graph(tmp_path, PA_LEDGER__SIGNING="hmac", PA_LEDGER_HMAC_KEY=None, PA_LEDGER_ED25519_KEY=None)
    assert not result.success
    assert "signs its ledger (hmac) but no key is set" in step_errors(result)["run_manifest"]


def test_daily_schedule_targets_todays_session_after_the_close():
    from portfolio_assets.definitions import defs
    from portfolio_assets.schedules import daily_after_close

    tz = dt.timezone(dt.timedelta(hours=-5))
    repo = defs.get_repository_def()
    ok = daily_after_close.evaluate_tick(build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 11, 25, 17, 30, tzinfo=tz), repository_def=repo))
    assert [r.partition_key for r in ok.run_requests] == ["2026-11-25"]
    holiday = daily_after_close.evaluate_tick(build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 11, 26, 17, 30, tzinfo=tz), repository_def=repo))
    assert not holiday.run_requests and "2026-11-26 is not an XNYS session" in holiday.skip_message


def test_enrichment_fills_each_field_from_the_first_source_that_has_it():
    from portfolio_assets.quant.enrichment import enrich

    winners = pd.DataFrame(index=["AMEX:SPY", "NYSE:ABC", "BINANCE:ETHUSDT", "NASDAQ:ZZZ"])
    scan = pd.DataFrame({"sector": [None, "Technology", None, None], "industry": [None, None, None, None],
                         "description": ["SPY from scanner", None, None, None], "asset_class": [None] * 4},
                        index=winners.index)
    meta = pd.DataFrame({"sector": [None, "Energy", None, None], "industry": [None, "Software", None, None],
                         "description": [None, "ABC Corp", None, None],
                         "asset_class": ["etf", "equity", "crypto", None]}, index=winners.index)
    out = enrich(winners, scan, meta)
    assert (out.at["AMEX:SPY", "description"], out.at["AMEX:SPY", "description_source"]) == ("SPY from scanner", "scanner")
    assert (out.at["AMEX:SPY", "sector"], out.at["AMEX:SPY", "sector_source"]) == ("Broad Market", "builtin_map")
    assert (out.at["NYSE:ABC", "sector"], out.at["NYSE:ABC", "sector_source"]) == ("Technology", "scanner")
    assert (out.at["NYSE:ABC", "industry"], out.at["NYSE:ABC", "industry_source"]) == ("Software", "source_metadata")
    assert (out.at["BINANCE:ETHUSDT", "sector"], out.at["BINANCE:ETHUSDT", "sector_source"]) == (
        "Digital Assets", "class_fallback")
    assert out.at["NASDAQ:ZZZ", "asset_class_source"] == "class_fallback"
    assert out.at["NASDAQ:ZZZ", "description"] == "ZZZ"


def test_rerunning_history_alone_recovers_again_and_passes_the_gate(tmp_path):
    """What `make recover` runs: history_500d (re-fetch + recovery) and its gate, on stored upstream."""
    from dagster import AssetSelection

    first = run_graph(tmp_path, selection=AssetSelection.assets("history_500d").upstream())
    assert first.success, step_errors(first)
    lh = Lakehouse(tmp_path, "development")
    before = lh.read_table("history", "history_500d", PARTITION, "health")
    again = run_graph(tmp_path, selection=AssetSelection.assets("history_500d"))
    assert again.success and check_results(again)["health_gate"].passed
    after = lh.read_table("history", "history_500d", PARTITION, "health")
    # every run re-fetches the window, so the injected faults are seen and repaired again, identically
    pd.testing.assert_frame_equal(before, after)
    assert (after["status_before"] != "OK").any() and (after["status"] == "OK").all()
