"""The synthetic market's static description: calendars, sectors, currencies, factors and instruments.

Tables only (no randomness): which calendars exist, the 11 GICS sectors with their market betas and
factor tilts, the currencies with their factor loadings, the factor names, and the named ETFs, bond
ETFs, crypto coins and futures with their loadings, idiosyncratic vol, start price and dollar
volume. `universe` turns them into symbols; `factors` generates the factor paths.
"""

from __future__ import annotations

from dataclasses import dataclass

from portfolio_assets.sources.base import CALENDAR_24_5, CALENDAR_24_7

BASELINE = "AMEX:SPY"

CALENDARS = ("XNYS", CALENDAR_24_7, CALENDAR_24_5, "CMES")
CAL_XNYS, CAL_247, CAL_245, CAL_CMES = range(4)
# Latent volatility on a closed day relative to an open one (news still arrives on weekends).
CLOSED_DAY_ACTIVITY = {CAL_XNYS: 0.3, CAL_247: 1.0, CAL_245: 0.15, CAL_CMES: 0.3}

SECTORS: tuple[str, ...] = (
    "Technology", "Health Care", "Financials", "Consumer Discretionary", "Communication Services",
    "Industrials", "Consumer Staples", "Energy", "Utilities", "Real Estate", "Materials",
)
SECTOR_WEIGHT = (0.16, 0.13, 0.13, 0.11, 0.07, 0.12, 0.06, 0.05, 0.04, 0.05, 0.08)
_SECTOR_BETA = dict(zip(SECTORS, (1.2, 0.85, 1.1, 1.15, 1.05, 1.05, 0.6, 0.95, 0.5, 0.85, 1.0), strict=True))
_SECTOR_RATES = {"Utilities": -4.0, "Real Estate": -5.0, "Financials": 2.0, "Technology": -2.0}
_SECTOR_OIL = {"Energy": 0.45}
_SECTOR_GOLD = {"Materials": 0.15}
INDUSTRIES: dict[str, tuple[str, ...]] = {
    "Technology": ("Semiconductors", "Software", "IT Services", "Computer Hardware"),
    "Health Care": ("Pharmaceuticals", "Biotechnology", "Medical Devices", "Health Care Services"),
    "Financials": ("Banks", "Insurance", "Capital Markets", "Consumer Finance"),
    "Consumer Discretionary": ("Specialty Retail", "Automobiles", "Hotels & Leisure", "Apparel"),
    "Communication Services": ("Media", "Telecom Services", "Interactive Media"),
    "Industrials": ("Aerospace & Defense", "Machinery", "Transportation", "Building Products"),
    "Consumer Staples": ("Food Products", "Beverages", "Household Products"),
    "Energy": ("Oil & Gas Production", "Oilfield Services", "Integrated Oil"),
    "Utilities": ("Electric Utilities", "Gas Utilities", "Renewable Utilities"),
    "Real Estate": ("REITs", "Real Estate Services"),
    "Materials": ("Chemicals", "Metals & Mining", "Packaging"),
}
SECTOR_SUFFIX = {
    "Technology": "Technologies", "Health Care": "Therapeutics", "Financials": "Financial",
    "Consumer Discretionary": "Brands", "Communication Services": "Media", "Industrials": "Industries",
    "Consumer Staples": "Foods", "Energy": "Energy", "Utilities": "Power", "Real Estate": "Properties",
    "Materials": "Materials",
}


@dataclass(frozen=True)
class _Currency:
    code: str
    name: str
    usd_value: float  # USD per unit at the start of 2019
    dollar: float  # loading on the dollar factor (value falls when the dollar strengthens)
    own_vol: float  # daily vol of the currency's own factor
    market: float  # risk-on loading (equity market factor)
    oil: float
    carry: float  # annual drift of the currency's value


CURRENCIES: tuple[_Currency, ...] = (
    _Currency("USD", "U.S. Dollar", 1.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    _Currency("EUR", "Euro", 1.145, 1.0, 0.0030, 0.0, 0.0, 0.0),
    _Currency("JPY", "Japanese Yen", 1 / 108.7, 0.8, 0.0040, -0.15, 0.0, 0.0),
    _Currency("GBP", "British Pound", 1.275, 0.9, 0.0038, 0.05, 0.0, 0.0),
    _Currency("CHF", "Swiss Franc", 1 / 0.985, 0.9, 0.0032, -0.10, 0.0, 0.0),
    _Currency("AUD", "Australian Dollar", 0.703, 1.0, 0.0042, 0.25, 0.05, 0.0),
    _Currency("CAD", "Canadian Dollar", 1 / 1.362, 0.7, 0.0030, 0.10, 0.10, 0.0),
    _Currency("NZD", "New Zealand Dollar", 0.672, 1.0, 0.0045, 0.22, 0.0, 0.0),
    _Currency("SEK", "Swedish Krona", 1 / 8.95, 1.0, 0.0042, 0.10, 0.0, 0.0),
    _Currency("NOK", "Norwegian Krone", 1 / 8.65, 1.0, 0.0045, 0.10, 0.15, 0.0),
    _Currency("SGD", "Singapore Dollar", 1 / 1.362, 0.5, 0.0018, 0.05, 0.0, 0.0),
    _Currency("HKD", "Hong Kong Dollar", 1 / 7.83, 0.0, 0.0002, 0.0, 0.0, 0.0),
    _Currency("MXN", "Mexican Peso", 1 / 19.6, 0.8, 0.0070, 0.30, 0.05, 0.0),
    _Currency("ZAR", "South African Rand", 1 / 14.0, 0.8, 0.0085, 0.35, 0.0, -0.03),
    _Currency("PLN", "Polish Zloty", 1 / 3.76, 1.0, 0.0040, 0.10, 0.0, 0.0),
    _Currency("TRY", "Turkish Lira", 1 / 5.35, 0.5, 0.0080, 0.15, 0.0, -0.30),
    _Currency("CNH", "Chinese Yuan Offshore", 1 / 6.86, 0.3, 0.0022, 0.05, 0.0, 0.0),
)
CCY = {c.code: c for c in CURRENCIES}

FACTOR_NAMES: tuple[str, ...] = (
    "market", *(f"sector:{s}" for s in SECTORS), "rates", "credit", "crypto", "gold", "oil", "dollar",
    *(f"ccy:{c.code}" for c in CURRENCIES if c.code != "USD"),
)
FACTOR_INDEX = {name: k for k, name in enumerate(FACTOR_NAMES)}

# (symbol, description, sector for metadata or None, loadings, idio vol, start price, dollar volume)
_EquityEtf = tuple[str, str, str | None, dict[str, float], float, float, float]
_SECTOR_ETF = {"Technology": ("AMEX:XLK", 63.0), "Health Care": ("AMEX:XLV", 86.0),
               "Financials": ("AMEX:XLF", 24.0), "Consumer Discretionary": ("AMEX:XLY", 100.0),
               "Communication Services": ("AMEX:XLC", 44.0), "Industrials": ("AMEX:XLI", 65.0),
               "Consumer Staples": ("AMEX:XLP", 50.0), "Energy": ("AMEX:XLE", 58.0),
               "Utilities": ("AMEX:XLU", 53.0), "Real Estate": ("AMEX:XLRE", 31.0),
               "Materials": ("AMEX:XLB", 50.0)}


def sector_loadings(sector: str, market_scale: float = 1.0, sector_scale: float = 1.0) -> dict[str, float]:
    """Factor loadings of a typical member of `sector` (market, sector, rates, oil, gold)."""
    out = {"market": _SECTOR_BETA[sector] * market_scale, f"sector:{sector}": sector_scale}
    for table, factor in ((_SECTOR_RATES, "rates"), (_SECTOR_OIL, "oil"), (_SECTOR_GOLD, "gold")):
        if sector in table:
            out[factor] = table[sector]
    return out


def currency_value_loadings(code: str) -> dict[str, float]:
    """Loadings of the log USD value of one unit of `code` (zero for USD itself)."""
    c = CCY[code]
    if code == "USD":
        return {}
    out = {"dollar": -c.dollar, f"ccy:{code}": 1.0}
    if c.market:
        out["market"] = c.market
    if c.oil:
        out["oil"] = c.oil
    return out


EQUITY_ETFS: tuple[_EquityEtf, ...] = (
    (BASELINE, "SPDR S&P 500 ETF Trust", None, {"market": 1.0}, 0.0008, 250.0, 2.5e10),
    ("NASDAQ:QQQ", "Invesco QQQ Trust", None,
     {"market": 1.1, "sector:Technology": 0.55, "sector:Communication Services": 0.2}, 0.003, 155.0, 1.2e10),
    ("AMEX:IWM", "iShares Russell 2000 ETF", None, {"market": 1.15}, 0.005, 133.0, 4e9),
    ("AMEX:DIA", "SPDR Dow Jones Industrial Average ETF", None, {"market": 0.95}, 0.002, 233.0, 5e8),
    ("AMEX:VTI", "Vanguard Total Stock Market ETF", None, {"market": 1.02}, 0.001, 124.0, 6e8),
    *((sym, f"{sector} Select Sector SPDR Fund", sector, sector_loadings(sector), 0.002, p0, 9e8)
      for sector, (sym, p0) in _SECTOR_ETF.items()),
    ("AMEX:EFA", "iShares MSCI EAFE ETF", None, {"market": 0.8, "dollar": -0.6}, 0.004, 63.0, 1.5e9),
    ("AMEX:EEM", "iShares MSCI Emerging Markets ETF", None, {"market": 0.85, "dollar": -0.8}, 0.006, 38.0, 2e9),
    ("AMEX:GLD", "SPDR Gold Shares", None, {"gold": 1.0, "dollar": -0.3}, 0.001, 121.0, 1.2e9),
    ("AMEX:SLV", "iShares Silver Trust", None, {"gold": 1.4, "market": 0.2}, 0.010, 14.5, 4e8),
    ("AMEX:USO", "United States Oil Fund", None, {"oil": 1.0}, 0.004, 9.5, 5e8),
    ("AMEX:VNQ", "Vanguard Real Estate ETF", "Real Estate", sector_loadings("Real Estate", 1.0, 0.9),
     0.002, 73.0, 4e8),
    ("AMEX:XBI", "SPDR S&P Biotech ETF", "Health Care", sector_loadings("Health Care", 1.3, 1.3),
     0.008, 70.0, 6e8),
    ("NASDAQ:SMH", "VanEck Semiconductor ETF", "Technology", sector_loadings("Technology", 1.1, 1.3),
     0.005, 90.0, 5e8),
    ("AMEX:ARKK", "ARK Innovation ETF", None, {"market": 1.4, "sector:Technology": 0.9}, 0.015, 36.0, 4e8),
    ("AMEX:VEA", "Vanguard FTSE Developed Markets ETF", None, {"market": 0.8, "dollar": -0.6}, 0.004, 38.0, 4e8),
    ("AMEX:VWO", "Vanguard FTSE Emerging Markets ETF", None, {"market": 0.85, "dollar": -0.8}, 0.005, 38.0, 5e8),
    ("AMEX:IEMG", "iShares Core MSCI Emerging Markets ETF", None, {"market": 0.85, "dollar": -0.8},
     0.005, 47.0, 4e8),
    ("AMEX:KRE", "SPDR S&P Regional Banking ETF", "Financials", sector_loadings("Financials", 1.0, 1.3),
     0.007, 47.0, 6e8),
    ("AMEX:XOP", "SPDR S&P Oil & Gas Exploration & Production ETF", "Energy",
     sector_loadings("Energy", 1.05, 1.3), 0.008, 30.0, 5e8),
)
# (symbol, description, duration, spread duration, equity beta, idio vol, start price, dollar volume)
BOND_ETFS: tuple[tuple[str, str, float, float, float, float, float, float], ...] = (
    ("AMEX:TLT", "iShares 20+ Year Treasury Bond ETF", 17.5, 0.0, 0.0, 0.0015, 121.0, 1.5e9),
    ("NASDAQ:IEF", "iShares 7-10 Year Treasury Bond ETF", 7.6, 0.0, 0.0, 0.0008, 103.0, 8e8),
    ("AMEX:HYG", "iShares iBoxx High Yield Corporate Bond ETF", 3.8, 4.0, 0.3, 0.002, 83.0, 1.5e9),
    ("AMEX:LQD", "iShares iBoxx Investment Grade Corporate Bond ETF", 8.5, 8.0, 0.1, 0.0015, 113.0, 1.2e9),
    ("AMEX:AGG", "iShares Core US Aggregate Bond ETF", 6.0, 2.0, 0.02, 0.0006, 106.0, 7e8),
    ("NASDAQ:SHY", "iShares 1-3 Year Treasury Bond ETF", 1.9, 0.0, 0.0, 0.0002, 84.0, 4e8),
    ("NASDAQ:BND", "Vanguard Total Bond Market ETF", 6.2, 2.0, 0.02, 0.0006, 78.0, 3e8),
    ("AMEX:TIP", "iShares TIPS Bond ETF", 7.0, 0.0, 0.0, 0.002, 108.0, 2e8),
    ("AMEX:JNK", "SPDR Bloomberg High Yield Bond ETF", 3.6, 4.0, 0.3, 0.002, 104.0, 4e8),
    ("NASDAQ:EMB", "iShares J.P. Morgan USD Emerging Markets Bond ETF", 7.5, 6.0, 0.2, 0.003, 106.0, 3e8),
    ("AMEX:MUB", "iShares National Muni Bond ETF", 5.5, 1.0, 0.05, 0.0015, 108.0, 1e8),
    ("AMEX:BIL", "SPDR Bloomberg 1-3 Month T-Bill ETF", 0.1, 0.0, 0.0, 0.00005, 91.5, 3e8),
    ("NASDAQ:SHV", "iShares Short Treasury Bond ETF", 0.3, 0.0, 0.0, 0.0001, 110.0, 1.5e8),
    ("AMEX:GOVT", "iShares U.S. Treasury Bond ETF", 6.3, 0.0, 0.0, 0.0007, 25.0, 1e8),
    ("NASDAQ:VCIT", "Vanguard Intermediate-Term Corporate Bond ETF", 6.1, 6.0, 0.05, 0.001, 82.0, 2e8),
    ("NASDAQ:VGSH", "Vanguard Short-Term Treasury ETF", 1.9, 0.0, 0.0, 0.0002, 61.0, 1e8),
)
# (code, start price, listing date or None) in market-cap order; later coins are generated.
CRYPTO_COINS: tuple[tuple[str, float, str | None], ...] = (
    ("BTC", 3800.0, None), ("ETH", 150.0, None), ("BNB", 6.0, None), ("SOL", 1.5, "2020-08-11"),
    ("XRP", 0.36, None), ("ADA", 0.045, None), ("DOGE", 0.0024, None), ("AVAX", 4.0, "2020-09-22"),
    ("DOT", 3.0, "2020-08-18"), ("LINK", 0.45, None), ("TRX", 0.025, None), ("LTC", 31.0, None),
    ("MATIC", 0.004, "2019-04-26"), ("ATOM", 5.0, "2019-04-29"), ("UNI", 3.0, "2020-09-17"),
    ("XLM", 0.12, None), ("ETC", 5.0, None), ("FIL", 20.0, "2020-10-15"), ("NEAR", 1.0, "2020-10-14"),
    ("APT", 8.0, "2022-10-19"), ("ARB", 1.2, "2023-03-23"), ("OP", 1.0, "2022-06-01"),
    ("ICP", 60.0, "2021-05-10"), ("AAVE", 50.0, "2020-10-15"), ("ALGO", 1.0, "2019-06-22"),
    ("SAND", 0.05, "2020-08-14"), ("MANA", 0.05, None), ("AXS", 0.5, "2020-11-04"), ("EOS", 2.5, None),
    ("XTZ", 0.4, "2019-09-24"), ("THETA", 0.08, "2019-03-01"), ("EGLD", 10.0, "2020-09-04"),
    ("FTM", 0.02, "2019-06-11"), ("GRT", 0.3, "2020-12-17"), ("RUNE", 0.3, "2020-07-01"),
    ("INJ", 1.0, "2020-10-21"), ("SUI", 0.5, "2023-05-03"), ("SEI", 0.2, "2023-08-15"),
    ("TIA", 2.0, "2023-10-31"), ("PEPE", 1e-6, "2023-05-05"), ("SHIB", 1e-6, "2021-05-10"),
    ("BCH", 130.0, None), ("HBAR", 0.04, "2019-09-29"), ("VET", 0.004, None), ("QNT", 5.0, "2021-07-29"),
)
CRYPTO_VENUES = (("COINBASE", "USD"), ("KRAKEN", "USD"), ("BYBIT", "USDT"))
FOREX_VENUES = ("OANDA", "FOREXCOM")
# (symbol, description, loadings, idio vol, start price, dollar volume)
FUTURES: tuple[tuple[str, str, dict[str, float], float, float, float], ...] = (
    ("CME_MINI:ES1!", "E-mini S&P 500 Futures", {"market": 1.0}, 0.0008, 2500.0, 2e11),
    ("CME_MINI:NQ1!", "E-mini Nasdaq-100 Futures",
     {"market": 1.1, "sector:Technology": 0.55, "sector:Communication Services": 0.2}, 0.003, 6300.0, 1e11),
    ("CBOT:ZN1!", "10 Year T-Note Futures", {"rates": -6.5}, 0.0008, 121.0, 5e10),
    ("COMEX:GC1!", "Gold Futures", {"gold": 1.0, "dollar": -0.3}, 0.001, 1290.0, 4e10),
    ("NYMEX:CL1!", "Crude Oil Futures", {"oil": 1.0}, 0.004, 47.0, 5e10),
    ("CME_MINI:RTY1!", "E-mini Russell 2000 Futures", {"market": 1.15}, 0.005, 1350.0, 2e10),
    ("CBOT:ZB1!", "U.S. Treasury Bond Futures", {"rates": -15.0}, 0.0015, 144.0, 2e10),
    ("CME:6E1!", "Euro FX Futures", currency_value_loadings("EUR"), 0.0003, 1.15, 2e10),
    ("CME:6J1!", "Japanese Yen Futures", currency_value_loadings("JPY"), 0.0004, 0.0092, 1e10),
    ("COMEX:SI1!", "Silver Futures", {"gold": 1.4, "market": 0.2}, 0.010, 15.5, 1e10),
    ("NYMEX:NG1!", "Natural Gas Futures", {"oil": 0.4}, 0.030, 2.9, 1e10),
    ("CBOT_MINI:YM1!", "E-mini Dow Futures", {"market": 0.95}, 0.002, 23300.0, 1e10),
    ("CBOT:ZC1!", "Corn Futures", {}, 0.015, 375.0, 3e9),
    ("CBOT:ZS1!", "Soybean Futures", {}, 0.013, 900.0, 3e9),
)


BLOCK = 64  # days per cumulative-return checkpoint
CHUNK = 2048  # symbols per vectorized batch (bounds memory)
DRIFT_EPOCH = 182  # days between redraws of a symbol's drift
VOLUME_MA = 10
SCAN_CACHE_SIZE = 16
