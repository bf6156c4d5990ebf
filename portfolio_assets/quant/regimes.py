"""Market regime detection (SPEC §6, step 10): QUIET / NORMAL / TURBULENT / CRISIS.

Everything is computed from the baseline's daily simple returns (e.g. ``AMEX:SPY``) and, optionally,
the universe's return matrix, with **causal** windows only: the feature and the label at session
``t`` use rows ``<= t`` and nothing else, so the label for partition ``D`` depends on data ``<= D``.

Features (one row per session, NaN during warm-up)
--------------------------------------------------
``vol_ann``
    Annualized realized volatility: ``std(r_{t-w+1..t}, ddof=1) * sqrt(252)`` with ``w = vol_window``
    (a fraction, 0.16 = 16 %/yr).
``vol_pct``
    Percentile rank of ``vol_ann_t`` within its own trailing ``vol_history`` values (itself included):
    ``(#{s: v_s < v_t} + (#{s: v_s = v_t} + 1) / 2) / n`` (average rank / n), in ``(0, 1]``; needs at
    least ``pct_min_history`` values.
``turbulence``
    Kritzman–Li turbulence of the universe cross-section, per symbol:
    ``d_t = (x_t - mu)' S^{-1} (x_t - mu) / p`` where ``mu`` and ``S`` (Ledoit–Wolf shrunk covariance)
    come from the ``turbulence_window`` rows strictly *before* ``t``, restricted to the ``p`` symbols
    with a return at ``t`` and on every row of that window (no imputation). Dividing by ``p`` makes
    it ``~1`` in calm markets whatever the universe size. NaN without a universe or with fewer than
    ``turbulence_min_symbols`` usable symbols.
``turbulence_pct``
    Percentile rank of ``turbulence_t`` within its trailing ``turbulence_history`` values.
``drawdown``
    ``P_t / max(P_{t-w+1..t}) - 1`` with ``P_t = prod_{s<=t}(1 + r_s)`` and ``w = drawdown_window``
    (a fraction <= 0; -0.15 = 15 % below the trailing high).
``dwt_hf_share``
    Causal DWT: at each ``t`` the trailing ``wavelet_window`` returns are decomposed with
    ``pywt.wavedec(mode="periodization")`` to ``wavelet_level`` levels; with level energies
    ``E_j = sum(d_j^2)`` and ``E_A = sum(a_J^2)`` the share is
    ``sum_{j<=hf_levels} E_j / (E_A + sum_j E_j)``.
``dwt_hf_burst``
    The share of that high-frequency detail energy carried by the coefficients of the most recent
    ``burst_fraction`` of the window (the DWT localizes energy in time as well as in scale): a burst
    of new high-frequency energy, e.g. the onset of a volatility spike, pushes it above
    ``burst_fraction``. Time localization is exact for ``haar``, approximate for longer filters.
``wavelet_entropy``
    ``-sum_k p_k ln p_k / ln(J + 1)`` over the ``J + 1`` normalized band energies
    ``p = (E_A, E_J, ..., E_1) / total``, in ``[0, 1]``.
``perm_entropy``
    Bandt–Pompe permutation entropy of the trailing ``perm_window`` returns (order ``m``, delay
    ``tau``): ``-sum_pi p_pi ln p_pi / ln(m!)`` over the ordinal patterns, in ``[0, 1]``
    (0 = one pattern only, e.g. a monotone sequence; 1 = all ``m!`` patterns equally frequent).
    Ties are ordered by time (``argsort(kind="stable")``).

Calibration of the spectral features (SPEC §11)
-----------------------------------------------
The old detector compared a raw DWT detail ratio with a fixed 0.7 — but white noise alone gives
≈0.87 for that ratio, so it said TURBULENT almost always. Here every spectral threshold is a quantile
of the feature's exact distribution **under Gaussian white noise** (:func:`spectral_null`):
for an orthogonal DWT with periodization (window divisible by ``2**level``) the ``n_j = W / 2**j``
level-``j`` coefficients of i.i.d. ``N(0, s^2)`` returns are i.i.d. ``N(0, s^2)``, so the band
energies are independent ``s^2 chi^2(n_j)`` and

* the expected share of detail level ``j`` is ``2^-j`` (of the approximation ``2^-J``); the high
  frequency share is ``Beta(n_hf / 2, (W - n_hf) / 2)`` with mean ``1 - 2^-hf_levels``;
* the burst share is ``Beta(m / 2, (n_hf - m) / 2)`` with ``m`` the number of recent
  coefficients (mean ``m / n_hf ~= burst_fraction``);
* the band shares are ``Dirichlet(n_A / 2, n_J / 2, ..., n_1 / 2)``; the wavelet-entropy quantile
  is taken from 20,000 seeded draws of that Dirichlet, the permutation-entropy quantile from 4,000
  seeded i.i.d. Gaussian windows (deterministic, cached).

Spectral evidence at ``t`` = the high-frequency share or the burst share above its
``1 - spectral_alpha`` noise quantile, or either entropy below its ``spectral_alpha`` quantile.
Scale does not enter, so the evidence fires on noise at a rate set by ``spectral_alpha``, not by the
wavelet or the level. Heavy tails make the true null slightly wider than the Gaussian one.

Labels (:func:`raw_regimes`), in priority order
-----------------------------------------------
1. ``CRISIS``: ``drawdown <= crisis_drawdown and vol_pct >= crisis_vol_pct``, or
   ``turbulence_pct >= crisis_turbulence_pct and drawdown <= crisis_turbulence_drawdown``.
2. ``TURBULENT`` (only with ``spectral=True``, i.e. ``feat_spectral_regimes``): stress
   (``vol_pct >= turbulent_vol_pct or turbulence_pct >= turbulent_turbulence_pct``) **and**
   spectral evidence. Without ``spectral`` these sessions are NORMAL (CRISIS has priority anyway).
3. ``QUIET``: ``vol_pct <= quiet_vol_pct`` and (``turbulence_pct < quiet_turbulence_pct`` or no
   turbulence available).
4. ``NORMAL`` otherwise.

A NaN turbulence (no universe, early history, too few full-coverage symbols) never triggers a rule
and does not block QUIET.

Hysteresis (:func:`apply_hysteresis`): a move to a *worse* state needs the last ``persistence``
raw labels all worse than the current state (the move goes to the mildest of them); a move to a
better state follows the raw label at once; either move only after the current state has been held
``min_dwell`` sessions. **Warm-up**: until ``vol_pct`` and ``drawdown`` (and with ``spectral`` the DWT
and permutation features) exist, ``raw_label`` and ``label`` are ``NORMAL`` and the ``warmup`` column
is True, so the asset can report it; the state machine starts at the first non-warm-up session from
NORMAL, free to move.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pywt

from portfolio_assets.constants import CRISIS, NORMAL, PERIODS_PER_YEAR, QUIET, REGIME_LABELS, TURBULENT

SEVERITY: dict[str, int] = {label: i for i, label in enumerate(REGIME_LABELS)}

FEATURE_COLUMNS: tuple[str, ...] = (
    "vol_ann",
    "vol_pct",
    "turbulence",
    "turbulence_pct",
    "drawdown",
    "dwt_hf_share",
    "dwt_hf_burst",
    "wavelet_entropy",
    "perm_entropy",
)
_SPECTRAL_COLUMNS = ("dwt_hf_share", "dwt_hf_burst", "wavelet_entropy", "perm_entropy")
_NULL_SEED = 20240601
_WAVELET_NULL_DRAWS = 20_000
_PERM_NULL_DRAWS = 4_000


@dataclass(frozen=True)
class RegimeParams:
    """Regime parameters (manifest section ``regime``). Windows are in sessions.

    Thresholds on percentiles are in ``[0, 1]``; drawdown thresholds are fractions (``-0.15`` =
    15 % below the trailing high). ``spectral_alpha`` is the white-noise false-alarm rate of each
    spectral test (see the module docstring).
    """

    vol_window: int = 21
    vol_history: int = 252
    turbulence_window: int = 252
    turbulence_history: int = 252
    turbulence_min_symbols: int = 5
    pct_min_history: int = 63
    drawdown_window: int = 252
    wavelet: str = "haar"
    wavelet_level: int = 4
    wavelet_window: int = 64
    hf_levels: int = 1
    burst_fraction: float = 0.25
    perm_order: int = 3
    perm_delay: int = 1
    perm_window: int = 63
    persistence: int = 3
    min_dwell: int = 5
    crisis_drawdown: float = -0.15
    crisis_vol_pct: float = 0.90
    crisis_turbulence_pct: float = 0.95
    crisis_turbulence_drawdown: float = -0.10
    turbulent_vol_pct: float = 0.80
    turbulent_turbulence_pct: float = 0.90
    quiet_vol_pct: float = 0.25
    quiet_turbulence_pct: float = 0.50
    spectral_alpha: float = 0.05

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"RegimeParams.{name}={getattr(self, name)!r}: {why}")

        for name in ("vol_window", "vol_history", "turbulence_window", "turbulence_history",
                     "turbulence_min_symbols", "pct_min_history", "drawdown_window",
                     "wavelet_level", "wavelet_window", "hf_levels", "perm_order", "perm_delay",
                     "perm_window", "persistence", "min_dwell"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise bad(name, "must be a positive integer")
        for name in ("vol_window", "turbulence_window"):
            if getattr(self, name) < 2:
                raise bad(name, "must be at least 2")
        if self.pct_min_history > min(self.vol_history, self.turbulence_history):
            raise bad("pct_min_history", "must not exceed vol_history and turbulence_history")
        if self.wavelet not in pywt.wavelist(kind="discrete") or not pywt.Wavelet(self.wavelet).orthogonal:
            raise bad("wavelet", "must be an orthogonal discrete PyWavelets wavelet (e.g. 'haar', 'db4')")
        if self.wavelet_window % (2**self.wavelet_level):
            raise bad("wavelet_window", f"must be a multiple of 2**wavelet_level = {2**self.wavelet_level}")
        if self.hf_levels > self.wavelet_level:
            raise bad("hf_levels", "must not exceed wavelet_level")
        if not 0.0 < self.burst_fraction < 1.0:
            raise bad("burst_fraction", "must be in (0, 1)")
        if not 2 <= self.perm_order <= 7:
            raise bad("perm_order", "must be between 2 and 7")
        if self.perm_window < (self.perm_order - 1) * self.perm_delay + 2:
            raise bad("perm_window", "must hold at least two ordinal patterns")
        for name in ("crisis_vol_pct", "crisis_turbulence_pct", "turbulent_vol_pct",
                     "turbulent_turbulence_pct", "quiet_vol_pct", "quiet_turbulence_pct"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "must be a percentile in [0, 1]")
        for name in ("crisis_drawdown", "crisis_turbulence_drawdown"):
            if not -1.0 < getattr(self, name) <= 0.0:
                raise bad(name, "must be a drawdown fraction in (-1, 0]")
        if not 0.0 < self.spectral_alpha < 0.5:
            raise bad("spectral_alpha", "must be in (0, 0.5)")

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any]) -> RegimeParams:
        """Build from a manifest ``regime`` section; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(f"regime config: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**mapping)


# --------------------------------------------------------------------------------------------------
# white-noise null of the spectral features


@dataclass(frozen=True)
class SpectralNull:
    """Expectation and threshold of each spectral feature under Gaussian white noise.

    ``*_threshold`` is the ``1 - alpha`` quantile for the shares (evidence when above) and the
    ``alpha`` quantile for the entropies (evidence when below).
    """

    alpha: float
    hf_share_expected: float
    hf_share_threshold: float
    hf_burst_expected: float
    hf_burst_threshold: float
    wavelet_entropy_expected: float
    wavelet_entropy_threshold: float
    perm_entropy_expected: float
    perm_entropy_threshold: float


def _level_sizes(window: int, level: int) -> np.ndarray:
    """Coefficient counts ``[n_A, n_J, ..., n_1]`` of a periodized DWT of ``window`` samples."""
    return np.array([window >> level] + [window >> j for j in range(level, 0, -1)])


def _recent_counts(window: int, level: int, hf_levels: int, fraction: float) -> list[int]:
    """Recent coefficients per high-frequency level ``j = 1..hf_levels``: ``ceil(fraction * n_j)``."""
    return [max(1, math.ceil(fraction * (window >> j))) for j in range(1, hf_levels + 1)]


def expected_energy_shares(window: int, level: int) -> np.ndarray:
    """Expected band energy shares ``[2^-J, 2^-J, 2^-(J-1), ..., 1/2]`` (order ``[A_J, D_J, ..., D_1]``)
    of an orthogonal periodized DWT of white noise: ``n_band / window``."""
    return _level_sizes(window, level) / window


@lru_cache(maxsize=32)
def _spectral_null_cached(window: int, level: int, hf_levels: int, fraction: float,
                          order: int, delay: int, perm_window: int, alpha: float) -> SpectralNull:
    from scipy.special import betaincinv  # inverse regularized incomplete beta = Beta quantile

    sizes = _level_sizes(window, level)
    n_hf = int(sizes[-hf_levels:].sum())
    m = int(sum(_recent_counts(window, level, hf_levels, fraction)))
    rng = np.random.default_rng(_NULL_SEED)
    shares = rng.dirichlet(sizes / 2.0, size=_WAVELET_NULL_DRAWS)
    went = _normalized_entropy(shares)
    noise = rng.standard_normal((_PERM_NULL_DRAWS, perm_window))
    pent = permutation_entropy(noise, order=order, delay=delay)
    return SpectralNull(
        alpha=alpha,
        hf_share_expected=n_hf / window,
        hf_share_threshold=float(betaincinv(n_hf / 2, (window - n_hf) / 2, 1 - alpha)),
        hf_burst_expected=m / n_hf,
        hf_burst_threshold=float(betaincinv(m / 2, (n_hf - m) / 2, 1 - alpha)),
        wavelet_entropy_expected=float(went.mean()),
        wavelet_entropy_threshold=float(np.quantile(went, alpha)),
        perm_entropy_expected=float(pent.mean()),
        perm_entropy_threshold=float(np.quantile(pent, alpha)),
    )


def spectral_null(params: RegimeParams) -> SpectralNull:
    """White-noise expectations and thresholds of the spectral features for ``params``.

    Exact Beta quantiles for the high-frequency and burst shares; seeded Monte Carlo quantiles
    (deterministic) for the two entropies — see the module docstring for the distributions.
    """
    return _spectral_null_cached(params.wavelet_window, params.wavelet_level, params.hf_levels,
                                 params.burst_fraction, params.perm_order, params.perm_delay,
                                 params.perm_window, params.spectral_alpha)


# --------------------------------------------------------------------------------------------------
# feature primitives


def _normalized_entropy(p: np.ndarray) -> np.ndarray:
    """``-sum p ln p / ln(k)`` along the last axis (``0 ln 0 = 0``); NaN rows stay NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    h = -terms.sum(axis=-1) / math.log(p.shape[-1])
    return np.where(np.isnan(p).any(axis=-1), np.nan, h)


def wavelet_energy_shares(x: np.ndarray, wavelet: str = "haar", level: int = 4) -> np.ndarray:
    """Band energy shares ``[E_A, E_J, ..., E_1] / total`` of ``pywt.wavedec(x, mode="periodization")``.

    ``x`` is 1-D (one window) or 2-D (one window per row, decomposed along the last axis); the
    last axis must be a multiple of ``2**level``. A window of zeros gives NaN shares.
    """
    x = np.asarray(x, dtype=float)
    if x.shape[-1] % (2**level):
        raise ValueError(f"x: last axis length {x.shape[-1]} is not a multiple of 2**level = {2**level}")
    energy = _band_energies(x, wavelet, level)[0]
    total = energy.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, energy / np.where(total > 0, total, 1.0), np.nan)


def _band_energies(x: np.ndarray, wavelet: str, level: int) -> tuple[np.ndarray, list[np.ndarray]]:
    with warnings.catch_warnings():
        # periodization stays exactly orthogonal beyond pywt's boundary-effect level advice
        warnings.filterwarnings("ignore", message="Level value of", category=UserWarning)
        coeffs = pywt.wavedec(x, wavelet, mode="periodization", level=level, axis=-1)
    energy = np.stack([np.sum(c * c, axis=-1) for c in coeffs], axis=-1)
    return energy, coeffs


def _ordinal_codes(x: np.ndarray, order: int, delay: int) -> np.ndarray:
    """Lehmer code in ``[0, order!)`` of the ordinal pattern of each embedding vector.

    The pattern at position ``i`` (along the last axis) is that of
    ``(x_i, x_{i+tau}, ..., x_{i+(m-1)tau})``; the output has ``(m - 1) tau`` fewer positions.
    """
    span = (order - 1) * delay
    n = x.shape[-1] - span
    emb = np.stack([x[..., k * delay: k * delay + n] for k in range(order)], axis=-1)
    perm = np.argsort(emb, axis=-1, kind="stable")
    code = np.zeros(perm.shape[:-1], dtype=np.int64)
    for i in range(order):
        smaller_after = (perm[..., i + 1:] < perm[..., i: i + 1]).sum(axis=-1)
        code += smaller_after * math.factorial(order - 1 - i)
    return code


def permutation_entropy(x: np.ndarray, order: int = 3, delay: int = 1) -> np.ndarray | float:
    """Normalized Bandt–Pompe permutation entropy ``-sum p_pi ln p_pi / ln(order!)`` in ``[0, 1]``.

    ``x`` is 1-D (returns a float) or 2-D (one sequence per row, returns an array). ``p_pi`` is the
    relative frequency of ordinal pattern ``pi`` among the ``len - (order - 1) * delay`` embedding
    vectors; ties are ordered by time.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim not in (1, 2):
        raise ValueError(f"x: expected a 1-D or 2-D array, got {x.ndim} dimensions")
    if x.shape[-1] < (order - 1) * delay + 1:
        raise ValueError(f"x: length {x.shape[-1]} is too short for order={order}, delay={delay}")
    if np.isnan(x).any():
        raise ValueError("x: contains NaN")
    codes = _ordinal_codes(np.atleast_2d(x), order, delay)
    n_pat = math.factorial(order)
    rows = codes.shape[0]
    offsets = (np.arange(rows) * n_pat)[:, None]
    counts = np.bincount((codes + offsets).ravel(), minlength=rows * n_pat).reshape(rows, n_pat)
    h = _normalized_entropy(counts / codes.shape[1])
    return float(h[0]) if x.ndim == 1 else h


def _rolling_perm_entropy(x: np.ndarray, order: int, delay: int, window: int) -> np.ndarray:
    """Permutation entropy of ``x[t-window+1..t]`` for each ``t`` (NaN before a full window)."""
    n = len(x)
    out = np.full(n, np.nan)
    span = (order - 1) * delay
    if n < window:
        return out
    codes = _ordinal_codes(x, order, delay)  # pattern of x[i..i+span] sits at i
    n_pat = math.factorial(order)
    onehot = np.zeros((len(codes) + 1, n_pat), dtype=np.int32)
    onehot[np.arange(1, len(codes) + 1), codes] = 1
    cum = np.cumsum(onehot, axis=0)
    per_window = window - span
    ends = np.arange(window - 1, n)  # window ending at t holds patterns starting at t-window+1..t-span
    first = ends - window + 1
    counts = cum[first + per_window] - cum[first]
    out[ends] = _normalized_entropy(counts / per_window)
    return out


def _rolling_wavelet(x: np.ndarray, params: RegimeParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hf share, hf burst, wavelet entropy) of the trailing ``wavelet_window`` returns at each t."""
    n, w = len(x), params.wavelet_window
    hf_share, burst, went = (np.full(n, np.nan) for _ in range(3))
    if n < w:
        return hf_share, burst, went
    windows = np.lib.stride_tricks.sliding_window_view(x, w)
    energy, coeffs = _band_energies(windows, params.wavelet, params.wavelet_level)
    total = energy.sum(axis=1)
    hf = energy[:, -params.hf_levels:].sum(axis=1)
    recent_counts = _recent_counts(w, params.wavelet_level, params.hf_levels, params.burst_fraction)
    # coeffs is [a_J, d_J, ..., d_1]: d_j sits at index -j
    recent = sum(np.sum(coeffs[-j][:, -m:] ** 2, axis=1) for j, m in enumerate(recent_counts, start=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = total > 0
        hf_share[w - 1:] = np.where(ok, hf / np.where(ok, total, 1.0), np.nan)
        ok_hf = hf > 0
        burst[w - 1:] = np.where(ok_hf, recent / np.where(ok_hf, hf, 1.0), np.nan)
        shares = np.where(ok[:, None], energy / np.where(ok, total, 1.0)[:, None], np.nan)
    went[w - 1:] = _normalized_entropy(shares)
    return hf_share, burst, went


def _ledoit_wolf(block: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit–Wolf (2004) shrunk covariance of the rows of ``block`` (n x p), and the shrinkage.

    With ``X`` the column-demeaned block, ``S = X'X / n``, ``mu = tr(S) / p``:
    ``delta = ||S - mu I||_F^2 / p``, ``beta = min(delta, (sum_k ||x_k||^4 / n - ||S||_F^2) / (n p))``,
    shrinkage ``s = beta / delta`` and ``S* = (1 - s) S + s mu I`` — the estimator of
    ``sklearn.covariance.ledoit_wolf`` (checked against it in the tests), without its per-call
    validation overhead, which dominates in this rolling loop.
    """
    n, p = block.shape
    x = block - block.mean(axis=0)
    emp = x.T @ x / n
    trace = float(np.trace(emp))
    mu = trace / p
    frob2 = float(np.sum(emp * emp))
    row_norm2 = np.einsum("ij,ij->i", x, x)
    beta = (float(row_norm2 @ row_norm2) / n - frob2) / (n * p)
    delta = (frob2 - 2.0 * mu * trace + p * mu * mu) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    shrunk = (1.0 - shrinkage) * emp
    shrunk[np.diag_indices(p)] += shrinkage * mu
    return shrunk, shrinkage


def _turbulence(u: np.ndarray, window: int, min_symbols: int) -> np.ndarray:
    """Per-symbol Mahalanobis turbulence of row ``t`` vs the ``window`` rows before it (see module doc)."""
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    n = u.shape[0]
    out = np.full(n, np.nan)
    finite = np.isfinite(u)
    cum = np.vstack([np.zeros((1, u.shape[1]), dtype=np.int64), np.cumsum(finite, axis=0)])
    # Hundreds of tiny (window x p) products: a multi-threaded BLAS only adds synchronization cost
    # (10-100x slower on a busy 2-core machine), so the loop runs with one BLAS thread.
    with threadpool_limits(limits=1, user_api="blas"):
        for t in range(window, n):
            out[t] = _turbulence_at(u, finite, cum, t, window, min_symbols)
    return out


def _turbulence_at(u: np.ndarray, finite: np.ndarray, cum: np.ndarray, t: int, window: int,
                   min_symbols: int) -> float:
    full = (cum[t] - cum[t - window] == window) & finite[t]
    if full.sum() < min_symbols:
        return np.nan
    block = u[t - window: t][:, full]
    varying = block.std(axis=0) > 0
    if varying.sum() < min_symbols:
        return np.nan
    block = block[:, varying]
    diff = u[t, full][varying] - block.mean(axis=0)
    cov, _ = _ledoit_wolf(block)
    try:
        return float(diff @ np.linalg.solve(cov, diff)) / diff.size
    except np.linalg.LinAlgError:  # singular shrunk covariance: no turbulence reading for this session
        return np.nan


def _trailing_pct(values: pd.Series, history: int, min_history: int) -> pd.Series:
    """Average-rank percentile of each value within its trailing ``history`` values (itself included)."""
    return values.rolling(history, min_periods=min_history).rank(pct=True)


# --------------------------------------------------------------------------------------------------
# input checks


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


# --------------------------------------------------------------------------------------------------
# public API


def regime_features(
    baseline_returns: pd.Series,
    universe_returns: pd.DataFrame | None = None,
    params: RegimeParams | None = None,
) -> pd.DataFrame:
    """Causal regime features per session (columns :data:`FEATURE_COLUMNS`, NaN during warm-up).

    ``baseline_returns``: daily simple returns of the baseline, gap-free after an optional leading
    NaN. ``universe_returns``: optional return matrix (sessions x symbols, NaN = no bar) for the
    turbulence features; it is reindexed to the baseline's sessions. Every value at session ``t``
    uses rows ``<= t`` only. Definitions and units are in the module docstring.
    """
    params = params or RegimeParams()
    start = _check_baseline(baseline_returns)
    index = baseline_returns.index
    u = _universe_matrix(universe_returns, index)
    n = len(index)

    r = pd.Series(baseline_returns.to_numpy(dtype=float)[start:], index=index[start:])
    x = r.to_numpy()
    out = pd.DataFrame(np.nan, index=index, columns=list(FEATURE_COLUMNS))

    vol = r.rolling(params.vol_window, min_periods=params.vol_window).std(ddof=1) * math.sqrt(PERIODS_PER_YEAR)
    out.loc[r.index, "vol_ann"] = vol
    out.loc[r.index, "vol_pct"] = _trailing_pct(vol, params.vol_history, params.pct_min_history)

    price = np.cumprod(1.0 + x)
    high = pd.Series(price).rolling(params.drawdown_window, min_periods=1).max().to_numpy()
    out.loc[r.index, "drawdown"] = price / high - 1.0

    hf_share, burst, went = _rolling_wavelet(x, params)
    out.loc[r.index, "dwt_hf_share"] = hf_share
    out.loc[r.index, "dwt_hf_burst"] = burst
    out.loc[r.index, "wavelet_entropy"] = went
    out.loc[r.index, "perm_entropy"] = _rolling_perm_entropy(x, params.perm_order, params.perm_delay,
                                                             params.perm_window)

    if u is not None and n > params.turbulence_window:
        turb = pd.Series(_turbulence(u, params.turbulence_window, params.turbulence_min_symbols), index=index)
        out["turbulence"] = turb
        out["turbulence_pct"] = _trailing_pct(turb, params.turbulence_history, params.pct_min_history)
    return out


def _check_features(features: pd.DataFrame) -> None:
    if not isinstance(features, pd.DataFrame):
        raise ValueError(f"features: expected a DataFrame, got {type(features).__name__}")
    missing = [c for c in FEATURE_COLUMNS if c not in features.columns]
    if missing:
        raise ValueError(f"features: missing column(s) {missing}")


def warmup_mask(features: pd.DataFrame, spectral: bool) -> pd.Series:
    """True where a feature the rules need is not yet available (``vol_pct``, ``drawdown``; with
    ``spectral`` also the DWT and permutation-entropy features). Turbulence is optional evidence."""
    _check_features(features)
    needed = ["vol_pct", "drawdown"] + (list(_SPECTRAL_COLUMNS) if spectral else [])
    return features[needed].isna().any(axis=1).rename("warmup")


def spectral_evidence(features: pd.DataFrame, params: RegimeParams | None = None) -> pd.Series:
    """True where the spectral features depart from white noise at level ``spectral_alpha``:
    ``dwt_hf_share`` or ``dwt_hf_burst`` above, or ``wavelet_entropy`` or ``perm_entropy`` below,
    their noise quantile (:func:`spectral_null`). NaN features give False."""
    params = params or RegimeParams()
    _check_features(features)
    null = spectral_null(params)
    evidence = (
        (features["dwt_hf_share"] >= null.hf_share_threshold)
        | (features["dwt_hf_burst"] >= null.hf_burst_threshold)
        | (features["wavelet_entropy"] <= null.wavelet_entropy_threshold)
        | (features["perm_entropy"] <= null.perm_entropy_threshold)
    )
    return evidence.rename("spectral_evidence")


def raw_regimes(features: pd.DataFrame, params: RegimeParams | None = None, spectral: bool = False) -> pd.Series:
    """Per-session label from the rules of the module docstring, before hysteresis.

    Warm-up sessions (:func:`warmup_mask`) are ``NORMAL``. Without ``spectral`` no session is
    TURBULENT.
    """
    params = params or RegimeParams()
    _check_features(features)
    vp, tp, dd = features["vol_pct"], features["turbulence_pct"], features["drawdown"]
    crisis = ((dd <= params.crisis_drawdown) & (vp >= params.crisis_vol_pct)) | (
        (tp >= params.crisis_turbulence_pct) & (dd <= params.crisis_turbulence_drawdown)
    )
    stress = (vp >= params.turbulent_vol_pct) | (tp >= params.turbulent_turbulence_pct)
    turbulent = stress & spectral_evidence(features, params) if spectral else pd.Series(False, index=features.index)
    quiet = (vp <= params.quiet_vol_pct) & (tp.isna() | (tp < params.quiet_turbulence_pct))
    labels = np.select([crisis.to_numpy(), turbulent.to_numpy(), quiet.to_numpy()],
                       [CRISIS, TURBULENT, QUIET], default=NORMAL).astype(object)
    labels[warmup_mask(features, spectral).to_numpy()] = NORMAL
    return pd.Series(labels, index=features.index, name="raw_label", dtype=object)


def apply_hysteresis(raw: pd.Series, persistence: int, min_dwell: int,
                     warmup: pd.Series | None = None) -> pd.Series:
    """Smooth raw labels: worse moves need ``persistence`` consecutive worse raw labels; dwell >= ``min_dwell``.

    State machine, per session ``t`` (causal: uses ``raw[<= t]``): with ``s`` the current state and
    ``h`` the sessions it has been held, if ``h >= min_dwell`` then (a) if the last ``persistence``
    non-warm-up raw labels are all worse than ``s``, move to the mildest of them; (b) else if
    ``raw_t`` is better than ``s``, move to ``raw_t``. Warm-up sessions are ``NORMAL`` and restart
    the machine at ``NORMAL`` with the dwell satisfied.
    """
    if persistence < 1 or min_dwell < 1:
        raise ValueError(f"persistence={persistence} and min_dwell={min_dwell} must be >= 1")
    unknown = sorted(set(raw.dropna().unique()) - set(REGIME_LABELS)) if len(raw) else []
    if unknown or raw.isna().any():
        raise ValueError(f"raw: labels must be one of {REGIME_LABELS}, got {unknown or ['NaN']}")
    warm = np.zeros(len(raw), dtype=bool) if warmup is None else warmup.reindex(raw.index).fillna(True).to_numpy(bool)
    sev = raw.map(SEVERITY).to_numpy()
    out = np.empty(len(raw), dtype=object)
    state, held, recent = SEVERITY[NORMAL], min_dwell, []
    for t in range(len(sev)):
        if warm[t]:
            out[t] = NORMAL
            state, held, recent = SEVERITY[NORMAL], min_dwell, []
            continue
        recent = (recent + [int(sev[t])])[-persistence:]
        target = state
        if held >= min_dwell:
            if len(recent) == persistence and min(recent) > state:
                target = min(recent)
            elif sev[t] < state:
                target = int(sev[t])
        if target != state:
            state, held = target, 1
        else:
            held += 1
        out[t] = REGIME_LABELS[state]
    return pd.Series(out, index=raw.index, name="label", dtype=object)


def label_regimes(features: pd.DataFrame, params: RegimeParams | None = None, spectral: bool = False) -> pd.Series:
    """Final regime label per session: :func:`raw_regimes` smoothed by :func:`apply_hysteresis`."""
    params = params or RegimeParams()
    raw = raw_regimes(features, params, spectral)
    return apply_hysteresis(raw, params.persistence, params.min_dwell, warmup_mask(features, spectral))


@dataclass(frozen=True)
class RegimeResult:
    """Output of :func:`detect_regime`.

    ``features``: the feature columns plus ``spectral_evidence``, ``warmup``, ``raw_label`` and
    ``label`` per session. ``label``: the label of the last session (the partition's regime).
    ``counts``: sessions per label over non-warm-up sessions (all four labels, zeros included).
    """

    features: pd.DataFrame
    label: str
    as_of: pd.Timestamp
    is_warmup: bool
    counts: pd.Series
    spectral: bool
    params: RegimeParams
    null: SpectralNull

    @property
    def fractions(self) -> pd.Series:
        """Share of non-warm-up sessions per label (sums to 1, or all zero if nothing is labelled)."""
        total = self.counts.sum()
        return self.counts / total if total else self.counts.astype(float)

    def metadata(self) -> dict[str, Any]:
        """JSON-ready summary: label, as-of session, warm-up flag, counts, last features, null thresholds."""
        last = self.features.iloc[-1]
        return {
            "label": self.label,
            "as_of": self.as_of.strftime("%Y-%m-%d"),
            "is_warmup": self.is_warmup,
            "spectral": self.spectral,
            "counts": {k: int(v) for k, v in self.counts.items()},
            "features": {c: (None if pd.isna(last[c]) else float(last[c])) for c in FEATURE_COLUMNS},
            "noise_null": asdict(self.null),
            "params": asdict(self.params),
        }


def detect_regime(
    baseline_returns: pd.Series,
    universe_returns: pd.DataFrame | None = None,
    params: RegimeParams | None = None,
    spectral: bool = False,
) -> RegimeResult:
    """Features, raw and smoothed labels for every session, and the current regime (last session).

    ``spectral`` is the ``feat_spectral_regimes`` flag: it enables the TURBULENT label.
    """
    params = params or RegimeParams()
    feats = regime_features(baseline_returns, universe_returns, params)
    warm = warmup_mask(feats, spectral)
    raw = raw_regimes(feats, params, spectral)
    label = apply_hysteresis(raw, params.persistence, params.min_dwell, warm)
    frame = feats.assign(spectral_evidence=spectral_evidence(feats, params), warmup=warm,
                         raw_label=raw, label=label)
    counts = label[~warm].value_counts().reindex(list(REGIME_LABELS), fill_value=0).astype(int)
    return RegimeResult(
        features=frame,
        label=str(label.iloc[-1]),
        as_of=pd.Timestamp(feats.index[-1]),
        is_warmup=bool(warm.iloc[-1]),
        counts=counts.rename("sessions"),
        spectral=spectral,
        params=params,
        null=spectral_null(params),
    )


_LABEL_COLORS = {QUIET: "#9fd89f", NORMAL: "#e6e6e6", TURBULENT: "#ffc266", CRISIS: "#ff7f7f"}


def plot_regime(
    result: RegimeResult,
    baseline: pd.Series,
    path: str | os.PathLike[str],
    kind: Literal["auto", "prices", "returns"] = "auto",
) -> Path:
    """Write a PNG: the baseline's cumulative price shaded by label, and a panel of ``vol_pct``,
    ``turbulence_pct`` and ``dwt_hf_share`` (with its white-noise expectation).

    ``baseline`` holds prices or simple returns; ``kind="auto"`` treats it as prices when every value
    is positive and the median exceeds 0.5 (no daily return series looks like that), else as returns
    (price = ``prod(1 + r)``). The file is written atomically (temp file, then rename).
    """
    from matplotlib.figure import Figure

    if kind not in ("auto", "prices", "returns"):
        raise ValueError(f"kind: expected 'auto', 'prices' or 'returns', got {kind!r}")
    frame = result.features
    series = pd.to_numeric(baseline, errors="coerce").reindex(frame.index)
    finite = series.dropna()
    if finite.empty:
        raise ValueError("baseline: no values on the result's sessions")
    if kind == "auto":
        kind = "prices" if (finite > 0).all() and finite.median() > 0.5 else "returns"
    price = series if kind == "prices" else (1.0 + series.fillna(0.0)).cumprod()

    fig = Figure(figsize=(11, 6.5), dpi=100, layout="constrained")
    ax_price, ax_feat = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    shading = ax_price.get_xaxis_transform()
    labels = frame["label"].where(~frame["warmup"], "WARMUP")
    for name, color in [*_LABEL_COLORS.items(), ("WARMUP", "none")]:
        mask = (labels == name).to_numpy()
        if mask.any():
            ax_price.fill_between(frame.index, 0, 1, where=mask, transform=shading, facecolor=color,
                                  edgecolor="#bbbbbb" if name == "WARMUP" else "none",
                                  hatch="//" if name == "WARMUP" else None, alpha=0.8, step="mid",
                                  linewidth=0, label=name.title())
    ax_price.plot(price.index, price.to_numpy(), color="black", linewidth=1.0, label="baseline")
    ax_price.set_ylabel("cumulative price")
    ax_price.set_title(f"Market regime as of {result.as_of:%Y-%m-%d}: {result.label}"
                       f"{' (warm-up)' if result.is_warmup else ''}"
                       f"{'' if result.spectral else ' — spectral off'}")
    ax_price.legend(loc="upper left", fontsize=8, ncol=6)

    for col, color in (("vol_pct", "tab:blue"), ("turbulence_pct", "tab:purple"), ("dwt_hf_share", "tab:green")):
        ax_feat.plot(frame.index, frame[col].to_numpy(), color=color, linewidth=0.7, label=col)
    ax_feat.axhline(result.null.hf_share_expected, color="tab:green", linestyle=":", linewidth=0.8,
                    label="dwt_hf_share white noise")
    ax_feat.axhline(result.null.hf_share_threshold, color="tab:green", linestyle="--", linewidth=0.8,
                    label=f"dwt_hf_share noise {1 - result.null.alpha:.0%} quantile")
    ax_feat.set_ylim(0, 1.02)
    ax_feat.set_ylabel("percentile / share")
    ax_feat.legend(loc="upper left", fontsize=8, ncol=3)

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
