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

Settings and faults
-------------------
`settings.SyntheticSettings` holds every setting with its default and bounds (seed, listings per
asset class, the generated `start`..`end` range, `faults`, `perturb_after`). Answers for D use data
<= D only; scans after `end` are refused.

`faults` (`settings.FaultsSettings`; `{}` disables them) has a `seed` and up to three kinds. Each
kind takes `symbols` (an explicit list, any class) and/or `n` (unset: 1 without `symbols`, else 0):
that many symbols taken from the top of the liquidity ranking of equities/ETFs/bond ETFs listed for
the whole range (`AMEX:SPY` excluded), assigned to kinds in a seeded random order; and `heal_after`:
the fault is present on fetch attempts `attempt < heal_after` (`null` = never heals, 0 = never
present). Kinds:
- `missing_bars`: `sessions` consecutive bars withheld every `period` bars of the symbol's
  calendar (a seeded phase), so every 500-session history shows at least one gap;
- `stale`: the last `bars` bars at or before the requested `end` are withheld;
- `bad_ticks`: one bar every `period` bars gets a bad close: `kind` "zero" (close = low = 0),
  "negative" (close = low = -close) or "spike" (close = high = 25 x close); a seeded choice if unset.
The default plan (`settings.DEFAULT_FAULTS`) shrinks to the eligible symbols of a small universe;
an explicit plan that asks for too many is an error. The resolved plan is
`SyntheticMarket.fault_plan` (symbol -> parameters). Scans are not affected.

Scanner presets
---------------
`scan(family, as_of, preset)` computes every scanner field (see `indicators`) for the symbols listed
at `as_of`, then applies the preset with `apply_preset`: `direction` ("long" | "short", default
"long"), optional `timeframes` (multi-timeframe screens, used by forex), `filter`, `sort`, and
`range` ([offset, end]) or `limit`; `screens` (a list of such dicts over shared keys) runs several
screens and concatenates them. `apply_scanner_query` is the generic TradingView-style evaluator.
"""

from portfolio_assets.sources.scanner_query import (
    FAMILIES,
    FAMILY_CLASSES,
    SCAN_RESULT_COLUMNS,
    TYPE_BY_CLASS,
    apply_preset,
    apply_scanner_query,
    timeframe_mask,
)
from portfolio_assets.sources.settings import DEFAULT_FAULTS, SyntheticSettings
from portfolio_assets.sources.synthetic.description import (
    BASELINE,
    CALENDARS,
    CURRENCIES,
    FACTOR_NAMES,
    SECTORS,
)
from portfolio_assets.sources.synthetic.factors import EPISODES, REGIME_OVERRIDES, REGIMES
from portfolio_assets.sources.synthetic.faults import build_fault_plan
from portfolio_assets.sources.synthetic.market import SyntheticMarket
from portfolio_assets.sources.synthetic.noise import stable_key

__all__ = [
    "BASELINE", "CALENDARS", "CURRENCIES", "DEFAULT_FAULTS", "EPISODES", "FACTOR_NAMES", "FAMILIES",
    "FAMILY_CLASSES", "REGIMES", "REGIME_OVERRIDES", "SCAN_RESULT_COLUMNS", "SECTORS", "TYPE_BY_CLASS",
    "SyntheticMarket", "SyntheticSettings", "apply_preset", "apply_scanner_query",
    "build_fault_plan", "stable_key", "timeframe_mask",
]
