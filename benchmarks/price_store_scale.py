"""Scan to selected universe through the columnar price store, at 5,000 and 20,000 symbols.

`scale_rows(sizes)` returns one row per (stage, n): `stage`, `n` (equities asked of the market),
`wall_s`, `peak_mb` (the stage's resident high-water mark above its start; Linux VmHWM, reset
through `/proc/self/clear_refs`, so numpy/BLAS/Arrow buffers count) and a `note`. Each size runs in
a fresh subprocess (so peaks do not mix). Stages:

- `market` (not counted): the embedded synthetic market with `n_equities = n` (seed 7, no faults);
- `scan + raw pool`: every listed symbol scanned by open presets, the raw pool at class_cap = n;
- `source bars` (not counted: the vendor's side, network time in production): the 60-session
  window (+ the fetch buffer) of every symbol from the source;
- `store write`: those bars stored as one part of the price store (`PriceStore.write`: one
  Parquet table, temp file + fsync + rename);
- `store read + align + returns`: the window read back with the symbol and date filters pushed
  down (`PriceStore.read`), aligned to the master sessions from each symbol's own calendar in one
  vectorized pass (`quant.calendar.align_panel_long`) and turned into returns;
- `selection`: `quant.selection.select_universe` (coverage-aware correlation, float32 at this
  size, in-place angular distance, Ward, the selection rules) with the demo profile's parameters;
- `scan to selection (incl. I/O)`: the sum of the counted stages, `peak_mb` the largest of them;
- `correlation ours / pandas` (n <= `PANDAS_MAX`): `pairwise_correlation` (float64) against
  pandas `DataFrame.corr(min_periods=min_overlap)` on the same returns, with max |drho|;
- `float32 vs float64 clusters` (n <= `PANDAS_MAX`): the selection's clustering in both
  precisions, max |drho| against `FLOAT32_RHO_TOL` and whether the flat clusters are identical.

Run `python -m benchmarks.price_store_scale [--sizes 5000 20000]` from the project root. Wall times on a shared
machine are noisy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.selection_scale import peak_above_start

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # where `benchmarks` is a package

DEFAULT_SIZES = (5_000, 20_000)
DATE = dt.date(2026, 11, 25)
PROFILE = "demo"
SEED = 7
PANDAS_MAX = 5_000
TARGETS = {5_000: (10.0, None), 20_000: (60.0, 6 * 1024.0)}  # n: (seconds, peak MiB) incl. I/O


def measured(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(fn(), seconds, peak resident MiB above the start of the call): `selection_scale.peak_above_start`."""
    out, seconds, peak, _ = peak_above_start(fn)
    return out, seconds, peak


def run_size(n: int, root: Path) -> list[dict[str, Any]]:
    """Every stage for `n` equities in this process (see the module docstring)."""
    import numpy as np

    from portfolio_assets.assets.common import FAMILIES
    from portfolio_assets.fetch import clean_bars, window_bounds
    from portfolio_assets.manifest import resolve
    from portfolio_assets.partitions import sessions_window
    from portfolio_assets.price_store import PriceStore
    from portfolio_assets.quant.calendar import align_panel_long, simple_returns
    from portfolio_assets.quant.rawpool import build_raw_pool
    from portfolio_assets.quant.selection import SelectionParams, select_universe
    from portfolio_assets.sources.synthetic import SyntheticMarket

    cfg = resolve(profile=PROFILE).config
    sel, data = cfg.selection, cfg.data
    rows: list[dict[str, Any]] = []

    def row(stage: str, wall: float, peak: float, note: str, counted: bool) -> None:
        rows.append({"stage": stage, "n": n, "wall_s": round(wall, 3), "peak_mb": round(peak, 1), "note": note,
                     "counted": counted})

    source, s, p = measured(lambda: SyntheticMarket({"seed": SEED, "n_equities": n, "faults": {}}))
    row("market", s, p, f"{len(source.universe):,} listed (not counted)", False)

    def scan():
        preset = {"direction": "long", "filter": [], "limit": 10**7}
        scans = {f: source.scan(f, DATE, {"name": f"{f}_all", **preset}) for f in FAMILIES}
        return build_raw_pool(scans, n, sel.baseline)[0]

    pool, s, p = measured(scan)
    row("scan + raw pool", s, p, f"{len(pool):,} symbols", True)
    symbols = sorted(set(pool.index) | {sel.baseline})
    window = sessions_window(DATE, data.lookback_prep + 1)
    start, end = window_bounds(window)

    def bars():
        return {sym: clean_bars(sym, source.bars(sym, start, end), end)[0] for sym in symbols}

    fetched, s, p = measured(bars)
    n_bars = sum(len(b) for b in fetched.values())
    row("source bars", s, p, f"{n_bars:,} bars of {len(symbols):,} symbols (vendor side, not counted)", False)

    store = PriceStore(root / f"scale_{n}" / "prices")
    part, s, p = measured(lambda: store.write(fetched, "synthetic", dt.datetime.now(dt.UTC), start=start, end=end))
    row("store write", s, p, f"one part, {part.stat().st_size / 2**20:.1f} MiB zstd", True)
    fetched.clear()  # the bars now live in the store only
    meta = source.metadata(symbols)
    calendars = {sym: str(meta.at[sym, "calendar"]) for sym in symbols}

    def read_align():
        long = store.read(symbols, start, end)
        return simple_returns(align_panel_long(long, calendars, window)).iloc[1:]

    rets, s, p = measured(read_align)
    row("store read + align + returns", s, p, f"{rets.shape[0]} x {rets.shape[1]:,}, pushdown on symbol/date", True)
    params = SelectionParams.from_config(cfg)
    candidates = pool[["direction", "identity", "asset_class"]].assign(value_traded=pool["Value.Traded"])
    result, s, p = measured(lambda: select_universe(candidates, rets, params))
    row("selection", s, p, f"{len(result.winners)} winners, {result.clusters.n_clusters} clusters", True)
    del result
    counted = [r for r in rows if r["counted"]]
    total_s = sum(r["wall_s"] for r in counted)
    peak = max(r["peak_mb"] for r in counted)
    target_s, target_mb = TARGETS.get(n, (None, None))
    verdict = []
    if target_s is not None:
        verdict.append(f"target <= {target_s:.0f} s: {'met' if total_s <= target_s else 'MISSED'}")
    if target_mb is not None:
        verdict.append(f"peak <= {target_mb / 1024:.0f} GiB: {'met' if peak <= target_mb else 'MISSED'}")
    row("scan to selection (incl. I/O)", total_s, peak, "; ".join(verdict) or "sum of the counted stages", False)

    if n <= PANDAS_MAX:
        from portfolio_assets.quant.clustering import hierarchical_clusters, pairwise_correlation
        from portfolio_assets.quant.correlation import FLOAT32_RHO_TOL

        ours, s_ours, p = measured(lambda: pairwise_correlation(rets, min_overlap=data.min_overlap))
        ref, s_pd, _ = measured(lambda: rets.corr(min_periods=data.min_overlap))
        diff = float(np.nanmax(np.abs(ours.to_numpy() - ref.to_numpy())))
        same_nan = bool((np.isnan(ours.to_numpy()) == np.isnan(ref.to_numpy())).all())
        row("correlation ours / pandas", s_ours, p,
            f"pandas {s_pd:.2f} s, ratio {s_ours / s_pd:.2f}x, max |drho| {diff:.1e}, same NaNs {same_nan}", False)
        del ours, ref
        kw = {"threshold": sel.threshold, "max_clusters": sel.max_clusters, "min_overlap": data.min_overlap}

        def both():
            return (hierarchical_clusters(rets, dtype=np.float64, **kw),
                    hierarchical_clusters(rets, dtype=np.float32, **kw))

        (c64, c32), s, p = measured(both)
        drho = float(np.nanmax(np.abs(c64.corr.to_numpy() - c32.corr.to_numpy().astype(np.float64))))
        same = bool(c64.clusters.equals(c32.clusters))
        row("float32 vs float64 clusters", s, p,
            f"max |drho| {drho:.1e} (tol {FLOAT32_RHO_TOL:.0e}), identical clusters {same}", False)
    return rows


def scale_rows(sizes: Sequence[int] = DEFAULT_SIZES) -> list[dict[str, Any]]:
    """The rows of every size, each size in a fresh subprocess (module docstring)."""
    out: list[dict[str, Any]] = []
    for n in sizes:
        if int(n) < 10:
            raise ValueError(f"size must be >= 10 symbols, got {n}")
        with tempfile.TemporaryDirectory(prefix="price_store_scale_") as tmp:
            proc = subprocess.run([sys.executable, "-m", "benchmarks.price_store_scale", "--child", str(int(n)),
                                   "--root", tmp], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"size {n}: the measuring process failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        out.extend(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def table(rows: Sequence[dict[str, Any]]) -> str:
    head = f"{'stage':<32} {'n':>7} {'wall s':>8} {'peak MB':>9}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['stage']:<32} {r['n']:>7,} {r['wall_s']:>8.2f} {r['peak_mb']:>9.1f}  {r['note']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_size(args.child, args.root)))
        return
    print(table(scale_rows(args.sizes)))


if __name__ == "__main__":
    main()
