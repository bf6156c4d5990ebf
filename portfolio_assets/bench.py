"""`portfolio-assets bench [--quick]`: stage timings, scale universes and reference ratios (SPEC §9).

One table, sections:

- `demo`: one partition of the active profile (default `demo`), stage by stage, in-process and
  without Dagster: the same functions the assets call (`assets/*.py` helpers and `quant/`), on the
  embedded synthetic source and a temporary lakehouse (price cache included).
- `scale N`: the synthetic source with `n_equities = N` and open scanner presets (every listed
  symbol passes, `class_cap = N`): scan + raw pool, 60-session fetch into the price cache, align +
  returns, pairwise correlation, angular distance + Ward linkage, natural selection. `growth` rows
  compare the time ratios between scale points with n (linear) and n^2 (correlation is
  O(n^2 T), Ward with scipy's nearest-neighbour chain O(n^2) memory and about O(n^2) time).
- `ref`: ours against reference implementations in the same process on the same data:
  (a) the walk-forward tournament of inverse_vol, min_variance, hrp and risk_parity against
  skfolio's `WalkForward` + `cross_val_predict` with the equivalent estimators
  (`benchmarks/tournament_vs_skfolio.py`: same windows, caps and turnover penalty off so that both
  solve the same problems; ours also runs both simulators and the per-window metrics); (b) HRP against riskfolio-lib's `HCPortfolio`; (c) correlation and
  Ward linkage against pandas `.corr(min_periods=...)` + scipy. Each row reports the agreement.
- `blas`: the HRP and tournament code with the default OpenBLAS threads against the same code
  limited to one thread (threadpoolctl): small matrices can lose to thread hand-offs.
- `backfill`: 20 consecutive trading dates of the `development` profile through
  `dagster.materialize` (in-process executor), and `executors`: the whole demo graph once through
  Dagster, then only the `tournament` asset on the stored upstream with the in_process and
  multiprocess executors, and celery when `redis-server` is installed (a broker and two
  `dagster-celery` workers started for the row). Both are skipped with `--quick`.

Memory (`peak MB`): the peak resident set size above the stage's starting RSS. It is exact when
the stage raised the process's high-water mark (`resource.getrusage(...).ru_maxrss`), otherwise
the maximum of `/proc/self/statm` sampled every 5 ms by a background thread. tracemalloc is not
used: its per-allocation hooks slow pandas-heavy stages unevenly and would distort the ratios.
Wall times are `time.perf_counter()`; a reference timed over several repetitions reports the
median. Ratios are only meaningful within one run (the machine is shared).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import os
import platform
import resource
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from portfolio_assets.resources import PortfolioSettings

FULL_SCALES = (500, 5_000, 20_000)
QUICK_SCALES = (500, 2_000)
REFERENCE_MAX_SCALE = 5_000  # pandas' O(n^2 T) corr loop above this adds minutes and no information
COMPARE_ENGINES = ("inverse_vol", "min_variance", "hrp", "risk_parity")
HRP_SHAPE = (60, 252)  # symbols x sessions of the HRP comparison
BACKFILL_DATES = 20
MIB = 1024.0 * 1024.0
COLUMNS = ("section", "stage", "size", "wall s", "peak MB", "ref s", "ref peak MB", "ratio", "agreement / note")


# ------------------------------------------------------------------------------------------ memory
def _rss_bytes() -> int | None:
    """Current resident set size from /proc/self/statm (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _maxrss_bytes() -> int:
    """The process's RSS high-water mark (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class PeakRss:
    """Per-stage peak RSS above the stage's start (see the module docstring for the method)."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        if _rss_bytes() is not None:
            self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = _rss_bytes() or 0
            if rss > self._peak:
                self._peak = rss

    def begin(self) -> tuple[int, int]:
        start = _rss_bytes() or 0
        self._peak = start
        return start, _maxrss_bytes()

    def end(self, token: tuple[int, int]) -> float:
        """MB above the stage's starting RSS at the stage's peak."""
        start, maxrss_before = token
        peak = max(self._peak, _rss_bytes() or 0)
        maxrss = _maxrss_bytes()
        if maxrss > maxrss_before:  # the stage set a new high-water mark: that is its exact peak
            peak = max(peak, maxrss)
        return max(0.0, (peak - start) / MIB)


# ------------------------------------------------------------------------------------------ table
@dataclass
class Row:
    """One line of the table. `ratio` = ours / reference (below 1: ours is faster)."""

    section: str
    stage: str
    size: str = ""
    seconds: float | None = None
    peak_mb: float | None = None
    ref_seconds: float | None = None
    ref_peak_mb: float | None = None
    note: str = ""
    agreement: float | None = None  # max |ours - reference| of the compared numbers (ref rows)

    @property
    def ratio(self) -> float | None:
        if self.seconds is None or not self.ref_seconds:
            return None
        return self.seconds / self.ref_seconds

    def cells(self) -> list[str]:
        return [self.section, self.stage, self.size, _fmt_s(self.seconds), _fmt_mb(self.peak_mb),
                _fmt_s(self.ref_seconds), _fmt_mb(self.ref_peak_mb),
                "" if self.ratio is None else f"{self.ratio:.2f}", self.note]


def _fmt_s(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:.4f}" if x < 0.1 else f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _fmt_mb(x: float | None) -> str:
    return "" if x is None else f"{x:.0f}" if x >= 10 else f"{x:.1f}"


class Recorder:
    """Collects rows; `stage(...)` times a block and measures its peak memory."""

    def __init__(self, probe: PeakRss, echo: bool = True) -> None:
        self.probe = probe
        self.rows: list[Row] = []
        self.echo = echo

    @contextlib.contextmanager
    def stage(self, section: str, stage: str, size: str = "", note: str = "") -> Iterator[Row]:
        row = Row(section, stage, size, note=note)
        token = self.probe.begin()
        t0 = time.perf_counter()
        yield row
        row.seconds = time.perf_counter() - t0
        row.peak_mb = self.probe.end(token)
        self.add(row)

    def measure(self, fn: Callable[[], Any], repeat: int = 1) -> tuple[float, float, Any]:
        """(median seconds over `repeat` calls, peak MB of the calls, last result)."""
        times, result = [], None
        token = self.probe.begin()
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
        return float(np.median(times)), self.probe.end(token), result

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        if self.echo:
            cells = row.cells()
            print(f"  {row.section:9s} {row.stage:58s} {cells[3]:>8s} s {cells[4]:>7s} MB"
                  + (f"  ref {cells[5]} s, ratio {cells[7]}" if row.ref_seconds else "")
                  + (f"  {row.note}" if row.note else ""), file=sys.stderr, flush=True)
        return row


def format_text(rows: Sequence[Row]) -> str:
    """The table as aligned text (numbers right-aligned)."""
    table = [list(COLUMNS)] + [r.cells() for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    numeric = {3, 4, 5, 6, 7}
    out = []
    for n, line in enumerate(table):
        cells = [c.rjust(w) if i in numeric and n else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_markdown(rows: Sequence[Row]) -> str:
    """The table as GitHub Markdown."""
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---:" if i in (3, 4, 5, 6, 7) else "---" for i in range(len(COLUMNS))) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def machine_description() -> str:
    mem = ""
    with contextlib.suppress(OSError, ValueError):
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        total = int(info["MemTotal"].split()[0]) / MIB
        avail = int(info["MemAvailable"].split()[0]) / MIB
        mem = f", memory {total:.1f} GiB ({avail:.1f} GiB available at start)"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError, AttributeError):
        load = ", load average {:.1f} {:.1f} {:.1f} at start (shared machine)".format(*os.getloadavg())
    return (f"nproc {os.cpu_count()}, {cpu}{mem}{load}; Python {platform.python_version()}, "
            f"numpy {np.__version__}, pandas {pd.__version__}")


def _meminfo_bytes(key: str) -> int | None:
    with contextlib.suppress(OSError, ValueError, StopIteration):
        line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith(f"{key}:"))
        return int(line.split()[1]) * 1024
    return None


def mem_available_bytes() -> int | None:
    return _meminfo_bytes("MemAvailable")


def mem_total_bytes() -> int | None:
    return _meminfo_bytes("MemTotal")


# ------------------------------------------------------------------------------------------ env
@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or unset, with None) environment variables for the block, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ------------------------------------------------------------------------------------------ demo
@dataclass
class BenchContext:
    """The attributes of `assets._step.Step` that the asset helpers read (`cfg`, `lake`, `date`,
    `settings.source()`, `event`), without a Dagster context."""

    settings: PortfolioSettings
    date: dt.date
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.resolved = self.settings.resolved()
        self.cfg = self.resolved.config
        self.lake = self.settings.lakehouse()
        self.partition = self.date.isoformat()

    def event(self, kind: str, **details: Any) -> None:
        self.events.append({"kind": kind, **details})


@dataclass
class DemoState:
    """What the demo stages produced that the reference comparisons reuse."""

    cfg: Any
    universe_streams: pd.DataFrame  # synthetic-long 500-session streams of the healthy universe
    buckets: pd.Series
    regime: str
    raw_history: pd.DataFrame  # raw-pool 500-session returns


def demo_partition(rec: Recorder, settings: PortfolioSettings, date: dt.date, section: str = "demo") -> DemoState:
    """One partition stage by stage, the way the assets chain them, minus Dagster and Parquet
    outputs (the price cache is written, as the fetch layer always does)."""
    from portfolio_assets.assets.common import FAMILIES
    from portfolio_assets.assets.discovery import scan_family
    from portfolio_assets.assets.history import health_params
    from portfolio_assets.assets.universe import calendars_of, fetch_returns, merge_scans
    from portfolio_assets.assets.validation import point_in_time_pools, tournament_settings
    from portfolio_assets.fetch import assess_all, fetch_into_cache, load_panel, recover, window_bounds
    from portfolio_assets.partitions import sessions_window
    from portfolio_assets.quant.calendar import simple_returns
    from portfolio_assets.quant.clustering import bucket_stats, hierarchical_clusters, top_correlated_pairs
    from portfolio_assets.quant.convention import publish_net_weights, synthetic_long
    from portfolio_assets.quant.engines import EngineInputs, run_engine
    from portfolio_assets.quant.enrichment import enrich
    from portfolio_assets.quant.regimes import detect_regime
    from portfolio_assets.quant.selection import select_universe
    from portfolio_assets.quant.tournament import (
        TodayContext,
        build_streams,
        plan_contexts,
        summarize_tournament,
    )
    from portfolio_assets.quant.walkforward import make_windows

    ctx = BenchContext(settings, date)
    cfg, lake, data, sel = ctx.cfg, ctx.lake, ctx.cfg.data, ctx.cfg.selection
    baseline = sel.baseline
    t_start = time.perf_counter()
    first = len(rec.rows)

    with rec.stage(section, "synthetic source (build the market)") as row:
        source = settings.source()
        row.size = f"{len(getattr(source, 'universe', []))} listed"

    with rec.stage(section, "discovery scans (4 families)") as row:
        scans = {}
        for family in FAMILIES:
            scanned = scan_family(cfg, source, family, date)
            if scanned is not None:
                scans[family] = scanned[0]
        row.size = f"{sum(len(s) for s in scans.values())} rows"

    with rec.stage(section, "raw pool (quant.rawpool.build_raw_pool)") as row:
        pool, pool_audit = merge_scans(cfg, source, scans, date)
        row.size = f"{len(pool)} symbols"

    with rec.stage(section, f"{data.lookback_prep}-session prep (fetch + align + returns)") as row:
        prep_symbols = sorted(set(pool.index) | {baseline})
        _, rets60 = fetch_returns(ctx, prep_symbols, data.lookback_prep)
        row.size = f"{rets60.shape[0]} x {rets60.shape[1]}"

    tset, eparams, sim, simulators = tournament_settings(cfg)
    with rec.stage(section, "natural selection (quant.selection.select_universe)") as row:
        candidates = pool[["direction", "identity", "asset_class"]].assign(value_traded=pool["Value.Traded"])
        selection = select_universe(candidates, rets60, tset.selection)
        winners = selection.winners.set_index("symbol")
        row.size = f"{len(winners)} winners"

    with rec.stage(section, "enrichment") as row:
        enriched = enrich(winners, pool, source.metadata(list(winners.index)))
        row.size = f"{len(enriched)} rows"

    with rec.stage(section, f"{data.lookback_history}-session history (fetch + align)") as row:
        symbols = sorted(set(winners.index) | {baseline})
        window = sessions_window(date, data.lookback_history + 1)
        start, end = window_bounds(window)
        calendars = calendars_of(ctx, symbols)
        fetch_into_cache(source, lake, symbols, start, end)
        panel = load_panel(lake, symbols, calendars, window, date)
        hist = simple_returns(panel).iloc[1:]
        row.size = f"{hist.shape[0]} x {hist.shape[1]}"

    with rec.stage(section, "health assessment + recovery") as row:
        hparams = health_params(ctx, symbols)
        before = assess_all(lake, symbols, calendars, window, start, date, hparams)
        after, log = recover(source, lake, before, calendars, window, start, date, hparams,
                             data.recovery_attempts, data.recovery_backoff_s)
        if log.rows:  # re-align what recovery re-fetched
            panel = load_panel(lake, symbols, calendars, window, date)
            hist = simple_returns(panel).iloc[1:]
        unhealthy = int((after["status"] != "OK").sum())
        row.size = f"{len(symbols)} symbols"
        row.note = f"{int((before['status'] != 'OK').sum())} unhealthy before, {unhealthy} after, {len(log.rows)} re-fetches"

    with rec.stage(section, f"raw-pool history ({data.lookback_history} sessions, fetch + align)") as row:
        _, raw = fetch_returns(ctx, prep_symbols, data.lookback_history)
        row.size = f"{raw.shape[0]} x {raw.shape[1]}"

    ok = [s for s in hist.columns if after.at[s, "status"] == "OK"]
    if baseline not in ok:
        raise ValueError(f"bench: baseline {baseline} is unhealthy after recovery; cannot continue")
    directions = winners["direction"].reindex(ok).fillna("long")
    directions[baseline] = "long"
    streams = synthetic_long(hist[ok], directions)

    with rec.stage(section, "risk buckets (quant.clustering.hierarchical_clusters)") as row:
        risk = cfg.risk
        cr = hierarchical_clusters(streams, threshold=risk.threshold, max_clusters=risk.max_clusters,
                                   min_overlap=data.min_overlap)
        stats = bucket_stats(streams, cr.clusters, cr.corr)
        pairs = top_correlated_pairs(cr.corr, risk.top_pairs)
        row.size = f"{len(cr.clusters)} symbols"
        row.note = f"{cr.n_clusters} buckets; no images"

    with rec.stage(section, "regime (quant.regimes.detect_regime)") as row:
        regime = detect_regime(hist[baseline], hist[ok].drop(columns=[baseline]), cfg.regime,
                               spectral=cfg.features.feat_spectral_regimes)
        row.size = f"{len(regime.features)} sessions"
        row.note = regime.label

    pool_dirs = pool["direction"]
    with rec.stage(section, "all engines (quant.engines.run_engine)") as row:
        train = streams.iloc[-cfg.backtest.train:]
        raw_streams = synthetic_long(raw, pool_dirs.reindex(raw.columns).fillna("long")).reindex(train.index)
        inputs = EngineInputs(returns=train, clusters=cr.clusters.reindex(train.columns), regime=regime.label,
                              prev_weights=None, baseline=baseline, raw_pool_returns=raw_streams)
        frames = []
        for engine in cfg.optimization.engines:
            res = run_engine(engine, inputs, eparams)
            w = res.weights[res.weights > 0]
            dirs = pd.concat([directions, pool_dirs]).groupby(level=0).first().reindex(w.index).fillna("long")
            frames.append(pd.DataFrame({
                "engine": engine, "symbol": w.index,
                "bucket": cr.clusters.reindex(w.index).fillna(0).astype(int).to_numpy(),
                "direction": dirs.to_numpy(), "weight": w.to_numpy(),
                "net_weight": publish_net_weights(w, dirs).to_numpy(),
                "is_production": engine == cfg.optimization.production_engine, "engine_used": res.engine_used,
                "asset_class": enriched["asset_class"].reindex(w.index).to_numpy(),
                "sector": enriched["sector"].reindex(w.index).to_numpy(),
            }))
        weights_table = pd.concat(frames, ignore_index=True)
        row.size = f"{len(cfg.optimization.engines)} engines x {train.shape[1]} symbols"

    windows = make_windows(hist.index, cfg.backtest.train, cfg.backtest.test, cfg.backtest.step)
    raw_aligned = raw.reindex(hist.index)
    raw_returns = pd.concat([hist[ok], raw_aligned[[c for c in raw_aligned.columns if c not in ok]]], axis=1)
    today = TodayContext(universe=directions, buckets=cr.clusters, regime=regime.label, raw_pool=pool_dirs)
    tables: dict[str, pd.DataFrame] = {}
    for pit in (True, False):
        label = "point-in-time" if pit else "today's context"
        tsettings = dataclasses.replace(tset, pit=pit)
        with rec.stage(section, f"tournament plan ({label})") as row:
            plan_returns = raw_returns
            pools = point_in_time_pools(ctx, windows, pool) if pit else None
            if pools:
                needed = sorted(set().union(*(p.index for p, _ in pools.values())) - set(plan_returns.columns))
                if needed:
                    _, extra = fetch_returns(ctx, needed, len(hist))
                    plan_returns = pd.concat([plan_returns, extra.reindex(hist.index)], axis=1)
            contexts = plan_contexts(windows, plan_returns, baseline, tsettings, pools=pools, today=today)
            tstreams = build_streams(plan_returns, sorted(set(contexts["stream"])))
            row.size = f"{len(windows)} windows, {tstreams.shape[1]} streams"
            row.note = "re-scan, re-select, re-cluster, regime per window" if pit else "today's universe"
        with rec.stage(section, f"tournament engines x windows x simulators ({label})") as row:
            parts: dict[str, list[pd.DataFrame]] = {"windows": [], "returns": [], "weights": []}
            for name in cfg.optimization.engines:
                out = run_engine_tournament_timed(name, tstreams, windows, contexts, baseline, tsettings, eparams,
                                                  sim, simulators)
                for key, frame in out.items():
                    parts[key].append(frame)
            win = pd.concat(parts["windows"], ignore_index=True).sort_values(["engine", "simulator", "k"],
                                                                              kind="mergesort")
            rets_long = pd.concat(parts["returns"], ignore_index=True).sort_values(
                ["engine", "simulator", "session"], kind="mergesort")
            summary = summarize_tournament(win, rets_long).sort_values("sharpe", ascending=False, kind="mergesort")
            row.size = f"{len(cfg.optimization.engines)} x {len(windows)} x {len(simulators)}"
        if pit == cfg.features.feat_pit_fidelity:
            tables.update(summary=summary.reset_index(drop=True), windows=win.reset_index(drop=True),
                          returns=rets_long.reset_index(drop=True))

    with rec.stage(section, "reports (build_reports, no QuantStats HTML)") as row:
        from portfolio_assets.reports.builder import ReportInputs, build_reports

        health = after.assign(status_before=before["status"], issues_before=before["issues"]).reset_index()
        audit = selection.audit
        scanned = int(pool_audit.loc[pool_audit["stage"] == "scanned", "count"].sum())
        funnel = {"scanned": scanned, "raw_pool": len(pool), "clusters": int(audit["cluster"].nunique()),
                  "winners": len(winners)}
        funnel.update({f"lost_{k}": int(v) for k, v in audit.loc[~audit["selected"], "outcome"].value_counts().items()})
        report_inputs = ReportInputs(
            partition=ctx.partition, profile=ctx.resolved.profile,
            production_engine=cfg.optimization.production_engine, baseline=baseline,
            summary=tables["summary"], windows=tables["windows"], returns=tables["returns"],
            weights=weights_table, selection_audit=audit, raw_pool_audit=pool_audit, funnel=funnel,
            health=health, bucket_stats=stats, pairs=pairs, regime=regime.features, regime_label=regime.label,
            features=cfg.features.model_dump(), top_engines=cfg.reports.top_engines, quantstats_html=False,
        )
        written = build_reports(report_inputs, lake.reports_dir(ctx.partition))
        row.size = f"{len(written)} files"

    total = sum(r.seconds or 0.0 for r in rec.rows[first:])
    rec.add(Row(section, "demo partition total (sum of the stages above)", ctx.resolved.profile,
                seconds=total, note=f"{time.perf_counter() - t_start:.1f} s elapsed"))
    return DemoState(cfg=cfg, universe_streams=streams, buckets=cr.clusters,
                     regime=regime.label, raw_history=raw)


def run_engine_tournament_timed(name, streams, windows, contexts, baseline, tsettings, eparams, sim, simulators):
    """`quant.tournament.run_engine_tournament` plus the per-engine seconds column the asset adds."""
    from portfolio_assets.quant.tournament import run_engine_tournament

    t0 = time.perf_counter()
    out = run_engine_tournament(name, streams, windows, contexts, baseline, tsettings, eparams, sim, simulators)
    out["windows"]["seconds"] = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------------------------------ scale
OPEN_PRESET = {"direction": "long", "filter": [], "limit": 10**7}


@dataclass
class ScalePoint:
    n: int
    returns: pd.DataFrame
    rows: dict[str, Row] = field(default_factory=dict)
    corr: pd.DataFrame | None = None  # kept only for the reference comparison (n <= REFERENCE_MAX_SCALE)
    linkage: np.ndarray | None = None


def scale_point(rec: Recorder, n: int, cfg: Any, date: dt.date, root: Path, keep_corr: bool) -> ScalePoint:
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
    point = ScalePoint(n=n, returns=rets, rows=rows,
                       corr=corr if keep_corr else None, linkage=z if keep_corr else None)
    del corr, z
    with rec.stage(section, "natural selection (select_universe, incl. its own corr + Ward)") as row:
        candidates = pool[["direction", "identity", "asset_class"]].assign(value_traded=pool["Value.Traded"])
        result = select_universe(candidates, rets, params)
        row.size = f"{len(result.winners)} winners of {len(candidates):,}"
        row.note = f"{result.clusters.n_clusters} clusters"
        del result
    rows["selection"] = row
    return point


def scale_section(rec: Recorder, scales: Sequence[int], cfg: Any, date: dt.date, root: Path) -> list[ScalePoint]:
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
        points.append(scale_point(rec, n, cfg, date, root, keep_corr=n <= REFERENCE_MAX_SCALE))
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


# ------------------------------------------------------------------------------------------ references
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the reference libraries' warnings (deprecations, solver notes) while they run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def tournament_benchmark() -> Any:
    """`benchmarks/tournament_vs_skfolio.py` (outside the package), loaded from the project tree."""
    import importlib.util

    from portfolio_assets.manifest import PROJECT_ROOT

    name = "tournament_vs_skfolio"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "benchmarks" / f"{name}.py")
        if spec is None or spec.loader is None:
            raise FileNotFoundError(f"benchmarks/{name}.py not found under {PROJECT_ROOT}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def compare_tournament(rec: Recorder, state: DemoState) -> None:
    """(a) Our walk-forward tournament vs skfolio `WalkForward` + `cross_val_predict`
    (`benchmarks/tournament_vs_skfolio.compare` on the demo universe's complete streams)."""
    bench = tournament_benchmark()
    cfg = state.cfg
    bt = cfg.backtest
    if bt.step != bt.test:
        rec.add(Row("ref", "(a) tournament vs skfolio: skipped", note="skfolio WalkForward needs step == test"))
        return
    full = state.universe_streams.dropna(axis=1)
    table = bench.compare(full, state.buckets, cfg, engines=COMPARE_ENGINES, regime=state.regime).set_index("engine")
    size = f"{int(table['symbols'].iloc[0])} symbols x {int(table['windows'].iloc[0])} windows"
    for engine in COMPARE_ENGINES:
        row = table.loc[engine]
        rec.add(Row("ref", f"(a) tournament {engine} vs skfolio {row['reference']}", size,
                    seconds=float(row["ours_s"]), ref_seconds=float(row["ref_s"]),
                    agreement=float(row["max_abs_dw"]),
                    note=f"max|dw| {row['max_abs_dw']:.1e}; our fits alone {row['fits_s']:.3f} s "
                         f"(ratio {row['fits_ratio']:.2f})"))
    total = table.loc["total"]
    rec.add(Row("ref", "(a) tournament, 4 engines (ours: 2 simulators + window metrics)", size,
                seconds=float(total["ours_s"]), ref_seconds=float(total["ref_s"]),
                note="caps + turnover penalty off on both sides"))
    setup = bench.prepare(full, state.buckets, cfg, state.regime)
    blas_threads_row(rec, "tournament, 4 engines (ours)", size,
                     lambda: [bench.ours(setup, engine) for engine in COMPARE_ENGINES], repeat=1)


def blas_threads_row(rec: Recorder, label: str, size: str, fn: Callable[[], Any], repeat: int) -> None:
    """The same code with the default OpenBLAS threads and limited to one (threadpoolctl): small
    matrices on a shared 2-core machine can lose more to thread hand-offs than they gain."""
    from threadpoolctl import threadpool_info, threadpool_limits

    threads = max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=1)
    t_default, m_default, _ = rec.measure(fn, repeat=repeat)
    with threadpool_limits(limits=1, user_api="blas"):
        t_one, m_one, _ = rec.measure(fn, repeat=repeat)
    rec.add(Row("blas", f"{label}: {threads} BLAS threads (ref: 1 thread)", size, seconds=t_default,
                peak_mb=m_default, ref_seconds=t_one, ref_peak_mb=m_one,
                note="same code; ref limited to 1 OpenBLAS thread with threadpoolctl"))


def hrp_inputs(raw_history: pd.DataFrame, n_symbols: int, n_sessions: int) -> pd.DataFrame:
    """The last `n_sessions` of the first `n_symbols` (sorted) symbols with complete data."""
    tail = raw_history.iloc[-n_sessions:].dropna(axis=1)
    tail = tail.loc[:, tail.std() > 0]
    return tail[sorted(tail.columns)[:n_symbols]]


def hrp_ours(returns: pd.DataFrame) -> pd.Series:
    """Our HRP as the `hrp` engine computes it (pairwise sample covariance -> correlation -> HRP)."""
    from portfolio_assets.manifest import DataConfig
    from portfolio_assets.quant.engines import correlation_from_covariance, hrp_weights, sample_covariance

    cov = sample_covariance(returns, DataConfig().min_overlap).matrix
    return hrp_weights(cov, correlation_from_covariance(cov), linkage="single")


def hrp_riskfolio(returns: pd.DataFrame) -> pd.Series:
    import riskfolio as rp

    port = rp.HCPortfolio(returns=returns)
    w = port.optimization(model="HRP", codependence="pearson", rm="MV", rf=0, linkage="single",
                          leaf_order=False, method_cov="hist")["weights"]
    return w.reindex(returns.columns)


def compare_hrp(rec: Recorder, raw_history: pd.DataFrame, n_symbols: int = HRP_SHAPE[0],
                n_sessions: int = HRP_SHAPE[1], repeat: int = 20) -> float:
    """(b) HRP: ours vs riskfolio-lib; returns max |w diff|."""
    returns = hrp_inputs(raw_history, n_symbols, n_sessions)
    hrp_riskfolio(returns)  # import + warm-up
    t_ours, m_ours, ours = rec.measure(lambda: hrp_ours(returns), repeat=repeat)
    t_ref, m_ref, ref = rec.measure(lambda: hrp_riskfolio(returns), repeat=max(3, repeat // 4))
    diff = float(np.abs(ours.to_numpy() - ref.to_numpy()).max())
    rec.add(Row("ref", "(b) HRP (engines.hrp_weights) vs riskfolio HCPortfolio HRP",
                f"{returns.shape[1]} x {returns.shape[0]}", seconds=t_ours, peak_mb=m_ours, ref_seconds=t_ref,
                ref_peak_mb=m_ref, agreement=diff, note=f"max|dw| {diff:.1e}; median of {repeat} / {max(3, repeat // 4)} calls"))
    blas_threads_row(rec, "HRP (ours)", f"{returns.shape[1]} x {returns.shape[0]}", lambda: hrp_ours(returns), repeat)
    return diff


def corr_reference(returns: pd.DataFrame, min_overlap: int) -> np.ndarray:
    corr = returns.corr(min_periods=min_overlap).to_numpy()
    np.fill_diagonal(corr, 1.0)  # ours defines the diagonal as 1 (pandas: NaN without data)
    return corr


def linkage_reference(corr: np.ndarray) -> np.ndarray:
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    d = np.sqrt(np.clip(0.5 * (1.0 - np.nan_to_num(corr, nan=0.0)), 0.0, 1.0))
    np.fill_diagonal(d, 0.0)
    return linkage(squareform(d, checks=False), method="ward")


def corr_agreement(ours: np.ndarray, ref: np.ndarray) -> float:
    """max |ours - ref| where both are defined; inf when they disagree on which pairs are NaN."""
    if not np.array_equal(np.isnan(ours), np.isnan(ref)):
        return float("inf")
    both = ~np.isnan(ours)
    return float(np.abs(ours[both] - ref[both]).max()) if both.any() else 0.0


def compare_correlation(rec: Recorder, point: ScalePoint, min_overlap: int, threshold: float,
                        max_clusters: int) -> tuple[float, bool]:
    """(c) correlation and correlation + Ward: ours (timed in the scale section) vs pandas + scipy.

    Returns (max |rho diff|, identical flat clusters)."""
    from portfolio_assets.quant.clustering import cut_clusters

    if point.corr is None or point.linkage is None:
        raise ValueError(f"scale point {point.n} kept no correlation to compare (n > {REFERENCE_MAX_SCALE})")
    t_corr, m_corr, ref_corr = rec.measure(lambda: corr_reference(point.returns, min_overlap))
    t_link, m_link, ref_z = rec.measure(lambda: linkage_reference(ref_corr))
    diff = corr_agreement(point.corr.to_numpy(), ref_corr)
    labels = list(point.corr.index)
    same = bool((cut_clusters(point.linkage, labels, threshold, max_clusters).to_numpy()
                 == cut_clusters(ref_z, labels, threshold, max_clusters).to_numpy()).all())
    dz = float(np.abs(point.linkage[:, 2] - ref_z[:, 2]).max()) if len(ref_z) else 0.0
    size = f"{point.returns.shape[0]} x {point.returns.shape[1]:,}"
    ours_c, ours_w = point.rows["corr"], point.rows["ward"]
    rec.add(Row("ref", f"(c) correlation {point.n:,}: pairwise_correlation vs pandas corr(min_periods)", size,
                seconds=ours_c.seconds, peak_mb=ours_c.peak_mb, ref_seconds=t_corr, ref_peak_mb=m_corr,
                agreement=diff, note=f"max|drho| {diff:.1e}"))
    rec.add(Row("ref", f"(c) corr + Ward {point.n:,}: ours vs pandas + scipy linkage", size,
                seconds=(ours_c.seconds or 0) + (ours_w.seconds or 0), peak_mb=max(ours_c.peak_mb or 0, ours_w.peak_mb or 0),
                ref_seconds=t_corr + t_link, ref_peak_mb=max(m_corr, m_link), agreement=dz,
                note=f"max|dheight| {dz:.1e}; same clusters: {'yes' if same else 'NO'}"))
    return diff, same


# ------------------------------------------------------------------------------------------ dagster
def _partition_assets() -> list[Any]:
    from portfolio_assets.definitions import defs

    return [*defs.assets, *defs.asset_checks]


QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}  # errors go to the table


def materialize_partition(partition: str, instance: Any, selection: Any = None) -> Any:
    """`dagster.materialize` of the whole graph (or `selection`) for one partition, in-process."""
    from dagster import materialize

    from portfolio_assets.definitions import defs
    from portfolio_assets.jobs import DAILY_SELECTION

    return materialize(_partition_assets(), partition_key=partition, resources=defs.resources, instance=instance,
                       selection=DAILY_SELECTION if selection is None else selection, raise_on_error=False,
                       run_config=QUIET_RUN_CONFIG)


def persistent_instance(home: Path) -> Any:
    """An on-disk (SQLite) instance under `home`: step processes and celery workers must reach the
    run's storage, which an ephemeral in-memory instance cannot offer."""
    from dagster import DagsterInstance

    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return DagsterInstance.local_temp(str(home))


def tournament_only_job(kind: str, n_workers: int = 2) -> Any:
    """The `tournament` asset alone (upstream read from storage) with an explicit executor."""
    from dagster import AssetSelection, Definitions, define_asset_job

    from portfolio_assets.assets.common import PARTITIONS
    from portfolio_assets.definitions import defs
    from portfolio_assets.jobs import executor_for
    from portfolio_assets.manifest import ExecutorConfig

    cfg = ExecutorConfig(kind=kind, max_concurrent=n_workers, celery=PortfolioSettings().resolved().config.executor.celery)
    job = define_asset_job(f"tournament_{kind}", selection=AssetSelection.assets("tournament").required_multi_asset_neighbors(),
                           partitions_def=PARTITIONS, executor_def=executor_for(cfg))
    local = Definitions(assets=list(defs.assets), asset_checks=list(defs.asset_checks), resources=defs.resources,
                        jobs=[job])
    return local.resolve_job_def(job.name)


def tournament_job_in_process() -> Any:
    return tournament_only_job("in_process")


def tournament_job_multiprocess() -> Any:
    return tournament_only_job("multiprocess")


def tournament_job_celery() -> Any:
    return tournament_only_job("celery")


TOURNAMENT_JOBS = {"in_process": tournament_job_in_process, "multiprocess": tournament_job_multiprocess,
                   "celery": tournament_job_celery}


def run_tournament_only(kind: str, partition: str, instance: Any) -> Any:
    """Execute the tournament-only job for `partition` (reconstructable: step processes rebuild it)."""
    from dagster import execute_job, reconstructable

    return execute_job(reconstructable(TOURNAMENT_JOBS[kind]), instance=instance,
                       tags={"dagster/partition": partition}, run_config=QUIET_RUN_CONFIG)


def run_error(result: Any) -> str:
    """Why a run failed, in one line: a failed blocking check's description, else the first failed
    step's error, else the run failure's error (e.g. an executor that could not start); '' for a
    successful run."""
    from dagster import DagsterEventType

    if result.success:
        return ""
    step, run = "", ""
    for event in result.all_events:
        data = event.event_specific_data
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION and not data.passed:
            return f"check {data.asset_key.to_user_string()}:{data.check_name} failed: {data.description}"
        error = getattr(data, "error", None)
        if error is None:
            continue
        message = error.message.strip().splitlines()[0] if error.message.strip() else error.cls_name
        if event.event_type == DagsterEventType.STEP_FAILURE and not step:
            step = f"{event.step_key}: {message}"
        elif event.event_type == DagsterEventType.RUN_FAILURE and not run:
            run = message
    return step or run or "run failed (no error recorded)"


def backfill_section(rec: Recorder, end: dt.date, root: Path, n_dates: int = BACKFILL_DATES) -> None:
    """`n_dates` consecutive trading dates of the development profile through dagster.materialize."""
    from dagster import DagsterInstance

    from portfolio_assets.partitions import master_sessions

    dates = [d.date().isoformat() for d in master_sessions(end=end)[-n_dates:]]
    times: list[float] = []
    failures: list[str] = []
    with environment(PA_PROFILE="development", PA_LAKEHOUSE=str(root / "backfill"), PA_CLI_OVERRIDES=None), \
            DagsterInstance.ephemeral() as instance:
        token = rec.probe.begin()
        t0 = time.perf_counter()
        for i, day in enumerate(dates, 1):
            t1 = time.perf_counter()
            result = materialize_partition(day, instance)
            times.append(time.perf_counter() - t1)
            if not result.success:
                failures.append(f"{day}: {run_error(result)}")
            print(f"    backfill {i}/{len(dates)} {day}: {'ok' if result.success else 'FAILED'} "
                  f"in {times[-1]:.1f} s", file=sys.stderr, flush=True)
        total = time.perf_counter() - t0
        peak = rec.probe.end(token)
    rec.add(Row("backfill", f"development, {len(dates)} dates {dates[0]}..{dates[-1]} (materialize, in_process)",
                f"{len(dates)} partitions", seconds=total, peak_mb=peak,
                note=f"{len(dates) - len(failures)}/{len(dates)} succeeded" + (f"; {failures[0]}" if failures else "")))
    rest = times[1:] or times
    rec.add(Row("backfill", "per date: first (cold price cache)", "1 partition", seconds=times[0]))
    rec.add(Row("backfill", f"per date: median of the other {len(rest)}", "1 partition", seconds=float(np.median(rest)),
                note=f"min {min(rest):.1f} s, max {max(rest):.1f} s"))
    rec.add(Row("backfill", "per date, in order (s)", "", note=" ".join(f"{t:.1f}" for t in times)))


def executor_section(rec: Recorder, date: dt.date, root: Path, profile: str = "demo") -> None:
    """The whole demo graph once through Dagster, then only the tournament with each executor."""
    partition = date.isoformat()
    with environment(PA_PROFILE=profile, PA_LAKEHOUSE=str(root / "executors"), PA_CLI_OVERRIDES=None), \
            persistent_instance(root / "dagster_home") as instance:
        with rec.stage("executors", f"whole {profile} graph, one partition (materialize, in_process)",
                       partition) as row:
            result = materialize_partition(partition, instance)
            row.note = "ok, incl. QuantStats HTML + images + ledger" if result.success else f"FAILED {run_error(result)}"
        if not result.success:
            return
        for kind in ("in_process", "multiprocess"):
            with rec.stage("executors", f"tournament asset only, {kind} executor", profile) as row:
                try:
                    res = run_tournament_only(kind, partition, instance)
                    row.note = ("ok" if res.success else f"FAILED {run_error(res)}") + (
                        "; step subprocesses" if kind == "multiprocess" else "")
                except Exception as exc:  # report why an executor cannot run here, keep benchmarking
                    row.note = f"ERROR {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        celery_rows(rec, partition, instance, root, profile)


def celery_rows(rec: Recorder, partition: str, instance: Any, root: Path, profile: str) -> None:
    """The tournament asset on two dagster-celery workers through a Redis broker started here:
    broker + workers start-up in one row, the run alone in the next."""
    from portfolio_assets.celery_local import celery_workers, free_port, local_redis, redis_server_path

    if redis_server_path() is None:
        rec.add(Row("executors", "tournament asset only, celery executor (2 workers)", profile,
                    note="skipped: redis-server is not installed"))
        return
    port = free_port()
    with environment(PA_EXECUTOR__CELERY__BROKER=f'"redis://127.0.0.1:{port}/0"', DAGSTER_HOME=str(root / "dagster_home")), \
            contextlib.ExitStack() as stack:
        with rec.stage("executors", "celery: start redis-server + 2 dagster-celery workers", profile) as row:
            try:
                broker = stack.enter_context(local_redis(root / "redis", port))
                stack.enter_context(celery_workers(broker, 2, root / "celery_workers"))
                row.note = "ok (until both workers answer a ping)"
            except Exception as exc:
                row.note = f"ERROR {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                return
        with rec.stage("executors", "tournament asset only, celery executor (2 workers)", profile) as row:
            try:
                res = run_tournament_only("celery", partition, instance)
                row.note = ("ok" if res.success else f"FAILED {run_error(res)}") + "; Redis broker, steps in workers"
            except Exception as exc:
                row.note = f"ERROR {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


# ------------------------------------------------------------------------------------------ main
@dataclass(frozen=True)
class BenchPlan:
    """What to run. `quick`: small scale points, no Dagster sections."""

    profile: str = "demo"
    date: dt.date | None = None
    scales: tuple[int, ...] = FULL_SCALES
    dagster: bool = True
    hrp_shape: tuple[int, int] = HRP_SHAPE
    hrp_repeat: int = 20

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BenchPlan:
        quick = bool(getattr(args, "quick", False))
        date = getattr(args, "date", None)
        return cls(profile=getattr(args, "profile", None) or "demo",
                   date=dt.date.fromisoformat(date) if date else None,
                   scales=QUICK_SCALES if quick else FULL_SCALES, dagster=not quick)


def warm_imports() -> None:
    """Import what the stages import lazily, so the first stage to use a library is not charged
    for loading it (a step process pays it once too)."""
    import clarabel  # noqa: F401
    import matplotlib  # noqa: F401
    import scipy.cluster.hierarchy  # noqa: F401
    import scipy.spatial.distance  # noqa: F401

    import portfolio_assets.assets.history  # noqa: F401
    import portfolio_assets.assets.validation  # noqa: F401
    import portfolio_assets.quant.regimes  # noqa: F401
    import portfolio_assets.reports.builder  # noqa: F401


def run_bench(plan: BenchPlan, root: Path, echo: bool = True) -> list[Row]:
    """Every section of the plan; returns the rows (the caller prints them)."""
    from portfolio_assets.partitions import latest_closed_session

    date = plan.date or latest_closed_session()
    settings = PortfolioSettings(profile=plan.profile, lakehouse_root=str(root / "stages"))
    with PeakRss() as probe:
        rec = Recorder(probe, echo=echo)
        with rec.stage("setup", "lazy imports (assets helpers, scipy.cluster, clarabel, matplotlib)") as row:
            warm_imports()
            row.note = "paid once per process; kept out of the stage rows"
        state = demo_partition(rec, settings, date)
        cfg = state.cfg
        compare_tournament(rec, state)
        compare_hrp(rec, state.raw_history, *plan.hrp_shape, repeat=plan.hrp_repeat)
        points = scale_section(rec, plan.scales, cfg, date, root / "scale")
        for point in points:
            if point.corr is not None:
                compare_correlation(rec, point, cfg.data.min_overlap, cfg.selection.threshold,
                                    cfg.selection.max_clusters)
                point.corr = None
        if plan.dagster:
            backfill_section(rec, date, root)
            executor_section(rec, date, root)
        else:
            rec.add(Row("backfill", f"development, {BACKFILL_DATES} dates (materialize)", note="skipped (--quick)"))
            rec.add(Row("executors", "tournament: in_process vs multiprocess vs celery", note="skipped (--quick)"))
    return rec.rows


def render(rows: Sequence[Row], plan: BenchPlan, started: dt.datetime, elapsed: float,
           machine: str | None = None) -> tuple[str, str]:
    """(aligned text, Markdown), each with a header: mode, date, duration, machine, methods."""
    head = (f"portfolio-assets bench ({'quick' if plan.scales == QUICK_SCALES and not plan.dagster else 'full'}), "
            f"{started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s\nmachine: {machine or machine_description()}\n"
            "peak MB = peak RSS above the stage's start (getrusage ru_maxrss high-water mark, else "
            "/proc/self/statm sampled every 5 ms); ratio = ours / reference (< 1: ours faster)")
    return f"{head}\n\n{format_text(rows)}", f"{head.replace(chr(10), '  ' + chr(10))}\n\n{format_markdown(rows)}"


def main(args: argparse.Namespace) -> int:
    """`portfolio-assets bench [--quick]`: print the table (text, then Markdown); exit 0."""
    plan = BenchPlan.from_args(args)
    started = dt.datetime.now(dt.UTC)
    machine = machine_description()
    t0 = time.perf_counter()
    print(f"bench: {'quick' if not plan.dagster else 'full'} run; progress on stderr", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="pa-bench-") as tmp:
        rows = run_bench(plan, Path(tmp))
    text, markdown = render(rows, plan, started, time.perf_counter() - t0, machine)
    print(text)
    print("\nMarkdown:\n")
    print(markdown)
    out = getattr(args, "markdown", None)
    if out:
        Path(out).write_text(markdown + "\n")
        print(f"\nwrote {out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m portfolio_assets.bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="scale points 500 and 2,000; no Dagster sections")
    p.add_argument("--profile", help="profile of the stage-by-stage partition (default demo)")
    p.add_argument("--date", help="partition date (default: the latest closed XNYS session)")
    p.add_argument("--markdown", metavar="PATH", help="also write the Markdown table to PATH")
    return p


if __name__ == "__main__":
    sys.exit(main(_parser().parse_args()))
