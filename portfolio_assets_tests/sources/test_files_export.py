"""`files_export.export_closes`: closes-only data into the files layout, refused when malformed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.sources.files import FilesSource
from portfolio_assets.sources.files_export import export_closes

DAYS = pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"])


def _closes(**overrides: list) -> pd.DataFrame:
    data = {"NASDAQ:AAA": [10.0, 10.5, 10.25, 11.0], "NYSE:BBB": [np.nan, 20.0, 19.5, 21.125], "SP:SPX": [4700.0, 4704.8, 4688.6, 4697.2]}
    return pd.DataFrame({**data, **overrides}, index=DAYS)


def test_round_trip_equal_ohlc_unknown_volume_and_missing_closes_are_no_bars(tmp_path: Path) -> None:
    closes = _closes()
    export_closes(closes, tmp_path)
    assert (tmp_path / "bars" / "NYSE__BBB.csv").read_text() == (
        "time,open,high,low,close,volume\n2024-01-03,20.0,20.0,20.0,20.0,\n"
        "2024-01-04,19.5,19.5,19.5,19.5,\n2024-01-05,21.125,21.125,21.125,21.125,\n")
    source = FilesSource({"path": tmp_path})
    for symbol in closes.columns:
        bars = source.bars(symbol, dt.date(2024, 1, 1), dt.date(2024, 1, 31))
        expected = closes[symbol].dropna()
        assert bars["close"].tolist() == expected.tolist() and bars["time"].dt.tz_localize(None).tolist() == list(expected.index)
        assert (bars["open"] == bars["close"]).all() and (bars["high"] == bars["low"]).all() and bars["volume"].isna().all()
    # without a universe table every symbol is an equity on XNYS
    assert source.metadata(list(closes.columns))[["asset_class", "calendar"]].values.tolist() == [["equity", "XNYS"]] * 3


def test_universe_is_written_as_given_and_the_export_is_byte_identical_when_repeated(tmp_path: Path) -> None:
    universe = pd.DataFrame({"symbol": ["SP:SPX", "NASDAQ:AAA", "NYSE:BBB"], "asset_class": ["etf", "equity", "equity"],
                             "sector": [np.nan, "Technology", "Energy"], "description": ["S&P 500 Index", "A", "B"]})
    export_closes(_closes(), tmp_path, universe)
    first = {p.name: p.read_bytes() for p in sorted(tmp_path.rglob("*.csv"))}
    assert first["universe.csv"] == (b"symbol,asset_class,sector,description\nNASDAQ:AAA,equity,Technology,A\n"
                                     b"NYSE:BBB,equity,Energy,B\nSP:SPX,etf,,S&P 500 Index\n")
    export_closes(_closes(), tmp_path, universe)
    assert {p.name: p.read_bytes() for p in sorted(tmp_path.rglob("*.csv"))} == first
    meta = FilesSource({"path": tmp_path}).metadata(["SP:SPX", "NYSE:BBB"])
    assert meta["asset_class"].tolist() == ["etf", "equity"] and meta.at["NYSE:BBB", "sector"] == "Energy"


@pytest.mark.parametrize(("closes", "universe", "message"), [
    (_closes(**{"NYSE:BBB": [np.nan, 20.0, np.inf, 21.0]}), None,
     "closes: NYSE:BBB on 2024-01-04: close inf is not a finite number > 0"),
    (_closes(**{"NYSE:BBB": [np.nan, 0.0, 19.5, 21.0]}), None,
     "closes: NYSE:BBB on 2024-01-03: close 0.0 is not a finite number > 0"),
    (_closes(**{"NYSE:BBB": [np.nan, "twenty", 19.5, 21.0]}), None,
     "closes: NYSE:BBB on 2024-01-03: close 'twenty' is not a finite number > 0"),
    (_closes().rename(columns={"SP:SPX": "SPX"}), None,
     "closes: column 'SPX': invalid symbol 'SPX': expected 'EXCHANGE:TICKER' of A-Z, 0-9, '.', '_', '-', '!'"),
    (_closes().set_axis(pd.to_datetime(["2024-01-02", "2024-01-04", "2024-01-03", "2024-01-05"])), None,
     "closes: dates must increase; 2024-01-03 follows 2024-01-04"),
    (_closes().set_axis(pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-03", "2024-01-05"])), None,
     "closes: duplicate date 2024-01-03"),
    # a US spreadsheet's dates, as read from a CSV (strings): named, without pandas' advice on its API
    (_closes().set_axis(pd.Index(["2024-01-02", "01/03/2024", "2024-01-04", "2024-01-05"], dtype=object)), None,
     "closes: the first column must hold dates (YYYY-MM-DD); row 2 has '01/03/2024' (convert the export's "
     "dates to ISO 8601)"),
    (_closes().set_axis(pd.Index(["2024-01-02", "", "2024-01-04", "2024-01-05"], dtype=object)), None,
     "closes: a row has no date"),
    (_closes(), pd.DataFrame({"symbol": ["NASDAQ:AAA", "NYSE:BBB"], "asset_class": "equity"}),
     "universe: must list exactly the symbols of the closes; missing ['SP:SPX'], without closes []"),
    (_closes(), pd.DataFrame({"symbol": ["NASDAQ:AAA", "NYSE:BBB", "SP:SPX"], "asset_class": ["equity", "stock", "etf"]}),
     "universe: row 2: asset_class 'stock' is not one of equity, etf, bond_etf, crypto, forex, futures"),
])
def test_malformed_input_is_refused_naming_symbol_date_or_row_and_nothing_is_written(
        tmp_path: Path, closes: pd.DataFrame, universe: pd.DataFrame | None, message: str) -> None:
    with pytest.raises(ValueError) as err:
        export_closes(closes, tmp_path, universe)
    assert str(err.value) == message
    assert not any(tmp_path.iterdir())


def test_a_directory_holding_other_symbols_is_refused(tmp_path: Path) -> None:
    export_closes(_closes(), tmp_path)
    with pytest.raises(ValueError) as err:
        export_closes(_closes().drop(columns="NYSE:BBB"), tmp_path)
    assert str(err.value) == (f"{tmp_path / 'bars'} holds bars of symbols not in this export ['NYSE:BBB']; "
                              "export into an empty directory")
