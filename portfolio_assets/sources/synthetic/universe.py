"""Universe construction: every symbol of the synthetic market with its static parameters.

Equities get deterministic 3-4 letter tickers, a sector, factor loadings, idiosyncratic vol, drift,
start price, dollar volume and (for some) a late listing or a delisting; ETFs, bond ETFs, crypto
(with extra venues of the top coins), forex pairs (with broker duplicates) and futures come from
the tables in `description`. Per-symbol parameters are drawn from the symbol's own key, so a
symbol's parameters never depend on what else is in the universe.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from portfolio_assets.sources.scanner_query import FAMILY_CLASSES, TYPE_BY_CLASS
from portfolio_assets.sources.settings import SyntheticSettings
from portfolio_assets.sources.synthetic.description import (
    BOND_ETFS,
    CAL_245,
    CAL_247,
    CAL_CMES,
    CAL_XNYS,
    CALENDARS,
    CCY,
    CRYPTO_COINS,
    CRYPTO_VENUES,
    CURRENCIES,
    DRIFT_EPOCH,
    EQUITY_ETFS,
    FACTOR_INDEX,
    FACTOR_NAMES,
    FOREX_VENUES,
    FUTURES,
    INDUSTRIES,
    SECTOR_SUFFIX,
    SECTOR_WEIGHT,
    SECTORS,
    currency_value_loadings,
    sector_loadings,
)
from portfolio_assets.sources.synthetic.noise import (
    S_DRIFT,
    S_STATIC,
    normals_from_uniforms,
    stable_key,
    stream_keys,
    uniforms,
)
from portfolio_assets.symbols import validate_symbol

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
    return f"{stem} {SECTOR_SUFFIX[sector]} {_COMPANY_SUFFIX[digest[2] % len(_COMPANY_SUFFIX)]}"


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
    return uniforms(stream_keys(keys, S_STATIC), np.arange(n_params))


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


def _equity_group(cfg: SyntheticSettings, n_days: int, reserved: set[str], group: _Group) -> None:
    n = cfg.n_equities
    if n == 0:
        return
    tickers = _generated_tickers("equity", n, reserved)
    keys = _keys(cfg.seed, [f"equity:{t}" for t in tickers])
    u = _static_uniforms(keys, 16)
    z = normals_from_uniforms(u)
    sector_idx = np.minimum(np.searchsorted(np.cumsum(SECTOR_WEIGHT), u[0] * sum(SECTOR_WEIGHT)), 10)
    late = u[8] < 0.15
    list_day = np.where(late, (30 + u[9] * (0.85 * n_days - 30)).astype(int), 0)
    delist_start = list_day + 250
    delisted = (u[10] < 0.07) & (delist_start < n_days - 1)
    delist_day = np.where(delisted, delist_start + (u[11] * (n_days - 1 - delist_start)).astype(int), -1)
    for i, ticker in enumerate(tickers):
        sector = SECTORS[sector_idx[i]]
        industries = INDUSTRIES[sector]
        loadings = sector_loadings(sector, 0.7 + 0.6 * u[2, i], 0.5 + 1.0 * u[3, i])
        if "rates" in loadings:
            loadings["rates"] *= 0.5 + u[14, i]
        exchange = "NYSE" if u[12, i] < 0.45 else "NASDAQ"
        group.add(
            symbol=f"{exchange}:{ticker}", exchange=exchange, ticker=ticker, asset_class="equity",
            sector=sector, industry=industries[int(u[1, i] * len(industries))],
            description=_company_name(ticker, sector), currency="USD", identity=f"{exchange}:{ticker}",
            cal=CAL_XNYS, loadings=loadings,
            idio_vol=float(np.clip(0.014 * np.exp(0.45 * z[4, i]), 0.006, 0.05)),
            drift_base=0.06 * z[5, i], drift_spread=0.08,
            log_p0=math.log(40.0) + 0.9 * z[6, i], log_dv=math.log(2e7) + 1.6 * z[7, i], basis_vol=0.0,
            listed=int(list_day[i]), delisted=int(delist_day[i]),
        )


def _etf_group(cfg: SyntheticSettings, reserved: set[str], group: _Group) -> None:
    n_equity_etfs = cfg.n_etfs - cfg.bond_etfs
    named = list(EQUITY_ETFS[:n_equity_etfs])
    extra = _generated_tickers("etf", max(0, n_equity_etfs - len(named)), reserved)
    u_extra = _static_uniforms(_keys(cfg.seed, [f"etf:{t}" for t in extra]), 4) if extra else None
    for i, ticker in enumerate(extra):
        sector = SECTORS[int(u_extra[0, i] * len(SECTORS))]
        named.append((f"AMEX:{ticker}", f"Synthetic {sector} Equity Fund", None,
                      sector_loadings(sector, 0.9 + 0.2 * u_extra[1, i], 0.5 + 0.5 * u_extra[2, i]),
                      0.003, 20.0 + 80.0 * u_extra[3, i], 1e8))
    for symbol, description, sector, loadings, idio, p0, dv in named:
        exchange, ticker = symbol.split(":")
        group.add(symbol=symbol, exchange=exchange, ticker=ticker, asset_class="etf", sector=sector,
                  industry=np.nan, description=description, currency="USD", identity=symbol,
                  cal=CAL_XNYS, loadings=dict(loadings), idio_vol=idio, drift_base=0.0,
                  drift_spread=0.03, log_p0=math.log(p0), log_dv=math.log(dv), basis_vol=0.0,
                  listed=0, delisted=-1)
    bonds = list(BOND_ETFS[:cfg.bond_etfs])
    extra = _generated_tickers("bond", max(0, cfg.bond_etfs - len(bonds)), reserved)
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
                  cal=CAL_XNYS, loadings=loadings, idio_vol=idio,
                  drift_base=0.02 + (0.015 if spread else 0.0), drift_spread=0.01,
                  log_p0=math.log(p0), log_dv=math.log(dv), basis_vol=0.0, listed=0, delisted=-1)


def _venue_duplicates(n_primary: int, venues: Sequence[Any], n_dup: int) -> list[tuple[int, Any]]:
    """(primary position, venue) pairs: the top primaries on each venue in turn."""
    pairs = [(rank, venue) for rank in np.arange(n_primary) for venue in venues]
    return [(int(rank), venue) for rank, venue in pairs[:n_dup]]


def _crypto_group(cfg: SyntheticSettings, day_of: Any, n_days: int, reserved: set[str], group: _Group) -> None:
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
    z = normals_from_uniforms(u)
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
            asset_class="crypto", sector=np.nan, industry=np.nan, identity=f"crypto:{code}", cal=CAL_247,
            loadings={"crypto": beta_crypto, "market": beta_market}, idio_vol=idio,
            drift_base=0.05 + 0.20 * z[7, i], drift_spread=0.25,
            log_p0=math.log(p0) if p0 is not None else 2.0 * z[8, i],
            log_dv=math.log(1.5e9) - 0.3 * i + 0.5 * z[9, i], basis_vol=0.0008,
            listed=list_day, delisted=delist_day,
        )
        rows.append(row)
        group.add(symbol=f"BINANCE:{code}USDT", exchange="BINANCE", ticker=f"{code}USDT",
                  description=f"{code} / TetherUS", currency="USDT", **row)
    for rank, (venue, quote) in _venue_duplicates(len(coins), CRYPTO_VENUES, n_dup):
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


def _forex_group(cfg: SyntheticSettings, group: _Group) -> None:
    if cfg.n_forex == 0:
        return
    n_dup = cfg.n_forex // 5
    pairs = _forex_pairs()[:cfg.n_forex - n_dup]
    rows = []
    for base, quote in pairs:
        loadings = dict(currency_value_loadings(base))
        for factor, value in currency_value_loadings(quote).items():
            loadings[factor] = loadings.get(factor, 0.0) - value
        loadings = {k: v for k, v in loadings.items() if v != 0.0}
        b, q = CCY[base], CCY[quote]
        row = dict(asset_class="forex", sector=np.nan, industry=np.nan, identity=f"fx:{base}{quote}",
                   description=f"{b.name} / {q.name}", currency=quote, cal=CAL_245, loadings=loadings,
                   idio_vol=0.0, drift_base=b.carry - q.carry, drift_spread=0.0,
                   log_p0=math.log(b.usd_value / q.usd_value), log_dv=math.log(5e9), basis_vol=0.0002,
                   listed=0, delisted=-1)
        rows.append(row)
        group.add(symbol=f"FX:{base}{quote}", exchange="FX", ticker=f"{base}{quote}", **row)
    for rank, venue in _venue_duplicates(len(pairs), FOREX_VENUES, n_dup):
        base, quote = pairs[rank]
        group.add(symbol=f"{venue}:{base}{quote}", exchange=venue, ticker=f"{base}{quote}",
                  **{**rows[rank], "log_dv": math.log(1e9)})


def _futures_group(cfg: SyntheticSettings, group: _Group) -> None:
    for symbol, description, loadings, idio, p0, dv in FUTURES[:cfg.n_futures]:
        exchange, ticker = symbol.split(":")
        group.add(symbol=symbol, exchange=exchange, ticker=ticker, asset_class="futures", sector=np.nan,
                  industry=np.nan, description=description, currency="USD", identity=symbol, cal=CAL_CMES,
                  loadings=dict(loadings), idio_vol=idio, drift_base=0.03, drift_spread=0.10,
                  log_p0=math.log(p0), log_dv=math.log(dv), basis_vol=0.0, listed=0, delisted=-1)


def build_universe(cfg: SyntheticSettings, days: pd.DatetimeIndex, open_masks: np.ndarray) -> _Universe:
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
            loadings[i, FACTOR_INDEX[factor]] = value
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
    drift_phase = (uniforms(stream_keys(path_key, S_DRIFT), np.array([-1]))[0] * DRIFT_EPOCH).astype(np.int64)
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
