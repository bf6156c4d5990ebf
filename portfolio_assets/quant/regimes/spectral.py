"""Spectral regime features and their white-noise calibration (SPEC §11).

Features, on the trailing window of baseline returns ending at ``t`` (rows ``<= t`` only)
---------------------------------------------------------------------------------------
``dwt_hf_share``
    Causal DWT: the trailing ``wavelet_window`` returns are decomposed with
    ``pywt.wavedec(mode="periodization")`` to ``wavelet_level`` levels; with level energies
    ``E_j = sum(d_j^2)`` and ``E_A = sum(a_J^2)`` the share is ``sum_{j<=hf_levels} E_j / (E_A + sum_j E_j)``.
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

Calibration against white noise
-------------------------------
An earlier detector compared a raw DWT detail ratio with a fixed 0.7 — but white noise alone gives
≈0.94 for that ratio, so it said TURBULENT almost always. Here every spectral threshold is a quantile
of the feature's distribution **under Gaussian white noise** (:func:`spectral_null`): for an
orthogonal DWT with periodization (window divisible by ``2**level``) the ``n_j = W / 2**j``
level-``j`` coefficients of i.i.d. ``N(0, s^2)`` returns are i.i.d. ``N(0, s^2)``, so the band
energies are independent ``s^2 chi^2(n_j)`` and

* the expected share of detail level ``j`` is ``2^-j`` (of the approximation ``2^-J``); the high
  frequency share is ``Beta(n_hf / 2, (W - n_hf) / 2)`` with mean ``1 - 2^-hf_levels``;
* the burst share is ``Beta(m / 2, (n_hf - m) / 2)`` with ``m`` the number of recent
  coefficients (mean ``m / n_hf ~= burst_fraction``);
* the band shares are ``Dirichlet(n_A / 2, n_J / 2, ..., n_1 / 2)``; the wavelet-entropy quantile
  is taken from 20,000 seeded draws of that Dirichlet, the permutation-entropy quantile from 4,000
  seeded i.i.d. Gaussian windows (deterministic, cached).

Spectral evidence at ``t`` (:func:`spectral_evidence`) = the high-frequency share or the burst share
above its ``1 - spectral_alpha`` noise quantile, or either entropy below its ``spectral_alpha``
quantile. Scale does not enter, so the evidence fires on noise at a rate set by ``spectral_alpha``
(about ``4 x alpha`` for the union), not by the wavelet or the level. Heavy tails make the true null
slightly wider than the Gaussian one. How the evidence enters the labels is in
:mod:`portfolio_assets.quant.regimes.labels`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import pywt

from portfolio_assets.manifest import RegimeConfig

SPECTRAL_COLUMNS: tuple[str, ...] = ("dwt_hf_share", "dwt_hf_burst", "wavelet_entropy", "perm_entropy")
_NULL_SEED = 20240601
_WAVELET_NULL_DRAWS = 20_000
_PERM_NULL_DRAWS = 4_000


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


def _recent_counts(window: int, hf_levels: int, fraction: float) -> list[int]:
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
    m = int(sum(_recent_counts(window, hf_levels, fraction)))
    rng = np.random.default_rng(_NULL_SEED)
    shares = rng.dirichlet(sizes / 2.0, size=_WAVELET_NULL_DRAWS)
    went = normalized_entropy(shares)
    noise = rng.standard_normal((_PERM_NULL_DRAWS, perm_window))
    pent = permutation_entropy(noise, order=order, delay=delay)
    return SpectralNull(
        alpha=alpha,
        hf_share_expected=n_hf / window,
        hf_share_threshold=float(betaincinv(n_hf / 2, (window - n_hf) / 2, 1 - alpha)),
        hf_burst_expected=m / n_hf,
        hf_burst_threshold=float(betaincinv(m / 2, (n_hf - m) / 2, 1 - alpha)),
        wavelet_entropy_expected=float(np.mean(went)),
        wavelet_entropy_threshold=float(np.quantile(went, alpha)),
        perm_entropy_expected=float(np.mean(pent)),
        perm_entropy_threshold=float(np.quantile(pent, alpha)),
    )


def spectral_null(config: RegimeConfig) -> SpectralNull:
    """White-noise expectations and thresholds of the spectral features for ``config``.

    Exact Beta quantiles for the high-frequency and burst shares; seeded Monte Carlo quantiles
    (deterministic) for the two entropies — see the module docstring for the distributions.
    """
    return _spectral_null_cached(config.wavelet_window, config.wavelet_level, config.hf_levels,
                                 config.burst_fraction, config.perm_order, config.perm_delay,
                                 config.perm_window, config.spectral_alpha)


def spectral_evidence(features: pd.DataFrame, config: RegimeConfig) -> pd.Series:
    """True where the spectral features depart from white noise at level ``spectral_alpha``:
    ``dwt_hf_share`` or ``dwt_hf_burst`` above, or ``wavelet_entropy`` or ``perm_entropy`` below,
    their noise quantile (:func:`spectral_null`). NaN features give False."""
    missing = [c for c in SPECTRAL_COLUMNS if c not in features.columns]
    if missing:
        raise ValueError(f"features: missing column(s) {missing}")
    null = spectral_null(config)
    evidence = (
        (features["dwt_hf_share"] >= null.hf_share_threshold)
        | (features["dwt_hf_burst"] >= null.hf_burst_threshold)
        | (features["wavelet_entropy"] <= null.wavelet_entropy_threshold)
        | (features["perm_entropy"] <= null.perm_entropy_threshold)
    )
    return evidence.rename("spectral_evidence")


# --------------------------------------------------------------------------------------------------
# feature primitives


def normalized_entropy(p: np.ndarray) -> np.ndarray:
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
    h = normalized_entropy(counts / codes.shape[1])
    return float(h[0]) if x.ndim == 1 else h


def rolling_perm_entropy(x: np.ndarray, order: int, delay: int, window: int) -> np.ndarray:
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
    out[ends] = normalized_entropy(counts / per_window)
    return out


def rolling_wavelet(x: np.ndarray, config: RegimeConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hf share, hf burst, wavelet entropy) of the trailing ``wavelet_window`` returns at each t."""
    n, w = len(x), config.wavelet_window
    hf_share, burst, went = (np.full(n, np.nan) for _ in range(3))
    if n < w:
        return hf_share, burst, went
    windows = np.lib.stride_tricks.sliding_window_view(x, w)
    energy, coeffs = _band_energies(windows, config.wavelet, config.wavelet_level)
    total = energy.sum(axis=1)
    hf = energy[:, -config.hf_levels:].sum(axis=1)
    recent_counts = _recent_counts(w, config.hf_levels, config.burst_fraction)
    # coeffs is [a_J, d_J, ..., d_1]: d_j sits at index -j
    recent = sum(np.sum(coeffs[-j][:, -m:] ** 2, axis=1) for j, m in enumerate(recent_counts, start=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = total > 0
        hf_share[w - 1:] = np.where(ok, hf / np.where(ok, total, 1.0), np.nan)
        ok_hf = hf > 0
        burst[w - 1:] = np.where(ok_hf, recent / np.where(ok_hf, hf, 1.0), np.nan)
        shares = np.where(ok[:, None], energy / np.where(ok, total, 1.0)[:, None], np.nan)
    went[w - 1:] = normalized_entropy(shares)
    return hf_share, burst, went
