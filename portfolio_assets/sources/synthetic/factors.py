"""Calendars, the hidden regime chain and the factor paths of the synthetic market.

The regime (calm / normal / stressed, volatility x 0.6 / 1.0 / 2.0) is a Markov chain with
scripted overrides; factors are regime-scaled Student-t(4) noise, plus slow currency trends, the
equity premium and the scripted episodes (2020 crash and rebound, 2022 bear market, 2025-04).
Every global path comes from its own `numpy.random.default_rng([seed, stable_key(name)])` stream,
so it never depends on the universe size or on another factor.
"""

from __future__ import annotations

import datetime as dt
import functools
import math

import numpy as np
import pandas as pd

from portfolio_assets.sources.synthetic.description import (
    CAL_245,
    CAL_247,
    CAL_CMES,
    CAL_XNYS,
    CALENDARS,
    CURRENCIES,
    FACTOR_INDEX,
    FACTOR_NAMES,
    SECTORS,
)
from portfolio_assets.sources.synthetic.noise import stable_key

# Daily vol in the normal regime, and the power of the regime multiplier each factor feels.
FACTOR_VOL = {"market": 0.009, "rates": 0.0006, "credit": 0.0003, "crypto": 0.030, "gold": 0.009,
               "oil": 0.020, "dollar": 0.004, **{f"sector:{s}": 0.008 for s in SECTORS},
               **{f"ccy:{c.code}": c.own_vol for c in CURRENCIES if c.code != "USD"}}
_REGIME_POWER = {"rates": 0.5, "gold": 0.5, "dollar": 0.5,
                 **{f"ccy:{c.code}": 0.5 for c in CURRENCIES if c.code != "USD"}}
_TRENDING_FACTORS = ("dollar", *(f"ccy:{c.code}" for c in CURRENCIES if c.code != "USD"))
_FACTOR_TREND_EPOCH = 120  # days; currency factors get a new trend every epoch
_FACTOR_TREND_VOL = 0.05  # annual sd of that trend

_MARKET_PREMIUM = 0.08  # annual log drift of the market factor, earned on XNYS sessions
REGIMES = ("calm", "normal", "stressed")
REGIME_VOL = np.array([0.6, 1.0, 2.0])
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

@functools.lru_cache(maxsize=8)
def _exchange_open_mask(name: str, start: dt.date, end: dt.date) -> np.ndarray:
    """Calendar-day mask of the sessions of an exchange calendar (cached per process)."""
    from portfolio_assets.session_tables import session_table

    days = pd.date_range(start, end, freq="D")
    return np.asarray(days.isin(session_table(name, start, end).sessions))


def open_masks(start: dt.date, end: dt.date, days: pd.DatetimeIndex) -> np.ndarray:
    """(len(CALENDARS), T) open-day masks over the calendar days `start`..`end`: XNYS and CMES
    sessions, every day for 24/7, weekdays for 24/5."""
    masks = np.zeros((len(CALENDARS), len(days)), dtype=bool)
    masks[CAL_XNYS] = _exchange_open_mask("XNYS", start, end)
    masks[CAL_247] = True
    masks[CAL_245] = days.dayofweek < 5
    masks[CAL_CMES] = _exchange_open_mask("CMES", start, end)
    return masks


# Salt of the global (regime and factor) streams. Any salt gives a valid market; this one was picked
# so that the default seed's SPY has a plausible history (no bear market outside the scripted ones).
_GLOBAL_STREAM_SALT = "factor-v1"


def _factor_rng(seed: int, name: str) -> np.random.Generator:
    """The global random stream of one factor (or the regime chain): one stream per name, so adding
    factors or symbols never changes another factor's path."""
    return np.random.default_rng([seed, stable_key(_GLOBAL_STREAM_SALT, name) % (1 << 32)])


def regime_path(seed: int, days: pd.DatetimeIndex) -> np.ndarray:
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


def factor_paths(seed: int, days: pd.DatetimeIndex, vol_mult: np.ndarray, xnys_open: np.ndarray) -> np.ndarray:
    """(T, K) daily factor returns: regime-scaled Student-t noise + currency trends + scripted episodes."""
    n_days = len(days)
    raw = {name: _factor_rng(seed, name).standard_t(4, n_days) / math.sqrt(2.0) for name in FACTOR_NAMES}
    raw["credit"] = -0.6 * raw["market"] + 0.8 * raw["credit"]  # spreads widen when equities fall
    out = np.empty((n_days, len(FACTOR_NAMES)))
    for name, k in FACTOR_INDEX.items():
        out[:, k] = FACTOR_VOL[name] * vol_mult ** _REGIME_POWER.get(name, 1.0) * raw[name]
    epochs = np.arange(n_days) // _FACTOR_TREND_EPOCH
    for name in _TRENDING_FACTORS:
        trend = _factor_rng(seed, f"trend:{name}").standard_normal(epochs[-1] + 1) * _FACTOR_TREND_VOL / 365.0
        out[:, FACTOR_INDEX[name]] += trend[epochs]
    market_premium = np.where(xnys_open, _MARKET_PREMIUM / 252.0, 0.0)
    out[:, FACTOR_INDEX["market"]] += market_premium
    for first, last, moves in EPISODES:
        sel = (days >= first) & (days <= last) & xnys_open
        if sel.any():
            for name, total in moves.items():
                out[sel, FACTOR_INDEX[name]] += total / sel.sum()
    return out
