"""SPEC §10: bad input gets a clear error and loses nothing.

A catalogue: manifests and profiles (through the CLI: exit 2, ``file: $.path: problem`` on stderr),
symbols that are not EXCHANGE:TICKER or try to leave the lakehouse, malformed bars (files source
and the fetch path), malformed scanner answers (TradingView fakes), and a whole run whose source
fails mid-way. Each case also checks that what was stored before is still there, byte for byte.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.fetch import BarsError, assess_all, clean_bars, fetch_into_cache, recover, window_bounds
from portfolio_assets.lakehouse import Lakehouse, UnsafePathError
from portfolio_assets.ledger import verify_ledger
from portfolio_assets.manifest import resolve
from portfolio_assets.partitions import master_sessions, sessions_window
from portfolio_assets.quant.health import HealthParams
from portfolio_assets.sources.base import SourceError
from portfolio_assets.sources.files import BarFileError, FilesSource
from portfolio_assets.sources.tradingview import ENV_SCANNER_BASE, ENV_WS_URL, TradingViewSource
from portfolio_assets.symbols import InvalidSymbolError, validate_symbol
from portfolio_assets_tests.conftest import (
    DEV_DATE,
    PREV_DATE,
    PROJECT_ROOT,
    RUN_TIMEOUT_S,
    copy_run,
    describe,
    ledger_records,
    partition_snapshot,
    run_cli,
    run_cli_in_process,
    step_failure_causes,
    tree_snapshot,
)
from portfolio_assets_tests.fakes.tradingview_fake import Reply, fake_tradingview, scanner_fixture

AS_OF = dt.date(2026, 11, 25)
MANIFEST = PROJECT_ROOT / "configs" / "manifest.json"
KNOWN_PROFILES = "demo, development, production, production_2026q4, production_v2_canary"
BAD_SYMBOLS = ["../../etc:passwd", "AMEX:SPY/../x", "AMEX:..", "/etc:passwd", "AMEX:SPY\n", "amex:spy",
               "AMEX:SPY:X", "AMEX:", "AMEX:SP Y", "AMEX:SPY\x00"]


def symbol_message(symbol: str) -> str:
    return f"invalid symbol {symbol!r}: expected 'EXCHANGE:TICKER' of A-Z, 0-9, '.', '_', '-', '!'"


# --------------------------------------------------------------------------------------------------
# manifests and profiles, through the CLI


@pytest.fixture(scope="module")
def stored(dev_lakehouse, tmp_path_factory):
    """A copy of the session's development lakehouse that the bad-input CLI calls point at."""
    return copy_run(dev_lakehouse, tmp_path_factory.mktemp("bad_inputs_store"))


def _manifest(tmp_path: Path, change) -> Path:
    data = json.loads(MANIFEST.read_text())
    change(data)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def _set(path: str, value):
    def change(data):
        *parents, leaf = path.split(".")
        node = data
        for p in parents:
            node = node[p]
        node[leaf] = value
    return change


def _cycle(data):
    data["profiles"]["loop_a"] = "loop_b"
    data["profiles"]["loop_b"] = "loop_a"


CLI_CASES = {
    # id: (args after `portfolio-assets`, manifest change or None, env changes, stderr after the prefix)
    "malformed_json": (["run", "--date", DEV_DATE], "TEXT", {},
                       "{file}: $: invalid JSON at line 3 column 16: Expecting property name enclosed in double quotes"),
    "unknown_key": (["run", "--date", DEV_DATE], _set("defaults.selection.top_nn", 3), {},
                    "{file}: $.defaults.selection.top_nn: unknown key (not in the schema)"),
    "out_of_range": (["run", "--date", DEV_DATE], _set("profiles.development.selection.threshold", 1.5), {},
                     "{file}: $.profiles.development.selection.threshold: Input should be less than or equal to 1 "
                     "(got 1.5)"),
    "wrong_type": (["run", "--date", DEV_DATE], _set("profiles.development.data.lookback_history", "many"), {},
                   "{file}: $.profiles.development.data.lookback_history: Input should be a valid integer, unable to "
                   "parse string as an integer (got 'many')"),
    "alias_cycle": (["run", "--profile", "loop_a", "--date", DEV_DATE], _cycle, {},
                    "{file}: $.profiles.loop_b: profile alias cycle: loop_a -> loop_b -> loop_a"),
    "unknown_profile": (["run", "--profile", "nope", "--date", DEV_DATE], None, {},
                        f"{{file}}: --profile: unknown profile 'nope' (known: {KNOWN_PROFILES})"),
    "unknown_default_profile": (["run", "--date", DEV_DATE], _set("default_profile", "gone"), {"PA_PROFILE": None},
                                f"{{file}}: $.default_profile: unknown profile 'gone' (known: {KNOWN_PROFILES})"),
    "traversal_profile": (["run", "--date", DEV_DATE], None, {"PA_PROFILE": "../etc"},
                          "{file}: PA_PROFILE: invalid profile name '../etc' (lower-case letters, digits, _)"),
    "missing_manifest": (["run", "--date", DEV_DATE], "MISSING", {}, "{file}: $: file not found"),
    "cli_override_out_of_range": (["run", "--date", DEV_DATE, "--set", "selection.top_n=0"], None, {},
                                  "{file}: $.selection.top_n: Input should be greater than or equal to 1 (got 0) "
                                  "(from --set selection.top_n=0)"),
    "env_override_unknown_key": (["run", "--date", DEV_DATE], None, {"PA_SELECTION__TOPN": "3"},
                                 "environment: PA_SELECTION__TOPN: unknown PA_* variable (not a setting); "
                                 "did you mean PA_SELECTION__TOP_N?"),
    "status_unknown_profile": (["status", "--profile", "nope"], None, {},
                               f"{{file}}: --profile: unknown profile 'nope' (known: {KNOWN_PROFILES})"),
    "holiday_date": (["run", "--date", "2026-11-26"], None, {},
                     "partition 2026-11-26 is not a XNYS trading session"),
    "not_a_date": (["run", "--date", "2026-13-01"], None, {}, "partition key '2026-13-01' is not a date YYYY-MM-DD"),
    "other_url_lakehouse": (["run", "--date", DEV_DATE], None, {"PA_LAKEHOUSE": "gs://bucket/lake"},
                            "environment: PA_LAKEHOUSE: 'gs://bucket/lake' is a gs:// URL; the lakehouse root must "
                            "be a local path, a file:// URL or an s3:// URL (the object-store layer relies on S3's "
                            "conditional writes), or mount the storage at the same path on every host "
                            "(docs/deployment.md)"),
    "s3_bucket_name": (["run", "--date", DEV_DATE], None, {"PA_LAKEHOUSE": "s3://Lake_Bucket/x"},
                       "environment: PA_LAKEHOUSE: 's3://Lake_Bucket/x': 'Lake_Bucket' is not an S3 bucket name "
                       "(3-63 lower-case letters, digits, '.', '-')"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_bad_manifest_profile_or_date_is_exit_2_with_the_reason_and_loses_nothing(case, stored, tmp_path):
    args, change, env_changes, message = CLI_CASES[case]
    env = stored.env()
    if change == "TEXT":
        path = tmp_path / "manifest.json"
        path.write_text('{\n  "default_profile": "demo",\n  "profiles": {,}\n}\n')
    elif change == "MISSING":
        path = tmp_path / "no_such_manifest.json"
    elif change is not None:
        path = _manifest(tmp_path, change)
    else:
        path = MANIFEST
    env["PA_MANIFEST"] = str(path)
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    before = tree_snapshot(stored.root)
    # In this process (refused before any Dagster work); `unknown_profile` also through the program.
    calls = [run_cli_in_process] + ([run_cli] if case == "unknown_profile" else [])
    for call in calls:
        proc = call(args, env)
        assert proc.returncode == 2, describe(proc)
        assert proc.stderr == f"portfolio-assets: {message.format(file=path)}\n"
        assert proc.stdout == ""
        assert tree_snapshot(stored.root) == before


# --------------------------------------------------------------------------------------------------
# symbols and paths


@pytest.mark.parametrize("symbol", BAD_SYMBOLS)
def test_bad_symbols_never_reach_the_price_cache(symbol, tmp_path):
    lake = Lakehouse(tmp_path / "lake", "development")
    good = pd.DataFrame({"time": pd.to_datetime(["2026-11-24"], utc=True), "open": [1.0], "high": [1.0],
                         "low": [1.0], "close": [1.0], "volume": [1.0]})
    lake.merge_prices("AMEX:SPY", good, "test", dt.datetime(2026, 11, 25, tzinfo=dt.UTC))
    before = tree_snapshot(tmp_path)
    for call in (lambda: lake.price_path(symbol), lambda: lake.read_prices(symbol),
                 lambda: lake.merge_prices(symbol, good, "test", dt.datetime(2026, 11, 25, tzinfo=dt.UTC))):
        with pytest.raises(InvalidSymbolError) as err:
            call()
        assert str(err.value) == symbol_message(symbol)
    assert tree_snapshot(tmp_path) == before
    assert lake.cached_symbols() == ["AMEX:SPY"]


@pytest.mark.parametrize("symbol", BAD_SYMBOLS)
def test_bad_symbols_never_reach_the_files_source(symbol, tmp_path):
    (tmp_path / "bars").mkdir()
    source = FilesSource({"path": str(tmp_path), "today": AS_OF.isoformat()})
    for call in (lambda: source.bars(symbol, dt.date(2026, 1, 1), AS_OF), lambda: source.bar_file(symbol),
                 lambda: source.metadata(["AMEX:SPY", symbol])):
        with pytest.raises(InvalidSymbolError) as err:
            call()
        assert str(err.value) == symbol_message(symbol)


@pytest.mark.parametrize("symbol", ["../../etc:passwd", "AMEX:SPY/../x", "AMEX:SPY:X"])
def test_bad_symbol_in_the_universe_file_names_file_and_row(symbol, tmp_path):
    (tmp_path / "universe.csv").write_text(f"symbol,asset_class\nAMEX:SPY,etf\n{symbol},equity\n")
    with pytest.raises(BarFileError) as err:
        FilesSource({"path": str(tmp_path)})
    assert str(err.value) == f"{tmp_path / 'universe.csv'}: row 2: {symbol_message(symbol)}"


def test_trailing_newline_is_not_a_symbol():
    """`re.match(r'...$')` also matches before a final newline: 'AMEX:SPY\\n' used to pass (fixed)."""
    with pytest.raises(InvalidSymbolError):
        validate_symbol("AMEX:SPY\n")
    assert validate_symbol("NYSE:BRK.B") == "NYSE:BRK.B"


def test_lakehouse_paths_from_external_input_stay_inside_the_root(tmp_path):
    lake = Lakehouse(tmp_path / "lake", "development")
    (tmp_path / "outside").mkdir()
    lake.root.mkdir(parents=True)
    (lake.root / "prices").symlink_to(tmp_path / "outside")  # a planted link out of the root
    cases = {
        lambda: lake.price_path("AMEX:SPY"):
            f"path {lake.root}/prices/AMEX__SPY.parquet resolves outside the lakehouse root {lake.root}",
        lambda: lake.price_store(): f"path {lake.root}/prices resolves outside the lakehouse root {lake.root}",
        lambda: lake.read_prices("AMEX:SPY"): f"path {lake.root}/prices resolves outside the lakehouse root {lake.root}",
        lambda: lake.state_path("../../x"): f"path {lake.root}/state/../../x resolves outside the lakehouse root {lake.root}",
        lambda: lake.report_path(DEV_DATE, "../../x"):
            "report path '../../x' must be relative and stay inside the reports folder",
        lambda: lake.report_path(DEV_DATE, "/etc/passwd"):
            "report path '/etc/passwd' must be relative and stay inside the reports folder",
        lambda: lake.table_path("history", "../x", DEV_DATE): "invalid asset name '../x': lower-case letters, digits and '_' only",
        lambda: lake.table_path("history", "history_500d", DEV_DATE, part="../x"):
            "invalid part name '../x': lower-case letters, digits and '_' only",
        lambda: lake.table_path("history\n", "history_500d", DEV_DATE):
            "invalid group name 'history\\n': lower-case letters, digits and '_' only",
        lambda: lake.ledger_path("../../etc"): "invalid partition '../../etc': expected YYYY-MM-DD",
        lambda: lake.ledger_path("20261125"): "invalid partition '20261125': expected YYYY-MM-DD",
        lambda: Lakehouse(tmp_path / "lake", "../x"): "invalid profile name '../x'",
        lambda: Lakehouse(tmp_path / "lake", "development\n"): "invalid profile name 'development\\n'",
    }
    for call, message in cases.items():
        with pytest.raises(UnsafePathError) as err:
            call()
        assert str(err.value) == message
    assert list((tmp_path / "outside").iterdir()) == []


# --------------------------------------------------------------------------------------------------
# bars: the files source (each an error naming file and row) and the fetch path


GOOD_ROWS = [("2026-11-19", 10.0, 11.0, 9.0, 10.5, 1000), ("2026-11-20", 10.5, 11.5, 10.0, 11.0, 1200),
             ("2026-11-23", 11.0, 12.0, 10.5, 11.5, 900), ("2026-11-24", 11.5, 12.5, 11.0, 12.0, 800)]


def _csv(rows) -> str:
    return "time,open,high,low,close,volume\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows)


def _with(i: int, **values):
    rows = [list(r) for r in GOOD_ROWS]
    for name, value in values.items():
        rows[i]["time open high low close volume".split().index(name)] = value
    return rows


BAD_BAR_FILES = {
    "nan_close": (_with(1, close=""), "row 2: close is missing (NaN) or not a number"),
    "zero_close": (_with(1, close=0, low=0), "row 2: non-positive low 0.0"),
    "negative_open": (_with(2, open=-11.0), "row 3: non-positive open -11.0"),
    "duplicate_day": (_with(2, time="2026-11-20"), "rows 2, 3: duplicate timestamp for day 2026-11-20"),
    "unsorted": ([GOOD_ROWS[0], GOOD_ROWS[2], GOOD_ROWS[1], GOOD_ROWS[3]],
                 "row 3: rows are not sorted by time (each timestamp must be later than the previous row's)"),
    "future_day": ([*GOOD_ROWS, ("2026-11-27", 12.0, 13.0, 11.5, 12.5, 700)],
                   "row 5: timestamp 2026-11-27 is in the future (after 2026-11-25)"),
    "bad_time": (_with(0, time="yesterday"),
                 "row 1: unparseable timestamp 'yesterday' (expected ISO-8601, e.g. 2024-01-02 or 2024-01-02T14:30:00Z)"),
}


@pytest.mark.parametrize("case", list(BAD_BAR_FILES))
def test_bad_bar_file_is_an_error_naming_file_and_row_and_the_cache_keeps_its_bars(case, tmp_path):
    rows, problem = BAD_BAR_FILES[case]
    folder = tmp_path / "export"
    (folder / "bars").mkdir(parents=True)
    (folder / "bars" / "AMEX__SPY.csv").write_text(_csv(GOOD_ROWS))
    bad_file = folder / "bars" / "NYSE__KO.csv"
    bad_file.write_text(_csv(rows))
    source = FilesSource({"path": str(folder), "today": AS_OF.isoformat()})
    lake = Lakehouse(tmp_path / "lake", "development")
    fetch_into_cache(source, lake, ["AMEX:SPY"], dt.date(2026, 11, 1), AS_OF)
    before = tree_snapshot(lake.root)
    with pytest.raises(BarFileError) as err:
        fetch_into_cache(source, lake, ["AMEX:SPY", "NYSE:KO"], dt.date(2026, 11, 1), AS_OF)
    assert str(err.value) == f"{bad_file}: {problem}"
    assert tree_snapshot(lake.root) == before, "a rejected fetch must not touch the cache"
    assert lake.cached_symbols() == ["AMEX:SPY"]


def _bars(days, close) -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    return pd.DataFrame({"time": pd.to_datetime(days, utc=True), "open": close, "high": close * 1.01,
                         "low": close * 0.99, "close": close, "volume": 1000.0})


def test_clean_bars_repairs_order_duplicates_and_future_rows_and_counts_them():
    days = ["2026-11-20", "2026-11-19", "2026-11-23", "2026-11-23", "2026-11-24", "2026-11-27"]
    raw = _bars(days, [2.0, 1.0, 3.0, 3.5, 4.0, 9.0])
    out, counts = clean_bars("AMEX:SPY", raw, AS_OF)
    assert counts == {"unsorted": 1, "duplicates": 1, "future": 1, "bad_prices": 0}
    assert out["time"].dt.strftime("%Y-%m-%d").tolist() == ["2026-11-19", "2026-11-20", "2026-11-23", "2026-11-24"]
    assert out["close"].tolist() == [1.0, 2.0, 3.5, 4.0]  # the later duplicate wins


def test_clean_bars_leaves_bad_prices_to_the_health_gate():
    raw = _bars(["2026-11-19", "2026-11-20", "2026-11-23"], [np.nan, 0.0, -5.0])
    out, counts = clean_bars("AMEX:SPY", raw, AS_OF)
    assert counts == {"unsorted": 0, "duplicates": 0, "future": 0, "bad_prices": 3}
    np.testing.assert_array_equal(out["close"].to_numpy(), [np.nan, 0.0, -5.0])


@pytest.mark.parametrize("change, message", [
    (lambda b: b.drop(columns=["close"]), r"^bars for AMEX:SPY: missing columns \['close'\]$"),
    (lambda b: b.assign(time=[b["time"][0], None, b["time"][2]]), r"^bars for AMEX:SPY: 1 empty timestamp\(s\)$"),
    (lambda b: b.assign(time=["2026-11-19", "yesterday", "2026-11-23"]),
     r'^bars for AMEX:SPY: unparseable timestamps \(time data "yesterday" '),
])
def test_clean_bars_rejects_structurally_unusable_bars(change, message):
    with pytest.raises(BarsError, match=message):
        clean_bars("AMEX:SPY", change(_bars(["2026-11-19", "2026-11-20", "2026-11-23"], [1.0, 2.0, 3.0])), AS_OF)


class ScriptedBars:
    """A MarketData stand-in whose bars are fixed frames (only `bars` is used by the fetch path)."""

    name = "scripted"

    def __init__(self, frames: dict[str, pd.DataFrame]):
        self.frames = frames
        self.calls: list[tuple[str, int]] = []

    def bars(self, symbol, start, end, *, attempt=0):
        self.calls.append((symbol, attempt))
        return self.frames[symbol]


def test_nan_zero_and_negative_prices_are_bad_ticks_that_recovery_reports_unhealed(tmp_path):
    window = sessions_window(AS_OF, 41)
    start, end = window_bounds(window)
    days = master_sessions(start, end)
    close = np.linspace(100.0, 110.0, len(days))
    close[[10, 20, 30]] = [np.nan, 0.0, -1.0]
    source = ScriptedBars({"NYSE:KO": _bars(days, close)})
    lake = Lakehouse(tmp_path / "lake", "development")
    fetch_into_cache(source, lake, ["NYSE:KO"], start, end)
    params = {"NYSE:KO": HealthParams(min_days_floor=20, staleness=1, max_abs_return=0.6)}
    health = assess_all(lake, ["NYSE:KO"], {"NYSE:KO": "XNYS"}, window, start, AS_OF, params)
    row = health.loc["NYSE:KO"]
    # The three bad prices, and the two bars whose return starts from a zero/negative price.
    flagged = [str(days[i].date()) for i in (10, 20, 21, 30, 31)]
    assert row["status"] == "BAD_TICKS" and row["n_bad_ticks"] == 5
    assert row["bad_tick_days"] == ",".join(flagged)
    assert row["issues"].startswith(f"BAD_TICKS: 5 bar(s), first {flagged[0]}")
    after, log = recover(source, lake, health, {"NYSE:KO": "XNYS"}, window, start, AS_OF, params,
                         attempts=2, backoff_s=0.0)
    assert after.loc["NYSE:KO", "status"] == "BAD_TICKS", "recovery must not report a repair it did not make"
    assert log.frame()[["attempt", "status_before", "status_after"]].values.tolist() == [
        [1, "BAD_TICKS", "BAD_TICKS"], [2, "BAD_TICKS", "BAD_TICKS"]]
    assert source.calls == [("NYSE:KO", 0), ("NYSE:KO", 1), ("NYSE:KO", 2)]


# --------------------------------------------------------------------------------------------------
# scanner answers (TradingView fakes)


FIELDS = list(scanner_fixture("america").columns)


def _rows(*symbols: str) -> list[dict]:
    table = dict(scanner_fixture("america").rows)
    return [{"s": s, "d": [table[s][c] for c in FIELDS]} for s in symbols]


def _answer(rows: list[dict]) -> Reply:
    return Reply.json({"totalCount": len(rows), "data": rows})


@pytest.fixture
def tv(monkeypatch, tmp_path):
    for name in (ENV_SCANNER_BASE, ENV_WS_URL):
        monkeypatch.delenv(name, raising=False)
    with fake_tradingview(AS_OF) as fake:
        lake = Lakehouse(tmp_path / "lake", "development")
        source = TradingViewSource(fake.settings(lakehouse_root=str(lake.root), max_attempts=2))
        yield fake, source, lake


def _scan_equity(source):
    from portfolio_assets.assets.discovery import scan_family

    return scan_family(resolve("development").config, source, "equity", AS_OF)


def test_scanner_rows_with_bad_symbols_are_dropped_recorded_and_never_stored(tv, tmp_path):
    fake, source, lake = tv
    fake.scanner.script(_answer(_rows("NYSE:JPM") + [
        {**_rows("NYSE:KO")[0], "s": s} for s in ("NYSE:../../etc", "AMEX:SPY/../x", "nyse:ko")]))
    frame = source.scan("equity", AS_OF, {"name": "traversal"})
    assert frame["symbol"].tolist() == ["NYSE:JPM"]
    assert [r["symbol"] for r in frame.attrs["rejected"]] == ["NYSE:../../etc", "AMEX:SPY/../x", "nyse:ko"]
    assert frame.attrs["rejected"][1]["reason"] == symbol_message("AMEX:SPY/../x")
    stored = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert stored == [f"lake/development/scans/{DEV_DATE}/equity__traversal.parquet"]
    assert pd.read_parquet(tmp_path / stored[0])["symbol"].tolist() == ["NYSE:JPM"]


SCANNER_FAILURES = {
    "no_data_list": (Reply.json({"totalCount": 3}),
                     "scanner answer of {base}/america/scan has no 'data' list: {{\"totalCount\": 3}}"),
    "row_without_values": (Reply.json({"totalCount": 1, "data": [{"s": "NASDAQ:AAPL"}]}),
                           "scanner row is not {{'s': 'EXCH:TICKER', 'd': [...]}}: {{\"s\": \"NASDAQ:AAPL\"}}"),
    "row_without_symbol": (Reply.json({"totalCount": 1, "data": [{"s": None, "d": []}]}),
                           "scanner row is not {{'s': 'EXCH:TICKER', 'd': [...]}}: {{\"s\": null, \"d\": []}}"),
    "missing_fields": (_answer([{"s": "NASDAQ:AAPL", "d": ["AAPL", 172.6]}]),
                       "scanner row for 'NASDAQ:AAPL' has 2 values for 19 columns"),
    "number_as_text": (_answer([{**_rows("NASDAQ:AAPL")[0], "d": [*_rows("NASDAQ:AAPL")[0]["d"][:7], "n/a",
                                                                 *_rows("NASDAQ:AAPL")[0]["d"][8:]]}]),
                       "scanner row for 'NASDAQ:AAPL': column 'close' should be a number, got str 'n/a'"),
    "text_as_number": (_answer([{**_rows("NASDAQ:AAPL")[0], "d": [*_rows("NASDAQ:AAPL")[0]["d"][:5], 42,
                                                                 *_rows("NASDAQ:AAPL")[0]["d"][6:]]}]),
                       "scanner row for 'NASDAQ:AAPL': column 'sector' should be text, got int 42"),
    "bool_as_number": (_answer([{**_rows("NASDAQ:AAPL")[0], "d": [*_rows("NASDAQ:AAPL")[0]["d"][:8], True,
                                                                 *_rows("NASDAQ:AAPL")[0]["d"][9:]]}]),
                       "scanner row for 'NASDAQ:AAPL': column 'volume' should be a number, got bool True"),
    "malformed_json": (Reply.text(200, "{not json"),
                       "scanner answered malformed JSON: Expecting property name enclosed in double quotes: "
                       "line 1 column 2 (char 1); body starts '{{not json'"),
    "http_500_twice": ([Reply.text(500, "upstream exploded")] * 2,
                       "scanner POST {base}/america/scan failed after 2 attempts; last answer: HTTP 500: "
                       "upstream exploded"),
}


@pytest.mark.parametrize("case", list(SCANNER_FAILURES))
def test_bad_scanner_answer_fails_discovery_clearly_and_keeps_the_stored_scan(case, tv):
    fake, source, lake = tv
    good, counts = _scan_equity(source)  # today's scans, stored under the lakehouse
    assert len(good) and set(counts) == {"equity_trend_long", "equity_breakdown_short"}
    before = tree_snapshot(lake.root)
    assert len(before) == 2
    replies, message = SCANNER_FAILURES[case]
    fake.scanner.script(*(replies if isinstance(replies, list) else [replies]))
    with pytest.raises(SourceError) as err:
        _scan_equity(source)
    assert str(err.value) == message.format(base=fake.scanner.base_url)
    assert tree_snapshot(lake.root) == before


def test_null_scanner_values_stay_missing_instead_of_failing(tv):
    fake, source, _ = tv
    row = _rows("NYSE:JPM")[0]
    fake.scanner.script(_answer([{**row, "d": [None if c in ("close", "sector", "Perf.3M") else v
                                               for c, v in zip(FIELDS, row["d"], strict=True)]}]))
    frame = source.scan("equity", AS_OF, {"name": "nulls"})
    jpm = frame.set_index("symbol").loc["NYSE:JPM"]
    assert np.isnan(jpm["close"]) and np.isnan(jpm["Perf.3M"]) and jpm["sector"] is None
    assert jpm["name"] == "JPM"


# --------------------------------------------------------------------------------------------------
# a whole run whose source fails mid-way


OUTAGE_RUNNER = textwrap.dedent('''
    """`portfolio-assets` with a source that fails every long (history) bar request."""
    import sys

    from portfolio_assets import resources
    from portfolio_assets.sources.base import SourceError

    _real = resources._source_cached


    class OutageSource:
        def __init__(self, inner):
            self.inner, self.name = inner, inner.name

        def scan(self, family, as_of, preset):
            return self.inner.scan(family, as_of, preset)

        def metadata(self, symbols):
            return self.inner.metadata(symbols)

        def bars(self, symbol, start, end, *, attempt=0):
            # The 60-session prep works, the 300-session history does not (the baseline answers, so the
            # CLI's up-front history check passes and the outage hits inside the run).
            if (end - start).days > 120 and symbol != "AMEX:SPY":
                raise SourceError(f"injected outage: connection reset while fetching {symbol}")
            return self.inner.bars(symbol, start, end, attempt=attempt)


    resources._source_cached = lambda *args: OutageSource(_real(*args))
    from portfolio_assets.cli import run_program

    run_program(sys.argv[1:])  # leaves through os._exit, as the console script does (no exit -6 from Arrow)
''')


@pytest.fixture(scope="module")
def outage_run(dev_lakehouse, tmp_path_factory):
    """The session's lakehouse (holding DEV_DATE), then a run for PREV_DATE whose source fails mid-way."""
    base = tmp_path_factory.mktemp("outage")
    run = copy_run(dev_lakehouse, base)
    runner = base / "outage_runner.py"
    runner.write_text(OUTAGE_RUNNER)
    kept = partition_snapshot(run.root, DEV_DATE)
    lake = Lakehouse(run.lakehouse, run.profile)
    cache = lake.read_prices_many(lake.cached_symbols())
    proc = run_cli(["run", "--profile", run.profile, "--date", PREV_DATE], run.env(), timeout=RUN_TIMEOUT_S,
                   python=runner)
    return run, proc, kept, cache, runner


def test_source_failing_mid_run_fails_the_run_with_the_reason(outage_run):
    run, proc, _, _, _ = outage_run
    assert proc.returncode == 1, describe(proc)
    assert "(FAILURE)" in proc.stdout
    failed = proc.stdout.split("failed steps:\n", 1)[1].split("run id:", 1)[0]
    # market_bars (the fingerprint of the source's 500-session bars) is the first long fetch; every
    # asset that fetches bars waits for it, so the outage stops the run there.
    assert {line.split(":")[0].strip() for line in failed.splitlines()} == {"step market_bars"}
    # The reason: in the run's Dagster event log (the UI) and in the partition's ledger.
    causes = step_failure_causes(run, proc)
    assert set(causes) == {"market_bars"}
    for cause in causes.values():
        assert "SourceError: injected outage: connection reset while fetching " in cause
    outcomes = {r["asset"]: r["payload"] for r in ledger_records(run.ledger(PREV_DATE)) if r["kind"] == "outcome"}
    for asset in ("market_bars",):
        assert outcomes[asset]["status"] == "failed"
        assert outcomes[asset]["error"].startswith("SourceError: injected outage: connection reset while fetching ")
    report = verify_ledger(run.ledger(PREV_DATE), root=run.root, partition=PREV_DATE)
    assert report.ok, report.errors
    assert not (run.root / "implementation" / "implementation_orders" / f"{PREV_DATE}.parquet").exists()
    assert not (run.root / "allocation" / "target_weights" / f"{PREV_DATE}.parquet").exists()


def test_source_failing_mid_run_leaves_the_stored_partition_and_the_cache_intact(outage_run):
    run, _, kept, cache, _ = outage_run
    assert partition_snapshot(run.root, DEV_DATE) == kept
    lake = Lakehouse(run.lakehouse, run.profile)
    assert set(lake.cached_symbols()) == set(cache)
    stored = lake.read_prices_many(list(cache))
    for symbol, old in cache.items():
        new = stored[symbol]
        assert set(pd.DatetimeIndex(old["time"])) <= set(pd.DatetimeIndex(new["time"])), symbol
    verify = run_cli(["verify-ledger", str(run.ledger(DEV_DATE))], run.env())
    assert verify.returncode == 0, describe(verify)


def test_run_summary_and_alerts_name_why_each_step_failed(outage_run):
    _, proc, _, _, _ = outage_run
    failed = proc.stdout.split("failed steps:\n", 1)[1].split("run id:", 1)[0].splitlines()
    alerts = [line for line in proc.stdout.splitlines() if line.startswith("alert:") and "step_failure" in line]
    assert failed and alerts
    for line in failed + alerts:
        assert "SourceError: injected outage" in line, line


def test_rerun_of_a_stored_partition_that_fails_mid_way_loses_nothing(outage_run, tmp_path):
    """Each asset replaces only its own files, and only when it succeeds: a re-run that fails
    part-way leaves every table of the previous, good partition in place, byte for byte (the
    assets before the failure rewrote theirs with the same content), and moves nothing away."""
    from portfolio_assets.ledger import file_hash

    run, _, _, _, runner = outage_run
    mine = copy_run(run, tmp_path)
    before = {p.relative_to(mine.root).as_posix(): file_hash(p) for p in mine.root.glob(f"*/*/{DEV_DATE}.parquet")
              if p.parent.parent.name not in ("prices", "run")}
    index_before = (mine.root / "reports" / DEV_DATE / "index.html").read_bytes()
    proc = run_cli(["run", "--profile", mine.profile, "--date", DEV_DATE], mine.env(), timeout=RUN_TIMEOUT_S,
                   python=runner)
    assert proc.returncode == 1, describe(proc)
    assert not (mine.root / "_archive").exists()
    after = {rel: file_hash(mine.root / rel) for rel in before}
    assert after == before
    assert (mine.root / "reports" / DEV_DATE / "index.html").read_bytes() == index_before
