"""Return panels shared by the correlation and clustering tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

SESSIONS = pd.bdate_range("2024-01-02", periods=60, name="session")


def holey_returns(seed: int = 0, n: int = 30) -> pd.DataFrame:
    """Random returns with scattered NaN holes, late listings, an early delisting and a flat stream."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0005, 0.02, (len(SESSIONS), n))
    x[rng.random(x.shape) < 0.12] = np.nan
    x[:35, 1] = np.nan  # late listing: 25 sessions
    x[30:, 2] = np.nan  # delisted after 30 sessions -> overlap with column 1 is 0
    x[:45, 3] = np.nan  # listed too late: < 20 sessions at all
    x[:, 4] = 0.01  # constant stream (stale price with a fixed drift): correlation undefined
    x[:, 5] = 1.5 + x[:, 6] * 1e-3  # large mean, small spread: cancellation-prone
    return pd.DataFrame(x, index=SESSIONS, columns=[f"NYSE:S{i:02d}" for i in range(n)])


def mixed_returns(n: int, gappy_share: float, seed: int = 8) -> pd.DataFrame:
    """Two factors + noise; `gappy_share` of the columns get holes or late listings, two complete
    columns are constant and one gappy column is constant over its sessions."""
    rng = np.random.default_rng(seed)
    f = rng.normal(0.0, 0.01, (len(SESSIONS), 2))
    x = f[:, rng.integers(0, 2, n)] + rng.normal(0.0, 0.01, (len(SESSIONS), n))
    gappy = rng.random(n) < gappy_share
    holes = rng.random(x.shape) < 0.15
    x[holes & gappy] = np.nan
    late = np.flatnonzero(gappy)[::5]
    for k, j in enumerate(late):
        x[: 25 + k % 30, j] = np.nan  # late listings: from 35 down to 6 sessions
    complete = np.flatnonzero(~gappy)
    if len(complete) >= 2:
        x[:, complete[:2]] = [0.01, -0.02]  # constant complete streams
    if gappy.any():
        x[:, np.flatnonzero(gappy)[0]] = np.where(np.isnan(x[:, np.flatnonzero(gappy)[0]]), np.nan, 0.003)
    return pd.DataFrame(x, index=SESSIONS, columns=[f"NYSE:S{i:03d}" for i in range(n)])
