"""Causal regime features per session: volatility level, drawdown, turbulence and the spectral set.

Every value at session ``t`` uses baseline (and universe) rows ``<= t`` only. Level features:

``vol_ann``
    Annualized realized volatility ``std(r_{t-w+1..t}, ddof=1) * sqrt(252)`` with
    ``w = vol_window`` (a fraction, 0.16 = 16 %/yr).
``vol_pct``
    Percentile rank of ``vol_ann_t`` among its own trailing ``vol_history`` values (itself
    included): ``(#{s: v_s < v_t} + (#{s: v_s = v_t} + 1) / 2) / n`` (average rank / n), in
    ``(0, 1]``; needs ``pct_min_history`` values. *Relative* level: high when volatility is high
    for the last year — which a long crisis absorbs, hence the two absolute references below.
``vol_ref``
    Long-run reference volatility: the median of ``vol_ann`` over its trailing
    ``vol_reference_window`` values (3 years by default; at least ``pct_min_history``). A median
    moves only once high volatility fills half the window, so a crisis of a few months does not
    raise its own reference.
``vol_ratio``
    ``vol_ann / vol_ref`` (NaN where ``vol_ref`` is 0 or missing): volatility against the baseline's
    own long-run norm. The fixed annualized bands of :mod:`.labels` are the other absolute reference.
``drawdown``
    ``P_t / max(P_{t-w+1..t}) - 1`` with ``P_t = prod_{s<=t}(1 + r_s)`` and ``w = drawdown_window``
    (a fraction <= 0; -0.15 = 15 % below the trailing high).
``turbulence``, ``turbulence_pct``
    Kritzman–Li turbulence of the universe (:mod:`.turbulence`) and its percentile among its
    trailing ``turbulence_history`` values; NaN without a universe.

The spectral features (``dwt_hf_share``, ``dwt_hf_burst``, ``wavelet_entropy``, ``perm_entropy``)
are defined in :mod:`.spectral`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from portfolio_assets.constants import PERIODS_PER_YEAR
from portfolio_assets.manifest import RegimeConfig
from portfolio_assets.quant.regimes.spectral import SPECTRAL_COLUMNS, rolling_perm_entropy, rolling_wavelet
from portfolio_assets.quant.regimes.turbulence import rolling_turbulence

LEVEL_COLUMNS: tuple[str, ...] = ("vol_ann", "vol_pct", "vol_ref", "vol_ratio", "turbulence", "turbulence_pct",
                                  "drawdown")
FEATURE_COLUMNS: tuple[str, ...] = LEVEL_COLUMNS + SPECTRAL_COLUMNS


def history_sessions(config: RegimeConfig) -> int:
    """Baseline returns that the features at a session depend on: with this many returns up to
    ``t`` every level and spectral feature at ``t`` is computed on full windows, so a caller that
    holds only recent data (the ``market_regime`` asset) gets the same features as one with the whole
    history. ``vol_window - 1 + max(vol_history, vol_reference_window)`` for ``vol_pct`` and
    ``vol_ref``, at least ``drawdown_window``, ``wavelet_window`` and ``perm_window``."""
    return max(config.vol_window - 1 + max(config.vol_history, config.vol_reference_window),
               config.drawdown_window, config.wavelet_window, config.perm_window)


def regime_features(
    baseline_returns: pd.Series,
    universe_returns: pd.DataFrame | None = None,
    config: RegimeConfig | None = None,
) -> pd.DataFrame:
    """Causal regime features per session (columns :data:`FEATURE_COLUMNS`, NaN during warm-up).

    ``baseline_returns``: daily simple returns of the baseline, gap-free after an optional leading
    NaN. ``universe_returns``: optional return matrix (sessions x symbols, NaN = no bar) for the
    turbulence features; it is reindexed to the baseline's sessions. Every value at session ``t``
    uses rows ``<= t`` only. Definitions and units are in the module docstrings.
    """
    config = config or RegimeConfig()
    start = _check_baseline(baseline_returns)
    index = baseline_returns.index
    u = _universe_matrix(universe_returns, index)

    r = pd.Series(baseline_returns.to_numpy(dtype=float)[start:], index=index[start:])
    x = r.to_numpy()
    out = pd.DataFrame(np.nan, index=index, columns=list(FEATURE_COLUMNS))

    vol = r.rolling(config.vol_window, min_periods=config.vol_window).std(ddof=1) * math.sqrt(PERIODS_PER_YEAR)
    ref = vol.rolling(config.vol_reference_window, min_periods=config.pct_min_history).median()
    out.loc[r.index, "vol_ann"] = vol
    out.loc[r.index, "vol_pct"] = _trailing_pct(vol, config.vol_history, config.pct_min_history)
    out.loc[r.index, "vol_ref"] = ref
    out.loc[r.index, "vol_ratio"] = vol / ref.where(ref > 0)

    price = np.cumprod(1.0 + x)
    high = pd.Series(price).rolling(config.drawdown_window, min_periods=1).max().to_numpy()
    out.loc[r.index, "drawdown"] = price / high - 1.0

    hf_share, burst, went = rolling_wavelet(x, config)
    out.loc[r.index, "dwt_hf_share"] = hf_share
    out.loc[r.index, "dwt_hf_burst"] = burst
    out.loc[r.index, "wavelet_entropy"] = went
    out.loc[r.index, "perm_entropy"] = rolling_perm_entropy(x, config.perm_order, config.perm_delay,
                                                            config.perm_window)

    if u is not None and len(index) > config.turbulence_window:
        turb = pd.Series(rolling_turbulence(u, config.turbulence_window, config.turbulence_min_symbols), index=index)
        out["turbulence"] = turb
        out["turbulence_pct"] = _trailing_pct(turb, config.turbulence_history, config.pct_min_history)
    return out


def _trailing_pct(values: pd.Series, history: int, min_history: int) -> pd.Series:
    """Average-rank percentile of each value within its trailing ``history`` values (itself included)."""
    return values.rolling(history, min_periods=min_history).rank(pct=True)


def check_features(features: pd.DataFrame) -> None:
    """Raise ``ValueError`` unless ``features`` is a DataFrame with every :data:`FEATURE_COLUMNS` column."""
    if not isinstance(features, pd.DataFrame):
        raise ValueError(f"features: expected a DataFrame, got {type(features).__name__}")
    missing = [c for c in FEATURE_COLUMNS if c not in features.columns]
    if missing:
        raise ValueError(f"features: missing column(s) {missing}")


def _check_baseline(baseline_returns: pd.Series) -> int:
    """Validate the baseline; return the position of its first non-NaN return."""
    if not isinstance(baseline_returns, pd.Series):
        raise ValueError(f"baseline_returns: expected a pandas Series, got {type(baseline_returns).__name__}")
    if baseline_returns.empty:
        raise ValueError("baseline_returns: empty series")
    idx = baseline_returns.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise ValueError("baseline_returns: index must be a DatetimeIndex of sessions")
    if not idx.is_monotonic_increasing or idx.has_duplicates:
        raise ValueError("baseline_returns: sessions must be strictly increasing (sorted, no duplicates)")
    values = pd.to_numeric(baseline_returns, errors="coerce").to_numpy(dtype=float)
    bad_type = baseline_returns.notna().to_numpy() & np.isnan(values)
    if bad_type.any():
        raise ValueError(f"baseline_returns: non-numeric value at {idx[bad_type.argmax()]}")
    if np.isinf(values).any():
        raise ValueError(f"baseline_returns: infinite return at {idx[np.isinf(values).argmax()]}")
    finite = ~np.isnan(values)
    if not finite.any():
        raise ValueError("baseline_returns: no returns (all NaN)")
    start = int(finite.argmax())
    if not finite[start:].all():
        gap = start + int((~finite[start:]).argmax())
        raise ValueError(f"baseline_returns: missing return at {idx[gap]} after the series started "
                         "(only leading NaN is allowed; the baseline must be gap-free)")
    if (values[start:] <= -1.0).any():
        bad = start + int((values[start:] <= -1.0).argmax())
        raise ValueError(f"baseline_returns: return <= -100% at {idx[bad]}")
    return start


def _universe_matrix(universe_returns: pd.DataFrame | None, index: pd.DatetimeIndex) -> np.ndarray | None:
    if universe_returns is None:
        return None
    if not isinstance(universe_returns, pd.DataFrame):
        raise ValueError(f"universe_returns: expected a DataFrame or None, got {type(universe_returns).__name__}")
    if not isinstance(universe_returns.index, pd.DatetimeIndex):
        raise ValueError("universe_returns: index must be a DatetimeIndex of sessions")
    if universe_returns.index.has_duplicates:
        raise ValueError("universe_returns: duplicate sessions in the index")
    u = universe_returns.reindex(index).to_numpy(dtype=float)
    if np.isinf(u).any():
        raise ValueError("universe_returns: contains infinite returns")
    return u
