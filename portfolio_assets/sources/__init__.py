"""Market data sources behind one `MarketData` interface (see `base`).

`make_source(kind, settings)` builds one: "synthetic" (`synthetic.SyntheticMarket`, the embedded
default), "files" (`files.FilesSource`) or "tradingview" (`tradingview.TradingViewSource`). Each is
imported only when asked for, so importing this package stays cheap.
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

SOURCE_KINDS = ("synthetic", "files", "tradingview")

__all__ = ["ASSET_CLASSES", "BAR_COLUMNS", "SCAN_COLUMNS", "SOURCE_KINDS", "MarketData", "SourceError",
           "make_source"]


def make_source(kind: str, settings: Mapping[str, Any] | None = None) -> MarketData:
    """The `MarketData` source of `kind` ("synthetic" | "files" | "tradingview") built from `settings`
    (that source's settings object from the manifest). Unknown kinds raise ValueError."""
    settings = dict(settings or {})
    if kind == "synthetic":
        from portfolio_assets.sources.synthetic import SyntheticMarket

        return SyntheticMarket(settings)
    if kind == "files":
        from portfolio_assets.sources.files import FilesSource

        return FilesSource(settings)
    if kind == "tradingview":
        from portfolio_assets.sources.tradingview import TradingViewSource

        return TradingViewSource(settings)
    raise ValueError(f"unknown source kind {kind!r}; expected one of {', '.join(SOURCE_KINDS)}")
