"""Scanner query semantics shared by every source: families, result columns, presets, filters.

TradingView's scanner answers a query `{filter, sort, range}` over its own rows; the sources that
compute scanner rows themselves (the synthetic market, the files source) evaluate the same query
here, with `apply_scanner_query` (one query) and `apply_preset` (a manifest preset: direction,
multi-timeframe screens, symbols, filter, sort, limit, several screens). The TradingView source
sends the query to the vendor instead and only shares the families.

- `FAMILIES`: the scanner families; `FAMILY_CLASSES`: the asset classes each family lists.
- `SCAN_RESULT_COLUMNS`: what a computed scan returns: `base.SCAN_COLUMNS` + `change`, `direction`,
  `liquidity_known` and `filters_skipped`.
- `TYPE_BY_CLASS`: the scanner's `type` for each asset class.

Unknown liquidity. Data without volume (closes-only exports, see `docs/real-data.md`) has no
`volume` and no `Value.Traded`: the source marks such rows `liquidity_known = False`. A filter
condition on a liquidity field (`LIQUIDITY_FIELDS`) is then *not applied* to those rows (it neither
passes nor fails them on an invented number) and is written into the row's `filters_skipped`
(`"Value.Traded greater 20000000"`, several joined by `"; "`). Rows whose liquidity is known keep
TradingView's rule: a missing value fails every operation except `empty`. A sort on an unknown
value puts the row last (ties keep the input order).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, get_args

import numpy as np
import pandas as pd

from portfolio_assets.sources.base import SCAN_COLUMNS
from portfolio_assets.sources.settings import FamilyName

FAMILIES: tuple[str, ...] = get_args(FamilyName)
FAMILY_CLASSES: dict[str, tuple[str, ...]] = {
    "equity": ("equity", "etf"), "bond": ("bond_etf",), "crypto": ("crypto",),
    "forex": ("forex",), "futures": ("futures",),
}
SCAN_RESULT_COLUMNS: tuple[str, ...] = (*SCAN_COLUMNS, "change", "direction", "liquidity_known", "filters_skipped")
LIQUIDITY_FIELDS = ("volume", "Value.Traded")
TYPE_BY_CLASS = {"equity": "stock", "etf": "fund", "bond_etf": "fund", "crypto": "crypto",
                 "forex": "forex", "futures": "futures"}
_COMPARISONS = {"greater": np.greater, "less": np.less, "egreater": np.greater_equal, "eless": np.less_equal}
OPERATIONS = (*_COMPARISONS, "in_range", "not_in_range", "equal", "nequal", "nempty", "empty")
TIMEFRAMES = ("1M", "1W", "1D")


def _is_number(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _condition_mask(df: pd.DataFrame, cond: Mapping[str, Any], position: int) -> np.ndarray:
    """Boolean mask of one filter condition; rows with a missing left value never match (except `empty`)."""
    if not isinstance(cond, Mapping):
        raise ValueError(f"filter[{position}] must be an object with left/operation/right, got {cond!r}")
    left, op = cond.get("left"), cond.get("operation")
    if left not in df.columns:
        raise ValueError(f"filter[{position}]: unknown column {left!r} (left)")
    if op not in OPERATIONS:
        raise ValueError(f"filter[{position}]: unknown operation {op!r}; expected one of {', '.join(OPERATIONS)}")
    col = df[left]
    present = col.notna().to_numpy() & (col.astype(str) != "").to_numpy()
    if op == "nempty":
        return present
    if op == "empty":
        return ~present
    if "right" not in cond:
        raise ValueError(f"filter[{position}]: operation {op!r} needs a 'right' value")
    right = cond["right"]
    if op in _COMPARISONS:
        if isinstance(right, str) and right in df.columns:
            other = pd.to_numeric(df[right], errors="coerce").to_numpy(dtype=np.float64)
        elif _is_number(right):
            other = float(right)
        else:
            raise ValueError(f"filter[{position}]: {op!r} needs a number or a column name, got {right!r}")
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return _COMPARISONS[op](values, other) & ~np.isnan(values) & ~np.isnan(other)
    if op in ("in_range", "not_in_range"):
        if not isinstance(right, Sequence) or isinstance(right, str):
            raise ValueError(f"filter[{position}]: {op!r} needs a list, got {right!r}")
        if len(right) == 2 and all(_is_number(v) for v in right):
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
            lo, hi = float(right[0]), float(right[1])
            with np.errstate(invalid="ignore"):
                inside = (values >= lo) & (values <= hi)
        else:
            inside = col.isin(list(right)).to_numpy()
        return present & (inside if op == "in_range" else ~inside)
    equal = (col == right).to_numpy(dtype=bool)
    return present & (equal if op == "equal" else ~equal)


def apply_scanner_query(
    df: pd.DataFrame,
    filter: Sequence[Mapping[str, Any]] | None = None,  # TradingView's field name
    sort: Mapping[str, Any] | None = None,
    range: Sequence[int] | None = None,  # TradingView's field name
) -> pd.DataFrame:
    """Apply a TradingView scanner query to a frame of scanner rows.

    - `filter`: list of `{left, operation, right}`, all must hold (AND). Operations: `greater`,
      `less`, `egreater` (>=), `eless` (<=) against a number or another column's name; `in_range`
      / `not_in_range` with `[lo, hi]` (inclusive numbers) or a list of allowed values; `equal`,
      `nequal`; `nempty` / `empty` (no `right`). A missing (NaN/None/"") left value fails every
      operation except `empty`.
    - `sort`: `{sortBy, sortOrder: "asc" | "desc" (default), nullsFirst: false}`; stable, so ties
      keep the input order; missing values last unless `nullsFirst`.
    - `range`: `[offset, end]` -> rows offset..end-1 after filtering and sorting.
    With a `liquidity_known` column, a condition on a `LIQUIDITY_FIELDS` column is skipped for the
    rows whose liquidity is unknown and recorded in their `filters_skipped` (module docstring).
    Unknown columns or operations raise ValueError naming them. Returns a new frame (fresh index).
    """
    mask = np.ones(len(df), dtype=bool)
    if "liquidity_known" in df.columns:
        unknown = ~df["liquidity_known"].to_numpy(dtype=bool)
        skipped = df["filters_skipped"].tolist() if "filters_skipped" in df.columns else [""] * len(df)
    if filter is not None:
        if not isinstance(filter, Sequence) or isinstance(filter, str | bytes):
            raise ValueError(f"filter must be a list of conditions, got {type(filter).__name__}")
        for position, cond in enumerate(filter):
            hit = _condition_mask(df, cond, position)
            if "liquidity_known" in df.columns and cond["left"] in LIQUIDITY_FIELDS and unknown.any():
                text = " ".join(str(cond[k]) for k in ("left", "operation", "right") if k in cond)
                for i in np.flatnonzero(unknown):
                    skipped[i] = f"{skipped[i]}; {text}" if skipped[i] else text
                hit = hit | unknown
            mask &= hit
    if "liquidity_known" in df.columns:
        df = df.assign(filters_skipped=skipped)
    out = df.loc[mask]
    if sort:
        by = sort.get("sortBy")
        if by not in out.columns:
            raise ValueError(f"sort: unknown column {by!r} (sortBy)")
        order = sort.get("sortOrder", "desc")
        if order not in ("asc", "desc"):
            raise ValueError(f"sort: sortOrder must be 'asc' or 'desc', got {order!r}")
        out = out.sort_values(by, ascending=order == "asc", kind="mergesort",
                              na_position="first" if sort.get("nullsFirst") else "last")
    if range is not None:
        if (isinstance(range, str) or not isinstance(range, Sequence) or len(range) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in range)
                or range[0] > range[1]):
            raise ValueError(f"range must be [offset, end] with 0 <= offset <= end, got {range!r}")
        out = out.iloc[range[0]:range[1]]
    return out.reset_index(drop=True)


def timeframe_mask(df: pd.DataFrame, timeframe: str, direction: str) -> np.ndarray:
    """Rows whose trend on `timeframe` agrees with `direction` (the multi-timeframe forex screen).

    "1M" (monthly): Perf.1M and Perf.3M both > 0 for long (both < 0 for short); "1W" (weekly):
    Perf.W > 0 (< 0); "1D" (daily): change > 0 (< 0). Missing values never agree.
    """
    columns = {"1M": ("Perf.1M", "Perf.3M"), "1W": ("Perf.W",), "1D": ("change",)}
    if timeframe not in columns:
        raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}")
    sign = 1.0 if direction == "long" else -1.0
    mask = np.ones(len(df), dtype=bool)
    for name in columns[timeframe]:
        values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            mask &= sign * values > 0
    return mask


def apply_preset(frame: pd.DataFrame, preset: Mapping[str, Any] | None) -> pd.DataFrame:
    """Run a scanner preset over unfiltered scanner rows and add the `direction` column.

    A preset is one screen, or `{"screens": [screen, ...], **shared}` where each screen's keys
    override the shared ones. A screen: `direction` ("long" | "short", default "long");
    `timeframes` (list of "1M" / "1W" / "1D", applied in order with `timeframe_mask`, or of vendor-style
    screens `{"name", "filter"}` applied in order); `symbols` (restrict to these); then `filter`,
    `sort` and `range` (or `limit` = `[0, limit]`) via `apply_scanner_query`. Other keys are ignored.
    If `frame` already has a `direction` column (e.g. fixed per symbol by a universe file), rows
    whose direction is set and differs from the screen's are excluded. Screen results are
    concatenated; a symbol kept by several screens keeps its first row.
    """
    if preset is not None and not isinstance(preset, Mapping):
        raise ValueError(f"preset must be an object, got {type(preset).__name__}")
    preset = dict(preset or {})
    screens = preset.pop("screens", None)
    if screens is None:
        screens = [{}]
    if not isinstance(screens, Sequence) or isinstance(screens, str) or not screens:
        raise ValueError("preset 'screens' must be a non-empty list of screen objects")
    parts = []
    for position, extra in enumerate(screens):
        if not isinstance(extra, Mapping):
            raise ValueError(f"preset screens[{position}] must be an object, got {extra!r}")
        screen = {**preset, **extra}
        direction = screen.get("direction", "long")
        if direction not in ("long", "short"):
            raise ValueError(f"preset direction must be 'long' or 'short', got {direction!r}")
        df = frame
        if "direction" in df.columns:
            fixed = df["direction"]
            df = df.loc[(fixed.isna() | (fixed == direction)).to_numpy()]
        df = df.assign(direction=direction)
        timeframes = screen.get("timeframes") or []
        if isinstance(timeframes, str):
            raise ValueError(f"preset timeframes must be a list, got {timeframes!r}")
        for timeframe in timeframes:
            if isinstance(timeframe, Mapping):  # a vendor-style screen {"name", "filter"} (the manifest's form)
                df = apply_scanner_query(df, timeframe.get("filter"), None, None)
            else:
                df = df.loc[timeframe_mask(df, timeframe, direction)]
        symbols = screen.get("symbols")
        if symbols is not None:  # restrict the screen to named symbols (e.g. the baseline's own row)
            df = df.loc[df["symbol"].isin(list(symbols)).to_numpy()]
        window = screen.get("range")
        if window is None and screen.get("limit") is not None:
            limit = screen["limit"]
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
                raise ValueError(f"preset limit must be a non-negative integer, got {limit!r}")
            window = [0, limit]
        parts.append(apply_scanner_query(df, screen.get("filter"), screen.get("sort"), window))
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    if "symbol" in out.columns:
        out = out.drop_duplicates("symbol", keep="first").reset_index(drop=True)
    return out

