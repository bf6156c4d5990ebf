"""Scan to selected universe at 5,000 and 20,000 symbols, with I/O and peak memory.

When `benchmarks/price_store_scale.py` is on this branch (the columnar price store of issue 15),
its `scale_rows(sizes)` measures the path and this section reports its rows. Without it, one row
says so and the section times today's path instead, stage by stage: the synthetic source with
`n_equities = N` and open scanner presets (every listed symbol passes, `class_cap = N`): scan +
raw pool, 60-session fetch into the price cache, align + returns, pairwise correlation, angular
distance + Ward linkage, natural selection. `growth` rows compare the time ratios between scale
points with n (linear) and n^2 (correlation is O(n^2 T), Ward with scipy's nearest-neighbour
chain O(n^2) memory and about O(n^2) time). A scale point predicted (n^2 from the previous one)
not to fit in 85% of the available memory is skipped with a row that says so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.table import MIB, Recorder, Row, mem_available_bytes, mem_total_bytes

STORE_MODULE = "benchmarks.price_store_scale"


def store_rows(rec: Recorder, sizes: Sequence[int]) -> bool:
    """The price-store scale rows (`price_store_scale.scale_rows`); False when the module is not on
    this branch (a row says so)."""
    import importlib

    try:
        module = importlib.import_module(STORE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != STORE_MODULE:
            raise  # the module is there but one of its imports is missing: a real error
        rec.add(Row("scale", "columnar price store (benchmarks/price_store_scale.py)",
                    note="not available on this branch: today's path is timed below"))
        return False
    for item in module.scale_rows(sizes=tuple(sizes)):
        missing = {"stage", "n", "wall_s", "peak_mb", "note"} - set(item)
        if missing:
            raise ValueError(f"price_store_scale.scale_rows returned a row without {sorted(missing)}: {item}")
        rec.add(Row("scale", str(item["stage"]), f"{int(item['n']):,}", seconds=float(item["wall_s"]),
                    peak_mb=None if item["peak_mb"] is None else float(item["peak_mb"]), note=str(item["note"])))
    return True


def scale_section(rec: Recorder, sizes: Sequence[int], profile: str, date: dt.date, root: Path) -> None:
    """The price store's rows when it exists, else today's path at each size."""
    from portfolio_assets.manifest import resolve

    if not store_rows(rec, sizes):
        scale_points(rec, sizes, resolve(profile).config, date, root)


OPEN_PRESET = {"direction": "long", "filter": [], "limit": 10**7}


@dataclass
class ScalePoint:
    n: int
    returns: pd.DataFrame
    rows: dict[str, Row] = field(default_factory=dict)


def scale_point(rec: Recorder, n: int, cfg: Any, date: dt.date, root: Path) -> ScalePoint:
    """Scan + raw pool + 60-session returns + correlation + Ward + natural selection for `n` equities."""
    from portfolio_assets.assets.common import FAMILIES
    from portfolio_assets.fetch import fetch_into_cache, load_panel, window_bounds
    from portfolio_assets.lakehouse import Lakehouse
    from portfolio_assets.partitions import sessions_window
    from portfolio_assets.quant.calendar import simple_returns
    from portfolio_assets.quant.clustering import (
        condensed_angular_distance,
        pairwise_correlation,
        ward_linkage,
    )
    from portfolio_assets.quant.rawpool import build_raw_pool
    from portfolio_assets.quant.selection import SelectionParams, select_universe
    from portfolio_assets.sources.synthetic import SyntheticMarket

    section = f"scale {n:,}"
    sel, data = cfg.selection, cfg.data
    rows: dict[str, Row] = {}
    with rec.stage(section, "synthetic source (build the market)") as row:
        source = SyntheticMarket({"seed": 7, "n_equities": n, "faults": {}})
        row.size = f"{len(source.universe):,} listed"
    rows["source"] = row
    with rec.stage(section, "scan (open presets) + raw pool (class_cap = N)") as row:
        scans = {f: source.scan(f, date, {"name": f"{f}_all", **OPEN_PRESET}) for f in FAMILIES}
        pool, _ = build_raw_pool(scans, n, sel.baseline)
        row.size = f"{len(pool):,} symbols"
    rows["scan"] = row
    symbols = sorted(set(pool.index) | {sel.baseline})
    lake = Lakehouse(root, f"scale_{n}")
    window = sessions_window(date, data.lookback_prep + 1)
    start, end = window_bounds(window)
    with rec.stage(section, f"{data.lookback_prep}-session prep: fetch into the price cache") as row:
        fetch_into_cache(source, lake, symbols, start, end)
        row.size = f"{len(symbols):,} symbols"
        row.note = "one Parquet file per symbol"
    rows["fetch"] = row
    with rec.stage(section, f"{data.lookback_prep}-session prep: align + returns") as row:
        meta = source.metadata(symbols)
        calendars = {s: str(meta.at[s, "calendar"]) for s in symbols}
        rets = simple_returns(load_panel(lake, symbols, calendars, window, date)).iloc[1:]
        row.size = f"{rets.shape[0]} x {rets.shape[1]:,}"
    rows["align"] = row
    params = SelectionParams.from_config(cfg)
    with rec.stage(section, "pairwise correlation (ours, float64)") as row:
        corr = pairwise_correlation(rets, min_overlap=data.min_overlap)
        row.size = f"{corr.shape[0]:,}^2 = {corr.to_numpy().nbytes / 1e9:.2f} GB"
    rows["corr"] = row
    with rec.stage(section, "angular distance (condensed) + Ward linkage (ours)") as row:
        z = ward_linkage(condensed_angular_distance(corr.to_numpy())[0])
        row.size = f"{len(z) + 1:,} leaves"
    rows["ward"] = row
    point = ScalePoint(n=n, returns=rets, rows=rows)
    del corr, z
    with rec.stage(section, "natural selection (select_universe, incl. its own corr + Ward)") as row:
        candidates = pool[["direction", "identity", "asset_class"]].assign(value_traded=pool["Value.Traded"])
        result = select_universe(candidates, rets, params)
        row.size = f"{len(result.winners)} winners of {len(candidates):,}"
        row.note = f"{result.clusters.n_clusters} clusters"
        del result
    rows["selection"] = row
    return point


def scale_points(rec: Recorder, scales: Sequence[int], cfg: Any, date: dt.date, root: Path) -> list[ScalePoint]:
    """Every scale point, a memory guard before each, then the growth rows."""
    points: list[ScalePoint] = []
    for n in scales:
        if points:
            prev = points[-1]
            factor = (n / prev.n) ** 2
            predicted = max(prev.rows["selection"].peak_mb or 0, prev.rows["ward"].peak_mb or 0) * factor * MIB
            available = mem_available_bytes()
            if available is not None and predicted > 0.85 * available:
                rec.add(Row(f"scale {n:,}", "skipped: would not fit in memory", note=(
                    f"predicted peak {predicted / 2**30:.1f} GiB (n^2 from {prev.n:,}) > 85% of "
                    f"{available / 2**30:.1f} GiB available")))
                continue
        points.append(scale_point(rec, n, cfg, date, root))
    for a, b in zip(points, points[1:], strict=False):
        growth_rows(rec, a, b)
    if points:
        last = points[-1]
        m = last.returns.shape[1]
        peak = max(last.rows["corr"].peak_mb or 0, last.rows["ward"].peak_mb or 0, last.rows["selection"].peak_mb or 0)
        total = mem_total_bytes()
        rec.add(Row("memory", f"largest scale: {m:,} x {m:,} correlation matrix, float64", f"{m * m * 8 / 1e9:.2f} GB",
                    peak_mb=peak, note=(
                        f"fits: peak +{peak / 1024:.1f} GiB RSS of {(total or 0) / 2**30:.1f} GiB "
                        f"(this row's corr is float64; selection switches to float32 from selection.float32_min_symbols)")))
    return points


def growth_rows(rec: Recorder, a: ScalePoint, b: ScalePoint) -> None:
    ratio_n = b.returns.shape[1] / a.returns.shape[1]  # symbols actually in the raw pool
    for key, label, expected in (
        ("scan", "scan + raw pool", "n"),
        ("fetch", "fetch into the price cache", "n"),
        ("align", "align + returns", "n"),
        ("corr", "pairwise correlation", "n^2"),
        ("ward", "distance + Ward linkage", "n^2"),
        ("selection", "natural selection", "n^2"),
    ):
        ta, tb = a.rows[key].seconds or 0, b.rows[key].seconds or 0
        ma, mb = a.rows[key].peak_mb or 0, b.rows[key].peak_mb or 0
        exp = ratio_n ** (2 if expected == "n^2" else 1)
        mem = f"; memory x{mb / ma:.1f}" if ma >= 5 and mb >= 5 else ""
        rec.add(Row("growth", f"{label}: {a.n:,} -> {b.n:,}", f"n x{ratio_n:.1f}",
                    note=f"time x{tb / ta:.1f} (expected ~x{exp:.0f}, O({expected})){mem}" if ta > 0 else ""))
