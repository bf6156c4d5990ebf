"""`SyntheticMarket`: the synthetic `MarketData` source (bars, scans, metadata) over the latent paths.

Prices: the latent path is generated on calendar days for every symbol (factor returns x loadings +
drift + idiosyncratic noise); cumulative log returns are kept as checkpoints every `BLOCK` days, so
any window of any symbol costs one block of noise, and `scan` and `bars` compute a price the same
way. Bars are sampled on the symbol's own calendar; scans compute every scanner field
(`indicators`) for the symbols listed at the date and apply the preset (`scanner_query`).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from portfolio_assets.sources.base import BAR_COLUMNS, SourceError
from portfolio_assets.sources.indicators import WINDOW, indicator_matrix
from portfolio_assets.sources.scanner_query import FAMILIES, SCAN_RESULT_COLUMNS, apply_preset
from portfolio_assets.sources.settings import SyntheticSettings, parse_source_settings
from portfolio_assets.sources.synthetic.description import (
    BLOCK,
    CAL_XNYS,
    CALENDARS,
    CHUNK,
    CLOSED_DAY_ACTIVITY,
    DRIFT_EPOCH,
    FACTOR_NAMES,
    SCAN_CACHE_SIZE,
    VOLUME_MA,
)
from portfolio_assets.sources.synthetic.factors import (
    FACTOR_VOL,
    REGIME_VOL,
    REGIMES,
    factor_paths,
    open_masks,
    regime_path,
)
from portfolio_assets.sources.synthetic.faults import apply_fault, build_fault_plan
from portfolio_assets.sources.synthetic.noise import (
    NORMAL_TABLE,
    S_BAR,
    S_BASIS,
    S_DRIFT,
    S_IDIO,
    S_PERTURB,
    S_VOLUME,
    T4_TABLE,
    daily_noise,
    hash_bits,
    hash_lane,
    stream_keys,
)
from portfolio_assets.sources.synthetic.universe import build_universe
from portfolio_assets.symbols import validate_symbol


class SyntheticMarket:
    """Deterministic synthetic multi-asset market implementing `MarketData` (see module docstring)."""

    name = "synthetic"

    def __init__(self, settings: SyntheticSettings | Mapping[str, Any] | None = None) -> None:
        cfg: SyntheticSettings = parse_source_settings("synthetic", settings)
        self.config = cfg
        self._days = pd.date_range(cfg.start, cfg.end, freq="D")
        n_days = len(self._days)
        self._open = open_masks(cfg.start, cfg.end, self._days)
        self._open_days = [np.flatnonzero(mask) for mask in self._open]
        self._regime = regime_path(cfg.seed, self._days)
        self._vm = REGIME_VOL[self._regime]
        factors = factor_paths(cfg.seed, self._days, self._vm, self._open[CAL_XNYS])
        activity = np.where(self._open, 1.0, np.array([CLOSED_DAY_ACTIVITY[c] for c in range(len(CALENDARS))])[:, None])
        self._factors_by_cal = activity[:, :, None] * factors[None, :, :]  # (n_cal, T, K)
        self._idio_scale_by_cal = activity * self._vm[None, :]  # (n_cal, T)
        n_full = n_days // BLOCK
        self._factor_block_sums = self._factors_by_cal[:, :n_full * BLOCK].reshape(
            len(CALENDARS), n_full, BLOCK, len(FACTOR_NAMES)).sum(axis=2)  # (n_cal, blocks, K)
        self._perturb_day = None if cfg.perturb_after is None else (cfg.perturb_after - cfg.start).days
        u = build_universe(cfg, self._days, self._open)
        self._u = u
        self._index = {s: i for i, s in enumerate(u.frame.index)}
        nz = u.loadings != 0.0
        width = max(1, int(nz.sum(axis=1).max()))
        order = np.argsort(~nz, axis=1, kind="stable")[:, :width]  # nonzero factors first, in factor order
        self._factor_idx = order
        self._factor_load = np.take_along_axis(u.loadings, order, axis=1)
        self._factor_count = nz.sum(axis=1)
        factor_vol = np.array([FACTOR_VOL[name] for name in FACTOR_NAMES])
        self._range_vol = np.sqrt(((u.loadings * factor_vol) ** 2).sum(axis=1) + u.idio_vol**2)
        self._key_idio = stream_keys(u.path_key, S_IDIO)
        self._key_drift = stream_keys(u.path_key, S_DRIFT)
        self._key_perturb = stream_keys(u.path_key, S_PERTURB)
        self._key_bar = stream_keys(u.venue_key, S_BAR)
        self._key_volume = stream_keys(u.venue_key, S_VOLUME)
        self._key_basis = stream_keys(u.venue_key, S_BASIS)
        n_blocks = n_days // BLOCK + 1
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
            frame = apply_fault(frame, fault, np.searchsorted(open_days, days), open_days, last)
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
            while len(self._scan_cache) > SCAN_CACHE_SIZE:
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
        cal = int(u.cal[members[0]]) if len(members) else CAL_XNYS
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
        out["liquidity_known"] = np.isfinite(out["volume"].to_numpy(dtype=np.float64))  # every bar has a volume
        return out

    def _drift_z(self, idx: np.ndarray, epochs: np.ndarray) -> np.ndarray:
        """Standard normal drift shock of each symbol for each drift epoch (rows = `epochs`)."""
        return NORMAL_TABLE[hash_lane(hash_bits(self._key_drift[idx], epochs), 0)]

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
            epoch = (day_range[:, None] + u.drift_phase[sub][None, :]) // DRIFT_EPOCH
            e_lo = int(epoch.min())
            z_epoch = np.take_along_axis(self._drift_z(sub, np.arange(e_lo, int(epoch.max()) + 1)),
                                         epoch - e_lo, axis=0)
            r = (u.drift_base[sub] + u.drift_spread[sub] * z_epoch) / 365.0
            factors = self._factors_by_cal[c, d0:d1 + 1]
            for m in range(int(self._factor_count[sub].max())):
                r += factors[:, self._factor_idx[sub, m]] * self._factor_load[sub, m]
            eps = daily_noise(self._key_idio[sub], d0, d1, T4_TABLE)
            r += self._idio_scale_by_cal[c, d0:d1 + 1, None] * (u.idio_vol[sub] * eps)
            if self._perturb_day is not None and d1 > self._perturb_day:
                rows = day_range > self._perturb_day
                r[rows] += self._perturbation(sub, d0, d1)[rows]
            out[:, cols] = r
        return out

    def _perturbation(self, idx: np.ndarray, d0: int, d1: int) -> np.ndarray:
        """Extra return added after `perturb_after` (point-in-time tests): 0.1 % + 0.6 % x t(4) noise."""
        return 0.001 + 0.006 * daily_noise(self._key_perturb[idx], d0, d1, T4_TABLE)

    def _block_increment(self, idx: np.ndarray, block: int) -> np.ndarray:
        """Sum of the daily log returns of checkpoint block `block` for each symbol of `idx`.

        Equal (up to rounding) to `_returns(...).sum(axis=0)` but cheaper: the factor and drift parts
        are summed analytically (block sums of the factors; at most two drift epochs per block), so
        only the idiosyncratic noise is generated day by day.
        """
        u = self._u
        d0, d1 = block * BLOCK, (block + 1) * BLOCK - 1
        out = np.empty(len(idx))
        cals = u.cal[idx]
        for c in np.unique(cals):
            cols = np.flatnonzero(cals == c)
            sub = idx[cols]
            phase = u.drift_phase[sub]
            first_epoch = (d0 + phase) // DRIFT_EPOCH
            days_first = np.minimum(BLOCK, DRIFT_EPOCH - (d0 + phase) % DRIFT_EPOCH)
            e_lo = int(first_epoch.min())
            z = self._drift_z(sub, np.arange(e_lo, int(first_epoch.max()) + 2))
            col = np.arange(len(sub))
            z_sum = days_first * z[first_epoch - e_lo, col] + (BLOCK - days_first) * z[first_epoch - e_lo + 1, col]
            total = (BLOCK * u.drift_base[sub] + u.drift_spread[sub] * z_sum) / 365.0
            factor_sums = self._factor_block_sums[c, block]
            for m in range(int(self._factor_count[sub].max())):
                total += factor_sums[self._factor_idx[sub, m]] * self._factor_load[sub, m]
            eps = daily_noise(self._key_idio[sub], d0, d1, T4_TABLE)
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
        block = max(up_to_day, 0) // BLOCK
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
        b0 = max(d_lo, 0) // BLOCK
        r = self._returns(idx, b0 * BLOCK, d_hi)
        cum = np.empty((r.shape[0] + 1, len(idx)))
        cum[0] = self._ckpt[b0, idx]  # the level on day 64 b0 - 1
        for j, start in enumerate(range(0, r.shape[0], BLOCK)):
            part = r[start:start + BLOCK]
            levels = np.cumsum(part, axis=0)
            levels += self._ckpt[b0 + j, idx]
            cum[start + 1:start + 1 + part.shape[0]] = levels
        log_close = cum[d_lo - (b0 * BLOCK - 1):] + u.log_p0[idx]
        if np.any(u.basis_vol[idx] > 0):
            log_close += u.basis_vol[idx] * daily_noise(self._key_basis[idx], d_lo, d_hi, NORMAL_TABLE)
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
        bits = hash_bits(self._key_bar[idx], days)
        open_ = np.exp(prev + 0.25 * sigma * NORMAL_TABLE[hash_lane(bits, 0)])
        high = np.maximum(open_, close) * np.exp(0.5 * sigma * np.abs(NORMAL_TABLE[hash_lane(bits, 1)]))
        low = np.minimum(open_, close) * np.exp(-0.5 * sigma * np.abs(NORMAL_TABLE[hash_lane(bits, 2)]))
        # Volume noise is indexed by the bar's position on its calendar, so it persists across bars.
        cal = int(u.cal[idx[0]])
        pos = np.searchsorted(self._open_days[cal], days)
        eta = daily_noise(self._key_volume[idx], int(pos[0]) - VOLUME_MA + 1, int(pos[-1]), NORMAL_TABLE)
        weights = 0.8 ** np.arange(VOLUME_MA)
        weights /= np.sqrt(np.sum(weights**2))
        rel = pos - pos[0] + VOLUME_MA - 1
        noise = np.zeros((len(days), len(idx)))
        for lag, w in enumerate(weights):
            noise += w * eta[rel - lag]
        log_volume = u.log_dv[idx] - log_close[days - d_lo] + 0.45 * noise + 0.8 * np.log(self._vm[days])[:, None]
        volume = np.round(np.exp(log_volume))
        return open_, high, low, close, volume


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


def _chunks(idx: np.ndarray) -> list[np.ndarray]:
    return [idx[k:k + CHUNK] for k in range(0, len(idx), CHUNK)]


def _empty_bars() -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype=np.float64) for name in BAR_COLUMNS})
    frame["time"] = pd.Series(dtype="datetime64[ns, UTC]")
    return frame
