"""Market data sources behind one `MarketData` interface (see `base`).

`make_source(kind, settings)` builds one: "synthetic" (`synthetic.SyntheticMarket`, the embedded
default), "files" (`files.FilesSource`) or "tradingview" (`tradingview.TradingViewSource`). Each is
imported only when asked for, so importing this package stays cheap. Each kind's settings are a
typed model (`settings.SETTINGS_MODELS`); computed scans share `scanner_query`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from portfolio_assets.sources.base import (
    ASSET_CLASSES,
    BAR_COLUMNS,
    SCAN_COLUMNS,
    MarketData,
    SourceError,
)
from portfolio_assets.sources.settings import SOURCE_KINDS, SourceSettings, parse_source_settings

__all__ = ["ASSET_CLASSES", "BAR_COLUMNS", "SCAN_COLUMNS", "SOURCE_KINDS", "MarketData", "SourceError",
           "SourceSettings", "make_source"]


def make_source(kind: str, settings: SourceSettings | Mapping[str, Any] | None = None) -> MarketData:
    """The `MarketData` source of `kind` ("synthetic" | "files" | "tradingview") built from `settings`
    (that kind's model from `settings`, or a mapping validated into it). Unknown kinds raise ValueError."""
    settings = parse_source_settings(kind, settings)  # refuses an unknown kind
    if kind == "synthetic":
        from portfolio_assets.sources.synthetic import SyntheticMarket

        return SyntheticMarket(settings)
    if kind == "files":
        from portfolio_assets.sources.files import FilesSource

        return FilesSource(settings)
    from portfolio_assets.sources.tradingview import TradingViewSource

    return TradingViewSource(settings)
