"""The one long/short convention.

Scanners give each candidate a direction. Optimizers and simulators see only *synthetic-long*
streams: a short candidate's return stream is negated once, with its loss capped at -100% (a
price that more than doubles in one session would otherwise give a stream below -100%, which no
long position can have). Signs come back only when weights are published.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DIRECTIONS = ("long", "short")


def _check_directions(directions: pd.Series, columns: pd.Index) -> pd.Series:
    missing = [c for c in columns if c not in directions.index]
    if missing:
        raise ValueError(f"direction missing for {len(missing)} symbol(s), e.g. {missing[:3]}")
    d = directions.reindex(columns)
    bad = sorted(set(d.unique()) - set(DIRECTIONS))
    if bad:
        raise ValueError(f"direction must be 'long' or 'short', got {bad}")
    return d


def synthetic_long(returns: pd.DataFrame, directions: pd.Series) -> pd.DataFrame:
    """Synthetic-long streams: `r` for longs, `max(-r, -1)` for shorts. NaN stays NaN.

    Apply exactly once, to raw returns; the result carries `attrs['synthetic_long'] = True` and a
    second application raises, so a short can never be negated twice.
    """
    if returns.attrs.get("synthetic_long"):
        raise ValueError("returns are already synthetic-long streams; refusing to negate shorts twice")
    d = _check_directions(directions, returns.columns)
    sign = np.where(d.to_numpy() == "short", -1.0, 1.0)
    out = returns * sign
    short_cols = returns.columns[sign < 0]
    if len(short_cols):
        out[short_cols] = out[short_cols].clip(lower=-1.0)
    out.attrs["synthetic_long"] = True
    return out


def publish_net_weights(weights: pd.Series, directions: pd.Series) -> pd.Series:
    """Signed exposure per symbol: `+w` for longs, `-w` for shorts (weights are synthetic-long)."""
    if (weights < -1e-12).any():
        raise ValueError("weights on synthetic-long streams must be non-negative")
    d = _check_directions(directions, weights.index)
    return weights * np.where(d.to_numpy() == "short", -1.0, 1.0)
