"""The embedded synthetic market: a deterministic, point-in-time, multi-asset `MarketData` source.

What it models
--------------
- US equities (NYSE/NASDAQ, deterministic 3-4 letter tickers) in the 11 GICS sectors with a factor
  structure: r = beta_m x market + beta_s x sector + (rates, oil, gold tilts) + idiosyncratic.
- ETFs on XNYS: `AMEX:SPY` (the baseline, always present), broad and sector ETFs that track their
  factors, and bond ETFs (`AMEX:TLT`, `NASDAQ:IEF`, `NASDAQ:SHY`, `AMEX:AGG`, `AMEX:LQD`, `AMEX:HYG`, ...)
  driven by a rates factor (loading = -duration) and a credit-spread factor, with little equity beta.
- Crypto on a 7-day calendar (`BINANCE:BTCUSDT`, ...); the largest coins are also listed on other
  venues (`COINBASE:BTCUSD`, `KRAKEN:BTCUSD`, `BYBIT:BTCUSDT`) with the same latent price plus a
  tiny non-cumulative basis, so identity merging has real duplicates to merge.
- Forex on a 24/5 calendar (`FX:EURUSD`, duplicates such as `OANDA:EURUSD`): every pair is built
  from per-currency value factors, so crosses are triangularly consistent (EURJPY ~ EURUSD x USDJPY).
- Optional continuous futures (`CME_MINI:ES1!`, `COMEX:GC1!`, ...) on the CMES calendar.
- A hidden Markov regime (calm / normal / stressed, volatility x 0.6 / 1.0 / 2.0), Student-t
  (df 4, unit variance) innovations, scripted episodes (a 2020-03-like crash and rebound, a 2022
  bear market with rising rates, a 2025-04-like drawdown), late listings, delistings, and trending
  names: each symbol's drift is redrawn every 182 days, so scanners find long and short candidates.
- Volume: log dollar volume per symbol (a lognormal liquidity level) + an MA(10) of innovations
  (persistence) + a regime effect; shares = dollar volume / price.

Point in time and determinism
-----------------------------
The latent path is generated on CALENDAR days for every symbol; bars are sampled on the symbol's
own calendar (XNYS sessions for US stocks/ETFs from `exchange_calendars`, every day for crypto,
Monday-Friday for forex, CMES sessions for futures), stamped at UTC midnight. A closed day still
moves the latent price (scaled down), so a weekend move lands in Monday's bar.
Global paths (regime chain, factors) come from `numpy.random.default_rng([seed, stable_key(name)])`,
one stream per factor, so they never depend on the universe size. Per-symbol randomness is
counter-based: a value for (symbol, day) is a SplitMix64 hash of a per-symbol key (blake2b of
seed and symbol, never Python's `hash()`) and the day, mapped through a 65,536-point quantile table
(Student-t df 4 or normal). That makes any window of any symbol computable without generating its
past again: cumulative log returns are kept as checkpoints every 64 days, and every price is
`checkpoint[block] + cumsum(returns within the block)`, computed the same way by `scan` and `bars`.
Nothing for day D reads a day after D; `perturb_after` changes every return strictly after a date
and is what the point-in-time tests use.

Settings (all optional)
-----------------------
- `seed` (int, 7): the market's seed.
- `n_equities` (int, 240): number of US stocks.
- `n_etfs` (int, 40): ETFs including bond ETFs (at least 1: `AMEX:SPY`).
- `n_bond_etfs` (int, n_etfs // 4): how many of the ETFs are bond ETFs.
- `n_crypto` (int, 40): crypto listings; n_crypto // 5 of them are extra venues of the top coins.
- `n_forex` (int, 20): forex listings; n_forex // 5 of them are broker duplicates of top pairs
  (at most 136 distinct pairs).
- `n_futures` (int, 0): continuous futures (at most 14).
- `start` ("2019-01-02"), `end` ("2027-12-31"): the generated calendar-day range. Answers for D
  use data <= D only; scans after `end` are refused.
- `faults` (dict, `DEFAULT_FAULTS`; `{}` disables): see "Faults". The default plan shrinks to the
  eligible symbols of a small universe; an explicit plan that asks for too many is an error.
- `perturb_after` (date or None): if set, every return strictly after this day is changed.

Faults
------
`faults = {"seed": 11, "missing_bars": {...}, "stale": {...}, "bad_ticks": {...}}`. Each kind takes
`symbols` (an explicit list, any class) and/or `n` (default 1 without `symbols`, else 0): that many
symbols taken from the top of the liquidity ranking of equities/ETFs/bond ETFs listed for the whole
range (`AMEX:SPY` excluded), assigned to kinds in a seeded random order; and `heal_after` (default
1): the fault is present on fetch attempts `attempt < heal_after` (`None` = never heals, 0 = never
present). Kind parameters:
- `missing_bars`: `sessions` (3) consecutive bars withheld every `period` (250) bars of the
  symbol's calendar (a seeded phase), so every 500-session history shows at least one gap.
- `stale`: the last `bars` (3) bars at or before the requested `end` are withheld.
- `bad_ticks`: one bar every `period` (250) bars gets a bad close: `kind` "zero" (close = low = 0),
  "negative" (close = low = -close) or "spike" (close = high = 25 x close); a seeded choice if unset.
The resolved plan is `SyntheticMarket.fault_plan` (symbol -> parameters). Scans are not affected.

Scanner presets
---------------
`scan(family, as_of, preset)` computes every scanner field (see `indicators`) for the symbols listed
at `as_of`, then applies the preset with `apply_preset`: `direction` ("long" | "short", default
"long"), optional `timeframes` (multi-timeframe screens, used by forex), `filter`, `sort`, and
`range` ([offset, end]) or `limit`; `screens` (a list of such dicts over shared keys) runs several
screens and concatenates them. `apply_scanner_query` is the generic TradingView-style evaluator.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hashlib
import itertools
import math
import numbers
import statistics
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from portfolio_assets.sources.base import (
    BAR_COLUMNS,
    CALENDAR_24_5,
    CALENDAR_24_7,
    SCAN_COLUMNS,
    SourceError,
)
from portfolio_assets.sources.indicators import WINDOW, indicator_matrix
from portfolio_assets.symbols import validate_symbol

# --------------------------------------------------------------------------------------------------
# Market description
# --------------------------------------------------------------------------------------------------
BASELINE = "AMEX:SPY"
FAMILIES = ("equity", "crypto", "bond", "forex", "futures")
FAMILY_CLASSES: dict[str, tuple[str, ...]] = {
    "equity": ("equity", "etf"), "bond": ("bond_etf",), "crypto": ("crypto",),
    "forex": ("forex",), "futures": ("futures",),
}
SCAN_RESULT_COLUMNS: tuple[str, ...] = (*SCAN_COLUMNS, "change", "direction")
TYPE_BY_CLASS = {"equity": "stock", "etf": "fund", "bond_etf": "fund", "crypto": "crypto",
                 "forex": "forex", "futures": "futures"}

CALENDARS = ("XNYS", CALENDAR_24_7, CALENDAR_24_5, "CMES")
_CAL_XNYS, _CAL_247, _CAL_245, _CAL_CMES = range(4)
# Latent volatility on a closed day relative to an open one (news still arrives on weekends).
_CLOSED_DAY_ACTIVITY = {_CAL_XNYS: 0.3, _CAL_247: 1.0, _CAL_245: 0.15, _CAL_CMES: 0.3}

SECTORS: tuple[str, ...] = (
    "Technology", "Health Care", "Financials", "Consumer Discretionary", "Communication Services",
    "Industrials", "Consumer Staples", "Energy", "Utilities", "Real Estate", "Materials",
)
_SECTOR_WEIGHT = (0.16, 0.13, 0.13, 0.11, 0.07, 0.12, 0.06, 0.05, 0.04, 0.05, 0.08)
_SECTOR_BETA = dict(zip(SECTORS, (1.2, 0.85, 1.1, 1.15, 1.05, 1.05, 0.6, 0.95, 0.5, 0.85, 1.0), strict=True))
_SECTOR_RATES = {"Utilities": -4.0, "Real Estate": -5.0, "Financials": 2.0, "Technology": -2.0}
_SECTOR_OIL = {"Energy": 0.45}
_SECTOR_GOLD = {"Materials": 0.15}
_INDUSTRIES: dict[str, tuple[str, ...]] = {
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
_SECTOR_SUFFIX = {
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
_CCY = {c.code: c for c in CURRENCIES}

FACTOR_NAMES: tuple[str, ...] = (
    "market", *(f"sector:{s}" for s in SECTORS), "rates", "credit", "crypto", "gold", "oil", "dollar",
    *(f"ccy:{c.code}" for c in CURRENCIES if c.code != "USD"),
)
_FACTOR_INDEX = {name: k for k, name in enumerate(FACTOR_NAMES)}
# Daily vol in the normal regime, and the power of the regime multiplier each factor feels.
_FACTOR_VOL = {"market": 0.009, "rates": 0.0006, "credit": 0.0003, "crypto": 0.030, "gold": 0.009,
               "oil": 0.020, "dollar": 0.004, **{f"sector:{s}": 0.008 for s in SECTORS},
               **{f"ccy:{c.code}": c.own_vol for c in CURRENCIES if c.code != "USD"}}
_REGIME_POWER = {"rates": 0.5, "gold": 0.5, "dollar": 0.5,
                 **{f"ccy:{c.code}": 0.5 for c in CURRENCIES if c.code != "USD"}}
_TRENDING_FACTORS = ("dollar", *(f"ccy:{c.code}" for c in CURRENCIES if c.code != "USD"))
_FACTOR_TREND_EPOCH = 120  # days; currency factors get a new trend every epoch
_FACTOR_TREND_VOL = 0.05  # annual sd of that trend

_MARKET_PREMIUM = 0.08  # annual log drift of the market factor, earned on XNYS sessions
REGIMES = ("calm", "normal", "stressed")
_REGIME_VOL = np.array([0.6, 1.0, 2.0])
_REGIME_TRANSITIONS = np.array([[0.985, 0.015, 0.0], [0.010, 0.986, 0.004], [0.0, 0.040, 0.960]])
# Scripted episodes: total log move per factor, spread evenly over the XNYS sessions in the range.
EPISODES: tuple[tuple[str, str, dict[str, float]], ...] = (
    ("2020-02-20", "2020-03-23", {"market": -0.42, "rates": -0.012, "credit": 0.015, "crypto": -0.35,
                                  "oil": -0.60, "gold": -0.03}),
    ("2020-03-24", "2020-08-31", {"market": 0.38, "credit": -0.012, "crypto": 0.30, "oil": 0.40}),
    ("2022-01-03", "2022-10-12", {"market": -0.20, "rates": 0.020, "credit": 0.008, "crypto": -0.90}),
    ("2025-04-03", "2025-04-08", {"market": -0.19, "credit": 0.006, "crypto": -0.10, "oil": -0.15}),
    ("2025-04-09", "2025-04-09", {"market": 0.09}),
    ("2025-04-10", "2025-06-30", {"market": 0.10}),
)
REGIME_OVERRIDES: tuple[tuple[str, str, int], ...] = (
    ("2020-02-24", "2020-04-30", 2), ("2025-04-03", "2025-05-15", 2),
)

# (symbol, description, sector for metadata or None, loadings, idio vol, start price, dollar volume)
_EquityEtf = tuple[str, str, str | None, dict[str, float], float, float, float]
_SECTOR_ETF = {"Technology": ("AMEX:XLK", 63.0), "Health Care": ("AMEX:XLV", 86.0),
               "Financials": ("AMEX:XLF", 24.0), "Consumer Discretionary": ("AMEX:XLY", 100.0),
               "Communication Services": ("AMEX:XLC", 44.0), "Industrials": ("AMEX:XLI", 65.0),
               "Consumer Staples": ("AMEX:XLP", 50.0), "Energy": ("AMEX:XLE", 58.0),
               "Utilities": ("AMEX:XLU", 53.0), "Real Estate": ("AMEX:XLRE", 31.0),
               "Materials": ("AMEX:XLB", 50.0)}


def _sector_loadings(sector: str, market_scale: float = 1.0, sector_scale: float = 1.0) -> dict[str, float]:
    """Factor loadings of a typical member of `sector` (market, sector, rates, oil, gold)."""
    out = {"market": _SECTOR_BETA[sector] * market_scale, f"sector:{sector}": sector_scale}
    for table, factor in ((_SECTOR_RATES, "rates"), (_SECTOR_OIL, "oil"), (_SECTOR_GOLD, "gold")):
        if sector in table:
            out[factor] = table[sector]
    return out


def _currency_value_loadings(code: str) -> dict[str, float]:
    """Loadings of the log USD value of one unit of `code` (zero for USD itself)."""
    c = _CCY[code]
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
    *((sym, f"{sector} Select Sector SPDR Fund", sector, _sector_loadings(sector), 0.002, p0, 9e8)
      for sector, (sym, p0) in _SECTOR_ETF.items()),
    ("AMEX:EFA", "iShares MSCI EAFE ETF", None, {"market": 0.8, "dollar": -0.6}, 0.004, 63.0, 1.5e9),
    ("AMEX:EEM", "iShares MSCI Emerging Markets ETF", None, {"market": 0.85, "dollar": -0.8}, 0.006, 38.0, 2e9),
    ("AMEX:GLD", "SPDR Gold Shares", None, {"gold": 1.0, "dollar": -0.3}, 0.001, 121.0, 1.2e9),
    ("AMEX:SLV", "iShares Silver Trust", None, {"gold": 1.4, "market": 0.2}, 0.010, 14.5, 4e8),
    ("AMEX:USO", "United States Oil Fund", None, {"oil": 1.0}, 0.004, 9.5, 5e8),
    ("AMEX:VNQ", "Vanguard Real Estate ETF", "Real Estate", _sector_loadings("Real Estate", 1.0, 0.9),
     0.002, 73.0, 4e8),
    ("AMEX:XBI", "SPDR S&P Biotech ETF", "Health Care", _sector_loadings("Health Care", 1.3, 1.3),
     0.008, 70.0, 6e8),
    ("NASDAQ:SMH", "VanEck Semiconductor ETF", "Technology", _sector_loadings("Technology", 1.1, 1.3),
     0.005, 90.0, 5e8),
    ("AMEX:ARKK", "ARK Innovation ETF", None, {"market": 1.4, "sector:Technology": 0.9}, 0.015, 36.0, 4e8),
    ("AMEX:VEA", "Vanguard FTSE Developed Markets ETF", None, {"market": 0.8, "dollar": -0.6}, 0.004, 38.0, 4e8),
    ("AMEX:VWO", "Vanguard FTSE Emerging Markets ETF", None, {"market": 0.85, "dollar": -0.8}, 0.005, 38.0, 5e8),
    ("AMEX:IEMG", "iShares Core MSCI Emerging Markets ETF", None, {"market": 0.85, "dollar": -0.8},
     0.005, 47.0, 4e8),
    ("AMEX:KRE", "SPDR S&P Regional Banking ETF", "Financials", _sector_loadings("Financials", 1.0, 1.3),
     0.007, 47.0, 6e8),
    ("AMEX:XOP", "SPDR S&P Oil & Gas Exploration & Production ETF", "Energy",
     _sector_loadings("Energy", 1.05, 1.3), 0.008, 30.0, 5e8),
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
_CRYPTO_VENUES = (("COINBASE", "USD"), ("KRAKEN", "USD"), ("BYBIT", "USDT"))
_FOREX_VENUES = ("OANDA", "FOREXCOM")
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
    ("CME:6E1!", "Euro FX Futures", _currency_value_loadings("EUR"), 0.0003, 1.15, 2e10),
    ("CME:6J1!", "Japanese Yen Futures", _currency_value_loadings("JPY"), 0.0004, 0.0092, 1e10),
    ("COMEX:SI1!", "Silver Futures", {"gold": 1.4, "market": 0.2}, 0.010, 15.5, 1e10),
    ("NYMEX:NG1!", "Natural Gas Futures", {"oil": 0.4}, 0.030, 2.9, 1e10),
    ("CBOT_MINI:YM1!", "E-mini Dow Futures", {"market": 0.95}, 0.002, 23300.0, 1e10),
    ("CBOT:ZC1!", "Corn Futures", {}, 0.015, 375.0, 3e9),
    ("CBOT:ZS1!", "Soybean Futures", {}, 0.013, 900.0, 3e9),
)

DEFAULT_FAULTS: dict[str, Any] = {
    "seed": 11,
    "missing_bars": {"n": 2, "sessions": 3, "heal_after": 1},
    "stale": {"n": 1, "bars": 3, "heal_after": 1},
    "bad_ticks": {"n": 1, "heal_after": 1},
}
DEFAULT_SETTINGS: dict[str, Any] = {
    "seed": 7, "n_equities": 240, "n_etfs": 40, "n_bond_etfs": None, "n_crypto": 40, "n_forex": 20,
    "n_futures": 0, "start": "2019-01-02", "end": "2027-12-31", "faults": DEFAULT_FAULTS,
    "perturb_after": None,
}

_BLOCK = 64  # days per cumulative-return checkpoint
_CHUNK = 2048  # symbols per vectorized batch (bounds memory)
_DRIFT_EPOCH = 182  # days between redraws of a symbol's drift
_VOLUME_MA = 10
_SCAN_CACHE_SIZE = 16

# --------------------------------------------------------------------------------------------------
# Counter-based deterministic noise
# --------------------------------------------------------------------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SHIFTS = tuple(np.uint64(s) for s in (30, 27, 31, 16, 32, 48))
_COUNTER_OFFSET = 1 << 20  # keeps counters positive (volume noise reaches before day 0)
_TABLE_BITS = 16
_LANE_MASK = np.uint64((1 << _TABLE_BITS) - 1)
# Streams: separate keys per purpose so that noises never share bits.
_S_IDIO, _S_DRIFT, _S_BAR, _S_VOLUME, _S_BASIS, _S_PERTURB, _S_STATIC = range(1, 8)


def stable_key(*parts: object) -> int:
    """A 64-bit key from `parts` via blake2b (stable across processes, unlike `hash()`)."""
    text = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer, in place on a uint64 array (wrap-around arithmetic)."""
    x ^= x >> _SHIFTS[0]
    x *= _MIX1
    x ^= x >> _SHIFTS[1]
    x *= _MIX2
    x ^= x >> _SHIFTS[2]
    return x


def _stream_keys(keys: np.ndarray, stream: int) -> np.ndarray:
    """Per-symbol keys for one noise stream."""
    return _mix64(keys ^ np.uint64(stable_key("stream", stream)))


def _hash_bits(keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """(len(counters), len(keys)) uint64 hashes of every (counter, key) pair."""
    c = (np.asarray(counters, dtype=np.int64) + _COUNTER_OFFSET).astype(np.uint64)
    c *= _GOLDEN
    _mix64(c)
    return _mix64(c[:, None] ^ keys[None, :])


def _lane(bits: np.ndarray, lane: int) -> np.ndarray:
    """16-bit table index number `lane` (0-3) of each hash."""
    shifted = bits if lane == 0 else bits >> _SHIFTS[2 + lane]
    return (shifted & _LANE_MASK).astype(np.intp)


def _quantile_table(ppf: Any) -> np.ndarray:
    """A 2**16-point quantile table of a symmetric law, rescaled to exactly unit variance."""
    p = (np.arange(1 << _TABLE_BITS, dtype=np.float64) + 0.5) / (1 << _TABLE_BITS)
    q = ppf(p)
    return q / np.sqrt(np.mean(q * q))


def _student_t4_ppf(p: np.ndarray) -> np.ndarray:
    """Closed-form quantile of Student's t with 4 degrees of freedom (Shaw 2006)."""
    alpha = 4.0 * p * (1.0 - p)
    root = np.sqrt(alpha)
    t = 2.0 * np.sqrt(np.cos(np.arccos(root) / 3.0) / root - 1.0)
    return np.where(p < 0.5, -t, t)


_T4_TABLE = _quantile_table(_student_t4_ppf)
_NORMAL_TABLE = _quantile_table(np.vectorize(statistics.NormalDist().inv_cdf, otypes=[np.float64]))


def _normals_from_uniforms(u: np.ndarray) -> np.ndarray:
    """Standard normals (quantized to the 2**16-point table) for uniforms in (0, 1)."""
    return _NORMAL_TABLE[np.minimum((u * (1 << _TABLE_BITS)).astype(np.intp), (1 << _TABLE_BITS) - 1)]


def _uniforms(keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """(len(counters), len(keys)) uniforms in (0, 1) from 53 hash bits."""
    bits = _hash_bits(keys, counters) >> np.uint64(11)
    return (bits.astype(np.float64) + 0.5) * 2.0**-53


def _daily_noise(keys: np.ndarray, first: int, last: int, table: np.ndarray) -> np.ndarray:
    """(last - first + 1, len(keys)) draws from `table` for counters first..last.

    One 64-bit hash serves four consecutive counters (its four 16-bit lanes), so the draw for
    counter t is always lane t mod 4 of hash(key, t // 4), whatever range is requested.
    """
    lo, hi = first // 4, last // 4
    bits = _hash_bits(keys, np.arange(lo, hi + 1))
    lanes = np.empty((hi - lo + 1, 4, len(keys)), dtype=np.intp)
    for lane in range(4):
        lanes[:, lane] = _lane(bits, lane)
    rows = lanes.reshape(-1, len(keys))[first - 4 * lo:last - 4 * lo + 1]
    return table[rows]


# --------------------------------------------------------------------------------------------------
# Scanner query semantics (TradingView-style filter / sort / range)
# --------------------------------------------------------------------------------------------------
_COMPARISONS = {"greater": np.greater, "less": np.less, "egreater": np.greater_equal, "eless": np.less_equal}
OPERATIONS = (*_COMPARISONS, "in_range", "not_in_range", "equal", "nequal", "nempty", "empty")
TIMEFRAMES = ("1M", "1W", "1D")


def _is_number(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _condition_mask(df: pd.DataFrame, cond: Mapping[str, Any], position: int) -> np.ndarray:
    """Boolean mask of one filter condition; rows with a missing left value never match (except `empty`)."""
    if not isinstance(cond, Mapping):
        raise ValueError(f"filter[{position}] must be an object with left/operation/right, got {cond!r}")
    left, op = cond.get("left"), cond.get("operation")
    if left not in df.columns:
        raise ValueError(f"filter[{position}]: unknown column {left!r} (left)")
    if op not in OPERATIONS:
        raise ValueError(f"filter[{position}]: unknown operation {op!r}; expected one of {', '.join(OPERATIONS)}")
    col = df[left]
    present = col.notna().to_numpy() & (col.astype(str) != "").to_numpy()
    if op == "nempty":
        return present
    if op == "empty":
        return ~present
    if "right" not in cond:
        raise ValueError(f"filter[{position}]: operation {op!r} needs a 'right' value")
    right = cond["right"]
    if op in _COMPARISONS:
        if isinstance(right, str) and right in df.columns:
            other = pd.to_numeric(df[right], errors="coerce").to_numpy(dtype=np.float64)
        elif _is_number(right):
            other = float(right)
        else:
            raise ValueError(f"filter[{position}]: {op!r} needs a number or a column name, got {right!r}")
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return _COMPARISONS[op](values, other) & ~np.isnan(values) & ~np.isnan(other)
    if op in ("in_range", "not_in_range"):
        if not isinstance(right, Sequence) or isinstance(right, str):
            raise ValueError(f"filter[{position}]: {op!r} needs a list, got {right!r}")
        if len(right) == 2 and all(_is_number(v) for v in right):
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
            lo, hi = float(right[0]), float(right[1])
            with np.errstate(invalid="ignore"):
                inside = (values >= lo) & (values <= hi)
        else:
            inside = col.isin(list(right)).to_numpy()
        return present & (inside if op == "in_range" else ~inside)
    equal = (col == right).to_numpy(dtype=bool)
    return present & (equal if op == "equal" else ~equal)


def apply_scanner_query(
    df: pd.DataFrame,
    filter: Sequence[Mapping[str, Any]] | None = None,  # TradingView's field name
    sort: Mapping[str, Any] | None = None,
    range: Sequence[int] | None = None,  # TradingView's field name
) -> pd.DataFrame:
    """Apply a TradingView scanner query to a frame of scanner rows.

    - `filter`: list of `{left, operation, right}`, all must hold (AND). Operations: `greater`,
      `less`, `egreater` (>=), `eless` (<=) against a number or another column's name; `in_range`
      / `not_in_range` with `[lo, hi]` (inclusive numbers) or a list of allowed values; `equal`,
      `nequal`; `nempty` / `empty` (no `right`). A missing (NaN/None/"") left value fails every
      operation except `empty`.
    - `sort`: `{sortBy, sortOrder: "asc" | "desc" (default), nullsFirst: false}`; stable, so ties
      keep the input order; missing values last unless `nullsFirst`.
    - `range`: `[offset, end]` -> rows offset..end-1 after filtering and sorting.
    Unknown columns or operations raise ValueError naming them. Returns a new frame (fresh index).
    """
    mask = np.ones(len(df), dtype=bool)
    if filter is not None:
        if not isinstance(filter, Sequence) or isinstance(filter, str | bytes):
            raise ValueError(f"filter must be a list of conditions, got {type(filter).__name__}")
        for position, cond in enumerate(filter):
            mask &= _condition_mask(df, cond, position)
    out = df.loc[mask]
    if sort:
        by = sort.get("sortBy")
        if by not in out.columns:
            raise ValueError(f"sort: unknown column {by!r} (sortBy)")
        order = sort.get("sortOrder", "desc")
        if order not in ("asc", "desc"):
            raise ValueError(f"sort: sortOrder must be 'asc' or 'desc', got {order!r}")
        out = out.sort_values(by, ascending=order == "asc", kind="mergesort",
                              na_position="first" if sort.get("nullsFirst") else "last")
    if range is not None:
        if (isinstance(range, str) or not isinstance(range, Sequence) or len(range) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in range)
                or range[0] > range[1]):
            raise ValueError(f"range must be [offset, end] with 0 <= offset <= end, got {range!r}")
        out = out.iloc[range[0]:range[1]]
    return out.reset_index(drop=True)


def timeframe_mask(df: pd.DataFrame, timeframe: str, direction: str) -> np.ndarray:
    """Rows whose trend on `timeframe` agrees with `direction` (the multi-timeframe forex screen).

    "1M" (monthly): Perf.1M and Perf.3M both > 0 for long (both < 0 for short); "1W" (weekly):
    Perf.W > 0 (< 0); "1D" (daily): change > 0 (< 0). Missing values never agree.
    """
    columns = {"1M": ("Perf.1M", "Perf.3M"), "1W": ("Perf.W",), "1D": ("change",)}
    if timeframe not in columns:
        raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}")
    sign = 1.0 if direction == "long" else -1.0
    mask = np.ones(len(df), dtype=bool)
    for name in columns[timeframe]:
        values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            mask &= sign * values > 0
    return mask


def apply_preset(frame: pd.DataFrame, preset: Mapping[str, Any] | None) -> pd.DataFrame:
    """Run a scanner preset over unfiltered scanner rows and add the `direction` column.

    A preset is one screen, or `{"screens": [screen, ...], **shared}` where each screen's keys
    override the shared ones. A screen: `direction` ("long" | "short", default "long");
    `timeframes` (list of "1M" / "1W" / "1D", applied in order with `timeframe_mask`, or of vendor-style
    screens `{"name", "filter"}` applied in order); `symbols` (restrict to these); then `filter`,
    `sort` and `range` (or `limit` = `[0, limit]`) via `apply_scanner_query`. Other keys are ignored.
    If `frame` already has a `direction` column (e.g. fixed per symbol by a universe file), rows
    whose direction is set and differs from the screen's are excluded. Screen results are
    concatenated; a symbol kept by several screens keeps its first row.
    """
    if preset is not None and not isinstance(preset, Mapping):
        raise ValueError(f"preset must be an object, got {type(preset).__name__}")
    preset = dict(preset or {})
    screens = preset.pop("screens", None)
    if screens is None:
        screens = [{}]
    if not isinstance(screens, Sequence) or isinstance(screens, str) or not screens:
        raise ValueError("preset 'screens' must be a non-empty list of screen objects")
    parts = []
    for position, extra in enumerate(screens):
        if not isinstance(extra, Mapping):
            raise ValueError(f"preset screens[{position}] must be an object, got {extra!r}")
        screen = {**preset, **extra}
        direction = screen.get("direction", "long")
        if direction not in ("long", "short"):
            raise ValueError(f"preset direction must be 'long' or 'short', got {direction!r}")
        df = frame
        if "direction" in df.columns:
            fixed = df["direction"]
            df = df.loc[(fixed.isna() | (fixed == direction)).to_numpy()]
        df = df.assign(direction=direction)
        timeframes = screen.get("timeframes") or []
        if isinstance(timeframes, str):
            raise ValueError(f"preset timeframes must be a list, got {timeframes!r}")
        for timeframe in timeframes:
            if isinstance(timeframe, Mapping):  # a vendor-style screen {"name", "filter"} (the manifest's form)
                df = apply_scanner_query(df, timeframe.get("filter"), None, None)
            else:
                df = df.loc[timeframe_mask(df, timeframe, direction)]
        symbols = screen.get("symbols")
        if symbols is not None:  # restrict the screen to named symbols (e.g. the baseline's own row)
            df = df.loc[df["symbol"].isin(list(symbols)).to_numpy()]
        window = screen.get("range")
        if window is None and screen.get("limit") is not None:
            limit = screen["limit"]
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
                raise ValueError(f"preset limit must be a non-negative integer, got {limit!r}")
            window = [0, limit]
        parts.append(apply_scanner_query(df, screen.get("filter"), screen.get("sort"), window))
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    if "symbol" in out.columns:
        out = out.drop_duplicates("symbol", keep="first").reset_index(drop=True)
    return out


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------
def _to_date(value: object, what: str) -> dt.date:
    """A date from a date, datetime, Timestamp or ISO string; ValueError naming `what` otherwise."""
    if isinstance(value, dt.datetime | pd.Timestamp):
        ts = pd.Timestamp(value)
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC")
        return ts.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise ValueError(f"{what} must be a date or an ISO date string, got {value!r}")


def _count(settings: Mapping[str, Any], key: str, default: int, minimum: int = 0) -> int:
    value = settings.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"synthetic setting {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class SyntheticConfig:
    """Resolved synthetic-market settings (see the module docstring for meaning and defaults)."""

    seed: int
    n_equities: int
    n_etfs: int
    n_bond_etfs: int
    n_crypto: int
    n_forex: int
    n_futures: int
    start: dt.date
    end: dt.date
    faults: dict[str, Any]
    faults_given: bool  # False when `faults` was left at DEFAULT_FAULTS
    perturb_after: dt.date | None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> SyntheticConfig:
        """Validate `settings` (unknown keys are an error) and fill defaults."""
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
        if unknown:
            raise ValueError(f"unknown synthetic settings {unknown}; known: {sorted(DEFAULT_SETTINGS)}")
        seed = settings.get("seed", 7)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"synthetic setting 'seed' must be a non-negative integer, got {seed!r}")
        n_etfs = _count(settings, "n_etfs", 40, minimum=1)
        n_bond = settings.get("n_bond_etfs")
        n_bond = n_etfs // 4 if n_bond is None else _count(settings, "n_bond_etfs", 0)
        if n_bond > n_etfs - 1:
            raise ValueError(f"n_bond_etfs ({n_bond}) must leave room for AMEX:SPY within n_etfs ({n_etfs})")
        n_forex = _count(settings, "n_forex", 20)
        max_pairs = len(CURRENCIES) * (len(CURRENCIES) - 1) // 2
        if n_forex - n_forex // 5 > max_pairs:
            raise ValueError(f"n_forex={n_forex} needs more than the {max_pairs} distinct pairs available")
        n_futures = _count(settings, "n_futures", 0)
        if n_futures > len(FUTURES):
            raise ValueError(f"n_futures must be <= {len(FUTURES)}, got {n_futures}")
        start = _to_date(settings.get("start", DEFAULT_SETTINGS["start"]), "synthetic setting 'start'")
        end = _to_date(settings.get("end", DEFAULT_SETTINGS["end"]), "synthetic setting 'end'")
        if end <= start:
            raise ValueError(f"synthetic setting 'end' ({end}) must be after 'start' ({start})")
        faults = settings.get("faults", DEFAULT_FAULTS)
        if not isinstance(faults, Mapping):
            raise ValueError(f"synthetic setting 'faults' must be an object, got {faults!r}")
        perturb = settings.get("perturb_after")
        return cls(
            seed=seed, n_equities=_count(settings, "n_equities", 240), n_etfs=n_etfs, n_bond_etfs=n_bond,
            n_crypto=_count(settings, "n_crypto", 40), n_forex=n_forex, n_futures=n_futures,
            start=start, end=end, faults=copy.deepcopy(dict(faults)), faults_given="faults" in settings,
            perturb_after=None if perturb is None else _to_date(perturb, "synthetic setting 'perturb_after'"),
        )


# --------------------------------------------------------------------------------------------------
# Universe construction
# --------------------------------------------------------------------------------------------------
_SYLLABLES = ("ar", "bel", "cor", "dex", "el", "fin", "gar", "hal", "ion", "jen", "kor", "lum", "mar",
              "nex", "or", "pra", "quin", "ros", "sol", "tor", "ul", "ven", "wex", "xan", "yor", "zen")
_COMPANY_SUFFIX = ("Inc.", "Corp.", "Holdings Inc.", "Group", "Co.")


def _generated_tickers(tag: str, n: int, used: set[str], lengths: tuple[int, int] = (3, 4)) -> list[str]:
    """`n` deterministic upper-case tickers (depend on `tag` and the position only), avoiding `used`."""
    out: list[str] = []
    for i in itertools.count():
        if len(out) == n:
            break
        for attempt in itertools.count():
            digest = hashlib.blake2b(f"{tag}|{i}|{attempt}".encode(), digest_size=8).digest()
            length = lengths[0] if digest[0] < 103 else lengths[1]
            ticker = "".join(chr(65 + b % 26) for b in digest[1:1 + length])
            if ticker not in used:
                used.add(ticker)
                out.append(ticker)
                break
    return out


def _company_name(ticker: str, sector: str) -> str:
    digest = hashlib.blake2b(f"name|{ticker}".encode(), digest_size=4).digest()
    stem = (_SYLLABLES[digest[0] % 26] + _SYLLABLES[digest[1] % 26]).capitalize()
    return f"{stem} {_SECTOR_SUFFIX[sector]} {_COMPANY_SUFFIX[digest[2] % len(_COMPANY_SUFFIX)]}"


class _Group:
    """Column lists for one block of symbols while the universe is assembled."""

    STR_FIELDS = ("symbol", "exchange", "ticker", "asset_class", "sector", "industry", "description",
                  "currency", "identity")
    NUM_FIELDS = ("idio_vol", "drift_base", "drift_spread", "log_p0", "log_dv", "basis_vol")

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {f: [] for f in (*self.STR_FIELDS, *self.NUM_FIELDS)}
        self.cols.update(cal=[], loadings=[], listed=[], delisted=[])

    def add(self, **row: Any) -> None:
        for key, values in self.cols.items():
            values.append(row.get(key, np.nan))


def _static_uniforms(keys: np.ndarray, n_params: int) -> np.ndarray:
    """(n_params, n) uniforms per symbol key, fixed for the symbol whatever else is in the universe."""
    return _uniforms(_stream_keys(keys, _S_STATIC), np.arange(n_params))


def _keys(seed: int, names: Sequence[str]) -> np.ndarray:
    return np.array([stable_key(seed, name) for name in names], dtype=np.uint64)


@dataclass
class _Universe:
    """Static description of every symbol: strings, factor loadings and path parameters."""

    frame: pd.DataFrame  # public view, index = symbol
    cal: np.ndarray  # calendar code per symbol
    loadings: np.ndarray  # (N, K) dense loadings
    idio_vol: np.ndarray
    drift_base: np.ndarray  # annual
    drift_spread: np.ndarray  # annual sd of the per-epoch drift
    drift_phase: np.ndarray  # days
    log_p0: np.ndarray
    log_dv: np.ndarray  # log typical dollar volume
    basis_vol: np.ndarray
    list_day: np.ndarray  # first bar day (calendar day index)
    delist_day: np.ndarray  # last bar day (calendar day index)
    path_key: np.ndarray  # shared by venues of one instrument
    venue_key: np.ndarray  # per listing


def _equity_group(cfg: SyntheticConfig, n_days: int, reserved: set[str], group: _Group) -> None:
    n = cfg.n_equities
    if n == 0:
        return
    tickers = _generated_tickers("equity", n, reserved)
    keys = _keys(cfg.seed, [f"equity:{t}" for t in tickers])
    u = _static_uniforms(keys, 16)
    z = _normals_from_uniforms(u)
    sector_idx = np.minimum(np.searchsorted(np.cumsum(_SECTOR_WEIGHT), u[0] * sum(_SECTOR_WEIGHT)), 10)
    late = u[8] < 0.15
    list_day = np.where(late, (30 + u[9] * (0.85 * n_days - 30)).astype(int), 0)
    delist_start = list_day + 250
    delisted = (u[10] < 0.07) & (delist_start < n_days - 1)
    delist_day = np.where(delisted, delist_start + (u[11] * (n_days - 1 - delist_start)).astype(int), -1)
    for i, ticker in enumerate(tickers):
        sector = SECTORS[sector_idx[i]]
        industries = _INDUSTRIES[sector]
        loadings = _sector_loadings(sector, 0.7 + 0.6 * u[2, i], 0.5 + 1.0 * u[3, i])
        if "rates" in loadings:
            loadings["rates"] *= 0.5 + u[14, i]
        exchange = "NYSE" if u[12, i] < 0.45 else "NASDAQ"
        group.add(
            symbol=f"{exchange}:{ticker}", exchange=exchange, ticker=ticker, asset_class="equity",
            sector=sector, industry=industries[int(u[1, i] * len(industries))],
            description=_company_name(ticker, sector), currency="USD", identity=f"{exchange}:{ticker}",
            cal=_CAL_XNYS, loadings=loadings,
            idio_vol=float(np.clip(0.014 * np.exp(0.45 * z[4, i]), 0.006, 0.05)),
            drift_base=0.06 * z[5, i], drift_spread=0.08,
            log_p0=math.log(40.0) + 0.9 * z[6, i], log_dv=math.log(2e7) + 1.6 * z[7, i], basis_vol=0.0,
            listed=int(list_day[i]), delisted=int(delist_day[i]),
        )


def _etf_group(cfg: SyntheticConfig, reserved: set[str], group: _Group) -> None:
    n_equity_etfs = cfg.n_etfs - cfg.n_bond_etfs
    named = list(EQUITY_ETFS[:n_equity_etfs])
    extra = _generated_tickers("etf", max(0, n_equity_etfs - len(named)), reserved)
    u_extra = _static_uniforms(_keys(cfg.seed, [f"etf:{t}" for t in extra]), 4) if extra else None
    for i, ticker in enumerate(extra):
        sector = SECTORS[int(u_extra[0, i] * len(SECTORS))]
        named.append((f"AMEX:{ticker}", f"Synthetic {sector} Equity Fund", None,
                      _sector_loadings(sector, 0.9 + 0.2 * u_extra[1, i], 0.5 + 0.5 * u_extra[2, i]),
                      0.003, 20.0 + 80.0 * u_extra[3, i], 1e8))
    for symbol, description, sector, loadings, idio, p0, dv in named:
        exchange, ticker = symbol.split(":")
        group.add(symbol=symbol, exchange=exchange, ticker=ticker, asset_class="etf", sector=sector,
                  industry=np.nan, description=description, currency="USD", identity=symbol,
                  cal=_CAL_XNYS, loadings=dict(loadings), idio_vol=idio, drift_base=0.0,
                  drift_spread=0.03, log_p0=math.log(p0), log_dv=math.log(dv), basis_vol=0.0,
                  listed=0, delisted=-1)
    bonds = list(BOND_ETFS[:cfg.n_bond_etfs])
    extra = _generated_tickers("bond", max(0, cfg.n_bond_etfs - len(bonds)), reserved)
    u_extra = _static_uniforms(_keys(cfg.seed, [f"bond:{t}" for t in extra]), 3) if extra else None
    for i, ticker in enumerate(extra):
        duration = 1.0 + 19.0 * u_extra[0, i]
        spread = 8.0 * u_extra[1, i] if u_extra[2, i] < 0.5 else 0.0
        bonds.append((f"NASDAQ:{ticker}", f"Synthetic {duration:.0f}-Year Bond Fund", duration, spread,
                      0.03 * spread, 0.001, 50.0, 5e7))
    for symbol, description, duration, spread, beta, idio, p0, dv in bonds:
        exchange, ticker = symbol.split(":")
        loadings = {"rates": -duration}
        if spread:
            loadings["credit"] = -spread
        if beta:
            loadings["market"] = beta
        group.add(symbol=symbol, exchange=exchange, ticker=ticker, asset_class="bond_etf", sector=np.nan,
                  industry=np.nan, description=description, currency="USD", identity=symbol,
                  cal=_CAL_XNYS, loadings=loadings, idio_vol=idio,
                  drift_base=0.02 + (0.015 if spread else 0.0), drift_spread=0.01,
                  log_p0=math.log(p0), log_dv=math.log(dv), basis_vol=0.0, listed=0, delisted=-1)


def _venue_duplicates(n_primary: int, venues: Sequence[Any], n_dup: int) -> list[tuple[int, Any]]:
    """(primary position, venue) pairs: the top primaries on each venue in turn."""
    pairs = [(rank, venue) for rank in np.arange(n_primary) for venue in venues]
    return [(int(rank), venue) for rank, venue in pairs[:n_dup]]


def _crypto_group(cfg: SyntheticConfig, day_of: Any, n_days: int, reserved: set[str], group: _Group) -> None:
    if cfg.n_crypto == 0:
        return
    n_dup = cfg.n_crypto // 5
    n_coins = cfg.n_crypto - n_dup
    coins = [(code, p0, listed) for code, p0, listed in CRYPTO_COINS[:n_coins]]
    codes_used = {c for c, _, _ in CRYPTO_COINS} | reserved
    for code in _generated_tickers("coin", n_coins - len(coins), codes_used, lengths=(3, 5)):
        coins.append((code, None, None))
    keys = _keys(cfg.seed, [f"crypto:{c}" for c, _, _ in coins])
    u = _static_uniforms(keys, 12)
    z = _normals_from_uniforms(u)
    rows = []
    for i, (code, p0, listed) in enumerate(coins):
        if i == 0:
            beta_crypto, beta_market, idio = 1.0, 1.0, 0.006
        elif i == 1:
            beta_crypto, beta_market, idio = 1.15, 1.2, 0.012
        else:
            beta_crypto = 0.8 + 0.7 * u[0, i]
            beta_market = 0.7 + 0.6 * u[1, i]
            idio = float(np.clip(0.02 * np.exp(0.4 * z[2, i]), 0.008, 0.06))
        if listed is not None:
            list_day = day_of(listed)
        elif p0 is None and u[3, i] < 0.35:
            list_day = int(30 + u[4, i] * (0.85 * n_days - 30))
        else:
            list_day = 0
        delist_day = -1
        if i >= 10 and u[5, i] < 0.08 and max(list_day, 0) + 250 < n_days - 1:
            start = max(list_day, 0) + 250
            delist_day = int(start + u[6, i] * (n_days - 1 - start))
        row = dict(
            asset_class="crypto", sector=np.nan, industry=np.nan, identity=f"crypto:{code}", cal=_CAL_247,
            loadings={"crypto": beta_crypto, "market": beta_market}, idio_vol=idio,
            drift_base=0.05 + 0.20 * z[7, i], drift_spread=0.25,
            log_p0=math.log(p0) if p0 is not None else 2.0 * z[8, i],
            log_dv=math.log(1.5e9) - 0.3 * i + 0.5 * z[9, i], basis_vol=0.0008,
            listed=list_day, delisted=delist_day,
        )
        rows.append(row)
        group.add(symbol=f"BINANCE:{code}USDT", exchange="BINANCE", ticker=f"{code}USDT",
                  description=f"{code} / TetherUS", currency="USDT", **row)
    for rank, (venue, quote) in _venue_duplicates(len(coins), _CRYPTO_VENUES, n_dup):
        code = coins[rank][0]
        symbol = f"{venue}:{code}{quote}"
        u_venue = _static_uniforms(_keys(cfg.seed, [symbol]), 2)[:, 0]
        row = dict(rows[rank])
        row.update(log_dv=rows[rank]["log_dv"] - 1.0 - u_venue[0],
                   listed=max(rows[rank]["listed"], 0) + int(u_venue[1] * 90) * (rank > 1))
        group.add(symbol=symbol, exchange=venue, ticker=f"{code}{quote}",
                  description=f"{code} / {'U.S. Dollar' if quote == 'USD' else 'TetherUS'}",
                  currency=quote, **row)


def _forex_pairs() -> list[tuple[str, str]]:
    """Every currency pair (base, quote) in market convention, the G8 majors and crosses first."""
    priority = ("EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "NOK", "SEK", "PLN", "SGD", "HKD", "TRY",
                "ZAR", "MXN", "CNH", "JPY")
    order = {c.code: i for i, c in enumerate(CURRENCIES)}
    combos = sorted(itertools.combinations([c.code for c in CURRENCIES], 2),
                    key=lambda ab: (max(order[ab[0]], order[ab[1]]), min(order[ab[0]], order[ab[1]])))
    return [tuple(sorted(ab, key=priority.index)) for ab in combos]


def _forex_group(cfg: SyntheticConfig, group: _Group) -> None:
    if cfg.n_forex == 0:
        return
    n_dup = cfg.n_forex // 5
    pairs = _forex_pairs()[:cfg.n_forex - n_dup]
    rows = []
    for base, quote in pairs:
        loadings = dict(_currency_value_loadings(base))
        for factor, value in _currency_value_loadings(quote).items():
            loadings[factor] = loadings.get(factor, 0.0) - value
        loadings = {k: v for k, v in loadings.items() if v != 0.0}
        b, q = _CCY[base], _CCY[quote]
        row = dict(asset_class="forex", sector=np.nan, industry=np.nan, identity=f"fx:{base}{quote}",
                   description=f"{b.name} / {q.name}", currency=quote, cal=_CAL_245, loadings=loadings,
                   idio_vol=0.0, drift_base=b.carry - q.carry, drift_spread=0.0,
                   log_p0=math.log(b.usd_value / q.usd_value), log_dv=math.log(5e9), basis_vol=0.0002,
                   listed=0, delisted=-1)
        rows.append(row)
        group.add(symbol=f"FX:{base}{quote}", exchange="FX", ticker=f"{base}{quote}", **row)
    for rank, venue in _venue_duplicates(len(pairs), _FOREX_VENUES, n_dup):
        base, quote = pairs[rank]
        group.add(symbol=f"{venue}:{base}{quote}", exchange=venue, ticker=f"{base}{quote}",
                  **{**rows[rank], "log_dv": math.log(1e9)})


def _futures_group(cfg: SyntheticConfig, group: _Group) -> None:
    for symbol, description, loadings, idio, p0, dv in FUTURES[:cfg.n_futures]:
        exchange, ticker = symbol.split(":")
        group.add(symbol=symbol, exchange=exchange, ticker=ticker, asset_class="futures", sector=np.nan,
                  industry=np.nan, description=description, currency="USD", identity=symbol, cal=_CAL_CMES,
                  loadings=dict(loadings), idio_vol=idio, drift_base=0.03, drift_spread=0.10,
                  log_p0=math.log(p0), log_dv=math.log(dv), basis_vol=0.0, listed=0, delisted=-1)


def _build_universe(cfg: SyntheticConfig, days: pd.DatetimeIndex, open_masks: np.ndarray) -> _Universe:
    """Every symbol of the market with its static parameters, in a fixed order."""
    n_days = len(days)

    def day_of(text: str) -> int:
        return (dt.date.fromisoformat(text) - cfg.start).days

    group = _Group()
    reserved = {s.split(":")[1] for s, *_ in EQUITY_ETFS} | {s.split(":")[1] for s, *_ in BOND_ETFS}
    _equity_group(cfg, n_days, reserved, group)
    _etf_group(cfg, reserved, group)
    _crypto_group(cfg, day_of, n_days, reserved, group)
    _forex_group(cfg, group)
    _futures_group(cfg, group)
    cols = group.cols
    symbols = cols["symbol"]
    if len(set(symbols)) != len(symbols):
        raise RuntimeError("synthetic universe has duplicate symbols")  # a bug, not bad input
    for symbol in symbols:
        validate_symbol(symbol)
    n = len(symbols)
    loadings = np.zeros((n, len(FACTOR_NAMES)))
    for i, row in enumerate(cols["loadings"]):
        for factor, value in row.items():
            loadings[i, _FACTOR_INDEX[factor]] = value
    cal = np.array(cols["cal"], dtype=np.intp)
    # Snap listing to the first open day >= the listing day and delisting to the last open day <= it.
    list_raw = np.clip(np.array(cols["listed"], dtype=np.int64), 0, None)
    delist_raw = np.array(cols["delisted"], dtype=np.int64)
    has_delisting = delist_raw >= 0
    delist_raw = np.where(has_delisting, delist_raw, n_days - 1)
    list_day = np.empty(n, dtype=np.int64)
    delist_day = np.empty(n, dtype=np.int64)
    for c in np.unique(cal):
        sel = cal == c
        open_days = np.flatnonzero(open_masks[c])
        pos = np.searchsorted(open_days, list_raw[sel], side="left")
        list_day[sel] = np.where(pos < len(open_days), open_days[np.minimum(pos, len(open_days) - 1)], n_days)
        pos = np.searchsorted(open_days, delist_raw[sel], side="right") - 1
        delist_day[sel] = np.where(pos >= 0, open_days[np.maximum(pos, 0)], -1)
    seed = cfg.seed
    path_key = _keys(seed, cols["identity"])
    venue_key = _keys(seed, [f"venue:{s}" for s in symbols])
    drift_phase = (_uniforms(_stream_keys(path_key, _S_DRIFT), np.array([-1]))[0] * _DRIFT_EPOCH).astype(np.int64)
    first_bar = pd.DatetimeIndex(days.take(np.minimum(list_day, n_days - 1)))
    last_bar = pd.DatetimeIndex(days.take(np.clip(delist_day, 0, n_days - 1)))
    frame = pd.DataFrame({
        "exchange": cols["exchange"], "ticker": cols["ticker"], "asset_class": cols["asset_class"],
        "family": [next(f for f, cls in FAMILY_CLASSES.items() if a in cls) for a in cols["asset_class"]],
        "calendar": [CALENDARS[c] for c in cal], "type": [TYPE_BY_CLASS[a] for a in cols["asset_class"]],
        "sector": cols["sector"], "industry": cols["industry"], "description": cols["description"],
        "currency": cols["currency"], "identity": cols["identity"],
        "listed": first_bar.where(list_day < n_days), "delisted": last_bar.where(has_delisting),
        "typical_value_traded": np.exp(np.array(cols["log_dv"], dtype=np.float64)),
    }, index=pd.Index(symbols, name="symbol"))
    return _Universe(
        frame=frame, cal=cal, loadings=loadings,
        idio_vol=np.array(cols["idio_vol"], dtype=np.float64),
        drift_base=np.array(cols["drift_base"], dtype=np.float64),
        drift_spread=np.array(cols["drift_spread"], dtype=np.float64), drift_phase=drift_phase,
        log_p0=np.array(cols["log_p0"], dtype=np.float64), log_dv=np.array(cols["log_dv"], dtype=np.float64),
        basis_vol=np.array(cols["basis_vol"], dtype=np.float64), list_day=list_day, delist_day=delist_day,
        path_key=path_key, venue_key=venue_key,
    )


# --------------------------------------------------------------------------------------------------
# Calendars, regimes and factors
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _exchange_open_mask(name: str, start: dt.date, end: dt.date) -> np.ndarray:
    """Calendar-day mask of the sessions of an exchange_calendars calendar (cached per process)."""
    import exchange_calendars  # heavy import, only when a market is built

    cal = exchange_calendars.get_calendar(name, start=pd.Timestamp(start), end=pd.Timestamp(end))
    days = pd.date_range(start, end, freq="D")
    return np.asarray(days.isin(cal.sessions.tz_localize(None) if cal.sessions.tz else cal.sessions))


def _open_masks(start: dt.date, end: dt.date, days: pd.DatetimeIndex) -> np.ndarray:
    masks = np.zeros((len(CALENDARS), len(days)), dtype=bool)
    masks[_CAL_XNYS] = _exchange_open_mask("XNYS", start, end)
    masks[_CAL_247] = True
    masks[_CAL_245] = days.dayofweek < 5
    masks[_CAL_CMES] = _exchange_open_mask("CMES", start, end)
    return masks


# Salt of the global (regime and factor) streams. Any salt gives a valid market; this one was picked
# so that the default seed's SPY has a plausible history (no bear market outside the scripted ones).
_GLOBAL_STREAM_SALT = "factor-v1"


def _factor_rng(seed: int, name: str) -> np.random.Generator:
    """The global random stream of one factor (or the regime chain): one stream per name, so adding
    factors or symbols never changes another factor's path."""
    return np.random.default_rng([seed, stable_key(_GLOBAL_STREAM_SALT, name) % (1 << 32)])


def _regime_path(seed: int, days: pd.DatetimeIndex) -> np.ndarray:
    """Hidden Markov regime per calendar day (0 calm, 1 normal, 2 stressed) plus scripted overrides."""
    draws = _factor_rng(seed, "regime").random(len(days))
    cumulative = np.cumsum(_REGIME_TRANSITIONS, axis=1)
    state = 1
    states = np.empty(len(days), dtype=np.int8)
    for t, u in enumerate(draws):
        state = int(np.searchsorted(cumulative[state], u, side="right"))
        state = min(state, 2)
        states[t] = state
    for first, last, forced in REGIME_OVERRIDES:
        states[(days >= first) & (days <= last)] = forced
    return states


def _factor_paths(seed: int, days: pd.DatetimeIndex, vol_mult: np.ndarray, xnys_open: np.ndarray) -> np.ndarray:
    """(T, K) daily factor returns: regime-scaled Student-t noise + currency trends + scripted episodes."""
    n_days = len(days)
    raw = {name: _factor_rng(seed, name).standard_t(4, n_days) / math.sqrt(2.0) for name in FACTOR_NAMES}
    raw["credit"] = -0.6 * raw["market"] + 0.8 * raw["credit"]  # spreads widen when equities fall
    out = np.empty((n_days, len(FACTOR_NAMES)))
    for name, k in _FACTOR_INDEX.items():
        out[:, k] = _FACTOR_VOL[name] * vol_mult ** _REGIME_POWER.get(name, 1.0) * raw[name]
    epochs = np.arange(n_days) // _FACTOR_TREND_EPOCH
    for name in _TRENDING_FACTORS:
        trend = _factor_rng(seed, f"trend:{name}").standard_normal(epochs[-1] + 1) * _FACTOR_TREND_VOL / 365.0
        out[:, _FACTOR_INDEX[name]] += trend[epochs]
    market_premium = np.where(xnys_open, _MARKET_PREMIUM / 252.0, 0.0)
    out[:, _FACTOR_INDEX["market"]] += market_premium
    for first, last, moves in EPISODES:
        sel = (days >= first) & (days <= last) & xnys_open
        if sel.any():
            for name, total in moves.items():
                out[sel, _FACTOR_INDEX[name]] += total / sel.sum()
    return out


# --------------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------------
_FAULT_KINDS = {
    "missing_bars": {"n", "symbols", "heal_after", "sessions", "period"},
    "stale": {"n", "symbols", "heal_after", "bars"},
    "bad_ticks": {"n", "symbols", "heal_after", "period", "kind"},
}
BAD_TICK_KINDS = ("zero", "negative", "spike")


def _fault_int(spec: Mapping[str, Any], key: str, default: int, kind: str, minimum: int) -> int:
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"faults.{kind}.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def build_fault_plan(faults: Mapping[str, Any], universe: pd.DataFrame, full_history: np.ndarray,
                     strict: bool = True) -> dict[str, dict]:
    """Resolve the `faults` setting into symbol -> fault parameters (see the module docstring).

    `universe` is the market's symbol table (index symbol, `asset_class`, `typical_value_traded`);
    `full_history` marks symbols listed for the whole generated range (count-based picks need it).
    With `strict`, asking for more count-based picks than there are eligible symbols is an error;
    otherwise (the default plan of a small universe) the counts are cut, in kind order.
    """
    unknown = sorted(set(faults) - set(_FAULT_KINDS) - {"seed"})
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; known: {sorted(_FAULT_KINDS)} and 'seed'")
    seed = faults.get("seed", 11)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"faults.seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(seed)
    plan: dict[str, dict] = {}
    counts: dict[str, int] = {}
    for kind, allowed in _FAULT_KINDS.items():
        spec = faults.get(kind)
        if spec is None:
            continue
        if not isinstance(spec, Mapping):
            raise ValueError(f"faults.{kind} must be an object, got {spec!r}")
        extra = sorted(set(spec) - allowed)
        if extra:
            raise ValueError(f"faults.{kind}: unknown keys {extra}; allowed: {sorted(allowed)}")
        explicit = spec.get("symbols") or []
        counts[kind] = _fault_int(spec, "n", 0 if explicit else 1, kind, 0)
        for symbol in explicit:
            validate_symbol(symbol)
            if symbol not in universe.index:
                raise ValueError(f"faults.{kind}.symbols: {symbol!r} is not in the synthetic universe")
            if symbol in plan:
                raise ValueError(f"faults: {symbol!r} is listed under two fault kinds")
            plan[symbol] = {"kind": kind}
    eligible = universe.loc[
        universe["asset_class"].isin(["equity", "etf", "bond_etf"]).to_numpy() & full_history
        & (universe.index != BASELINE) & ~universe.index.isin(list(plan))
    ]
    ranked = eligible.sort_values("typical_value_traded", ascending=False, kind="mergesort").index
    wanted = sum(counts.values())
    if wanted > len(ranked):
        if strict:
            raise ValueError(f"faults ask for {wanted} symbols but only {len(ranked)} are eligible")
        remaining = len(ranked)
        for kind in counts:
            counts[kind] = min(counts[kind], remaining)
            remaining -= counts[kind]
        wanted = sum(counts.values())
    picks = list(ranked[:wanted][rng.permutation(wanted)])
    for kind, n in counts.items():
        for symbol in picks[:n]:
            plan[symbol] = {"kind": kind}
        picks = picks[n:]
    for symbol in sorted(plan):  # parameters in a fixed order, independent of dict insertion
        kind = plan[symbol]["kind"]
        spec = faults[kind]
        heal = spec.get("heal_after", 1)
        if heal is not None and (not isinstance(heal, int) or isinstance(heal, bool) or heal < 0):
            raise ValueError(f"faults.{kind}.heal_after must be None or an integer >= 0, got {heal!r}")
        entry: dict[str, Any] = {"kind": kind, "heal_after": heal}
        if kind == "missing_bars":
            entry["sessions"] = _fault_int(spec, "sessions", 3, kind, 1)
            entry["period"] = _fault_int(spec, "period", 250, kind, entry["sessions"] + 1)
            entry["phase"] = int(rng.integers(entry["period"]))
        elif kind == "stale":
            entry["bars"] = _fault_int(spec, "bars", 3, kind, 1)
        else:
            entry["period"] = _fault_int(spec, "period", 250, kind, 1)
            entry["phase"] = int(rng.integers(entry["period"]))
            tick = spec.get("kind")
            if tick is None:
                tick = BAD_TICK_KINDS[int(rng.integers(len(BAD_TICK_KINDS)))]
            if tick not in BAD_TICK_KINDS:
                raise ValueError(f"faults.bad_ticks.kind must be one of {BAD_TICK_KINDS}, got {tick!r}")
            entry["tick"] = tick
        plan[symbol] = entry
    return plan


# --------------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------------
class SyntheticMarket:
    """Deterministic synthetic multi-asset market implementing `MarketData` (see module docstring)."""

    name = "synthetic"

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        cfg = SyntheticConfig.from_settings(settings)
        self.config = cfg
        self._days = pd.date_range(cfg.start, cfg.end, freq="D")
        n_days = len(self._days)
        self._open = _open_masks(cfg.start, cfg.end, self._days)
        self._open_days = [np.flatnonzero(mask) for mask in self._open]
        self._regime = _regime_path(cfg.seed, self._days)
        self._vm = _REGIME_VOL[self._regime]
        factors = _factor_paths(cfg.seed, self._days, self._vm, self._open[_CAL_XNYS])
        activity = np.where(self._open, 1.0, np.array([_CLOSED_DAY_ACTIVITY[c] for c in range(len(CALENDARS))])[:, None])
        self._factors_by_cal = activity[:, :, None] * factors[None, :, :]  # (n_cal, T, K)
        self._idio_scale_by_cal = activity * self._vm[None, :]  # (n_cal, T)
        n_full = n_days // _BLOCK
        self._factor_block_sums = self._factors_by_cal[:, :n_full * _BLOCK].reshape(
            len(CALENDARS), n_full, _BLOCK, len(FACTOR_NAMES)).sum(axis=2)  # (n_cal, blocks, K)
        self._perturb_day = None if cfg.perturb_after is None else (cfg.perturb_after - cfg.start).days
        u = _build_universe(cfg, self._days, self._open)
        self._u = u
        self._index = {s: i for i, s in enumerate(u.frame.index)}
        nz = u.loadings != 0.0
        width = max(1, int(nz.sum(axis=1).max()))
        order = np.argsort(~nz, axis=1, kind="stable")[:, :width]  # nonzero factors first, in factor order
        self._factor_idx = order
        self._factor_load = np.take_along_axis(u.loadings, order, axis=1)
        self._factor_count = nz.sum(axis=1)
        factor_vol = np.array([_FACTOR_VOL[name] for name in FACTOR_NAMES])
        self._range_vol = np.sqrt(((u.loadings * factor_vol) ** 2).sum(axis=1) + u.idio_vol**2)
        self._key_idio = _stream_keys(u.path_key, _S_IDIO)
        self._key_drift = _stream_keys(u.path_key, _S_DRIFT)
        self._key_perturb = _stream_keys(u.path_key, _S_PERTURB)
        self._key_bar = _stream_keys(u.venue_key, _S_BAR)
        self._key_volume = _stream_keys(u.venue_key, _S_VOLUME)
        self._key_basis = _stream_keys(u.venue_key, _S_BASIS)
        n_blocks = n_days // _BLOCK + 1
        self._ckpt = np.zeros((n_blocks + 1, len(u.frame)))
        self._ckpt_blocks = np.zeros(len(u.frame), dtype=np.int64)  # checkpoints valid for blocks <= this
        families = u.frame["family"].to_numpy()
        self._members = {f: np.flatnonzero(families == f) for f in FAMILIES}
        first_open = np.array([days_[0] if len(days_) else n_days for days_ in self._open_days])[u.cal]
        full_history = (u.list_day == first_open) & u.frame["delisted"].isna().to_numpy()
        self._fault_plan = build_fault_plan(cfg.faults, u.frame, full_history, strict=cfg.faults_given)
        self._scan_cache: OrderedDict[tuple[str, int], pd.DataFrame] = OrderedDict()

    # ---------------------------------------------------------------------------------- public API
    @property
    def universe(self) -> pd.DataFrame:
        """Every symbol (index) with exchange, ticker, asset_class, family, calendar, type, sector,
        industry, description, currency, identity (exchange-independent instrument id), listed /
        delisted (first / last bar day; NaT = not delisted) and typical_value_traded (USD/day)."""
        return self._u.frame.copy()

    @property
    def fault_plan(self) -> dict[str, dict]:
        """Symbol -> injected fault parameters (kind, heal_after and the kind's parameters)."""
        return copy.deepcopy(self._fault_plan)

    @property
    def hidden_regime(self) -> pd.Series:
        """The latent regime per calendar day ('calm' | 'normal' | 'stressed'); ground truth for tests."""
        return pd.Series(np.array(REGIMES)[self._regime], index=self._days, name="regime")

    def metadata(self, symbols: list[str]) -> pd.DataFrame:
        """asset_class, calendar, sector, industry, description, currency per symbol; NaN for unknown
        symbols and for fields the market leaves open (e.g. the sector of broad ETFs)."""
        columns = ["asset_class", "calendar", "sector", "industry", "description", "currency"]
        for symbol in symbols:
            validate_symbol(symbol)
        return self._u.frame.reindex(pd.Index(list(symbols), name="symbol"))[columns].copy()

    def bars(self, symbol: str, start: dt.date, end: dt.date, *, attempt: int = 0) -> pd.DataFrame:
        """Daily OHLCV bars of `symbol` for start <= day <= end on its own calendar (UTC midnight
        timestamps), with the fault plan applied while `attempt < heal_after`."""
        validate_symbol(symbol)
        i = self._index.get(symbol)
        if i is None:
            raise SourceError(f"unknown symbol {symbol!r}: not in the synthetic universe")
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
            raise ValueError(f"attempt must be a non-negative integer, got {attempt!r}")
        first = (_to_date(start, "bars start") - self.config.start).days
        last_requested = (_to_date(end, "bars end") - self.config.start).days
        if last_requested < first:
            raise ValueError(f"bars for {symbol}: start {start} is after end {end}")
        u = self._u
        last = min(last_requested, int(u.delist_day[i]), len(self._days) - 1)
        open_days = self._open_days[u.cal[i]]
        lo = np.searchsorted(open_days, max(first, int(u.list_day[i])), side="left")
        hi = np.searchsorted(open_days, last, side="right")
        days = open_days[lo:hi]
        if len(days) == 0:
            return _empty_bars()
        idx = np.array([i])
        o, h, lo_, c, v = (a[:, 0] for a in self._bar_matrices(idx, days))
        frame = pd.DataFrame({
            "time": pd.DatetimeIndex(self._days[days]).tz_localize("UTC"),
            "open": o, "high": h, "low": lo_, "close": c, "volume": v,
        })
        fault = self._fault_plan.get(symbol)
        if fault is not None and (fault["heal_after"] is None or attempt < fault["heal_after"]):
            frame = self._apply_fault(frame, fault, np.searchsorted(open_days, days), open_days, last)
        return frame.reset_index(drop=True)

    def scan(self, family: str, as_of: dt.date, preset: dict) -> pd.DataFrame:
        """Scanner rows for `family` as of the close of `as_of` (data <= as_of only), filtered,
        sorted and cut by `preset` (see `apply_preset`). Columns: `SCAN_RESULT_COLUMNS`."""
        if family not in FAMILIES:
            raise ValueError(f"unknown scanner family {family!r}; expected one of {', '.join(FAMILIES)}")
        day = (_to_date(as_of, "scan as_of") - self.config.start).days
        if day >= len(self._days):
            raise SourceError(f"synthetic market ends {self.config.end}; cannot scan as of {as_of}")
        key = (family, day)
        frame = self._scan_cache.get(key)
        if frame is None:
            frame = self._scan_rows(family, day)
            self._scan_cache[key] = frame
            while len(self._scan_cache) > _SCAN_CACHE_SIZE:
                self._scan_cache.popitem(last=False)
        else:
            self._scan_cache.move_to_end(key)
        result = apply_preset(frame, preset)
        return result[list(SCAN_RESULT_COLUMNS)]

    # ------------------------------------------------------------------------------ internals
    def _scan_rows(self, family: str, day: int) -> pd.DataFrame:
        """Unfiltered scanner rows (no direction) for the symbols of `family` listed on `day`."""
        u = self._u
        members = self._members[family]
        if day < 0 or len(members) == 0:
            return pd.DataFrame(columns=[c for c in SCAN_RESULT_COLUMNS if c != "direction"])
        idx = members[(u.list_day[members] <= day) & (day <= u.delist_day[members])]
        cal = int(u.cal[members[0]]) if len(members) else _CAL_XNYS
        open_days = self._open_days[cal]
        days = open_days[max(0, np.searchsorted(open_days, day, side="right") - WINDOW):
                         np.searchsorted(open_days, day, side="right")]
        fields: dict[str, list[np.ndarray]] = {}
        if len(idx) and len(days):
            for chunk in _chunks(idx):
                _, h, lo, c, v = self._bar_matrices(chunk, days)
                before = days[:, None] < u.list_day[chunk][None, :]
                for mat in (h, lo, c, v):
                    mat[before] = np.nan
                for name, values in indicator_matrix(h, lo, c, v).items():
                    fields.setdefault(name, []).append(values)
        table = u.frame.iloc[idx]
        out = pd.DataFrame({
            "symbol": table.index.to_numpy(), "name": table["ticker"].to_numpy(),
            "description": table["description"].to_numpy(), "type": table["type"].to_numpy(),
            "exchange": table["exchange"].to_numpy(), "currency": table["currency"].to_numpy(),
            "sector": table["sector"].to_numpy(), "industry": table["industry"].to_numpy(),
        })
        for name in ("close", "volume", "Value.Traded", "ADX", "ATR", "Recommend.All", "Perf.W", "Perf.1M",
                     "Perf.3M", "Perf.6M", "Perf.Y", "Volatility.D", "change"):
            out[name] = np.concatenate(fields[name]) if name in fields else np.full(len(out), np.nan)
        return out

    def _drift_z(self, idx: np.ndarray, epochs: np.ndarray) -> np.ndarray:
        """Standard normal drift shock of each symbol for each drift epoch (rows = `epochs`)."""
        return _NORMAL_TABLE[_lane(_hash_bits(self._key_drift[idx], epochs), 0)]

    def _returns(self, idx: np.ndarray, d0: int, d1: int) -> np.ndarray:
        """(d1 - d0 + 1, len(idx)) daily log returns on calendar days d0..d1.

        r = (drift_base + drift_spread x z_epoch) / 365 + a_t x sum_k loading_k x factor_k,t
        + a_t x vm_t x idio_vol x eps_t (+ the perturbation after `perturb_after`), where a_t is the
        calendar's activity (1 open, less on closed days) and eps is Student-t(4) unit-variance noise
        of (symbol, day). Each element is computed by the same operations whatever the batch, so a
        value never depends on which window or which other symbols were requested.
        """
        u = self._u
        out = np.empty((d1 - d0 + 1, len(idx)))
        day_range = np.arange(d0, d1 + 1)
        cals = u.cal[idx]
        for c in np.unique(cals):
            cols = np.flatnonzero(cals == c)
            sub = idx[cols]
            epoch = (day_range[:, None] + u.drift_phase[sub][None, :]) // _DRIFT_EPOCH
            e_lo = int(epoch.min())
            z_epoch = np.take_along_axis(self._drift_z(sub, np.arange(e_lo, int(epoch.max()) + 1)),
                                         epoch - e_lo, axis=0)
            r = (u.drift_base[sub] + u.drift_spread[sub] * z_epoch) / 365.0
            factors = self._factors_by_cal[c, d0:d1 + 1]
            for m in range(int(self._factor_count[sub].max())):
                r += factors[:, self._factor_idx[sub, m]] * self._factor_load[sub, m]
            eps = _daily_noise(self._key_idio[sub], d0, d1, _T4_TABLE)
            r += self._idio_scale_by_cal[c, d0:d1 + 1, None] * (u.idio_vol[sub] * eps)
            if self._perturb_day is not None and d1 > self._perturb_day:
                rows = day_range > self._perturb_day
                r[rows] += self._perturbation(sub, d0, d1)[rows]
            out[:, cols] = r
        return out

    def _perturbation(self, idx: np.ndarray, d0: int, d1: int) -> np.ndarray:
        """Extra return added after `perturb_after` (point-in-time tests): 0.1 % + 0.6 % x t(4) noise."""
        return 0.001 + 0.006 * _daily_noise(self._key_perturb[idx], d0, d1, _T4_TABLE)

    def _block_increment(self, idx: np.ndarray, block: int) -> np.ndarray:
        """Sum of the daily log returns of checkpoint block `block` for each symbol of `idx`.

        Equal (up to rounding) to `_returns(...).sum(axis=0)` but cheaper: the factor and drift parts
        are summed analytically (block sums of the factors; at most two drift epochs per block), so
        only the idiosyncratic noise is generated day by day.
        """
        u = self._u
        d0, d1 = block * _BLOCK, (block + 1) * _BLOCK - 1
        out = np.empty(len(idx))
        cals = u.cal[idx]
        for c in np.unique(cals):
            cols = np.flatnonzero(cals == c)
            sub = idx[cols]
            phase = u.drift_phase[sub]
            first_epoch = (d0 + phase) // _DRIFT_EPOCH
            days_first = np.minimum(_BLOCK, _DRIFT_EPOCH - (d0 + phase) % _DRIFT_EPOCH)
            e_lo = int(first_epoch.min())
            z = self._drift_z(sub, np.arange(e_lo, int(first_epoch.max()) + 2))
            col = np.arange(len(sub))
            z_sum = days_first * z[first_epoch - e_lo, col] + (_BLOCK - days_first) * z[first_epoch - e_lo + 1, col]
            total = (_BLOCK * u.drift_base[sub] + u.drift_spread[sub] * z_sum) / 365.0
            factor_sums = self._factor_block_sums[c, block]
            for m in range(int(self._factor_count[sub].max())):
                total += factor_sums[self._factor_idx[sub, m]] * self._factor_load[sub, m]
            eps = _daily_noise(self._key_idio[sub], d0, d1, _T4_TABLE)
            # Sum each symbol's row on its own (a contiguous transposed copy): numpy's pairwise sum
            # over axis 0 rounds differently with the batch width, and prices must not depend on
            # which other symbols an instance was asked for (bit-identical across processes).
            total += u.idio_vol[sub] * np.ascontiguousarray(
                (self._idio_scale_by_cal[c, d0:d1 + 1, None] * eps).T).sum(axis=1)
            if self._perturb_day is not None and d1 > self._perturb_day:
                rows = np.arange(d0, d1 + 1) > self._perturb_day
                total += np.ascontiguousarray(self._perturbation(sub, d0, d1)[rows].T).sum(axis=1)
            out[cols] = total
        return out

    def _ensure_checkpoints(self, idx: np.ndarray, up_to_day: int) -> None:
        """Make checkpoint[b] (the cumulative log return before day 64 b) valid for every block b up
        to `up_to_day`'s block, for the symbols `idx`. Built once per symbol and block."""
        block = max(up_to_day, 0) // _BLOCK
        need = idx[self._ckpt_blocks[idx] < block]
        for chunk in _chunks(need):
            b = int(self._ckpt_blocks[chunk].min())
            level = self._ckpt[b, chunk]
            while b < block:
                level = level + self._block_increment(chunk, b)
                b += 1
                self._ckpt[b, chunk] = level
            self._ckpt_blocks[chunk] = block

    def _log_close(self, idx: np.ndarray, d_lo: int, d_hi: int) -> np.ndarray:
        """(d_hi - d_lo + 1, len(idx)) latent log closes on calendar days d_lo..d_hi (d_lo may be -1,
        the day before the path starts).

        The level on day t is checkpoint[t // 64] + the cumulative return from day 64 (t // 64) to t,
        so it depends on t alone, never on the requested window. Ensures the checkpoints it needs.
        """
        u = self._u
        self._ensure_checkpoints(idx, d_hi)
        b0 = max(d_lo, 0) // _BLOCK
        r = self._returns(idx, b0 * _BLOCK, d_hi)
        cum = np.empty((r.shape[0] + 1, len(idx)))
        cum[0] = self._ckpt[b0, idx]  # the level on day 64 b0 - 1
        for j, start in enumerate(range(0, r.shape[0], _BLOCK)):
            part = r[start:start + _BLOCK]
            levels = np.cumsum(part, axis=0)
            levels += self._ckpt[b0 + j, idx]
            cum[start + 1:start + 1 + part.shape[0]] = levels
        log_close = cum[d_lo - (b0 * _BLOCK - 1):] + u.log_p0[idx]
        if np.any(u.basis_vol[idx] > 0):
            log_close += u.basis_vol[idx] * _daily_noise(self._key_basis[idx], d_lo, d_hi, _NORMAL_TABLE)
        return log_close

    def _bar_matrices(self, idx: np.ndarray, days: np.ndarray) -> tuple[np.ndarray, ...]:
        """(open, high, low, close, volume), each (len(days), len(idx)), for bars on `days`.

        open = previous calendar day's close x exp(0.25 s z_o); high = max(open, close) x
        exp(0.5 s |z_h|); low = min(open, close) x exp(-0.5 s |z_l|), s = the symbol's daily vol x the
        regime multiplier. log volume = log dollar volume - log close + 0.45 x MA10(eta) + 0.8 log vm.
        """
        u = self._u
        d_lo = int(days[0]) - 1
        log_close = self._log_close(idx, d_lo, int(days[-1]))
        close = np.exp(log_close[days - d_lo])
        prev = log_close[days - 1 - d_lo]
        sigma = self._range_vol[idx][None, :] * self._vm[days][:, None]
        bits = _hash_bits(self._key_bar[idx], days)
        open_ = np.exp(prev + 0.25 * sigma * _NORMAL_TABLE[_lane(bits, 0)])
        high = np.maximum(open_, close) * np.exp(0.5 * sigma * np.abs(_NORMAL_TABLE[_lane(bits, 1)]))
        low = np.minimum(open_, close) * np.exp(-0.5 * sigma * np.abs(_NORMAL_TABLE[_lane(bits, 2)]))
        # Volume noise is indexed by the bar's position on its calendar, so it persists across bars.
        cal = int(u.cal[idx[0]])
        pos = np.searchsorted(self._open_days[cal], days)
        eta = _daily_noise(self._key_volume[idx], int(pos[0]) - _VOLUME_MA + 1, int(pos[-1]), _NORMAL_TABLE)
        weights = 0.8 ** np.arange(_VOLUME_MA)
        weights /= np.sqrt(np.sum(weights**2))
        rel = pos - pos[0] + _VOLUME_MA - 1
        noise = np.zeros((len(days), len(idx)))
        for lag, w in enumerate(weights):
            noise += w * eta[rel - lag]
        log_volume = u.log_dv[idx] - log_close[days - d_lo] + 0.45 * noise + 0.8 * np.log(self._vm[days])[:, None]
        volume = np.round(np.exp(log_volume))
        return open_, high, low, close, volume

    @staticmethod
    def _apply_fault(frame: pd.DataFrame, fault: dict, pos: np.ndarray, open_days: np.ndarray,
                     last_day: int) -> pd.DataFrame:
        """Apply one active fault to a symbol's bars (`pos` = each bar's position on its calendar)."""
        kind = fault["kind"]
        if kind == "missing_bars":
            return frame.loc[(pos - fault["phase"]) % fault["period"] >= fault["sessions"]]
        if kind == "stale":
            last_pos = np.searchsorted(open_days, last_day, side="right") - 1
            return frame.loc[pos <= last_pos - fault["bars"]]
        hit = ((pos - fault["phase"]) % fault["period"] == 0)
        frame = frame.copy()
        if fault["tick"] == "zero":
            frame.loc[hit, ["close", "low"]] = 0.0
        elif fault["tick"] == "negative":
            frame.loc[hit, "close"] = -frame.loc[hit, "close"]
            frame.loc[hit, "low"] = frame.loc[hit, "close"]
        else:
            frame.loc[hit, "close"] = 25.0 * frame.loc[hit, "close"]
            frame.loc[hit, "high"] = frame.loc[hit, "close"]
        return frame


def _chunks(idx: np.ndarray) -> list[np.ndarray]:
    return [idx[k:k + _CHUNK] for k in range(0, len(idx), _CHUNK)]


def _empty_bars() -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype=np.float64) for name in BAR_COLUMNS})
    frame["time"] = pd.Series(dtype="datetime64[ns, UTC]")
    return frame
