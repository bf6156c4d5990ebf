"""Injected data faults of the synthetic market: missing bars, stale tails and bad ticks.

`build_fault_plan` resolves the `faults` setting (`settings.FaultsSettings`) into symbol ->
parameters (see the package docstring, "Faults"); `apply_fault` applies an active fault to the
bars the market returns. Scans are not affected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from portfolio_assets.sources.settings import BAD_TICK_KINDS, FaultsSettings
from portfolio_assets.sources.synthetic.description import BASELINE
from portfolio_assets.symbols import validate_symbol

FAULT_KINDS = ("missing_bars", "stale", "bad_ticks")


def build_fault_plan(faults: FaultsSettings, universe: pd.DataFrame, full_history: np.ndarray,
                     strict: bool = True) -> dict[str, dict[str, Any]]:
    """Resolve the `faults` setting into symbol -> fault parameters (see the package docstring).

    `universe` is the market's symbol table (index symbol, `asset_class`, `typical_value_traded`);
    `full_history` marks symbols listed for the whole generated range (count-based picks need it).
    With `strict`, asking for more count-based picks than there are eligible symbols is an error;
    otherwise (the default plan of a small universe) the counts are cut, in kind order. The draws
    (pick order, then per symbol in sorted order: phase, and the bad-tick kind when unset) come
    from one `numpy.random.default_rng(faults.seed)` stream.
    """
    rng = np.random.default_rng(faults.seed)
    plan: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for kind in FAULT_KINDS:
        spec = getattr(faults, kind)
        if spec is None:
            continue
        counts[kind] = spec.n if spec.n is not None else (0 if spec.symbols else 1)
        for symbol in spec.symbols:
            validate_symbol(symbol)
            if symbol not in universe.index:
                raise ValueError(f"faults.{kind}.symbols: {symbol!r} is not in the synthetic universe")
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
        spec = getattr(faults, kind)
        entry: dict[str, Any] = {"kind": kind, "heal_after": spec.heal_after}
        if kind == "missing_bars":
            entry["sessions"] = spec.sessions
            entry["period"] = spec.period
            entry["phase"] = int(rng.integers(entry["period"]))
        elif kind == "stale":
            entry["bars"] = spec.bars
        else:
            entry["period"] = spec.period
            entry["phase"] = int(rng.integers(entry["period"]))
            tick = spec.kind
            if tick is None:
                tick = BAD_TICK_KINDS[int(rng.integers(len(BAD_TICK_KINDS)))]
            entry["tick"] = tick
        plan[symbol] = entry
    return plan


def apply_fault(frame: pd.DataFrame, fault: dict[str, Any], pos: np.ndarray, open_days: np.ndarray,
                last_day: int) -> pd.DataFrame:
    """Apply one active fault to a symbol's bars (`pos` = each bar's position on its calendar)."""
    kind = fault["kind"]
    if kind == "missing_bars":
        return frame.loc[(pos - fault["phase"]) % fault["period"] >= fault["sessions"]]
    if kind == "stale":
        last_pos = np.searchsorted(open_days, last_day, side="right") - 1
        return frame.loc[pos <= last_pos - fault["bars"]]
    hit = ((pos - fault["phase"]) % fault["period"] == 0)
    frame = frame.copy()
    if fault["tick"] == "zero":
        frame.loc[hit, ["close", "low"]] = 0.0
    elif fault["tick"] == "negative":
        frame.loc[hit, "close"] = -frame.loc[hit, "close"]
        frame.loc[hit, "low"] = frame.loc[hit, "close"]
    else:
        frame.loc[hit, "close"] = 25.0 * frame.loc[hit, "close"]
        frame.loc[hit, "high"] = frame.loc[hit, "close"]
    return frame
