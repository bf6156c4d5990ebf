"""Real data for the tests: skfolio's bundled daily closes exported through the files source.

`skfolio.datasets` ships three datasets inside its wheel (read from files, no network):
`load_sp500_dataset()` (20 S&P 500 stocks), `load_sp500_index()` (the S&P 500 index) and
`load_factors_dataset()` (five iShares MSCI USA factor ETFs, from 2014); adjusted closes,
1990-01-02 .. 2022-12-28. Their columns are bare tickers, so each gets an exchange prefix: the
stocks their current primary listing (AMD, PEP and WMT moved from NYSE to NASDAQ in 2015, 2017 and
2025), the index `SP:SPX` (the market baseline, asset class `etf`: the files source has no index
class), the ETFs `AMEX:` (their primary listing is Cboe BZX; any US exchange prefix gives the same
instrument identity here). Closes only: open = high = low = close and no volume (`files_export`).

`export_skfolio(dest)` writes the layout (the session fixture `realdata` in `conftest.py`);
`python -m portfolio_assets_tests.realdata DIR` does the same for a person (`docs/real-data.md`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from portfolio_assets.sources.files_export import export_closes

BASELINE = "SP:SPX"
# ticker -> (exchange, GICS sector, name)
STOCKS: dict[str, tuple[str, str, str]] = {
    "AAPL": ("NASDAQ", "Technology", "Apple Inc."),
    "AMD": ("NASDAQ", "Technology", "Advanced Micro Devices Inc."),
    "BAC": ("NYSE", "Financials", "Bank of America Corp."),
    "BBY": ("NYSE", "Consumer Discretionary", "Best Buy Co. Inc."),
    "CVX": ("NYSE", "Energy", "Chevron Corp."),
    "GE": ("NYSE", "Industrials", "General Electric Co."),
    "HD": ("NYSE", "Consumer Discretionary", "Home Depot Inc."),
    "JNJ": ("NYSE", "Health Care", "Johnson & Johnson"),
    "JPM": ("NYSE", "Financials", "JPMorgan Chase & Co."),
    "KO": ("NYSE", "Consumer Staples", "Coca-Cola Co."),
    "LLY": ("NYSE", "Health Care", "Eli Lilly and Co."),
    "MRK": ("NYSE", "Health Care", "Merck & Co. Inc."),
    "MSFT": ("NASDAQ", "Technology", "Microsoft Corp."),
    "PEP": ("NASDAQ", "Consumer Staples", "PepsiCo Inc."),
    "PFE": ("NYSE", "Health Care", "Pfizer Inc."),
    "PG": ("NYSE", "Consumer Staples", "Procter & Gamble Co."),
    "RRC": ("NYSE", "Energy", "Range Resources Corp."),
    "UNH": ("NYSE", "Health Care", "UnitedHealth Group Inc."),
    "WMT": ("NASDAQ", "Consumer Staples", "Walmart Inc."),
    "XOM": ("NYSE", "Energy", "Exxon Mobil Corp."),
}
FACTOR_ETFS: dict[str, str] = {
    "MTUM": "iShares MSCI USA Momentum Factor ETF",
    "QUAL": "iShares MSCI USA Quality Factor ETF",
    "SIZE": "iShares MSCI USA Size Factor ETF",
    "USMV": "iShares MSCI USA Min Vol Factor ETF",
    "VLUE": "iShares MSCI USA Value Factor ETF",
}
ETF_EXCHANGE = "AMEX"


def skfolio_closes() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(closes, universe): the three datasets on one date index (a missing close = no bar that day),
    columns `EXCHANGE:TICKER`; the universe with asset class, sector and description."""
    from skfolio.datasets import load_factors_dataset, load_sp500_dataset, load_sp500_index

    stocks, index, factors = load_sp500_dataset(), load_sp500_index(), load_factors_dataset()
    if set(stocks.columns) != set(STOCKS) or set(factors.columns) != set(FACTOR_ETFS) or list(index.columns) != ["SP500"]:
        raise ValueError(f"skfolio's datasets changed: {list(stocks.columns)}, {list(index.columns)}, "
                         f"{list(factors.columns)}")
    closes = pd.concat([
        stocks.rename(columns={t: f"{STOCKS[t][0]}:{t}" for t in stocks.columns}),
        index.rename(columns={"SP500": BASELINE}),
        factors.rename(columns={t: f"{ETF_EXCHANGE}:{t}" for t in factors.columns}),
    ], axis=1).sort_index()
    rows = [{"symbol": f"{exchange}:{t}", "asset_class": "equity", "sector": sector, "description": name,
             "currency": "USD"} for t, (exchange, sector, name) in STOCKS.items()]
    rows.append({"symbol": BASELINE, "asset_class": "etf", "description": "S&P 500 Index", "currency": "USD"})
    rows += [{"symbol": f"{ETF_EXCHANGE}:{t}", "asset_class": "etf", "description": name, "currency": "USD"}
             for t, name in FACTOR_ETFS.items()]
    return closes, pd.DataFrame(rows)


def export_skfolio(dest: Path) -> Path:
    """skfolio's closes in the files layout under `dest` (see the module docstring)."""
    closes, universe = skfolio_closes()
    return export_closes(closes, dest, universe)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m portfolio_assets_tests.realdata DIR")
    print(f"wrote {export_skfolio(Path(sys.argv[1]))}")
