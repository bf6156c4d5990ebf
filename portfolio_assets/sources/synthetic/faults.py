"""Injected data faults of the synthetic market: missing bars, stale tails and bad ticks.

`build_fault_plan` resolves the `faults` setting into symbol -> parameters (see the package
docstring, "Faults"); the market applies an active fault to the bars it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from portfolio_assets.sources.synthetic.description import BASELINE
from portfolio_assets.symbols import validate_symbol

_FAULT_KINDS = {
    "missing_bars": {"n", "symbols", "heal_after", "sessions", "period"},
    "stale": {"n", "symbols", "heal_after", "bars"},
    "bad_ticks": {"n", "symbols", "heal_after", "period", "kind"},
}
BAD_TICK_KINDS = ("zero", "negative", "spike")


def _fault_int(spec: Mapping[str, Any], key: str, default: int, kind: str, minimum: int) -> int:
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"faults.{kind}.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def build_fault_plan(faults: Mapping[str, Any], universe: pd.DataFrame, full_history: np.ndarray,
                     strict: bool = True) -> dict[str, dict]:
    """Resolve the `faults` setting into symbol -> fault parameters (see the module docstring).

    `universe` is the market's symbol table (index symbol, `asset_class`, `typical_value_traded`);
    `full_history` marks symbols listed for the whole generated range (count-based picks need it).
    With `strict`, asking for more count-based picks than there are eligible symbols is an error;
    otherwise (the default plan of a small universe) the counts are cut, in kind order.
    """
    unknown = sorted(set(faults) - set(_FAULT_KINDS) - {"seed"})
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; known: {sorted(_FAULT_KINDS)} and 'seed'")
    seed = faults.get("seed", 11)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"faults.seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(seed)
    plan: dict[str, dict] = {}
    counts: dict[str, int] = {}
    for kind, allowed in _FAULT_KINDS.items():
        spec = faults.get(kind)
        if spec is None:
            continue
        if not isinstance(spec, Mapping):
            raise ValueError(f"faults.{kind} must be an object, got {spec!r}")
        extra = sorted(set(spec) - allowed)
        if extra:
            raise ValueError(f"faults.{kind}: unknown keys {extra}; allowed: {sorted(allowed)}")
        explicit = spec.get("symbols") or []
        counts[kind] = _fault_int(spec, "n", 0 if explicit else 1, kind, 0)
        for symbol in explicit:
            validate_symbol(symbol)
            if symbol not in universe.index:
                raise ValueError(f"faults.{kind}.symbols: {symbol!r} is not in the synthetic universe")
            if symbol in plan:
                raise ValueError(f"faults: {symbol!r} is listed under two fault kinds")
            plan[symbol] = {"kind": kind}
    eligible = universe.loc[
        universe["asset_class"].isin(["equity", "etf", "bond_etf"]).to_numpy() & full_history
        & (universe.index != BASELINE) & ~universe.index.isin(list(plan))
    ]
    ranked = eligible.sort_values("typical_value_traded", ascending=False, kind="mergesort").index
    wanted = sum(counts.values())
    if wanted > len(ranked):
        if strict:
            raise ValueError(f"faults ask for {wanted} symbols but only {len(ranked)} are eligible")
        remaining = len(ranked)
        for kind in counts:
            counts[kind] = min(counts[kind], remaining)
            remaining -= counts[kind]
        wanted = sum(counts.values())
    picks = list(ranked[:wanted][rng.permutation(wanted)])
    for kind, n in counts.items():
        for symbol in picks[:n]:
            plan[symbol] = {"kind": kind}
        picks = picks[n:]
    for symbol in sorted(plan):  # parameters in a fixed order, independent of dict insertion
        kind = plan[symbol]["kind"]
        spec = faults[kind]
        heal = spec.get("heal_after", 1)
        if heal is not None and (not isinstance(heal, int) or isinstance(heal, bool) or heal < 0):
            raise ValueError(f"faults.{kind}.heal_after must be None or an integer >= 0, got {heal!r}")
        entry: dict[str, Any] = {"kind": kind, "heal_after": heal}
        if kind == "missing_bars":
            entry["sessions"] = _fault_int(spec, "sessions", 3, kind, 1)
            entry["period"] = _fault_int(spec, "period", 250, kind, entry["sessions"] + 1)
            entry["phase"] = int(rng.integers(entry["period"]))
        elif kind == "stale":
            entry["bars"] = _fault_int(spec, "bars", 3, kind, 1)
        else:
            entry["period"] = _fault_int(spec, "period", 250, kind, 1)
            entry["phase"] = int(rng.integers(entry["period"]))
            tick = spec.get("kind")
            if tick is None:
                tick = BAD_TICK_KINDS[int(rng.integers(len(BAD_TICK_KINDS)))]
            if tick not in BAD_TICK_KINDS:
                raise ValueError(f"faults.bad_ticks.kind must be one of {BAD_TICK_KINDS}, got {tick!r}")
            entry["tick"] = tick
        plan[symbol] = entry
    return plan
