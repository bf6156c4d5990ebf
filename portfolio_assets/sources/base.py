"""The one MarketData interface every source implements (synthetic, files, tradingview)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: importing the sources package (and the manifest) stays light
    import pandas as pd

# Scanner columns every source returns (TradingView scanner names). Missing values are NaN/None,
# never invented. `symbol` is EXCHANGE:TICKER.
SCAN_COLUMNS: tuple[str, ...] = (
    "symbol", "name", "description", "type", "exchange", "currency", "sector", "industry",
    "close", "volume", "Value.Traded", "ADX", "ATR", "Recommend.All",
    "Perf.W", "Perf.1M", "Perf.3M", "Perf.6M", "Perf.Y", "Volatility.D",
)
# Bars: one row per bar; `time` is the UTC timestamp of the bar's session/day open (tz-aware UTC).
BAR_COLUMNS: tuple[str, ...] = ("time", "open", "high", "low", "close", "volume")
# Asset classes and their calendars (exchange_calendars names, or the two 24/x pseudo-calendars).
ASSET_CLASSES = ("equity", "etf", "bond_etf", "crypto", "forex", "futures")
CALENDAR_24_7 = "24/7"
CALENDAR_24_5 = "24/5"


class SourceError(RuntimeError):
    """A source could not answer (network, protocol, missing file). The message says which and why."""


@runtime_checkable
class MarketData(Protocol):
    """Scans (scanner rows for a market as of date D) and bars (daily OHLCV up to D)."""

    name: str

    def scan(self, family: str, as_of: dt.date, preset: dict) -> pd.DataFrame:
        """Scanner rows for `family` ('equity', 'crypto', 'bond', 'forex', 'futures') as of the close
        of `as_of`, computed from data <= as_of only. Columns: SCAN_COLUMNS (+ source extras).
        `preset` is the manifest's scanner preset (filters, sort, limit, direction)."""
        ...

    def bars(self, symbol: str, start: dt.date, end: dt.date, *, attempt: int = 0) -> pd.DataFrame:
        """Daily bars for `symbol` with start <= day <= end (UTC days). Columns: BAR_COLUMNS.
        `attempt` counts repair fetches (0 = first fetch) so a source may heal transient faults."""
        ...

    def metadata(self, symbols: list[str]) -> pd.DataFrame:
        """Per symbol (index): asset_class, calendar, sector, industry, description, currency.
        Unknown values are NaN."""
        ...
