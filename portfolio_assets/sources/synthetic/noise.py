"""Counter-based deterministic noise: any (symbol, day) draw without generating the past again.

A value for (symbol, day) is a SplitMix64 hash of a per-symbol key (blake2b of seed and symbol,
never Python's `hash()`) and the day, mapped through a 65,536-point quantile table (Student-t df 4
or normal, rescaled to unit variance). One 64-bit hash serves four consecutive counters (its four
16-bit lanes). Separate streams (`S_*`) keep noises of different purposes from sharing bits.
"""

from __future__ import annotations

import hashlib
import statistics
from typing import Any

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SHIFTS = tuple(np.uint64(s) for s in (30, 27, 31, 16, 32, 48))
_COUNTER_OFFSET = 1 << 20  # keeps counters positive (volume noise reaches before day 0)
_TABLE_BITS = 16
_LANE_MASK = np.uint64((1 << _TABLE_BITS) - 1)
# Streams: separate keys per purpose so that noises never share bits.
S_IDIO, S_DRIFT, S_BAR, S_VOLUME, S_BASIS, S_PERTURB, S_STATIC = range(1, 8)


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


def stream_keys(keys: np.ndarray, stream: int) -> np.ndarray:
    """Per-symbol keys for one noise stream."""
    return _mix64(keys ^ np.uint64(stable_key("stream", stream)))


def hash_bits(keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """(len(counters), len(keys)) uint64 hashes of every (counter, key) pair."""
    c = (np.asarray(counters, dtype=np.int64) + _COUNTER_OFFSET).astype(np.uint64)
    c *= _GOLDEN
    _mix64(c)
    return _mix64(c[:, None] ^ keys[None, :])


def hash_lane(bits: np.ndarray, lane: int) -> np.ndarray:
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


T4_TABLE = _quantile_table(_student_t4_ppf)
NORMAL_TABLE = _quantile_table(np.vectorize(statistics.NormalDist().inv_cdf, otypes=[np.float64]))


def normals_from_uniforms(u: np.ndarray) -> np.ndarray:
    """Standard normals (quantized to the 2**16-point table) for uniforms in (0, 1)."""
    return NORMAL_TABLE[np.minimum((u * (1 << _TABLE_BITS)).astype(np.intp), (1 << _TABLE_BITS) - 1)]


def uniforms(keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """(len(counters), len(keys)) uniforms in (0, 1) from 53 hash bits."""
    bits = hash_bits(keys, counters) >> np.uint64(11)
    return (bits.astype(np.float64) + 0.5) * 2.0**-53


def daily_noise(keys: np.ndarray, first: int, last: int, table: np.ndarray) -> np.ndarray:
    """(last - first + 1, len(keys)) draws from `table` for counters first..last.

    One 64-bit hash serves four consecutive counters (its four 16-bit lanes), so the draw for
    counter t is always lane t mod 4 of hash(key, t // 4), whatever range is requested.
    """
    lo, hi = first // 4, last // 4
    bits = hash_bits(keys, np.arange(lo, hi + 1))
    lanes = np.empty((hi - lo + 1, 4, len(keys)), dtype=np.intp)
    for lane in range(4):
        lanes[:, lane] = hash_lane(bits, lane)
    rows = lanes.reshape(-1, len(keys))[first - 4 * lo:last - 4 * lo + 1]
    return table[rows]
