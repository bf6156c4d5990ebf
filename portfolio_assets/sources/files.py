"""Files source: daily bars (and an optional universe) that a user exported into one directory.

Layout of `settings["path"]`::

    bars/<EXCHANGE>__<TICKER>.parquet   or   bars/<EXCHANGE>__<TICKER>.csv   (one file per symbol,
                                          ':' written as '__', e.g. bars/NASDAQ__AAPL.csv)
    universe.csv                          (optional; needed by scan())

Bar files have exactly the columns `time, open, high, low, close, volume` (any other column is
refused: beside an `adj_close`, `close` would most likely be the unadjusted price):

- `time`: ISO-8601 strings ("2024-01-02", "2024-01-02T14:30:00Z", "2024-01-02T09:30:00-05:00") or,
  in Parquet, timestamps (tz-naive ones are taken as UTC). A bar's day is the UTC date of its time;
  `bars()` returns `time` as that day's 00:00 UTC.
- one row per day, strictly increasing; no day after `today`.
- open, high, low, close: finite numbers > 0 with low <= open, close <= high (relative tolerance
  1e-9). Closes-only data (e.g. adjusted closes) is written with open = high = low = close.
- volume: a finite number >= 0, or empty (unknown, kept as NaN; see "Unknown volume" below).

A file that breaks any rule is rejected as a whole with a `BarFileError` naming the file, the first
offending row (1-based data row: CSV line = row + 1) and the problem: missing or unknown columns, unparseable
or missing timestamps, duplicate days, unsorted rows, future timestamps, missing (NaN), infinite or
non-positive prices, inconsistent OHLC, infinite or negative volume. Nothing is sorted, dropped or repaired
silently. `attempt` is accepted and ignored: files do not heal.

`universe.csv` columns: `symbol` (required) and optionally `asset_class` (equity | etf | bond_etf |
crypto | forex | futures), `calendar` (an exchange_calendars name, "24/7" or "24/5"; default by
asset class: XNYS for equity/etf/bond_etf, 24/7 crypto, 24/5 forex), `sector`, `industry`,
`description`, `currency`, `direction` (long | short; empty = either). Any other column is refused,
naming the nearest valid one (a misspelt `Sector` would have left every sector unknown).

`scan(family, as_of, preset)` lists the universe symbols of the family (equity = equity + etf,
bond = bond_etf, ...) that have a bar at or before `as_of` and whose last such bar is at most
`max_staleness_days` calendar days old (older ones count as delisted), computes the scanner fields
from their bars <= as_of (`indicators.scanner_fields`) and applies the preset
(`scanner_query.apply_preset`); a universe `direction` restricts the symbol to screens of that direction.

Unknown volume: a symbol whose last bar has no volume (closes-only data) gets `volume` and
`Value.Traded` NaN and `liquidity_known = False`; the preset's liquidity conditions are skipped for
it and listed in its `filters_skipped` (never passed or failed on an invented number, see
`scanner_query`).

Settings: `settings.FilesSettings` (`path`, the directory, required; `today`, bars after it are an
error, unset = the current UTC date; `max_staleness_days`).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from portfolio_assets.sources.base import (
    ASSET_CLASSES,
    BAR_COLUMNS,
    CALENDAR_24_5,
    CALENDAR_24_7,
    SourceError,
)
from portfolio_assets.sources.indicators import scanner_fields
from portfolio_assets.sources.scanner_query import (
    FAMILIES,
    FAMILY_CLASSES,
    SCAN_RESULT_COLUMNS,
    TYPE_BY_CLASS,
    apply_preset,
)
from portfolio_assets.sources.settings import FilesSettings, parse_source_settings
from portfolio_assets.symbols import InvalidSymbolError, symbol_filename, validate_symbol

PRICE_COLUMNS = ("open", "high", "low", "close")
UNIVERSE_COLUMNS = ("asset_class", "calendar", "sector", "industry", "description", "currency", "direction")
METADATA_COLUMNS = ("asset_class", "calendar", "sector", "industry", "description", "currency")
DEFAULT_CALENDAR = {"equity": "XNYS", "etf": "XNYS", "bond_etf": "XNYS", "crypto": CALENDAR_24_7,
                    "forex": CALENDAR_24_5}
_OHLC_TOLERANCE = 1e-9


class BarFileError(SourceError, ValueError):
    """A bars or universe file that breaks the documented format; the message names file, row, problem."""


def _rows(mask: np.ndarray) -> str:
    """'row 5' or 'rows 5, 9, 12 (+3 more)' for the 1-based data rows where `mask` is true."""
    where = np.flatnonzero(mask) + 1
    shown = ", ".join(str(r) for r in where[:3])
    more = f" (+{len(where) - 3} more)" if len(where) > 3 else ""
    return f"row {shown}" if len(where) == 1 else f"rows {shown}{more}"


def _parse_times(raw: pd.Series, file: Path) -> pd.Series:
    """UTC day (tz-naive midnight) of each timestamp; BarFileError for anything unparseable."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        ts = raw.dt.tz_localize("UTC") if raw.dt.tz is None else raw.dt.tz_convert("UTC")
    elif pd.api.types.is_object_dtype(raw) or pd.api.types.is_string_dtype(raw):
        missing = raw.isna().to_numpy()
        if missing.any():
            raise BarFileError(f"{file}: {_rows(missing)}: missing timestamp")
        bad = ~raw.map(lambda v: isinstance(v, str)).to_numpy()
        if not bad.any():
            ts = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
            bad = ts.isna().to_numpy()
        if bad.any():
            value = raw.iloc[int(np.flatnonzero(bad)[0])]
            raise BarFileError(f"{file}: {_rows(bad)}: unparseable timestamp {value!r} "
                               "(expected ISO-8601, e.g. 2024-01-02 or 2024-01-02T14:30:00Z)")
    else:
        raise BarFileError(f"{file}: column 'time' has type {raw.dtype}; expected ISO-8601 strings or timestamps")
    missing = ts.isna().to_numpy()
    if missing.any():
        raise BarFileError(f"{file}: {_rows(missing)}: missing timestamp")
    return ts.dt.tz_localize(None).dt.normalize()


def read_bar_file(file: Path, today: dt.date) -> pd.DataFrame:
    """Read and validate one bars file (format in the module docstring).

    Returns BAR_COLUMNS with `time` = the bar's UTC day at 00:00 UTC (tz-aware) and float prices.
    """
    try:
        raw = pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file)
    except (OSError, ValueError) as exc:
        raise BarFileError(f"{file}: cannot be read: {exc}") from exc
    missing = [c for c in BAR_COLUMNS if c not in raw.columns]
    if missing:
        raise BarFileError(f"{file}: missing columns {missing} (found {list(raw.columns)}; "
                           f"required {list(BAR_COLUMNS)})")
    unknown = [str(c) for c in raw.columns if c not in BAR_COLUMNS]
    if unknown:  # never ignored: beside an `adj_close`, `close` is most likely the unadjusted price
        adjusted = [c for c in unknown if "adj" in c.lower()]
        hint = (f"; `close` is the price used: write the adjusted close ({adjusted[0]!r}) into it"
                if adjusted else "")
        raise BarFileError(f"{file}: unknown column(s) {unknown} (a bars file has exactly "
                           f"{list(BAR_COLUMNS)}){hint}")
    raw = raw.reset_index(drop=True)
    days = _parse_times(raw["time"], file)
    values = days.to_numpy()
    duplicate = days.duplicated(keep=False).to_numpy()
    if duplicate.any():
        first = values[duplicate][0]
        raise BarFileError(f"{file}: {_rows(duplicate)}: duplicate timestamp for day {pd.Timestamp(first).date()}")
    unsorted = np.zeros(len(days), dtype=bool)
    unsorted[1:] = values[1:] < values[:-1]
    if unsorted.any():
        raise BarFileError(f"{file}: {_rows(unsorted)}: rows are not sorted by time "
                           "(each timestamp must be later than the previous row's)")
    future = (days > pd.Timestamp(today)).to_numpy()
    if future.any():
        first = pd.Timestamp(values[future][0]).date()
        raise BarFileError(f"{file}: {_rows(future)}: timestamp {first} is in the future (after {today})")
    out = pd.DataFrame({"time": days.dt.tz_localize("UTC")})
    for name in PRICE_COLUMNS:
        col = pd.to_numeric(raw[name], errors="coerce").astype(np.float64)
        nan = col.isna().to_numpy()
        if nan.any():
            raise BarFileError(f"{file}: {_rows(nan)}: {name} is missing (NaN) or not a number")
        infinite = np.isinf(col.to_numpy())
        if infinite.any():
            value = col.iloc[int(np.flatnonzero(infinite)[0])]
            raise BarFileError(f"{file}: {_rows(infinite)}: {name} is not finite ({value})")
        bad = (col <= 0).to_numpy()
        if bad.any():
            value = col.iloc[int(np.flatnonzero(bad)[0])]
            raise BarFileError(f"{file}: {_rows(bad)}: non-positive {name} {value}")
        out[name] = col.to_numpy()
    body_low = out[["open", "close"]].min(axis=1)
    body_high = out[["open", "close"]].max(axis=1)
    inconsistent = ((out["low"] > body_low * (1 + _OHLC_TOLERANCE))
                    | (out["high"] < body_high * (1 - _OHLC_TOLERANCE))).to_numpy()
    if inconsistent.any():
        raise BarFileError(f"{file}: {_rows(inconsistent)}: inconsistent OHLC "
                           "(need low <= open, close <= high)")
    volume = pd.to_numeric(raw["volume"], errors="coerce").astype(np.float64)
    not_number = (volume.isna() & raw["volume"].notna() & (raw["volume"].astype(str).str.strip() != "")).to_numpy()
    if not_number.any():
        raise BarFileError(f"{file}: {_rows(not_number)}: volume is not a number")
    infinite = np.isinf(volume.to_numpy())
    if infinite.any():
        raise BarFileError(f"{file}: {_rows(infinite)}: volume is not finite ({volume.iloc[int(np.flatnonzero(infinite)[0])]})")
    negative = (volume < 0).to_numpy()
    if negative.any():
        raise BarFileError(f"{file}: {_rows(negative)}: negative volume")
    out["volume"] = volume.to_numpy()
    return out


def read_universe(file: Path) -> pd.DataFrame:
    """Read and validate `universe.csv` (index = symbol, columns = UNIVERSE_COLUMNS, NaN = unknown)."""
    try:
        raw = pd.read_csv(file, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise BarFileError(f"{file}: cannot be read: {exc}") from exc
    return validate_universe(raw, file)


def validate_universe(raw: pd.DataFrame, where: Path | str) -> pd.DataFrame:
    """Validate a universe table of text cells (`symbol` + any of UNIVERSE_COLUMNS; "" = unknown):
    index = symbol, columns = UNIVERSE_COLUMNS, NaN = unknown, `calendar` defaulted by asset class.
    Errors are `BarFileError`s naming `where`, the 1-based row and the problem."""
    if "symbol" not in raw.columns:
        raise BarFileError(f"{where}: missing column 'symbol' (found {list(raw.columns)})")
    known = ("symbol", *UNIVERSE_COLUMNS)
    unknown = [str(c) for c in raw.columns if c not in known]
    if unknown:  # never ignored: a misspelt 'Sector' would have left every sector unknown
        from portfolio_assets.manifest_input import nearest  # the manifest's "did you mean"

        close = nearest(unknown[0].strip().lower(), known)
        hint = f" (did you mean {close!r}?)" if close else ""
        raise BarFileError(f"{where}: unknown column {unknown[0]!r}{hint}; the columns are {', '.join(known)}")
    raw = raw.apply(lambda col: col.astype(str).str.strip()).replace("", np.nan)
    for i, symbol in enumerate(raw["symbol"], start=1):
        try:
            validate_symbol(symbol)
        except InvalidSymbolError as exc:
            raise BarFileError(f"{where}: row {i}: {exc}") from exc
    duplicate = raw["symbol"].duplicated(keep=False).to_numpy()
    if duplicate.any():
        raise BarFileError(f"{where}: {_rows(duplicate)}: duplicate symbol {raw['symbol'][duplicate].iloc[0]!r}")
    out = pd.DataFrame(index=pd.Index(raw["symbol"], name="symbol"))
    for name in UNIVERSE_COLUMNS:
        out[name] = raw[name].to_numpy() if name in raw.columns else np.nan
    bad = (~out["asset_class"].isna() & ~out["asset_class"].isin(ASSET_CLASSES)).to_numpy()
    if bad.any():
        raise BarFileError(f"{where}: {_rows(bad)}: asset_class {out['asset_class'][bad].iloc[0]!r} "
                           f"is not one of {', '.join(ASSET_CLASSES)}")
    bad = (~out["direction"].isna() & ~out["direction"].isin(["long", "short"])).to_numpy()
    if bad.any():
        raise BarFileError(f"{where}: {_rows(bad)}: direction {out['direction'][bad].iloc[0]!r} "
                           "is not 'long' or 'short'")
    given = out["calendar"].dropna()
    if len(given):
        import exchange_calendars  # only when calendars are named

        known = set(exchange_calendars.get_calendar_names()) | {CALENDAR_24_7, CALENDAR_24_5}
        bad = (~out["calendar"].isna() & ~out["calendar"].isin(known)).to_numpy()
        if bad.any():
            raise BarFileError(f"{where}: {_rows(bad)}: unknown calendar {out['calendar'][bad].iloc[0]!r} "
                               "(an exchange_calendars name, '24/7' or '24/5')")
    defaults = out["asset_class"].map(DEFAULT_CALENDAR)
    out["calendar"] = out["calendar"].fillna(defaults)
    return out


BAR_SUFFIXES = (".parquet", ".csv")  # the bars file of a symbol: exactly one of these


class FilesSource:
    """`MarketData` over a directory of exported bar files (format in the module docstring)."""

    name = "files"

    def __init__(self, settings: FilesSettings | Mapping[str, Any]) -> None:
        self.settings: FilesSettings = parse_source_settings("files", settings)
        self.path = self.settings.path.expanduser().resolve()
        if not self.path.is_dir():
            raise SourceError(f"files source directory {self.path} does not exist")
        self.today = self.settings.today or dt.datetime.now(dt.UTC).date()
        self.max_staleness_days = self.settings.max_staleness_days
        universe_file = self.path / "universe.csv"
        self._universe = read_universe(universe_file) if universe_file.exists() else None
        if self._universe is not None:
            self._check_bar_files(list(self._universe.index))
        self._cache: dict[Path, tuple[int, int, pd.DataFrame]] = {}

    def _check_bar_files(self, symbols: list[str]) -> None:
        """SourceError unless every universe symbol has exactly one bars file: found when the source
        is opened (before any run), not by the scan of a run that has started. One listing of `bars/`."""
        folder = self.path / "bars"
        names = set(os.listdir(folder)) if folder.is_dir() else set()
        found = {s: [ext for ext in BAR_SUFFIXES if f"{symbol_filename(s)}{ext}" in names] for s in symbols}
        missing = [s for s in symbols if not found[s]]
        both = [s for s in symbols if len(found[s]) > 1]
        if missing:
            raise SourceError(f"universe.csv lists {len(missing)} symbol(s) with no bars file in {folder}: "
                              f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} (expected e.g. "
                              f"{symbol_filename(missing[0])}.csv or .parquet)")
        if both:
            raise SourceError(f"ambiguous bars for {len(both)} symbol(s) in {folder}: {', '.join(both[:3])}"
                              f"{' ...' if len(both) > 3 else ''} (both a .csv and a .parquet file)")

    @property
    def universe(self) -> pd.DataFrame | None:
        """The validated universe.csv (index symbol) or None when there is none."""
        return None if self._universe is None else self._universe.copy()

    def bar_file(self, symbol: str) -> Path:
        """The bars file of `symbol`; SourceError if there is none or both a .parquet and a .csv."""
        stem = symbol_filename(symbol)
        candidates = [self.path / "bars" / f"{stem}{ext}" for ext in BAR_SUFFIXES]
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise SourceError(f"no bars file for {symbol} (looked for {candidates[0]} and {candidates[1]})")
        if len(found) == 2:
            raise SourceError(f"ambiguous bars for {symbol}: both {found[0]} and {found[1]} exist")
        return found[0]

    def _load(self, symbol: str) -> pd.DataFrame:
        """Validated bars of `symbol`, cached until the file changes."""
        file = self.bar_file(symbol)
        stat = file.stat()
        cached = self._cache.get(file)
        if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
            return cached[2]
        frame = read_bar_file(file, self.today)
        self._cache[file] = (stat.st_mtime_ns, stat.st_size, frame)
        return frame

    def bars(self, symbol: str, start: dt.date, end: dt.date, *, attempt: int = 0) -> pd.DataFrame:
        """Bars of `symbol` with start <= UTC day <= end (`attempt` is ignored: files do not heal)."""
        validate_symbol(symbol)
        lo, hi = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
        if hi < lo:
            raise ValueError(f"bars for {symbol}: start {start} is after end {end}")
        frame = self._load(symbol)
        return frame.loc[((frame["time"] >= lo) & (frame["time"] <= hi)).to_numpy()].reset_index(drop=True)

    def metadata(self, symbols: list[str]) -> pd.DataFrame:
        """METADATA_COLUMNS per symbol from universe.csv; NaN for symbols or fields it lacks."""
        for symbol in symbols:
            validate_symbol(symbol)
        index = pd.Index(list(symbols), name="symbol")
        if self._universe is None:
            return pd.DataFrame(np.nan, index=index, columns=list(METADATA_COLUMNS), dtype=object)
        return self._universe.reindex(index)[list(METADATA_COLUMNS)].copy()

    def scan(self, family: str, as_of: dt.date, preset: dict) -> pd.DataFrame:
        """Scanner rows for the universe symbols of `family` listed at `as_of` (module docstring)."""
        if family not in FAMILIES:
            raise ValueError(f"unknown scanner family {family!r}; expected one of {', '.join(FAMILIES)}")
        if self._universe is None:
            raise SourceError(f"files source at {self.path} has no universe.csv; scan() needs one")
        members = self._universe.loc[self._universe["asset_class"].isin(FAMILY_CLASSES[family]).to_numpy()]
        fields = scanner_fields({s: self._load(s) for s in members.index}, as_of)
        cutoff = pd.Timestamp(as_of) - pd.Timedelta(days=self.max_staleness_days)
        fields = fields.loc[(fields["last_bar"] >= cutoff).to_numpy()]
        table = members.loc[fields.index]
        symbols = table.index.to_series()
        frame = pd.DataFrame({
            "symbol": symbols.to_numpy(),
            "name": symbols.str.split(":").str[1].to_numpy(),
            "description": table["description"].to_numpy(),
            "type": table["asset_class"].map(TYPE_BY_CLASS).to_numpy(),
            "exchange": symbols.str.split(":").str[0].to_numpy(),
            "currency": table["currency"].to_numpy(),
            "sector": table["sector"].to_numpy(),
            "industry": table["industry"].to_numpy(),
            "direction": table["direction"].to_numpy(),
        })
        for name in fields.columns.drop("last_bar"):
            frame[name] = fields[name].to_numpy(dtype=np.float64)
        frame["liquidity_known"] = np.isfinite(frame["volume"].to_numpy())  # the last bar's volume is known
        return apply_preset(frame, preset)[list(SCAN_RESULT_COLUMNS)]
