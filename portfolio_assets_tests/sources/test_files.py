"""Files source (format, round trip, every malformed-file error) and the shared indicator math."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from portfolio_assets.sources import MarketData, SourceError, make_source
from portfolio_assets.sources.files import BarFileError, FilesSource
from portfolio_assets.sources.indicators import (
    INDICATOR_COLUMNS,
    indicator_matrix,
    scanner_fields,
    seeded_average,
)
from portfolio_assets.sources.synthetic import SCAN_RESULT_COLUMNS, SyntheticMarket
from portfolio_assets.symbols import InvalidSymbolError

AS_OF = dt.date(2024, 6, 28)
NUMERIC = ["close", "volume", "Value.Traded", "ADX", "ATR", "Recommend.All", "Perf.W", "Perf.1M", "Perf.3M",
           "Perf.6M", "Perf.Y", "Volatility.D", "change"]
GOOD_CSV = """time,open,high,low,close,volume
2024-01-02,10,11,9,10.5,1000
2024-01-03,10.5,11.5,10,11,1200
2024-01-04,11,12,10.5,11.5,900
"""


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket({"n_equities": 12, "n_crypto": 5, "n_forex": 5, "faults": {}})


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, market: SyntheticMarket) -> tuple[Path, list[str]]:
    """A directory exported from the synthetic market: half Parquet, half CSV, plus universe.csv."""
    root = tmp_path_factory.mktemp("export")
    (root / "bars").mkdir()
    symbols = ["AMEX:SPY", "NASDAQ:QQQ", "AMEX:TLT", "BINANCE:BTCUSDT", "FX:EURUSD",
               *market.universe.query("asset_class == 'equity' and delisted != delisted").index[:6]]
    for k, symbol in enumerate(symbols):
        bars = market.bars(symbol, dt.date(2019, 1, 1), AS_OF)
        stem = root / "bars" / symbol.replace(":", "__")
        if k % 2:
            bars.assign(time=bars["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(f"{stem}.csv", index=False)
        else:
            bars.to_parquet(f"{stem}.parquet")
    universe = market.metadata(symbols).reset_index()
    universe["direction"] = ["short" if s == "NASDAQ:QQQ" else "" for s in symbols]
    universe.to_csv(root / "universe.csv", index=False)
    return root, symbols


def write_bars(root: Path, symbol: str, text: str) -> Path:
    (root / "bars").mkdir(exist_ok=True)
    path = root / "bars" / f"{symbol.replace(':', '__')}.csv"
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------ round trip
def test_round_trip_bars_and_factory(exported: tuple[Path, list[str]], market: SyntheticMarket) -> None:
    root, symbols = exported
    source = make_source("files", {"path": str(root)})
    assert isinstance(source, FilesSource) and isinstance(source, MarketData)
    for symbol in symbols[:4]:  # Parquet and CSV files
        got = source.bars(symbol, dt.date(2023, 1, 1), AS_OF)
        want = market.bars(symbol, dt.date(2023, 1, 1), AS_OF)
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-14)
    assert source.bars("AMEX:SPY", dt.date(2030, 1, 1), dt.date(2030, 2, 1)).empty


def test_scan_matches_synthetic_scan(exported: tuple[Path, list[str]], market: SyntheticMarket) -> None:
    root, _ = exported
    source = FilesSource({"path": root})
    for family in ("equity", "bond", "crypto", "forex"):
        got = source.scan(family, AS_OF, {}).set_index("symbol")
        want = market.scan(family, AS_OF, {}).set_index("symbol").loc[got.index]
        assert len(got) and list(got.reset_index().columns) == list(SCAN_RESULT_COLUMNS)
        np.testing.assert_allclose(got[NUMERIC].to_numpy(float), want[NUMERIC].to_numpy(float), rtol=1e-9)
        assert (got["type"] == want["type"]).all() and (got["exchange"] == want["exchange"]).all()
    # Point in time: the scan as of an earlier date uses only bars up to it.
    early = source.scan("equity", dt.date(2023, 3, 1), {}).set_index("symbol")
    spy = source.bars("AMEX:SPY", dt.date(2023, 2, 1), dt.date(2023, 3, 1))
    assert early.loc["AMEX:SPY", "close"] == spy["close"].iloc[-1]


def test_scan_direction_from_universe_and_staleness(exported: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, _ = exported
    source = FilesSource({"path": root})
    longs = source.scan("equity", AS_OF, {"direction": "long"})
    shorts = source.scan("equity", AS_OF, {"direction": "short"})
    assert "NASDAQ:QQQ" not in set(longs["symbol"]) and "NASDAQ:QQQ" in set(shorts["symbol"])
    assert "AMEX:SPY" in set(longs["symbol"]) and "AMEX:SPY" in set(shorts["symbol"])
    # A file that stops long before as_of counts as delisted; no bars <= as_of -> not listed yet.
    write_bars(tmp_path, "NYSE:OLD", GOOD_CSV)
    write_bars(tmp_path, "NYSE:NEW", GOOD_CSV.replace("2024-01", "2024-03"))
    (tmp_path / "universe.csv").write_text("symbol,asset_class\nNYSE:OLD,equity\nNYSE:NEW,equity\n")
    small = FilesSource({"path": tmp_path, "max_staleness_days": 10})
    assert list(small.scan("equity", dt.date(2024, 1, 10), {})["symbol"]) == ["NYSE:OLD"]
    assert list(small.scan("equity", dt.date(2024, 3, 5), {})["symbol"]) == ["NYSE:NEW"]


def test_metadata_and_scan_needs_universe(exported: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, _ = exported
    meta = FilesSource({"path": root}).metadata(["AMEX:TLT", "NYSE:NOPE"])
    assert meta.loc["AMEX:TLT", "asset_class"] == "bond_etf" and meta.loc["AMEX:TLT", "calendar"] == "XNYS"
    assert meta.loc["NYSE:NOPE"].isna().all()
    write_bars(tmp_path, "NYSE:ABC", GOOD_CSV)
    bare = FilesSource({"path": tmp_path})
    assert bare.metadata(["NYSE:ABC"]).isna().all().all()
    with pytest.raises(SourceError, match="has no universe.csv"):
        bare.scan("equity", AS_OF, {})
    with pytest.raises(ValueError, match="unknown scanner family"):
        bare.scan("stocks", AS_OF, {})


def test_time_formats(tmp_path: Path) -> None:
    write_bars(tmp_path, "NYSE:ABC", GOOD_CSV.replace("2024-01-02,", "2024-01-02T14:30:00Z,")
               .replace("2024-01-03,", "2024-01-03T09:30:00-05:00,"))
    naive = pd.DataFrame({"time": pd.to_datetime(["2024-01-02", "2024-01-03"]), "open": [1.0, 1.0],
                          "high": [1.0, 1.0], "low": [1.0, 1.0], "close": [1.0, 1.0], "volume": [None, 5.0]})
    naive.to_parquet(tmp_path / "bars" / "NYSE__XYZ.parquet")
    source = FilesSource({"path": tmp_path})
    bars = source.bars("NYSE:ABC", dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    assert list(bars["time"]) == list(pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"], utc=True))
    xyz = source.bars("NYSE:XYZ", dt.date(2024, 1, 1), dt.date(2024, 1, 2))
    assert len(xyz) == 1 and str(xyz["time"].dt.tz) == "UTC" and math.isnan(xyz["volume"].iloc[0])


# ------------------------------------------------------------------------------ malformed files
def _replace_line(line: int, new: str) -> str:
    lines = GOOD_CSV.splitlines()
    lines[line] = new
    return "\n".join(lines) + "\n"


MALFORMED = [
    ("missing columns", GOOD_CSV.replace(",volume", "").replace(",1000", "").replace(",1200", "")
     .replace(",900", ""), r"missing columns \['volume'\]"),
    ("unparseable timestamp", _replace_line(2, "2024-13-45,10.5,11.5,10,11,1200"),
     r"row 2: unparseable timestamp '2024-13-45'"),
    ("missing timestamp", _replace_line(2, ",10.5,11.5,10,11,1200"), r"row 2: missing timestamp"),
    ("NaN price", _replace_line(3, "2024-01-04,11,12,10.5,,900"), r"row 3: close is missing \(NaN\)"),
    ("zero price", _replace_line(1, "2024-01-02,0,11,9,10.5,1000"), r"row 1: non-positive open 0.0"),
    ("negative price", _replace_line(2, "2024-01-03,10.5,11.5,-1,11,1200"), r"row 2: non-positive low -1.0"),
    ("duplicate", _replace_line(3, "2024-01-03,11,12,10.5,11.5,900"),
     r"rows 2, 3: duplicate timestamp for day 2024-01-03"),
    ("unsorted", _replace_line(3, "2024-01-01,11,12,10.5,11.5,900"), r"row 3: rows are not sorted by time"),
    ("inconsistent OHLC", _replace_line(1, "2024-01-02,10,10.2,9,10.5,1000"), r"row 1: inconsistent OHLC"),
    ("infinite close", _replace_line(2, "2024-01-03,10.5,inf,10,inf,1200"), r"row 2: high is not finite \(inf\)$"),
    ("minus infinite low", _replace_line(2, "2024-01-03,10.5,11.5,-inf,11,1200"), r"row 2: low is not finite \(-inf\)$"),
    ("infinite volume", _replace_line(3, "2024-01-04,11,12,10.5,11.5,inf"), r"row 3: volume is not finite \(inf\)$"),
    ("negative volume", _replace_line(3, "2024-01-04,11,12,10.5,11.5,-5"), r"row 3: negative volume"),
    ("non-numeric volume", _replace_line(3, "2024-01-04,11,12,10.5,11.5,lots"), r"row 3: volume is not a number"),
    ("epoch timestamps", GOOD_CSV.replace("2024-01-02", "1704153600").replace("2024-01-03", "1704240000")
     .replace("2024-01-04", "1704326400"), r"column 'time' has type int64"),
    # a column is never ignored: beside an adjusted close, `close` is most likely the unadjusted price
    ("adjusted close beside close", GOOD_CSV.replace(",volume", ",adj_close,volume", 1)
     .replace(",1000", ",5.0,1000").replace(",1200", ",5.5,1200").replace(",900", ",5.7,900"),
     r"unknown column\(s\) \['adj_close'\] \(a bars file has exactly \['time', 'open', 'high', 'low', 'close', "
     r"'volume'\]\); `close` is the price used: write the adjusted close \('adj_close'\) into it$"),
    ("another column", GOOD_CSV.replace(",volume", ",volume,dividends", 1).replace(",1000", ",1000,0")
     .replace(",1200", ",1200,0").replace(",900", ",900,0.5"),
     r"unknown column\(s\) \['dividends'\] \(a bars file has exactly \['time', 'open', 'high', 'low', 'close', "
     r"'volume'\]\)$"),
]


@pytest.mark.parametrize(("case", "text", "message"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_bar_files_are_rejected_with_file_row_and_problem(
        tmp_path: Path, case: str, text: str, message: str) -> None:
    path = write_bars(tmp_path, "NYSE:ABC", text)
    source = FilesSource({"path": tmp_path})
    with pytest.raises(BarFileError, match=message) as err:
        source.bars("NYSE:ABC", dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    assert str(path) in str(err.value)
    assert isinstance(err.value, SourceError) and isinstance(err.value, ValueError)


def test_future_timestamps_relative_to_today(tmp_path: Path) -> None:
    path = write_bars(tmp_path, "NYSE:ABC", GOOD_CSV)
    with pytest.raises(BarFileError, match=r"row 3: timestamp 2024-01-04 is in the future \(after 2024-01-03\)") as err:
        FilesSource({"path": tmp_path, "today": "2024-01-03"}).bars("NYSE:ABC", dt.date(2024, 1, 1), dt.date(2024, 1, 2))
    assert str(path) in str(err.value)
    assert len(FilesSource({"path": tmp_path, "today": "2024-01-04"}).bars(
        "NYSE:ABC", dt.date(2024, 1, 1), dt.date(2024, 1, 31))) == 3


def test_a_universe_symbol_without_exactly_one_bars_file_is_refused_when_the_source_opens(tmp_path: Path) -> None:
    """Found before any run (it used to fail a run at its scan step)."""
    for symbol in ("NYSE:ABC", "NYSE:DEF"):
        write_bars(tmp_path, symbol, GOOD_CSV)
    (tmp_path / "universe.csv").write_text("symbol,asset_class\nNYSE:ABC,equity\nNYSE:DEF,equity\n"
                                           "NYSE:XYZ,equity\nNASDAQ:QQ.A,equity\n")
    with pytest.raises(SourceError) as err:
        FilesSource({"path": tmp_path})
    assert str(err.value) == (f"universe.csv lists 2 symbol(s) with no bars file in {tmp_path.resolve() / 'bars'}: "
                              "NYSE:XYZ, NASDAQ:QQ.A (expected e.g. NYSE__XYZ.csv or .parquet)")
    (tmp_path / "universe.csv").write_text("symbol,asset_class\nNYSE:ABC,equity\nNYSE:DEF,equity\n")
    assert list(FilesSource({"path": tmp_path}).universe.index) == ["NYSE:ABC", "NYSE:DEF"]
    pd.read_csv(tmp_path / "bars" / "NYSE__DEF.csv").to_parquet(tmp_path / "bars" / "NYSE__DEF.parquet")
    with pytest.raises(SourceError) as err:
        FilesSource({"path": tmp_path})
    assert str(err.value) == (f"ambiguous bars for 1 symbol(s) in {tmp_path.resolve() / 'bars'}: NYSE:DEF "
                              "(both a .csv and a .parquet file)")


def test_missing_ambiguous_and_invalid_symbols(tmp_path: Path) -> None:
    write_bars(tmp_path, "NYSE:ABC", GOOD_CSV)
    source = FilesSource({"path": tmp_path})
    with pytest.raises(SourceError, match=r"no bars file for NYSE:XYZ \(looked for .*NYSE__XYZ.parquet"):
        source.bars("NYSE:XYZ", dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    pd.read_csv(tmp_path / "bars" / "NYSE__ABC.csv").to_parquet(tmp_path / "bars" / "NYSE__ABC.parquet")
    with pytest.raises(SourceError, match="ambiguous bars for NYSE:ABC"):
        source.bars("NYSE:ABC", dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    with pytest.raises(InvalidSymbolError):
        source.bars("../../etc:passwd", dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    with pytest.raises(SourceError, match="does not exist"):
        FilesSource({"path": tmp_path / "nowhere"})
    with pytest.raises(ValueError) as err:
        FilesSource({})
    assert str(err.value) == "files settings: path: Field required"
    with pytest.raises(ValueError) as err:
        FilesSource({"path": str(tmp_path), "seed": 7, "faults": {}})
    assert str(err.value) == ("files settings: seed: unknown key (not in the schema); "
                              "faults: unknown key (not in the schema)")


@pytest.mark.parametrize(("text", "message"), [
    ("sym\nNYSE:ABC\n", r"missing column 'symbol'"),
    ("symbol\nNYSE:ABC\nnyse:abc\n", r"row 2: invalid symbol 'nyse:abc'"),
    ("symbol\nNYSE:ABC\nNYSE:ABC\n", r"rows 1, 2: duplicate symbol 'NYSE:ABC'"),
    ("symbol,asset_class\nNYSE:ABC,stock\n", r"row 1: asset_class 'stock' is not one of"),
    ("symbol,direction\nNYSE:ABC,up\n", r"row 1: direction 'up' is not 'long' or 'short'"),
    ("symbol,calendar\nNYSE:ABC,MOON\n", r"row 1: unknown calendar 'MOON'"),
    # a column is never ignored: a misspelt one would have left its field unknown for every symbol
    ("symbol,Sector\nNYSE:ABC,Energy\n", r"unknown column 'Sector' \(did you mean 'sector'\?\); the columns are "
                                          r"symbol, asset_class, calendar, sector, industry, description, currency, "
                                          r"direction$"),
    ("symbol,isin\nNYSE:ABC,US0000000000\n", r"unknown column 'isin'; the columns are symbol, asset_class,"),
])
def test_malformed_universe(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "universe.csv").write_text(text)
    with pytest.raises(BarFileError, match=message) as err:
        FilesSource({"path": tmp_path})
    assert "universe.csv" in str(err.value)


# ------------------------------------------------------------------------- shared indicator math
def naive_wilder(values: list[float], n: int, alpha: float | None = None) -> list[float]:
    """Scalar reference: SMA of the first n valid values, then s += alpha (x - s)."""
    alpha = 1.0 / n if alpha is None else alpha
    out, seed, state = [], [], None
    for v in values:
        if not math.isnan(v):
            if state is None:
                seed.append(v)
                if len(seed) == n:
                    state = sum(seed) / n
            else:
                state += alpha * (v - state)
        out.append(math.nan if state is None else state)
    return out


def naive_atr_adx(h: list[float], lo: list[float], c: list[float], n: int = 14) -> tuple[float, float]:
    tr, pdm, mdm = [math.nan], [math.nan], [math.nan]
    for i in range(1, len(c)):
        tr.append(max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1])))
        up, down = h[i] - h[i - 1], lo[i - 1] - lo[i]
        pdm.append(up if up > down and up > 0 else 0.0)
        mdm.append(down if down > up and down > 0 else 0.0)
    atr, ps, ms = naive_wilder(tr, n), naive_wilder(pdm, n), naive_wilder(mdm, n)
    dx = []
    for a, p, m in zip(atr, ps, ms, strict=True):
        if math.isnan(a):
            dx.append(math.nan)
            continue
        pdi, mdi = 100 * p / a, 100 * m / a
        dx.append(100 * abs(pdi - mdi) / (pdi + mdi) if pdi + mdi > 0 else 0.0)
    return atr[-1], naive_wilder(dx, n)[-1]


def random_bars(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = close * np.exp(rng.normal(0, 0.005, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, n)))
    return high, low, close, rng.uniform(1e3, 1e4, n)


def test_seeded_average_matches_scalar_reference() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 4))
    x[:10, 1] = np.nan  # late start
    x[30, 2] = np.nan  # a hole keeps the state
    got = seeded_average(x, np.array([14, 14, 5, 20]), np.array([1 / 14, 1 / 14, 2 / 6, 2 / 21]))
    for j, (n, a) in enumerate([(14, 1 / 14), (14, 1 / 14), (5, 2 / 6), (20, 2 / 21)]):
        np.testing.assert_allclose(got[:, j], naive_wilder(list(x[:, j]), n, a), rtol=1e-12, equal_nan=True)


def test_atr_adx_against_scalar_reference_with_ragged_histories() -> None:
    rng = np.random.default_rng(5)
    lengths = [300, 120, 40, 29]
    mats = np.full((4, 300, len(lengths)), np.nan)
    series = []
    for j, n in enumerate(lengths):
        h, lo, c, v = random_bars(rng, n)
        series.append((h, lo, c))
        for k, arr in enumerate((h, lo, c, v)):
            mats[k, 300 - n:, j] = arr
    fields = indicator_matrix(*mats)
    for j, (h, lo, c) in enumerate(series):
        atr, adx = naive_atr_adx(list(h), list(lo), list(c))
        assert fields["ATR"][j] == pytest.approx(atr, rel=1e-10)
        assert fields["ADX"][j] == pytest.approx(adx, rel=1e-10)
    short = indicator_matrix(*(m[-20:] for m in mats))  # too short for ADX (needs 28 bars)
    assert np.isnan(short["ADX"]).all() and not np.isnan(short["ATR"]).any()


def test_hand_computed_fields() -> None:
    close = np.array([100.0, 110.0, 99.0])[:, None]
    high, low, volume = close + 2.0, close - 1.0, np.array([5.0, 6.0, 7.0])[:, None]
    f = indicator_matrix(high, low, close, volume)
    assert f["close"][0] == 99.0 and f["volume"][0] == 7.0 and f["Value.Traded"][0] == 693.0
    assert f["change"][0] == pytest.approx(-10.0)
    assert f["Volatility.D"][0] == pytest.approx(100 * 3 / 98)
    assert np.isnan(f["Perf.W"][0]) and np.isnan(f["Recommend.All"][0])  # not enough bars
    up = np.linspace(10, 60, 260)[:, None]
    rising = indicator_matrix(up * 1.01, up * 0.99, up, np.ones_like(up))
    assert rising["Recommend.All"][0] == 1.0 and rising["ADX"][0] > 90
    assert rising["Perf.W"][0] == pytest.approx(100 * (60 / up[-6, 0] - 1))
    assert rising["Perf.Y"][0] == pytest.approx(100 * (60 / up[-253, 0] - 1))
    falling = indicator_matrix(up[::-1] * 1.01, up[::-1] * 0.99, up[::-1], np.ones_like(up))
    assert falling["Recommend.All"][0] == -1.0


def test_scanner_fields_uses_only_bars_up_to_as_of() -> None:
    rng = np.random.default_rng(9)
    h, lo, c, v = random_bars(rng, 400)
    times = pd.date_range("2022-01-01", periods=400, freq="D", tz="UTC")
    frame = pd.DataFrame({"time": times, "open": c, "high": h, "low": lo, "close": c, "volume": v})
    as_of = times[349].date()
    base = scanner_fields({"X:A": frame, "X:LATE": frame.iloc[380:]}, as_of)
    assert list(base.index) == ["X:A"] and list(base.columns) == [*INDICATOR_COLUMNS, "last_bar"]
    assert base.loc["X:A", "last_bar"] == pd.Timestamp(as_of)
    shocked = frame.copy()
    shocked.loc[350:, ["high", "close"]] *= 10  # data after as_of must not matter
    pd.testing.assert_frame_equal(base, scanner_fields({"X:A": shocked}, as_of))
    direct = indicator_matrix(*(frame[k].to_numpy()[50:350, None] for k in ("high", "low", "close", "volume")))
    assert base.loc["X:A", "ADX"] == pytest.approx(direct["ADX"][0], rel=1e-12)


def test_scanner_fields_cut_bars_at_the_end_of_the_utc_day() -> None:
    """A bar counts for `as_of` when its UTC day is `as_of` or earlier: 23:59 UTC is in, the next
    UTC midnight is out, a New York evening bar (after midnight UTC) is out, naive times are UTC;
    `last_bar` is the UTC day of the last bar used, and `window` keeps only the last bars."""
    as_of = dt.date(2024, 3, 8)
    base = pd.date_range("2023-06-02", periods=400, freq="D", tz="UTC")  # past as_of
    n = len(base[base.date <= as_of])  # whole days up to as_of
    rng = np.random.default_rng(4)
    h, lo, c, v = random_bars(rng, 402)

    def bars(times: pd.DatetimeIndex | pd.Series) -> pd.DataFrame:
        k = len(times)
        return pd.DataFrame({"time": times, "high": h[:k], "low": lo[:k], "close": c[:k], "volume": v[:k]})

    last_in = base[:n].append(pd.DatetimeIndex([pd.Timestamp("2024-03-08 23:59", tz="UTC")]))
    frames = {
        "X:IN": bars(last_in),  # n daily bars, then one more late on as_of
        "X:OUT": bars(base[:n].append(pd.DatetimeIndex([pd.Timestamp("2024-03-09 00:00", tz="UTC")]))),
        "X:NY": bars(base[:n].tz_convert("America/New_York").append(
            pd.DatetimeIndex([pd.Timestamp("2024-03-08 20:00", tz="America/New_York")]))),  # 01:00 UTC on the 9th
        "X:NAIVE": bars(last_in.tz_localize(None)),
    }
    got = scanner_fields(frames, as_of, window=5)
    assert list(got.index) == ["X:IN", "X:OUT", "X:NY", "X:NAIVE"]
    assert (got["last_bar"] == pd.Timestamp(as_of)).all()
    assert got.loc["X:IN", "close"] == c[n] and got.loc["X:NAIVE", "close"] == c[n]  # the 23:59 bar
    assert got.loc["X:OUT", "close"] == c[n - 1] and got.loc["X:NY", "close"] == c[n - 1]
    assert got.loc["X:IN", "change"] == pytest.approx(100 * (c[n] / c[n - 1] - 1))
    assert np.isnan(got.loc["X:IN", "Perf.W"])  # window=5: six bars would be needed
    early = scanner_fields(frames, base[0].date() - dt.timedelta(days=1))
    assert early.empty and list(early.columns) == [*INDICATOR_COLUMNS, "last_bar"]
    assert scanner_fields(frames, as_of, window=0).empty
