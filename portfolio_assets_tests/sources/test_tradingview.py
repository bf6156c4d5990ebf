"""TradingViewSource against local fakes of the scanner HTTP API and the chart websocket."""

from __future__ import annotations

import datetime as dt
import logging
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from websockets.sync.client import connect as sync_connect

from portfolio_assets.sources.base import BAR_COLUMNS, SCAN_COLUMNS, MarketData, SourceError
from portfolio_assets.sources.tradingview import (
    DEFAULT_TOKEN_ENV,
    ENV_SCANNER_BASE,
    ENV_WS_URL,
    FetchManyError,
    TradingViewSource,
    split_frames,
)
from portfolio_assets_tests.fakes.tradingview_fake import (
    FakeScanner,
    Reply,
    deterministic_bars,
    fake_tradingview,
    frame,
    generated_scanner_table,
    scanner_fixture,
)

TODAY = dt.date(2024, 3, 15)
FIELDS = list(SCAN_COLUMNS[1:])
BY_VALUE = {"sort": {"sortBy": "Value.Traded", "sortOrder": "desc"}}


@pytest.fixture(autouse=True)
def _no_vendor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENV_SCANNER_BASE, ENV_WS_URL, DEFAULT_TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake():
    with fake_tradingview(TODAY) as running:
        yield running


@pytest.fixture
def source(fake, tmp_path) -> TradingViewSource:
    return TradingViewSource(fake.settings(stored_scans=tmp_path / "scans"))


@pytest.fixture(scope="module")
def table_320():
    return generated_scanner_table("america", 320, TODAY)


def rows_of(market: str, *symbols: str) -> list[dict]:
    """Answer rows (``{"s", "d"}``) of fixture symbols, values in the client's column order."""
    table = dict(scanner_fixture(market).rows)
    return [{"s": s, "d": [table[s][c] for c in FIELDS]} for s in symbols]


def answer(rows: list[dict], total: int | None = None) -> Reply:
    return Reply.json({"totalCount": len(rows) if total is None else total, "data": rows})


# ---------------------------------------------------------------------------------------------------
# scanner: paging, frame, errors


def test_source_satisfies_the_marketdata_protocol(source):
    assert isinstance(source, MarketData)
    assert source.name == "tradingview"


def test_pages_until_a_short_page(table_320, tmp_path):
    with FakeScanner({"america": table_320}) as scanner:
        src = TradingViewSource({"scanner_base": scanner.base_url, "today": TODAY, "page_size": 150})
        df = src.scan("equity", TODAY, {**BY_VALUE, "filter": [{"left": "close", "operation": "greater", "right": 0}]})
        assert scanner.ranges() == [[0, 150], [150, 300], [300, 450]]
        assert [r.path for r in scanner.requests] == ["/america/scan"] * 3
        assert scanner.requests[0].body == {
            "columns": FIELDS, "filter": [{"left": "close", "operation": "greater", "right": 0}],
            "options": {"lang": "en"}, "range": [0, 150], "sort": {"sortBy": "Value.Traded", "sortOrder": "desc"}}
    assert len(df) == 320 and df["symbol"].is_unique
    traded = df["Value.Traded"].to_numpy()
    assert (traded[:-1] >= traded[1:]).all()  # the pages were concatenated in order


def test_paging_stops_at_the_limit(table_320):
    with FakeScanner({"america": table_320}) as scanner:
        src = TradingViewSource({"scanner_base": scanner.base_url, "today": TODAY, "page_size": 150})
        df = src.scan("equity", TODAY, {**BY_VALUE, "limit": 200})
        assert scanner.ranges() == [[0, 150], [150, 200]]
    assert len(df) == 200


def test_paging_stops_when_total_count_is_reached(table_320):
    table = type(table_320)(table_320.columns, table_320.rows[:300])
    with FakeScanner({"america": table}) as scanner:
        src = TradingViewSource({"scanner_base": scanner.base_url, "today": TODAY, "page_size": 150})
        assert len(src.scan("equity", TODAY, BY_VALUE)) == 300
        assert scanner.ranges() == [[0, 150], [150, 300]]


def test_scan_frame_keeps_nulls_and_types(source, fake):
    df = source.scan("equity", TODAY, {**BY_VALUE, "direction": "short"})
    assert list(df.columns) == [*SCAN_COLUMNS, "direction"]
    assert len(df) == 12 and set(df["direction"]) == {"short"}
    spy = df.set_index("symbol").loc["AMEX:SPY"]
    assert spy["sector"] is None and spy["industry"] is None and spy["type"] == "fund"
    newco = df.set_index("symbol").loc["NASDAQ:NEWCO"]
    assert newco["industry"] is None and newco["sector"] == "Technology Services"
    assert np.isnan(newco["ADX"]) and np.isnan(newco["Perf.Y"]) and np.isnan(newco["Recommend.All"])
    assert newco["Perf.W"] == 5.42
    assert all(df[c].dtype == np.float64 for c in ("close", "volume", "ADX", "Perf.Y"))
    assert df.attrs["rejected"] == [] and df.attrs["total_count"] == 12


def test_invalid_symbols_are_dropped_and_recorded(source, fake):
    bad = [{**rows_of("america", "NASDAQ:AAPL")[0], "s": "nasdaq:aapl"},
           {**rows_of("america", "NYSE:KO")[0], "s": "NYSE:../../etc"}]
    fake.scanner.script(answer(rows_of("america", "NYSE:JPM") + bad))
    df = source.scan("equity", TODAY, {})
    assert df["symbol"].tolist() == ["NYSE:JPM"]
    assert df.attrs["rejected"] == [
        {"symbol": "nasdaq:aapl",
         "reason": "invalid symbol 'nasdaq:aapl': expected 'EXCHANGE:TICKER' of A-Z, 0-9, '.', '_', '-', '!'"},
        {"symbol": "NYSE:../../etc",
         "reason": "invalid symbol 'NYSE:../../etc': expected 'EXCHANGE:TICKER' of A-Z, 0-9, '.', '_', '-', '!'"},
    ]


def test_duplicates_across_pages_are_dropped_and_recorded(fake, tmp_path):
    src = TradingViewSource(fake.settings(page_size=2))
    fake.scanner.script(answer(rows_of("america", "NYSE:JPM", "NYSE:KO"), total=3),
                        answer(rows_of("america", "NYSE:KO"), total=3))
    df = src.scan("equity", TODAY, {})
    assert df["symbol"].tolist() == ["NYSE:JPM", "NYSE:KO"]
    assert df.attrs["duplicates"] == ["NYSE:KO"]
    assert fake.scanner.ranges() == [[0, 2], [2, 4]]


def test_429_is_retried_after_the_retry_after_delay(source, fake):
    fake.scanner.script(Reply.text(429, "slow down", {"Retry-After": "1"}))
    df = source.scan("equity", TODAY, BY_VALUE)
    first, second = fake.scanner.requests
    assert second.at - first.at >= 1.0
    assert len(df) == 12


def test_5xx_backoff_grows_exponentially(fake):
    src = TradingViewSource(fake.settings(backoff_base_s=0.2, max_attempts=3))
    fake.scanner.script(Reply.text(503, "busy"), Reply.text(502, "bad gateway"))
    assert len(src.scan("equity", TODAY, {})) == 12
    at = [r.at for r in fake.scanner.requests]
    assert len(at) == 3
    assert at[1] - at[0] >= 0.2 and at[2] - at[1] >= 0.4


def test_500_with_text_body_fails_after_all_attempts(source, fake):
    fake.scanner.script(*[Reply.text(500, "upstream exploded:\n  database on fire")] * 3)
    with pytest.raises(SourceError) as err:
        source.scan("equity", TODAY, {})
    assert str(err.value) == (f"scanner POST {fake.scanner.base_url}/america/scan failed after 3 attempts; "
                              "last answer: HTTP 500: upstream exploded: database on fire")
    assert len(fake.scanner.requests) == 3


def test_retry_after_longer_than_the_cap_gives_up_at_once(source, fake):
    fake.scanner.script(Reply.text(429, "later", {"Retry-After": "120"}))
    with pytest.raises(SourceError) as err:
        source.scan("equity", TODAY, {})
    assert str(err.value) == (f"scanner POST {fake.scanner.base_url}/america/scan answered HTTP 429 with "
                              "Retry-After 120 s, longer than backoff_max_s=1; giving up")
    assert len(fake.scanner.requests) == 1


def test_client_errors_are_not_retried(source, fake):
    fake.scanner.script(Reply.text(403, "forbidden"))
    with pytest.raises(SourceError) as err:
        source.scan("equity", TODAY, {})
    assert str(err.value) == f"scanner POST {fake.scanner.base_url}/america/scan answered HTTP 403: forbidden"
    assert len(fake.scanner.requests) == 1


def test_unknown_filter_field_is_the_vendors_400(source, fake):
    with pytest.raises(SourceError) as err:
        source.scan("equity", TODAY, {"filter": [{"left": "RSI|1W", "operation": "greater", "right": 50}]})
    assert str(err.value) == (f"scanner POST {fake.scanner.base_url}/america/scan answered HTTP 400: "
                              '{"totalCount": 0, "error": "Unknown field \\"RSI|1W\\"", "data": null}')


def test_unreachable_scanner_is_retried_then_fails():
    src = TradingViewSource({"scanner_base": "http://127.0.0.1:1", "today": TODAY, "max_attempts": 2,
                             "backoff_base_s": 0.01, "timeout_s": 2})
    with pytest.raises(SourceError, match=r"^scanner POST http://127\.0\.0\.1:1/america/scan failed after 2 "
                                          r"attempts; last answer: ConnectionError: "):
        src.scan("equity", TODAY, {})


def test_malformed_json(source, fake):
    fake.scanner.script(Reply.text(200, "{not json"))
    with pytest.raises(SourceError) as err:
        source.scan("equity", TODAY, {})
    assert str(err.value) == ("scanner answered malformed JSON: Expecting property name enclosed in double "
                              "quotes: line 1 column 2 (char 1); body starts '{not json'")


def test_answer_without_data_list(source, fake):
    fake.scanner.script(Reply.json({"totalCount": 3}))
    with pytest.raises(SourceError) as err:
        source.scan("equity", TODAY, {})
    assert str(err.value) == (f"scanner answer of {fake.scanner.base_url}/america/scan has no 'data' list: "
                              '{"totalCount": 3}')


def test_wrong_column_count(source, fake):
    fake.scanner.script(answer([{"s": "NASDAQ:AAPL", "d": ["AAPL", 172.6]}]))
    with pytest.raises(SourceError) as err:
        source.scan("equity", TODAY, {})
    assert str(err.value) == "scanner row for 'NASDAQ:AAPL' has 2 values for 19 columns"


def test_wrong_value_types(source, fake):
    row = rows_of("america", "NASDAQ:AAPL")[0]
    fake.scanner.script(answer([{**row, "d": [*row["d"][:7], "n/a", *row["d"][8:]]}]))
    with pytest.raises(SourceError) as err:
        source.scan("equity", TODAY, {})
    assert str(err.value) == "scanner row for 'NASDAQ:AAPL': column 'close' should be a number, got str 'n/a'"
    fake.scanner.script(answer([{**row, "d": [*row["d"][:5], 42, *row["d"][6:]]}]))
    with pytest.raises(SourceError) as err:
        source.scan("equity", TODAY, {})
    assert str(err.value) == "scanner row for 'NASDAQ:AAPL': column 'sector' should be text, got int 42"


# ---------------------------------------------------------------------------------------------------
# scanner: forex multi-timeframe


MTF = {"sort": {"sortBy": "Recommend.All", "sortOrder": "desc"}, "timeframes": [
    {"name": "monthly", "filter": [{"left": "Recommend.All|1M", "operation": "greater", "right": 0}]},
    {"name": "weekly", "filter": [{"left": "Recommend.All|1W", "operation": "greater", "right": 0}]},
    {"name": "daily", "filter": [{"left": "Recommend.All", "operation": "greater", "right": 0.1}]},
]}


def test_forex_screens_run_in_order_on_the_survivors(source, fake):
    df = source.scan("forex", TODAY, MTF)
    assert df["symbol"].tolist() == ["FX:EURJPY", "FX:EURUSD", "FX:USDJPY"]
    bodies = [r.body for r in fake.scanner.requests]
    assert [r.path for r in fake.scanner.requests] == ["/forex/scan"] * 3
    assert "symbols" not in bodies[0]
    assert bodies[1]["symbols"]["tickers"] == ["FX:EURJPY", "FX:GBPUSD", "FX:EURUSD", "FX:USDJPY", "FX:USDCHF",
                                               "FX:NZDUSD"]
    assert bodies[2]["symbols"]["tickers"] == ["FX:EURJPY", "FX:EURUSD", "FX:USDJPY", "FX:USDCHF", "FX:NZDUSD"]
    assert [f["left"] for f in bodies[2]["filter"]] == ["Recommend.All"]
    assert df.attrs["timeframes"] == [{"name": "monthly", "rows": 6, "kept": 6},
                                      {"name": "weekly", "rows": 5, "kept": 5},
                                      {"name": "daily", "rows": 3, "kept": 3}]


def test_forex_screens_intersect_even_if_the_vendor_ignores_tickers(source, fake):
    fake.scanner.script(answer(rows_of("forex", "FX:EURUSD", "FX:GBPUSD")),
                        answer(rows_of("forex", "FX:GBPUSD", "FX:USDJPY")),
                        answer(rows_of("forex", "FX:USDJPY", "FX:GBPUSD", "FX:EURUSD")))
    assert source.scan("forex", TODAY, MTF)["symbol"].tolist() == ["FX:GBPUSD"]


# ---------------------------------------------------------------------------------------------------
# scanner: only today is live; stored scans


def test_past_date_without_stored_scan_is_refused(source, fake, tmp_path):
    with pytest.raises(SourceError) as err:
        source.scan("equity", dt.date(2024, 3, 14), BY_VALUE)
    assert str(err.value) == ("the live scanner only answers for today (2024-03-15); no stored scan for equity "
                              f"on 2024-03-14 in {tmp_path / 'scans' / '2024-03-14'}")
    assert fake.scanner.requests == []


def test_past_date_without_stored_scans_configured_is_refused(fake):
    with pytest.raises(SourceError) as err:
        TradingViewSource(fake.settings()).scan("crypto", dt.date(2024, 3, 1), {})
    assert str(err.value) == ("the live scanner only answers for today (2024-03-15); no stored scan for crypto "
                              "on 2024-03-01 in <stored_scans not configured>")


def test_todays_scan_is_stored_and_used_for_that_date_later(source, fake, tmp_path):
    live = source.scan("equity", TODAY, BY_VALUE)
    path = tmp_path / "scans" / "2024-03-15" / "equity.parquet"
    assert sorted(p.name for p in path.parent.iterdir()) == ["equity.parquet"]  # no temp file left
    later = TradingViewSource(fake.settings(stored_scans=tmp_path / "scans", today="2024-03-18"))
    stored = later.scan("equity", TODAY, BY_VALUE)
    assert len(fake.scanner.requests) == 1  # the later run did not ask the live scanner
    pd.testing.assert_frame_equal(stored, live)
    assert stored.attrs["stored_scan"] == str(path) and stored.attrs["as_of"] == "2024-03-15"
    with pytest.raises(SourceError, match=r"was made with preset .* a past scan cannot be redone with another preset$"):
        later.scan("equity", TODAY, {**BY_VALUE, "limit": 3})


def test_named_presets_of_one_family_are_stored_apart(source, fake, tmp_path):
    # what discovery passes: the manifest's ScannerPreset.model_dump(), market left unset (None)
    long = {"name": "equity_trend_long", "direction": "long", "market": None, "limit": 4, "timeframes": [],
            "filter": [{"left": "Perf.3M", "operation": "greater", "right": 0}],
            "sort": {"sortBy": "Value.Traded", "sortOrder": "desc"}}
    short = {**long, "name": "equity_breakdown_short", "direction": "short",
             "filter": [{"left": "Perf.3M", "operation": "less", "right": -5}],
             "sort": {"sortBy": "Perf.3M", "sortOrder": "asc"}}
    live = {p["name"]: source.scan("equity", TODAY, p) for p in (long, short)}
    assert live["equity_trend_long"]["symbol"].tolist() == ["NASDAQ:NVDA", "AMEX:SPY", "NASDAQ:MSFT", "NYSE:XOM"]
    assert live["equity_breakdown_short"]["symbol"].tolist() == ["NASDAQ:AAPL", "AMEX:TLT"]
    assert [r.path for r in fake.scanner.requests] == ["/america/scan"] * 2  # market None -> the family default
    day = tmp_path / "scans" / "2024-03-15"
    assert sorted(p.name for p in day.iterdir()) == ["equity__equity_breakdown_short.parquet",
                                                     "equity__equity_trend_long.parquet"]
    later = TradingViewSource(fake.settings(stored_scans=tmp_path / "scans", today="2024-03-18"))
    for preset in (long, short):
        pd.testing.assert_frame_equal(later.scan("equity", TODAY, preset), live[preset["name"]])
    with pytest.raises(SourceError) as err:
        later.scan("equity", dt.date(2024, 3, 14), long)
    assert str(err.value) == ("the live scanner only answers for today (2024-03-18); no stored scan for equity "
                              f"preset equity_trend_long on 2024-03-14 in {tmp_path / 'scans' / '2024-03-14'}")


def test_stored_scans_default_to_the_lakehouse(tmp_path):
    assert TradingViewSource({"lakehouse_root": tmp_path}).settings.stored_scans == tmp_path / "scans"
    assert TradingViewSource({"lakehouse_root": tmp_path, "stored_scans": "elsewhere"}).settings.stored_scans == (
        Path("elsewhere"))
    assert TradingViewSource().settings.stored_scans is None


def test_a_failed_store_keeps_the_previous_scan(source, fake, tmp_path, monkeypatch):
    source.scan("equity", TODAY, BY_VALUE)
    path = tmp_path / "scans" / "2024-03-15" / "equity.parquet"
    before = path.read_bytes()

    def half_write(self, target, **kwargs):
        with open(target, "wb") as fh:
            fh.write(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_write)
    with pytest.raises(OSError, match="disk full"):
        source.scan("equity", TODAY, BY_VALUE)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["equity.parquet"]


def test_metadata_from_the_newest_scanner_rows(source, fake, tmp_path):
    source.scan("equity", TODAY, BY_VALUE)
    source.scan("bond", TODAY, {"filter": [{"left": "description", "operation": "match", "right": "bond"}]})
    source.scan("crypto", TODAY, {})
    fresh = TradingViewSource(fake.settings(stored_scans=tmp_path / "scans", today="2024-03-20"))
    meta = fresh.metadata(["NASDAQ:AAPL", "AMEX:TLT", "AMEX:SPY", "BINANCE:BTCUSDT", "NYSE:NOWHERE"])
    assert list(meta.columns) == ["asset_class", "calendar", "sector", "industry", "description", "currency"]
    assert meta.loc["NASDAQ:AAPL"].tolist() == ["equity", "XNYS", "Electronic Technology",
                                                "Telecommunications Equipment", "Apple Inc.", "USD"]
    assert meta.loc["AMEX:TLT", "asset_class"] == "bond_etf"  # the bond scan beats the equity scan's "etf"
    assert meta.loc["AMEX:SPY", "asset_class"] == "etf" and np.isnan(meta.loc["AMEX:SPY", "sector"])
    assert meta.loc["BINANCE:BTCUSDT", ["asset_class", "calendar", "currency"]].tolist() == ["crypto", "24/7", "USDT"]
    assert meta.loc["NYSE:NOWHERE"].isna().all()
    assert meta.attrs["as_of"]["NASDAQ:AAPL"] == "2024-03-15" and "NYSE:NOWHERE" not in meta.attrs["as_of"]


# ---------------------------------------------------------------------------------------------------
# chart websocket: framing, heartbeats, sessions


def test_one_websocket_message_holding_several_frames():
    text = (frame('{"m":"symbol_resolved","p":[]}') + frame("~h~3")
            + frame('{"m":"series_completed","p":["cs_x","sds_1"]}'))
    assert split_frames(text) == ['{"m":"symbol_resolved","p":[]}', "~h~3",
                                  '{"m":"series_completed","p":["cs_x","sds_1"]}']
    assert split_frames(frame("é~m~")) == ["é~m~"]  # lengths count characters, payloads may hold markers


def test_malformed_frames():
    with pytest.raises(SourceError) as err:
        split_frames("~m~5~m~abc")
    assert str(err.value) == "chart frame announces 5 characters but only 3 follow"
    with pytest.raises(SourceError) as err:
        split_frames(frame("{}") + "garbage")
    assert str(err.value) == "malformed chart frame at character 9: 'garbage'"


def test_bars_are_parsed_to_utc_session_dates_across_dst(source, fake):
    bars = source.bars("NASDAQ:AAPL", dt.date(2024, 3, 1), TODAY)
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert str(bars["time"].dtype) == "datetime64[ns, UTC]"
    days = ["2024-03-06", "2024-03-07", "2024-03-08", "2024-03-11", "2024-03-12", "2024-03-13", "2024-03-14",
            "2024-03-15"]
    assert bars["time"].tolist() == [pd.Timestamp(d, tz="UTC") for d in days]
    assert bars.iloc[-1][["open", "high", "low", "close", "volume"]].tolist() == [171.17, 172.62, 170.29, 172.62,
                                                                                  121664700.0]
    window = source.bars("NASDAQ:AAPL", dt.date(2024, 3, 7), dt.date(2024, 3, 12))
    assert window["time"].dt.strftime("%Y-%m-%d").tolist() == ["2024-03-07", "2024-03-08", "2024-03-11",
                                                               "2024-03-12"]


def test_overnight_forex_sessions_take_the_date_they_close(source, fake):
    bars = source.bars("FX:EURUSD", dt.date(2024, 3, 1), TODAY)
    # opens: Wed 17:00, Thu 17:00 (EST), Sun 17:00, Mon 17:00 (EDT), New York
    assert bars["time"].dt.strftime("%Y-%m-%d").tolist() == ["2024-03-07", "2024-03-08", "2024-03-11", "2024-03-12"]
    assert bars["volume"].isna().all() and bars["close"].tolist() == [1.0899, 1.0937, 1.0926, 1.0927]


def test_crypto_sessions_include_weekends(source, fake):
    bars = source.bars("BINANCE:BTCUSDT", dt.date(2024, 3, 1), TODAY)
    assert bars["time"].dt.strftime("%Y-%m-%d").tolist() == ["2024-03-08", "2024-03-09", "2024-03-10", "2024-03-11"]


def test_client_messages_as_the_fake_saw_them(source, fake):
    source.bars("NASDAQ:AAPL", dt.date(2024, 3, 1), TODAY)
    fake.chart.wait_idle()
    (conn,) = fake.chart.connections
    assert [m for m, _ in conn.messages] == ["set_auth_token", "chart_create_session", "resolve_symbol",
                                             "create_series"]
    cs = conn.messages[1][1][0]
    assert conn.messages[2][1] == [cs, "sds_sym_1", '={"symbol":"NASDAQ:AAPL","adjustment":"splits"}']
    assert conn.messages[3][1] == [cs, "sds_1", "s1", "sds_sym_1", "1D", (TODAY - dt.date(2024, 3, 1)).days + 10]
    assert conn.token == "unauthorized_user_token"
    assert fake.chart.errors == []


def test_heartbeats_are_echoed_framed_identically(source, fake):
    source.bars("NASDAQ:AAPL", dt.date(2024, 3, 1), TODAY)  # heartbeat alone in a frame
    source.bars("FX:EURUSD", dt.date(2024, 3, 1), TODAY)  # heartbeat amid other messages
    source.bars("NYSE:GEN0001", dt.date(2024, 3, 1), TODAY)  # generated session
    fake.chart.wait_idle()
    assert [c.heartbeats_sent for c in fake.chart.connections] == [["~h~1"], ["~h~7"], ["~h~1"]]
    assert [c.heartbeats_echoed for c in fake.chart.connections] == [["~h~1"], ["~h~7"], ["~h~1"]]
    assert fake.chart.errors == []


def test_the_fake_notices_a_missing_heartbeat_echo(fake):
    fake.chart.echo_timeout_s = 0.2
    with sync_connect(fake.chart.ws_url) as ws:
        ws.recv()  # greeting
        for payload in ('{"m":"set_auth_token","p":["t"]}', '{"m":"chart_create_session","p":["cs_a",""]}',
                        '{"m":"resolve_symbol","p":["cs_a","sym","={\\"symbol\\":\\"NYSE:GEN0001\\",'
                        '\\"adjustment\\":\\"splits\\"}"]}',
                        '{"m":"create_series","p":["cs_a","sds_1","s1","sym","1D",5]}'):
            ws.send(frame(payload))
        ws.recv()  # symbol_resolved
        assert ws.recv() == frame("~h~1")  # ... and never echoed
        time.sleep(0.4)
    fake.chart.wait_idle()
    assert fake.chart.errors == ["connection 1: heartbeat '~h~1' not echoed within 0.2 s"]


def test_symbol_error_names_the_symbol(source, fake):
    fake.chart.symbol_errors["NASDAQ:NOPE"] = "invalid symbol"
    with pytest.raises(SourceError) as err:
        source.bars("NASDAQ:NOPE", dt.date(2024, 3, 1), TODAY)
    assert str(err.value) == "TradingView could not resolve NASDAQ:NOPE: invalid symbol"


def test_critical_error_fails_the_symbol(source, fake):
    fake.chart.critical_errors["NASDAQ:BOOM"] = "internal"
    with pytest.raises(SourceError, match=r'^chart server sent critical_error for NASDAQ:BOOM: \["cs_[a-z]{12}", '
                                          r'"fatal", "internal"\]$'):
        source.bars("NASDAQ:BOOM", dt.date(2024, 3, 1), TODAY)


def test_a_silent_symbol_times_out(fake):
    src = TradingViewSource(fake.settings(timeout_s=0.5))
    fake.chart.silent.add("NASDAQ:SLOW")
    began = time.perf_counter()
    with pytest.raises(SourceError) as err:
        src.bars("NASDAQ:SLOW", dt.date(2024, 3, 1), TODAY)
    assert str(err.value) == "no bars for NASDAQ:SLOW from the chart websocket within timeout_s=0.5 s"
    assert 0.5 <= time.perf_counter() - began < 3.0


def test_unreachable_chart_server_names_the_symbol():
    src = TradingViewSource({"ws_url": "ws://127.0.0.1:1/socket.io/websocket", "today": TODAY, "timeout_s": 2})
    with pytest.raises(SourceError, match=r"^chart websocket ws://127\.0\.0\.1:1/socket\.io/websocket failed for "
                                          r"NASDAQ:AAPL: ConnectionRefusedError: "):
        src.bars("NASDAQ:AAPL", dt.date(2024, 3, 1), TODAY)


def test_bad_ranges_and_symbols_are_input_errors(source):
    with pytest.raises(ValueError, match=r"^start 2024-03-15 is after end 2024-03-01$"):
        source.bars("NASDAQ:AAPL", TODAY, dt.date(2024, 3, 1))
    with pytest.raises(ValueError, match=r"^invalid symbol '\.\./AAPL'"):
        source.fetch_many(["NASDAQ:AAPL", "../AAPL"], dt.date(2024, 3, 1), TODAY)


# ---------------------------------------------------------------------------------------------------
# chart websocket: many symbols


SYMBOLS_20 = [f"{'NASDAQ' if i % 2 else 'NYSE'}:GEN{i:04d}" for i in range(20)]


def test_fetch_many_is_correct_with_and_without_concurrency(fake, capsys):
    src = TradingViewSource(fake.settings())
    fake.chart.latency_s = 0.05  # a server think time, so that concurrency has something to overlap
    start = dt.date(2023, 3, 15)
    runs = {}
    for concurrency in (1, 4):
        fake.chart.max_concurrent = 0
        began = time.perf_counter()
        runs[concurrency] = src.fetch_many(SYMBOLS_20, start, TODAY, concurrency=concurrency)
        seconds = time.perf_counter() - began
        fake.chart.wait_idle()
        n_bars = sum(len(b) for b in runs[concurrency].values())
        with capsys.disabled():
            print(f"\nfetch_many 20 symbols, concurrency={concurrency}: {n_bars} bars in {seconds:.2f} s "
                  f"= {n_bars / seconds:,.0f} bars/s (fake latency 50 ms per symbol)")
        assert fake.chart.max_concurrent == concurrency
    assert list(runs[1]) == list(runs[4]) == SYMBOLS_20
    for symbol in SYMBOLS_20:
        pd.testing.assert_frame_equal(runs[1][symbol], runs[4][symbol])
        expected = deterministic_bars(symbol, TODAY)
        expected = expected[expected["date"] >= pd.Timestamp(start)]
        got = runs[4][symbol]
        assert got["time"].dt.tz_localize(None).tolist() == expected["date"].tolist()  # XNYS sessions
        np.testing.assert_allclose(got["close"].to_numpy(), expected["close"].to_numpy(), rtol=1e-12)
    assert fake.chart.errors == []


def test_fetch_many_keeps_the_good_symbols_when_some_fail(fake):
    src = TradingViewSource(fake.settings(timeout_s=0.5))
    fake.chart.symbol_errors["NYSE:BAD"] = "invalid symbol"
    fake.chart.silent.add("NYSE:SLOW")
    with pytest.raises(FetchManyError) as err:
        src.fetch_many(["NYSE:GEN0000", "NYSE:BAD", "NYSE:SLOW"], dt.date(2024, 3, 1), TODAY)
    assert list(err.value.results) == ["NYSE:GEN0000"] and len(err.value.results["NYSE:GEN0000"]) == 11
    assert {s: str(e) for s, e in err.value.errors.items()} == {
        "NYSE:BAD": "TradingView could not resolve NYSE:BAD: invalid symbol",
        "NYSE:SLOW": "no bars for NYSE:SLOW from the chart websocket within timeout_s=0.5 s"}
    assert str(err.value) == ("2 of 3 symbols failed: NYSE:BAD: TradingView could not resolve NYSE:BAD: invalid "
                              "symbol; NYSE:SLOW: no bars for NYSE:SLOW from the chart websocket within "
                              "timeout_s=0.5 s")
    assert isinstance(err.value, SourceError)


def test_generated_bars_do_not_depend_on_the_day_the_fake_runs():
    early, late = deterministic_bars("NYSE:GEN0007", dt.date(2023, 6, 30)), deterministic_bars("NYSE:GEN0007", TODAY)
    pd.testing.assert_frame_equal(early, late.iloc[: len(early)])
    other = deterministic_bars("NYSE:GEN0008", dt.date(2023, 6, 30))
    assert not np.allclose(early["close"], other["close"])
    assert (late[["open", "high", "low", "close"]] > 0).all().all()
    assert (late["high"] >= late[["open", "close"]].max(axis=1)).all()


# ---------------------------------------------------------------------------------------------------
# settings and secrets


def test_the_token_never_reaches_logs_errors_or_reprs(fake, monkeypatch, caplog):
    secret = "sekrit-token-123"
    monkeypatch.setenv(DEFAULT_TOKEN_ENV, secret)
    caplog.set_level(logging.DEBUG)
    src = TradingViewSource(fake.settings(timeout_s=0.5))
    fake.chart.critical_errors["NASDAQ:LEAK"] = "auth token {token} rejected"
    fake.chart.silent.add("NASDAQ:SLOW")
    src.bars("NASDAQ:AAPL", dt.date(2024, 3, 1), TODAY)
    with pytest.raises(FetchManyError) as err:
        src.fetch_many(["NASDAQ:LEAK", "NASDAQ:SLOW"], dt.date(2024, 3, 1), TODAY)
    fake.chart.wait_idle()
    assert {c.token for c in fake.chart.connections} == {secret}  # the token was used ...
    assert "auth token *** rejected" in str(err.value.errors["NASDAQ:LEAK"])
    texts = [caplog.text, repr(src), repr(vars(src)), str(err.value),
             "".join(traceback.format_exception(err.value)),
             *("".join(traceback.format_exception(e)) for e in err.value.errors.values())]
    assert caplog.records  # something was logged, and ...
    assert not [t for t in texts if secret in t]  # ... the token appears nowhere


def test_env_overrides_the_configured_urls(fake, monkeypatch):
    monkeypatch.setenv(ENV_SCANNER_BASE, fake.scanner.base_url)
    monkeypatch.setenv(ENV_WS_URL, fake.chart.ws_url)
    src = TradingViewSource({"scanner_base": "http://127.0.0.1:1", "ws_url": "ws://127.0.0.1:1", "today": TODAY})
    assert src.settings.scanner_base == fake.scanner.base_url and src.settings.ws_url == fake.chart.ws_url
    assert len(src.scan("crypto", TODAY, {})) == 6
    assert len(src.bars("BINANCE:BTCUSDT", dt.date(2024, 3, 1), TODAY)) == 4


def test_defaults_point_at_the_vendor():
    s = TradingViewSource().settings
    assert (s.scanner_base, s.ws_url, s.token_env, s.page_size, s.concurrency) == (
        "https://scanner.tradingview.com", "wss://data.tradingview.com/socket.io/websocket", "TRADINGVIEW_TOKEN", 150, 4)


@pytest.mark.parametrize(("settings", "message"), [
    ({"pagesize": 10}, "tradingview settings: pagesize: unknown key (not in the schema)"),
    ({"token": "abc"}, "tradingview settings: the TradingView token must come from the environment variable "
                       "named by settings['token_env'], never from settings"),
    ({"page_size": 0}, "tradingview settings: page_size: Input should be greater than or equal to 1 (got 0)"),
    ({"page_size": True}, "tradingview settings: page_size: Input should be a valid integer (got True)"),
    ({"timeout_s": -1}, "tradingview settings: timeout_s: Input should be greater than 0 (got -1)"),
    ({"backoff_max_s": 1e9}, "tradingview settings: backoff_max_s: Input should be less than or equal to 600 "
                             "(got 1000000000.0)"),
    ({"timeout_s": float("inf")}, "tradingview settings: timeout_s: Input should be a finite number (got inf)"),
    ({"ws_url": "http://x"}, "tradingview settings: ws_url: String should match pattern '^wss?://' (got 'http://x')"),
    ({"presets": {"stocks": {}}}, "tradingview settings: presets.stocks.[key]: Input should be 'equity', 'crypto', "
                                  "'bond', 'forex' or 'futures' (got 'stocks')"),
    ({"today": "15/03/2024"}, "tradingview settings: today: must be a date 'YYYY-MM-DD' (got '15/03/2024')"),
])
def test_bad_settings(settings, message):
    with pytest.raises(ValueError) as err:
        TradingViewSource(settings)
    assert str(err.value) == message


def test_a_bad_url_in_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv(ENV_WS_URL, "http://127.0.0.1:1")
    with pytest.raises(ValueError) as err:
        TradingViewSource()
    assert str(err.value) == "environment PA_TV_WS_URL must start with ws:// or wss://, got 'http://127.0.0.1:1'"


@pytest.mark.parametrize(("family", "preset", "message"), [
    ("stocks", {}, "unknown scanner family 'stocks'; expected one of ['equity', 'crypto', 'bond', 'forex', 'futures']"),
    ("equity", {"direction": "sideways"}, "equity preset: direction must be 'long' or 'short', got 'sideways'"),
    ("equity", {"limit": 0}, "equity preset: limit must be a positive integer, got 0"),
    ("equity", {"name": "../x"}, "equity preset: name must be 1-64 of A-Z, a-z, 0-9, '_', '-', got '../x'"),
    ("equity", {"market": "../x"}, "equity preset: market must be a scanner market name like 'america', got '../x'"),
    ("equity", {"filter": [{"left": "close"}]},
     "equity preset filter entries need string 'left', string 'operation' and 'right', got {'left': 'close'}"),
])
def test_bad_presets(source, fake, family, preset, message):
    with pytest.raises(ValueError) as err:
        source.scan(family, TODAY, preset)
    assert str(err.value) == message
    assert fake.scanner.requests == []


def test_settings_presets_supply_family_defaults(fake):
    src = TradingViewSource(fake.settings(presets={"bond": {"market": "america", "direction": "short",
                                                            "filter": [{"left": "type", "operation": "in_range",
                                                                        "right": ["fund"]}]}}))
    df = src.scan("bond", TODAY, {**BY_VALUE, "enabled": True})
    assert df["symbol"].tolist() == ["AMEX:SPY", "AMEX:TLT", "AMEX:GLD"]
    assert set(df["direction"]) == {"short"} and df.attrs["ignored_preset_keys"] == ["enabled"]
