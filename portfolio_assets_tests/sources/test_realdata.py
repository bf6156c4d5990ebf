"""The files source on real data: skfolio's closes exported by `files_export` (session fixture
`realdata`), at a crash, a second crash, a calm and a recovery date.

Expected values are computed here from skfolio's frames directly (never through `indicators`):
the close of each bar, and the 3- and 6-month performances that decide the short screen.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.manifest import resolve
from portfolio_assets.quant.rawpool import build_raw_pool
from portfolio_assets.sources.files import FilesSource
from portfolio_assets_tests.realdata import BASELINE, FACTOR_ETFS, STOCKS, skfolio_closes

DATES = ("2008-10-15", "2020-03-20", "2021-06-15", "2017-06-15")
SKIPPED = "Value.Traded greater 20000000"


@pytest.fixture(scope="module")
def closes() -> pd.DataFrame:
    return skfolio_closes()[0]


@pytest.fixture(scope="module")
def demo(realdata: Path):
    """The issue's settings: the demo profile switched to the files source with SP:SPX as baseline."""
    return resolve("demo", environ={}, cli_overrides={
        "source.kind": "files", "source.settings": {"path": str(realdata)}, "selection.baseline": BASELINE}).config


@pytest.fixture(scope="module")
def source(demo) -> FilesSource:
    return FilesSource(demo.source.settings)


def _perf(series: pd.Series, day: pd.Timestamp, n: int) -> float:
    """100 x (close_D / close_{D - n bars} - 1) on the symbol's own bars."""
    own = series.loc[:day].dropna()
    return 100.0 * (own.iloc[-1] / own.iloc[-1 - n] - 1.0) if len(own) > n else np.nan


@pytest.mark.parametrize("day", DATES)
def test_bars_are_the_closes_with_equal_ohlc_and_unknown_volume(source: FilesSource, closes: pd.DataFrame,
                                                                day: str) -> None:
    end = dt.date.fromisoformat(day)
    start = end - dt.timedelta(days=40)
    for symbol in closes.columns:
        bars = source.bars(symbol, start, end)
        expected = closes[symbol].loc[str(start):day].dropna()
        assert bars["time"].dt.tz_localize(None).tolist() == list(expected.index), symbol
        assert bars["close"].tolist() == expected.tolist(), symbol  # exact: the CSV round trip loses nothing
        for name in ("open", "high", "low"):
            assert bars[name].tolist() == bars["close"].tolist()
        assert bars["volume"].isna().all()
    if day < "2014":  # the factor ETFs start in 2014: no bar, not an error
        assert all(source.bars(f"AMEX:{t}", start, end).empty for t in FACTOR_ETFS)


@pytest.mark.parametrize("day", DATES)
def test_scans_by_direction_and_value_traded_handling(source: FilesSource, closes: pd.DataFrame, demo,
                                                      day: str) -> None:
    as_of = pd.Timestamp(day)
    listed = [s for s in closes.columns if closes[s].loc[:day].notna().any()]
    perf3 = {s: _perf(closes[s], as_of, 63) for s in listed}
    perf6 = {s: _perf(closes[s], as_of, 126) for s in listed}
    long_preset, short_preset = (p.model_dump() for p in demo.discovery.scanners["equity"].presets)
    assert (long_preset["direction"], short_preset["direction"]) == ("long", "short")

    short = source.scan("equity", as_of.date(), short_preset)
    expected_short = {s for s in listed if perf3[s] < -5 and perf6[s] < 0}
    assert set(short["symbol"]) == expected_short
    assert short["Perf.3M"].is_monotonic_increasing  # the preset sorts by Perf.3M ascending

    long = source.scan("equity", as_of.date(), long_preset)
    assert set(long["symbol"]) == {s for s in listed if perf3[s] > 0} & set(long["symbol"])
    assert (long["ADX"] > 15).all()
    for frame in (long, short):
        assert frame["Perf.3M"].to_numpy() == pytest.approx([perf3[s] for s in frame["symbol"]], rel=1e-12)
        # no volume: liquidity unknown, the Value.Traded filter skipped and recorded, nothing invented
        assert frame["volume"].isna().all() and frame["Value.Traded"].isna().all()
        assert not frame["liquidity_known"].any()
        assert (frame["filters_skipped"] == SKIPPED).all()
    assert not (set(long["symbol"]) & set(short["symbol"]))
    # the other families have no member in this universe
    for family in ("crypto", "bond", "forex"):
        assert source.scan(family, as_of.date(), {}).empty


def test_the_crash_days_screen_short_and_the_calm_days_long(source: FilesSource, demo) -> None:
    """Counts by direction on the four dates (the issue's observation: crashes screen almost all short)."""
    counts = {}
    for day in DATES:
        rows = [source.scan("equity", dt.date.fromisoformat(day), p.model_dump())
                for p in demo.discovery.scanners["equity"].presets]
        counts[day] = tuple(len(r) for r in rows)
    assert counts == {"2008-10-15": (0, 20), "2020-03-20": (0, 22), "2021-06-15": (16, 0), "2017-06-15": (14, 1)}


@pytest.mark.parametrize("day", DATES)
def test_raw_pool_on_real_data_forces_the_index_and_scores_without_liquidity(source: FilesSource, demo,
                                                                          day: str) -> None:
    as_of = dt.date.fromisoformat(day)
    scans = {"equity": pd.concat([source.scan("equity", as_of, p.model_dump()).assign(preset=p.name)
                                  for p in demo.discovery.scanners["equity"].presets], ignore_index=True)}
    baseline_row = source.scan("equity", as_of, {"symbols": [BASELINE]})
    pool, _ = build_raw_pool(scans, demo.selection.class_cap, BASELINE, baseline_row)
    assert pool.at[BASELINE, "direction"] == "long"
    assert not pool["liquidity_known"].any() and pool["rank_liquidity"].isna().all()
    ranks = pool[["rank_trend", "rank_momentum", "rank_vol_sanity"]].mean(axis=1)
    assert pool["score"].to_numpy() == pytest.approx(ranks.to_numpy())


def test_metadata_of_the_exported_universe(source: FilesSource) -> None:
    meta = source.metadata([BASELINE, "NASDAQ:AAPL", "NYSE:XOM", "AMEX:MTUM"])
    assert meta["asset_class"].tolist() == ["etf", "equity", "equity", "etf"]
    assert meta["calendar"].tolist() == ["XNYS"] * 4
    assert meta.at["NYSE:XOM", "sector"] == STOCKS["XOM"][1] and meta.at["AMEX:MTUM", "description"] == FACTOR_ETFS["MTUM"]
