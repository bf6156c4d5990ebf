"""Scanner query semantics for rows whose liquidity is unknown (closes-only data)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from portfolio_assets.sources.scanner_query import (
    FAMILIES,
    SCAN_RESULT_COLUMNS,
    apply_preset,
    apply_scanner_query,
)
from portfolio_assets.sources.synthetic import SyntheticMarket

LIQUID = {"left": "Value.Traded", "operation": "greater", "right": 20_000_000}
TRENDING = {"left": "Perf.3M", "operation": "greater", "right": 0}


def _rows() -> pd.DataFrame:
    return pd.DataFrame({
        "symbol": ["NYSE:A", "NYSE:B", "NYSE:C", "NYSE:D", "NYSE:E"],
        "Value.Traded": [3e7, 1e7, np.nan, np.nan, np.nan],
        "volume": [3e5, 1e5, np.nan, np.nan, np.nan],
        "Perf.3M": [5.0, 6.0, 4.0, -2.0, 8.0],
        "liquidity_known": [True, True, False, False, True],  # E: known to the source, but missing
    })


def test_a_liquidity_condition_is_skipped_and_recorded_for_unknown_liquidity_only() -> None:
    out = apply_scanner_query(_rows(), [LIQUID, TRENDING])
    # A passes both; B fails on liquidity; C's liquidity is unknown: skipped, passes on trend;
    # D skipped but fails on trend; E's value is missing although its liquidity is known: fails
    assert out["symbol"].tolist() == ["NYSE:A", "NYSE:C"]
    assert out["filters_skipped"].tolist() == ["", "Value.Traded greater 20000000"]


def test_several_liquidity_conditions_are_all_recorded_and_sorting_puts_unknown_last() -> None:
    volume = {"left": "volume", "operation": "egreater", "right": 1000}
    out = apply_scanner_query(_rows(), [LIQUID, volume], sort={"sortBy": "Value.Traded", "sortOrder": "desc"})
    assert out["symbol"].tolist() == ["NYSE:A", "NYSE:C", "NYSE:D"]
    assert out["filters_skipped"].tolist() == [
        "", "Value.Traded greater 20000000; volume egreater 1000", "Value.Traded greater 20000000; volume egreater 1000"]


def test_without_a_liquidity_known_column_the_vendor_rule_holds() -> None:
    out = apply_scanner_query(_rows().drop(columns="liquidity_known"), [LIQUID])
    assert out["symbol"].tolist() == ["NYSE:A"] and "filters_skipped" not in out.columns


def test_presets_and_multi_timeframe_screens_record_skips_per_screen() -> None:
    preset = {"screens": [{"direction": "long", "filter": [LIQUID, TRENDING]},
                          {"direction": "short", "filter": [{"left": "Perf.3M", "operation": "less", "right": 0}],
                           "timeframes": [{"name": "liquid", "filter": [LIQUID]}]}]}
    out = apply_preset(_rows(), preset)
    assert out[["symbol", "direction", "filters_skipped"]].values.tolist() == [
        ["NYSE:A", "long", ""], ["NYSE:C", "long", "Value.Traded greater 20000000"],
        ["NYSE:D", "short", "Value.Traded greater 20000000"]]


def test_synthetic_scans_know_every_liquidity_and_skip_nothing() -> None:
    market = SyntheticMarket({"n_equities": 40, "n_crypto": 8, "n_forex": 6, "n_futures": 2, "faults": {}})
    for family in FAMILIES:
        frame = market.scan(family, dt.date(2024, 3, 15), {"filter": [LIQUID]})
        assert list(frame.columns) == list(SCAN_RESULT_COLUMNS)
        assert frame["liquidity_known"].all() and (frame["filters_skipped"] == "").all(), family
