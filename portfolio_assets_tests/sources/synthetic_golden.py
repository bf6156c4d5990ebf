"""Content digests of what the synthetic market produces, to prove a refactor changes no value.

`capture()` builds the market for the `demo` and `development` profiles (through the manifest, as
the assets do) and for a small custom market (futures, explicit bad-tick kinds, `perturb_after`),
then digests, in a fixed call order: the universe, the fault plan, the hidden regime, metadata of
every symbol, bars of every 5th symbol (fault attempts 0, 1 and 2, so healed and unhealed faults
are both covered) and scans of every family and every manifest preset (plus an open screen) at
several dates. The digests were recorded in `synthetic_golden.json` *before* the synthetic module
was split into a package; `test_synthetic_golden.py` compares.

Regenerate only after an intended change of the market (and say so in the commit):

    .venv/bin/python -m portfolio_assets_tests.sources.synthetic_golden --write
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

GOLDEN = Path(__file__).with_name("synthetic_golden.json")
PROFILES = ("demo", "development")
SCAN_DATES = ("2020-03-20", "2022-06-15", "2025-04-08", "2026-11-25")
BARS_WINDOW = (dt.date(2024, 10, 1), dt.date(2026, 11, 25))
CUSTOM_SETTINGS: dict[str, Any] = {
    "seed": 5, "n_equities": 30, "n_etfs": 12, "n_bond_etfs": 4, "n_crypto": 10, "n_forex": 10, "n_futures": 4,
    "start": "2019-01-02", "end": "2026-12-31", "perturb_after": "2026-06-30",
    "faults": {"seed": 4, "bad_ticks": {"n": 3, "kind": "spike", "period": 40, "heal_after": 1},
               "missing_bars": {"symbols": ["AMEX:SPY"], "sessions": 2, "period": 30, "heal_after": None},
               "stale": {"n": 1, "bars": 2, "heal_after": 2}},
}
# The columns scans had when the digests were recorded (later additions are checked on their own).
SCAN_COLUMNS_AT_CAPTURE = (
    "symbol", "name", "description", "type", "exchange", "currency", "sector", "industry",
    "close", "volume", "Value.Traded", "ADX", "ATR", "Recommend.All",
    "Perf.W", "Perf.1M", "Perf.3M", "Perf.6M", "Perf.Y", "Volatility.D", "change", "direction",
)
OPEN_SCREENS = ({"name": "open_long", "direction": "long"}, {"name": "open_short", "direction": "short", "limit": 25})


def frame_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's columns, dtypes, index and exact values (float bits, not rounded text)."""
    h = hashlib.sha256()
    h.update(json.dumps([str(c) for c in frame.columns]).encode())
    h.update(_series_bytes(frame.index.to_series()))
    for name in frame.columns:
        h.update(str(frame[name].dtype).encode())
        h.update(_series_bytes(frame[name]))
    return h.hexdigest()


def _series_bytes(series: pd.Series) -> bytes:
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series.dtype):
        return np.ascontiguousarray(series.array.asi8).tobytes()
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_object_dtype(series.dtype):
        return np.ascontiguousarray(series.to_numpy()).tobytes()
    return json.dumps([None if _missing(v) else repr(v) for v in series.tolist()]).encode()


def _missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _digest_market(market: Any, presets: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    out: dict[str, str] = {}
    universe = market.universe
    out["universe"] = frame_digest(universe)
    out["fault_plan"] = hashlib.sha256(json.dumps(market.fault_plan, sort_keys=True, default=str).encode()).hexdigest()
    out["hidden_regime"] = frame_digest(market.hidden_regime.to_frame())
    symbols = list(universe.index)
    out["metadata"] = frame_digest(market.metadata(symbols))
    for symbol in symbols[::5]:
        for attempt in (0, 1, 2):
            out[f"bars {symbol} attempt {attempt}"] = frame_digest(market.bars(symbol, *BARS_WINDOW, attempt=attempt))
    for day in SCAN_DATES:
        for family in ("equity", "crypto", "bond", "forex", "futures"):
            for preset in [*presets.get(family, []), *OPEN_SCREENS]:
                frame = market.scan(family, dt.date.fromisoformat(day), preset)
                out[f"scan {family} {preset['name']} {day}"] = frame_digest(frame[list(SCAN_COLUMNS_AT_CAPTURE)])
    return out


def capture() -> dict[str, dict[str, str]]:
    """Digests per market (see the module docstring), in a fixed call order on fresh instances."""
    from portfolio_assets.manifest import resolve
    from portfolio_assets.sources.synthetic import SyntheticMarket

    result = {}
    for profile in PROFILES:
        cfg = resolve(profile, environ={}).config
        assert cfg.source.kind == "synthetic", f"profile {profile} is no longer on the synthetic market"
        presets = {family: [p.model_dump() for p in scanner.presets]
                   for family, scanner in cfg.discovery.scanners.items()}
        result[profile] = _digest_market(SyntheticMarket(cfg.source.settings), presets)
    result["custom"] = _digest_market(SyntheticMarket(CUSTOM_SETTINGS), {})
    return result


if __name__ == "__main__":
    digests = capture()
    if "--write" in sys.argv:
        GOLDEN.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}: {sum(len(v) for v in digests.values())} digests")
    else:
        print(json.dumps({k: len(v) for k, v in digests.items()}))
