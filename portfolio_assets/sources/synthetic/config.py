"""Settings of the synthetic market: defaults and the validated, resolved `SyntheticConfig`."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from portfolio_assets.sources.synthetic.description import CURRENCIES, FUTURES

DEFAULT_FAULTS: dict[str, Any] = {
    "seed": 11,
    "missing_bars": {"n": 2, "sessions": 3, "heal_after": 1},
    "stale": {"n": 1, "bars": 3, "heal_after": 1},
    "bad_ticks": {"n": 1, "heal_after": 1},
}
DEFAULT_SETTINGS: dict[str, Any] = {
    "seed": 7, "n_equities": 240, "n_etfs": 40, "n_bond_etfs": None, "n_crypto": 40, "n_forex": 20,
    "n_futures": 0, "start": "2019-01-02", "end": "2027-12-31", "faults": DEFAULT_FAULTS,
    "perturb_after": None,
}


def to_date(value: object, what: str) -> dt.date:
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


def _count(settings: Mapping[str, Any], key: str, default: int, minimum: int = 0) -> int:
    value = settings.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"synthetic setting {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class SyntheticConfig:
    """Resolved synthetic-market settings (see the module docstring for meaning and defaults)."""

    seed: int
    n_equities: int
    n_etfs: int
    n_bond_etfs: int
    n_crypto: int
    n_forex: int
    n_futures: int
    start: dt.date
    end: dt.date
    faults: dict[str, Any]
    faults_given: bool  # False when `faults` was left at DEFAULT_FAULTS
    perturb_after: dt.date | None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> SyntheticConfig:
        """Validate `settings` (unknown keys are an error) and fill defaults."""
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
        if unknown:
            raise ValueError(f"unknown synthetic settings {unknown}; known: {sorted(DEFAULT_SETTINGS)}")
        seed = settings.get("seed", 7)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"synthetic setting 'seed' must be a non-negative integer, got {seed!r}")
        n_etfs = _count(settings, "n_etfs", 40, minimum=1)
        n_bond = settings.get("n_bond_etfs")
        n_bond = n_etfs // 4 if n_bond is None else _count(settings, "n_bond_etfs", 0)
        if n_bond > n_etfs - 1:
            raise ValueError(f"n_bond_etfs ({n_bond}) must leave room for AMEX:SPY within n_etfs ({n_etfs})")
        n_forex = _count(settings, "n_forex", 20)
        max_pairs = len(CURRENCIES) * (len(CURRENCIES) - 1) // 2
        if n_forex - n_forex // 5 > max_pairs:
            raise ValueError(f"n_forex={n_forex} needs more than the {max_pairs} distinct pairs available")
        n_futures = _count(settings, "n_futures", 0)
        if n_futures > len(FUTURES):
            raise ValueError(f"n_futures must be <= {len(FUTURES)}, got {n_futures}")
        start = to_date(settings.get("start", DEFAULT_SETTINGS["start"]), "synthetic setting 'start'")
        end = to_date(settings.get("end", DEFAULT_SETTINGS["end"]), "synthetic setting 'end'")
        if end <= start:
            raise ValueError(f"synthetic setting 'end' ({end}) must be after 'start' ({start})")
        faults = settings.get("faults", DEFAULT_FAULTS)
        if not isinstance(faults, Mapping):
            raise ValueError(f"synthetic setting 'faults' must be an object, got {faults!r}")
        perturb = settings.get("perturb_after")
        return cls(
            seed=seed, n_equities=_count(settings, "n_equities", 240), n_etfs=n_etfs, n_bond_etfs=n_bond,
            n_crypto=_count(settings, "n_crypto", 40), n_forex=n_forex, n_futures=n_futures,
            start=start, end=end, faults=copy.deepcopy(dict(faults)), faults_given="faults" in settings,
            perturb_after=None if perturb is None else to_date(perturb, "synthetic setting 'perturb_after'"),
        )
