"""Natural selection at scale: from 60-session returns to the selected universe, 500-20,000 symbols.

`selection_scale(sizes)` returns one row per size with what `make bench` shows for selection:

- inputs: the embedded synthetic market with `n_equities = N` (seed 7, no faults), every listed
  symbol scanned long by open presets, the raw pool at `class_cap = N`, and the 60 XNYS sessions
  of returns ending `date`, aligned from each symbol's own bars (`quant.calendar`). They are built
  once per (N, date) and cached as Parquet; building them is the I/O stand-in, reported as
  `build s` but not part of the measurement (the production path reads the price store);
- `select s`, `select peak MB`: `quant.selection.select_universe` with the demo profile's
  parameters (`SelectionParams.from_config`), in a fresh subprocess that has loaded the inputs
  and the libraries first. `select warm s` is a second call in the same process: its large
  arrays land on memory the virtual machine has already touched, while on a fresh VM the first
  touch of a page costs ~10x a normal page fault (5.8 s vs 0.4 s for 1.6 GB measured here), so
  the first call pays for that and the second shows the compute. Peak memory (first call) is
  the kernel's high-water mark of the process's resident set (VmHWM) above its resident set at
  the start of the call: the mark is reset with `/proc/self/clear_refs` just before the call,
  so it counts every numpy, pandas and BLAS allocation (tracemalloc would miss BLAS buffers and
  slow pandas down). `process peak MB` is the whole subprocess's high-water mark (Python,
  libraries, inputs and the call);
- `dtype`: the precision the selection chose (`selection.float32_min_symbols`); `same clusters
  other dtype` re-clusters the scored streams in the other precision (float32 <-> float64) and
  compares the flat clusters, with `max |dheight|` the largest Ward-height difference;
- `corr s` vs `pandas s`: `quant.clustering.pairwise_correlation` (float64) against pandas
  `DataFrame.corr(min_periods=min_overlap)` on the same returns, `max |drho|` their largest
  difference over both frames; `gappy corr s` / `gappy pandas s` repeat it with 10% of the
  returns removed at random (the masked pairwise-complete kernel, the worst case; the synthetic
  window itself has no gaps). Best of 3 below 2,000 symbols, one run above. pandas runs up to
  `reference_max` symbols.

Run `python benchmarks/selection_scale.py [--sizes 5000 20000]` (wall times are noisy on a shared
machine: compare the ratios of one run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_SIZES = (500, 5_000, 20_000)
DEFAULT_DATE = dt.date(2026, 12, 1)
PROFILE = "demo"
GAP_SHARE = 0.10
SEED = 7
MIB = 1024.0 * 1024.0
COLUMNS = (
    "n_equities", "symbols", "build s", "select s", "select warm s", "select peak MB", "process peak MB", "winners", "clusters",
    "dtype", "same clusters other dtype", "max |dheight|", "corr s", "pandas s", "corr / pandas", "max |drho|",
    "gappy corr s", "gappy pandas s", "gappy corr / pandas",
)  # fmt: skip


# ------------------------------------------------------------------------------------------ memory
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_above_start(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """Run `fn()`; returns (its result, seconds, peak resident MB above the start, process peak MB).

    Linux only: the process's resident high-water mark (VmHWM) is reset to the current resident
    set by writing 5 to /proc/self/clear_refs, so the mark after the call is the call's own peak.
    """
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    start_kib = _status_kib("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    hwm_kib = _status_kib("VmHWM")
    return out, seconds, (hwm_kib - start_kib) / 1024.0, hwm_kib / 1024.0


# ------------------------------------------------------------------------------------------ inputs
def _input_paths(cache: Path, n_equities: int, date: dt.date) -> tuple[Path, Path]:
    stem = f"seed{SEED}_n{n_equities}_{date.isoformat()}"
    return cache / f"{stem}_candidates.parquet", cache / f"{stem}_returns.parquet"


def build_inputs(n_equities: int, date: dt.date, cache: Path) -> tuple[Path, Path, float]:
    """Candidates and 60-session returns for `n_equities` (cached); returns their paths and the
    seconds it took to build them (0 when cached)."""
    from portfolio_assets.assets.common import FAMILIES
    from portfolio_assets.manifest import resolve
    from portfolio_assets.partitions import sessions_window
    from portfolio_assets.quant.calendar import align_panel, simple_returns
    from portfolio_assets.quant.rawpool import build_raw_pool
    from portfolio_assets.sources.synthetic import SyntheticMarket

    cand_path, ret_path = _input_paths(cache, n_equities, date)
    if cand_path.exists() and ret_path.exists():
        return cand_path, ret_path, 0.0
    t0 = time.perf_counter()
    cfg = resolve(profile=PROFILE).config
    baseline = cfg.selection.baseline
    source = SyntheticMarket({"seed": SEED, "n_equities": n_equities, "faults": {}})
    open_preset = {"direction": "long", "filter": [], "limit": 10**7}
    scans = {f: source.scan(f, date, {"name": f"{f}_all", **open_preset}) for f in FAMILIES}
    pool, _ = build_raw_pool(scans, n_equities, baseline)
    symbols = sorted(set(pool.index) | {baseline})
    window = sessions_window(date, cfg.data.lookback_prep + 1)
    meta = source.metadata(symbols)
    first = window[0].date() - dt.timedelta(days=7)  # a bar before the first session, any calendar
    bars = {s: source.bars(s, first, date) for s in symbols}
    panel = align_panel(bars, {s: str(meta.at[s, "calendar"]) for s in symbols}, window)
    returns = simple_returns(panel).iloc[1:]
    candidates = pool[["direction", "identity", "asset_class"]].assign(value_traded=pool["Value.Traded"])
    cache.mkdir(parents=True, exist_ok=True)
    for frame, path in ((candidates, cand_path), (returns, ret_path)):
        tmp = path.with_suffix(".tmp")
        frame.to_parquet(tmp)
        os.replace(tmp, path)
    return cand_path, ret_path, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------ child
def _best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(cand_path: Path, ret_path: Path, reference: bool) -> dict[str, Any]:
    """The measurements of one size, in this process (meant to be a fresh one, see `_child`)."""
    import scipy.cluster.hierarchy  # noqa: F401  (imports are not charged to the call)
    import scipy.linalg.blas  # noqa: F401

    from portfolio_assets.manifest import resolve
    from portfolio_assets.quant.clustering import hierarchical_clusters, pairwise_correlation
    from portfolio_assets.quant.convention import synthetic_long
    from portfolio_assets.quant.selection import SelectionParams, select_universe

    cfg = resolve(profile=PROFILE).config
    params = SelectionParams.from_config(cfg)
    candidates = pd.read_parquet(cand_path)
    returns = pd.read_parquet(ret_path)
    res, seconds, peak_mb, process_mb = peak_above_start(lambda: select_universe(candidates, returns, params))
    del res
    res, warm_s, _, _ = peak_above_start(lambda: select_universe(candidates, returns, params))
    row: dict[str, Any] = {
        "symbols": returns.shape[1], "select s": seconds, "select warm s": warm_s, "select peak MB": peak_mb,
        "process peak MB": process_mb,
        "winners": int(res.funnel["winners"]), "clusters": int(res.clusters.n_clusters),
        "dtype": str(res.clusters.corr.dtypes.iloc[0]),
    }
    scored = list(res.clusters.clusters.index)
    clusters, z = res.clusters.clusters, res.clusters.linkage
    del res
    gc.collect()
    directions = candidates["direction"].reindex(scored).fillna("long")  # the baseline is long
    streams = synthetic_long(returns[scored], directions)
    other = np.float64 if row["dtype"] == "float32" else np.float32
    sel, overlap = cfg.selection, cfg.data.min_overlap
    alt = hierarchical_clusters(streams, sel.threshold, sel.max_clusters, overlap, other)
    row["same clusters other dtype"] = bool(alt.clusters.equals(clusters))
    row["max |dheight|"] = float(np.abs(alt.linkage[:, 2] - z[:, 2]).max()) if len(z) else 0.0
    del alt, streams
    gc.collect()

    gappy = returns.mask(np.random.default_rng(SEED).random(returns.shape) < GAP_SHARE)
    repeat = 3 if returns.shape[1] < 2_000 else 1
    drho = 0.0
    for label, frame in (("", returns), ("gappy ", gappy)):
        pairwise_correlation(frame.iloc[:, :50], overlap)  # warm the BLAS threads
        row[f"{label}corr s"] = _best(lambda f=frame: pairwise_correlation(f, overlap), repeat)
        if not reference:
            continue
        row[f"{label}pandas s"] = _best(lambda f=frame: f.corr(min_periods=overlap), repeat)
        row[f"{label}corr / pandas"] = row[f"{label}corr s"] / row[f"{label}pandas s"]
        ours = pairwise_correlation(frame, overlap).to_numpy()
        ref = frame.corr(min_periods=overlap).to_numpy()
        np.fill_diagonal(ref, 1.0)  # ours defines the diagonal as 1
        same_nan = np.array_equal(np.isnan(ours), np.isnan(ref))
        drho = max(drho, float(np.nanmax(np.abs(ours - ref))) if same_nan else float("inf"))
        del ours, ref
    if reference:
        row["max |drho|"] = drho  # both frames
    return row


def _child(args: argparse.Namespace) -> int:
    row = measure(Path(args.candidates), Path(args.returns), args.reference)
    print(json.dumps(row))
    return 0


# ------------------------------------------------------------------------------------------ table
def selection_scale(
    sizes: Sequence[int] = DEFAULT_SIZES,
    date: dt.date = DEFAULT_DATE,
    cache: Path | None = None,
    reference_max: int = 20_000,
    echo: bool = False,
) -> pd.DataFrame:
    """One row per size (see the module docstring for the columns); each size in a fresh process."""
    cache = cache or Path(tempfile.gettempdir()) / "pa-selection-scale"
    rows = []
    for n in sizes:
        cand_path, ret_path, build_s = build_inputs(n, date, cache)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--candidates", str(cand_path),
               "--returns", str(ret_path)] + (["--reference"] if n <= reference_max else [])
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"selection_scale child for n={n} failed:\n{done.stderr[-3000:]}")
        row = {"n_equities": n, "build s": build_s, **json.loads(done.stdout.strip().splitlines()[-1])}
        rows.append(row)
        if echo:
            print(json.dumps(row), file=sys.stderr, flush=True)
    return pd.DataFrame(rows).reindex(columns=list(COLUMNS))


def format_table(table: pd.DataFrame) -> str:
    """Aligned text with 2-3 significant digits for the times and ratios."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if np.isnan(v):
                return "-"
            return f"{v:.1e}" if 0 < abs(v) < 1e-3 else f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    return table.map(fmt).to_string(index=False)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/selection_scale.py", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="n_equities of each row")
    p.add_argument("--date", default=DEFAULT_DATE.isoformat(), help="last session of the 60-session window")
    p.add_argument("--cache", help="where the inputs are cached (default: <tmp>/pa-selection-scale)")
    p.add_argument("--reference-max", type=int, default=20_000, help="largest size at which pandas runs")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--candidates", help=argparse.SUPPRESS)
    p.add_argument("--returns", help=argparse.SUPPRESS)
    p.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        return _child(args)
    table = selection_scale(args.sizes, dt.date.fromisoformat(args.date), Path(args.cache) if args.cache else None,
                            args.reference_max, echo=True)
    print(format_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
