"""Closes-only data into the files-source layout (`files.py`): the converter behind `import-closes`.

`export_closes(closes, dest, universe)` writes, for a frame of closes (index = dates, one column per
`EXCHANGE:TICKER` symbol):

- `dest/bars/<EXCHANGE>__<TICKER>.csv`, one row per date with a close: `time` (YYYY-MM-DD),
  `open = high = low = close` (the only price known), `volume` empty (unknown: never invented;
  the scanners skip liquidity filters for such rows and record it, see `scanner_query`);
- `dest/universe.csv`: the `universe` table as given (symbol, asset_class, calendar, sector,
  industry, description, currency, direction) or, without one, every symbol as an `equity` on the
  XNYS calendar.

Rules (a `ValueError` naming the symbol/date or file and row; nothing is written then): symbols
are valid `EXCHANGE:TICKER`; dates parse, are unique and increasing; a missing close (NaN/empty)
means no bar that day (before a listing, a holiday of another market); every close present is a
finite number > 0; a universe lists exactly the symbols of `closes`. Files are written atomically
(temp file + rename) in a fixed format, so the same input gives the same bytes; a `dest` already
holding bars of other symbols is refused (their bars would mix with this export).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from portfolio_assets.sources.files import UNIVERSE_COLUMNS, validate_universe
from portfolio_assets.symbols import InvalidSymbolError, filename_symbol, symbol_filename, validate_symbol

DEFAULT_ASSET_CLASS = "equity"  # without a universe table: every column is a stock on XNYS


def export_closes(closes: pd.DataFrame, dest: Path, universe: pd.DataFrame | None = None) -> Path:
    """Write `closes` (and `universe`) into the files layout under `dest`; returns `dest`.

    `universe` has a `symbol` column (or index) and any of `files.UNIVERSE_COLUMNS`; missing cells
    are unknown. See the module docstring for the layout and the rules.
    """
    dest = Path(dest)
    days = _dates(closes.index)
    symbols = [str(c) for c in closes.columns]
    for symbol in symbols:
        try:
            validate_symbol(symbol)
        except InvalidSymbolError as exc:
            raise ValueError(f"closes: column {symbol!r}: {exc}") from None
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"closes: duplicate columns {sorted({s for s in symbols if symbols.count(s) > 1})}")
    values = closes.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    given = closes.notna().to_numpy()  # a text that is not a number is given, and NaN below: refused
    with np.errstate(invalid="ignore"):
        bad = given & (~np.isfinite(values) | (values <= 0))
    if bad.any():
        i, j = (int(x[0]) for x in np.nonzero(bad))
        value = closes.iat[i, j]
        shown = repr(value) if isinstance(value, str) else repr(float(value))
        raise ValueError(f"closes: {symbols[j]} on {days[i].date()}: close {shown} is not a finite number > 0")
    table = _universe_table(symbols, universe)
    existing = sorted(filename_symbol(p.stem) for p in (dest / "bars").glob("*.*") if p.suffix in (".csv", ".parquet"))
    foreign = sorted(set(existing) - set(symbols))
    if foreign:
        raise ValueError(f"{dest / 'bars'} holds bars of symbols not in this export {foreign[:5]}"
                         f"{' ...' if len(foreign) > 5 else ''}; export into an empty directory")

    from portfolio_assets.lakehouse import atomic_write_bytes

    for j, symbol in enumerate(symbols):
        have = given[:, j]
        bars = pd.DataFrame({"time": days[have].strftime("%Y-%m-%d")})
        for name in ("open", "high", "low", "close"):
            bars[name] = values[have, j]
        bars["volume"] = ""
        atomic_write_bytes(dest / "bars" / f"{symbol_filename(symbol)}.csv", bars.to_csv(index=False).encode())
    atomic_write_bytes(dest / "universe.csv", table.to_csv(index=False).encode())
    return dest


def read_closes_csv(path: Path) -> pd.DataFrame:
    """A CSV of closes: first column a date, one column per `EXCHANGE:TICKER` (empty = no close)."""
    try:
        frame = pd.read_csv(path, index_col=0, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot be read: {exc}") from None
    if frame.shape[1] == 0:
        raise ValueError(f"{path}: no symbol columns after the date column")
    return frame.replace("", np.nan)


def read_universe_csv(path: Path) -> pd.DataFrame:
    """A universe CSV as text cells (validated by `export_closes`)."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot be read: {exc}") from None


def _dates(index: pd.Index) -> pd.DatetimeIndex:
    """The closes' dates (timezone dropped), unique and increasing, else a ValueError naming one."""
    if isinstance(index, pd.DatetimeIndex):
        days = index
    else:
        try:
            days = pd.DatetimeIndex(pd.to_datetime(index, format="ISO8601", errors="coerce"))
        except (ValueError, TypeError) as exc:  # e.g. values of mixed time zones
            raise ValueError(f"closes: the first column must hold dates (YYYY-MM-DD): {exc}") from None
        given = pd.Series(index, dtype=object)
        unparsed = (days.isna() & given.notna().to_numpy() & (given.astype(str).str.strip() != "").to_numpy())
        if unparsed.any():  # named here: pandas' own message advises its API's `format=` arguments
            first = int(np.flatnonzero(unparsed)[0])
            raise ValueError(f"closes: the first column must hold dates (YYYY-MM-DD); row {first + 1} has "
                             f"{given.iloc[first]!r} (convert the export's dates to ISO 8601)")
    if days.tz is not None:
        days = days.tz_localize(None)
    if days.hasnans:
        raise ValueError("closes: a row has no date")
    if (days != days.normalize()).any():
        raise ValueError(f"closes: dates must be days, got {days[days != days.normalize()][0]}")
    duplicate = days.duplicated()
    if duplicate.any():
        raise ValueError(f"closes: duplicate date {days[duplicate][0].date()}")
    if not days.is_monotonic_increasing:
        i = int(np.flatnonzero(np.diff(days.asi8) < 0)[0]) + 1
        raise ValueError(f"closes: dates must increase; {days[i].date()} follows {days[i - 1].date()}")
    return days


def _universe_table(symbols: list[str], universe: pd.DataFrame | None) -> pd.DataFrame:
    """The universe.csv rows: as given (validated) or every symbol as `DEFAULT_ASSET_CLASS`."""
    if universe is None:
        return pd.DataFrame({"symbol": symbols, "asset_class": DEFAULT_ASSET_CLASS})
    raw = universe.reset_index() if "symbol" not in universe.columns else universe
    raw = raw.astype(object).where(raw.notna(), "").astype(str)
    validate_universe(raw, "universe")
    listed = list(raw["symbol"].str.strip())
    missing, extra = sorted(set(symbols) - set(listed)), sorted(set(listed) - set(symbols))
    if missing or extra:
        raise ValueError(f"universe: must list exactly the symbols of the closes; missing {missing}, "
                         f"without closes {extra}")
    columns = ["symbol", *(c for c in UNIVERSE_COLUMNS if c in raw.columns)]
    return raw[columns].apply(lambda col: col.str.strip()).set_index("symbol").loc[symbols].reset_index()
