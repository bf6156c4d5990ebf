"""Built-in reference data: well-known ETFs and indices (enrichment's third source)."""

from __future__ import annotations

# symbol -> (asset_class, sector, industry, description)
KNOWN_INSTRUMENTS: dict[str, tuple[str, str, str, str]] = {
    "AMEX:SPY": ("etf", "Broad Market", "US Large Cap Blend", "SPDR S&P 500 ETF Trust"),
    "NASDAQ:QQQ": ("etf", "Broad Market", "US Large Cap Growth", "Invesco QQQ Trust (Nasdaq-100)"),
    "AMEX:IWM": ("etf", "Broad Market", "US Small Cap Blend", "iShares Russell 2000 ETF"),
    "AMEX:DIA": ("etf", "Broad Market", "US Large Cap Value", "SPDR Dow Jones Industrial Average ETF"),
    "AMEX:EFA": ("etf", "Broad Market", "Developed ex-US Equity", "iShares MSCI EAFE ETF"),
    "AMEX:EEM": ("etf", "Broad Market", "Emerging Markets Equity", "iShares MSCI Emerging Markets ETF"),
    "AMEX:VNQ": ("etf", "Real Estate", "REITs", "Vanguard Real Estate ETF"),
    "AMEX:GLD": ("etf", "Commodities", "Gold", "SPDR Gold Shares"),
    "AMEX:SLV": ("etf", "Commodities", "Silver", "iShares Silver Trust"),
    "AMEX:USO": ("etf", "Commodities", "Crude Oil", "United States Oil Fund"),
    "AMEX:XLK": ("etf", "Technology", "Sector ETF", "Technology Select Sector SPDR Fund"),
    "AMEX:XLF": ("etf", "Financials", "Sector ETF", "Financial Select Sector SPDR Fund"),
    "AMEX:XLE": ("etf", "Energy", "Sector ETF", "Energy Select Sector SPDR Fund"),
    "AMEX:XLV": ("etf", "Health Care", "Sector ETF", "Health Care Select Sector SPDR Fund"),
    "AMEX:XLI": ("etf", "Industrials", "Sector ETF", "Industrial Select Sector SPDR Fund"),
    "AMEX:XLY": ("etf", "Consumer Discretionary", "Sector ETF", "Consumer Discretionary Select Sector SPDR Fund"),
    "AMEX:XLP": ("etf", "Consumer Staples", "Sector ETF", "Consumer Staples Select Sector SPDR Fund"),
    "AMEX:XLU": ("etf", "Utilities", "Sector ETF", "Utilities Select Sector SPDR Fund"),
    "AMEX:XLB": ("etf", "Materials", "Sector ETF", "Materials Select Sector SPDR Fund"),
    "AMEX:XLRE": ("etf", "Real Estate", "Sector ETF", "Real Estate Select Sector SPDR Fund"),
    "AMEX:XLC": ("etf", "Communication Services", "Sector ETF", "Communication Services Select Sector SPDR Fund"),
    "NASDAQ:TLT": ("bond_etf", "Fixed Income", "US Treasury 20+ Year", "iShares 20+ Year Treasury Bond ETF"),
    "NASDAQ:IEF": ("bond_etf", "Fixed Income", "US Treasury 7-10 Year", "iShares 7-10 Year Treasury Bond ETF"),
    "NASDAQ:SHY": ("bond_etf", "Fixed Income", "US Treasury 1-3 Year", "iShares 1-3 Year Treasury Bond ETF"),
    "AMEX:TLT": ("bond_etf", "Fixed Income", "US Treasury 20+ Year", "iShares 20+ Year Treasury Bond ETF"),
    "AMEX:IEF": ("bond_etf", "Fixed Income", "US Treasury 7-10 Year", "iShares 7-10 Year Treasury Bond ETF"),
    "AMEX:SHY": ("bond_etf", "Fixed Income", "US Treasury 1-3 Year", "iShares 1-3 Year Treasury Bond ETF"),
    "AMEX:HYG": ("bond_etf", "Fixed Income", "US High Yield Corporate", "iShares iBoxx High Yield Corporate Bond ETF"),
    "AMEX:LQD": ("bond_etf", "Fixed Income", "US Investment Grade Corporate", "iShares iBoxx Investment Grade Corporate Bond ETF"),
    "AMEX:AGG": ("bond_etf", "Fixed Income", "US Aggregate Bond", "iShares Core US Aggregate Bond ETF"),
    "NASDAQ:BND": ("bond_etf", "Fixed Income", "US Aggregate Bond", "Vanguard Total Bond Market ETF"),
    "AMEX:TIP": ("bond_etf", "Fixed Income", "US TIPS", "iShares TIPS Bond ETF"),
    "AMEX:EMB": ("bond_etf", "Fixed Income", "Emerging Markets Sovereign", "iShares J.P. Morgan USD Emerging Markets Bond ETF"),
    "AMEX:MUB": ("bond_etf", "Fixed Income", "US Municipal", "iShares National Muni Bond ETF"),
    "AMEX:BIL": ("bond_etf", "Fixed Income", "US Treasury Bills", "SPDR Bloomberg 1-3 Month T-Bill ETF"),
}

# asset class -> (sector, industry) used when nothing better is known
CLASS_FALLBACKS: dict[str, tuple[str, str]] = {
    "crypto": ("Digital Assets", "Cryptocurrency"),
    "forex": ("Currencies", "Spot FX"),
    "bond_etf": ("Fixed Income", "Bond ETF"),
    "etf": ("Multi-Asset", "ETF"),
    "futures": ("Derivatives", "Futures"),
    "equity": ("Unclassified", "Unclassified"),
}
