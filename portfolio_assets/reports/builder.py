"""The day's report bundle (SPEC §6 "Reports (13)"): comparison dashboards, audits, tear-sheets,
equity curves and an index (Markdown + self-contained HTML) that tells the day's story.

`build_reports(inputs, out_dir)` is a plain function of the stored tables (`ReportInputs`); the
Dagster asset only loads them and calls it. Rules it keeps:

* every number printed comes from the inputs -- the tournament's summary and window tables as
  stored, or `quant.metrics.summarize` of the stored return series (the tear-sheets); before
  writing anything it checks that `summarize` of each stored series reproduces the summary table,
  so the two can never disagree in a report;
* every file is written atomically (temp file + rename); files this function owns but did not
  write this time (a tear-sheet of an engine no longer in the top, the slippage report after
  `feat_decay_audit` was switched off) are removed, so a re-run replaces the bundle;
* every link points to a file that exists: artifacts of other assets (`data_health.md`,
  `images/*.png`) are linked only when present, otherwise the report says they are missing;
* no network: QuantStats gets the benchmark as a return series, never a ticker.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from portfolio_assets.lakehouse import atomic_write_bytes
from portfolio_assets.quant.metrics import METRIC_COLUMNS, PERIODS_PER_YEAR, summarize
from portfolio_assets.quant.orders import build_orders
from portfolio_assets.reports.markdown import (
    html_page,
    markdown_to_html,
    md_image,
    md_link,
    md_table,
    tidy_cells,
)
from portfolio_assets.reports.tearsheet import METRIC_FORMATS, render_quantstats, tearsheet_markdown
from portfolio_assets.symbols import validate_symbol

REALIZED = "realized"
IDEALIZED = "idealized"
MARKET, RAW_EW, FILTERED_EW = "market", "raw_pool_ew", "equal_weight"
REFERENCE_ENGINES = (MARKET, RAW_EW, FILTERED_EW)
REFERENCE_LABELS = {MARKET: "Market hold", RAW_EW: "Raw pool EW", FILTERED_EW: "Filtered EW"}

SUMMARY_METRICS = (
    "total_return", "cagr", "ann_vol", "sharpe", "sortino", "max_drawdown", "calmar", "var_95",
    "cvar_95", "win_rate", "n_days", "turnover_one_way", "costs_paid", "n_fallbacks", "n_relaxed", "n_violations",
    "engines_used",
)
# Metrics of a return series that `summarize` must reproduce from the stored series.
SERIES_METRICS = tuple(m for m in METRIC_COLUMNS if m not in ("turnover_one_way", "costs_paid"))
CONSISTENCY_RTOL = 1e-9

# File names this module owns (all relative to the reports directory).
ENGINE_COMPARISON = "engine_comparison_report.md"
BACKTEST_COMPARISON = "backtest_comparison.md"
ALPHA_ISOLATION = "alpha_isolation_audit.md"
SLIPPAGE_DECAY = "slippage_decay_audit.md"
SELECTION_AUDIT = "selection_audit.md"
WEIGHTS = "weights.md"
REGIME = "regime.md"
BUCKETS = "buckets.md"
EQUITY_CURVES = "equity_curves.png"
INDEX_MD = "index.md"
INDEX_HTML = "index.html"
TEARSHEET_DIR = "tearsheets"
# Artifacts written by other assets; linked when present.
DATA_HEALTH = "data_health.md"
REGIME_IMAGE = "images/regime.png"
DENDROGRAM_IMAGE = "images/dendrogram.png"
CLUSTERMAP_IMAGE = "images/clustermap.png"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

_REQUIRED: dict[str, tuple[str, ...]] = {
    "summary": ("engine", "simulator", *METRIC_COLUMNS),
    "windows": ("engine", "simulator", "k", "test_first", "test_last", "total_return"),
    "returns": ("session", "engine", "simulator", "ret"),
    "weights": ("engine", "symbol", "bucket", "direction", "weight", "net_weight", "is_production"),
    "selection_audit": ("symbol", "direction", "asset_class", "cluster", "score", "selected", "outcome", "reason"),
    "raw_pool_audit": ("stage", "family", "direction", "count"),
    "health": ("symbol", "status_before", "status"),
    "bucket_stats": ("bucket", "size", "members", "mean_intra_corr", "ann_vol", "lead"),
    "pairs": ("a", "b", "corr"),
    "regime": ("label",),
}


@dataclass
class ReportInputs:
    """Everything the reports read, as stored by the upstream assets.

    Tables (pandas): `summary` (engine x simulator, `METRIC_COLUMNS` + `n_fallbacks`,
    `n_violations`), `windows` (engine x simulator x window `k`), `returns` (long: session,
    engine, simulator, ret -- daily out-of-sample simple returns), `weights` (target weights for
    the partition, every engine; `is_production` marks the published book), `selection_audit`,
    `raw_pool_audit`, `funnel`, `health`, `bucket_stats`, `pairs`, `regime` (feature table
    indexed by session with `label` and, optionally, `raw_label`, `warmup` and the features).

    Context: `partition` (YYYY-MM-DD), `profile`, `production_engine`, `baseline` (the market
    engine's symbol), `regime_label` (the partition's regime), `features` (feature flags; only
    `feat_decay_audit` matters here), `top_engines` (tear-sheets for the best engines per
    simulator by Sharpe, besides the production engine), `quantstats_html`, `benchmark_engine`
    (the engine whose series is the benchmark of every tear-sheet: the baseline held),
    over-trading thresholds of the slippage audit (see `slippage_decay_table`), `rf` (annual
    risk-free rate the tournament used in `summarize`).

    What the index's first screen needs: `source_kind` (the data source; `synthetic` puts a
    banner on every report, None = not stated), `pit_fidelity` (off puts a look-ahead warning on
    every report that shows tournament results), `diagnostics` (target_weights' per-engine
    diagnostics: today's fallbacks and relaxed caps), `holdings` (the book the orders start from:
    symbol, direction, net_weight), `partial_rebalance` (the dust rule of the orders),
    `previous_weights` / `previous_partition` (the previous session's stored target weights, None
    when it is not stored).
    """

    partition: str
    profile: str
    production_engine: str
    baseline: str
    summary: pd.DataFrame
    windows: pd.DataFrame
    returns: pd.DataFrame
    weights: pd.DataFrame
    selection_audit: pd.DataFrame
    raw_pool_audit: pd.DataFrame
    funnel: Mapping[str, int]
    health: pd.DataFrame
    bucket_stats: pd.DataFrame
    pairs: pd.DataFrame
    regime: pd.DataFrame
    regime_label: str
    features: Mapping[str, bool] = field(default_factory=dict)
    top_engines: int = 3
    quantstats_html: bool = True
    benchmark_engine: str = MARKET
    overtrading_drag_share: float = 0.25
    overtrading_annual_turnover: float = 6.0
    rf: float = 0.0
    source_kind: str | None = None
    pit_fidelity: bool = True
    diagnostics: pd.DataFrame | None = None
    holdings: pd.DataFrame | None = None
    previous_weights: pd.DataFrame | None = None
    previous_partition: str | None = None
    partial_rebalance: bool = True

    def __post_init__(self) -> None:
        try:
            dt.date.fromisoformat(self.partition)
        except (TypeError, ValueError):
            raise ValueError(f"partition must be a date YYYY-MM-DD, got {self.partition!r}") from None
        validate_symbol(self.baseline)
        for name, cols in _REQUIRED.items():
            frame = getattr(self, name)
            if not isinstance(frame, pd.DataFrame):
                raise ValueError(f"ReportInputs.{name} must be a pd.DataFrame, got {type(frame).__name__}")
            missing = [c for c in cols if c not in frame.columns]
            if missing:
                raise ValueError(f"ReportInputs.{name} lacks column(s) {missing}")
        if self.summary.empty:
            raise ValueError("ReportInputs.summary is empty: no tournament to report")
        if self.summary.duplicated(["engine", "simulator"]).any():
            raise ValueError("ReportInputs.summary has duplicate engine x simulator rows")
        if self.returns.duplicated(["session", "engine", "simulator"]).any():
            raise ValueError("ReportInputs.returns has duplicate session x engine x simulator rows")
        for col in ("engine", "simulator"):
            bad = sorted({str(v) for v in self.summary[col] if not _NAME_RE.match(str(v))})
            if bad:
                raise ValueError(f"ReportInputs.summary.{col}: names unsafe for file names: {bad}")
        engines = set(self.summary["engine"])
        for role, engine in (("production_engine", self.production_engine), ("benchmark_engine", self.benchmark_engine)):
            if engine not in engines:
                raise ValueError(f"ReportInputs.{role} {engine!r} is not in the tournament summary")
        if isinstance(self.top_engines, bool) or not isinstance(self.top_engines, int) or self.top_engines < 0:
            raise ValueError(f"top_engines must be an integer >= 0, got {self.top_engines!r}")
        if not 0 < self.overtrading_drag_share:
            raise ValueError(f"overtrading_drag_share must be > 0, got {self.overtrading_drag_share}")
        if not 0 < self.overtrading_annual_turnover:
            raise ValueError(f"overtrading_annual_turnover must be > 0, got {self.overtrading_annual_turnover}")
        for name, cols in (("diagnostics", ("engine", "engine_used", "fallbacks", "relaxations")),
                           ("holdings", ("symbol", "direction", "net_weight")),
                           ("previous_weights", ("engine", "symbol", "net_weight", "is_production"))):
            frame = getattr(self, name)
            if frame is None:
                continue
            if not isinstance(frame, pd.DataFrame):
                raise ValueError(f"ReportInputs.{name} must be a pd.DataFrame or None, got {type(frame).__name__}")
            missing = [c for c in cols if c not in frame.columns]
            if missing:
                raise ValueError(f"ReportInputs.{name} lacks column(s) {missing}")
        if (self.previous_weights is None) != (self.previous_partition is None):
            raise ValueError("ReportInputs.previous_weights and previous_partition go together")

    @property
    def simulators(self) -> list[str]:
        """Simulators in the summary, in order of first appearance."""
        return list(dict.fromkeys(self.summary["simulator"]))

    def series(self, engine: str, simulator: str) -> pd.Series:
        """Stored out-of-sample daily returns of `engine` under `simulator` (index `session`, NaN dropped)."""
        rows = self.returns[(self.returns["engine"] == engine) & (self.returns["simulator"] == simulator)]
        if rows.empty:
            raise ValueError(f"ReportInputs.returns has no series for {engine}/{simulator}")
        out = pd.Series(rows["ret"].to_numpy(dtype=float), index=pd.DatetimeIndex(rows["session"], name="session"),
                        name=engine).sort_index()
        return out.dropna()

    def row(self, engine: str, simulator: str) -> pd.Series:
        """The summary row of `engine` x `simulator`."""
        rows = self.summary[(self.summary["engine"] == engine) & (self.summary["simulator"] == simulator)]
        if rows.empty:
            raise ValueError(f"ReportInputs.summary has no row for {engine}/{simulator}")
        return rows.iloc[0]


# ------------------------------------------------------------------------------------------------
# tables (plain functions of the inputs, used by the Markdown writers and the tests)
# ------------------------------------------------------------------------------------------------


def check_summary_matches_returns(inputs: ReportInputs) -> None:
    """Raise `ValueError` if `summarize` of a stored return series disagrees with its summary row.

    The tear-sheets compute metrics from the series and the dashboards print the summary table;
    this check is what guarantees they show the same numbers (same definitions, same data).
    """
    for row in inputs.summary.itertuples(index=False):
        stats = summarize(inputs.series(row.engine, row.simulator), rf=inputs.rf)
        for metric in SERIES_METRICS:
            stored, computed = float(getattr(row, metric)), stats[metric]
            same = (math.isnan(stored) and math.isnan(computed)) or math.isclose(
                stored, computed, rel_tol=CONSISTENCY_RTOL, abs_tol=1e-12
            )
            if not same:
                raise ValueError(
                    f"summary {row.engine}/{row.simulator} {metric}={stored!r} but summarize() of the stored "
                    f"returns gives {computed!r}: the report inputs come from different runs or definitions"
                )


def engine_ranking(summary: pd.DataFrame, production_engine: str) -> pd.DataFrame:
    """Every engine x simulator sorted by Sharpe (descending, NaN last; ties by engine, simulator),
    with `rank` (1 = best) and `production` ("yes" on the production engine's rows)."""
    metrics = [m for m in SUMMARY_METRICS if m in summary.columns]
    ranked = summary.sort_values(
        ["sharpe", "engine", "simulator"], ascending=[False, True, True], na_position="last", kind="mergesort"
    ).reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    ranked.insert(3, "production", np.where(ranked["engine"] == production_engine, "yes", ""))
    return ranked[["rank", "engine", "simulator", "production", *metrics]]


def alpha_isolation_table(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Selection and optimization alpha per simulator, as differences of summary metrics.

    Selection alpha (one row per simulator): `equal_weight - raw_pool_ew` in CAGR (`cagr_alpha`,
    a difference of annualized returns) and Sharpe (`sharpe_alpha`). Optimization alpha (one row
    per simulator x engine other than the three reference engines): `engine - equal_weight`, and
    `cagr_vs_raw_ew = engine - raw_pool_ew` (= selection + optimization alpha). A simulator
    without both EW engines is skipped.
    """
    sel_rows, opt_rows = [], []
    for simulator, group in summary.groupby("simulator", sort=False):
        by_engine = group.set_index("engine")
        if RAW_EW not in by_engine.index or FILTERED_EW not in by_engine.index:
            continue
        raw, filt = by_engine.loc[RAW_EW], by_engine.loc[FILTERED_EW]
        sel_rows.append({
            "simulator": simulator,
            "raw_ew_cagr": raw["cagr"], "filtered_ew_cagr": filt["cagr"], "cagr_alpha": filt["cagr"] - raw["cagr"],
            "raw_ew_sharpe": raw["sharpe"], "filtered_ew_sharpe": filt["sharpe"],
            "sharpe_alpha": filt["sharpe"] - raw["sharpe"],
        })
        for engine, row in by_engine.iterrows():
            if engine in REFERENCE_ENGINES:
                continue
            opt_rows.append({
                "simulator": simulator, "engine": engine, "cagr": row["cagr"], "sharpe": row["sharpe"],
                "cagr_alpha": row["cagr"] - filt["cagr"], "sharpe_alpha": row["sharpe"] - filt["sharpe"],
                "cagr_vs_raw_ew": row["cagr"] - raw["cagr"],
            })
    selection = pd.DataFrame(sel_rows, columns=["simulator", "raw_ew_cagr", "filtered_ew_cagr", "cagr_alpha",
                                                "raw_ew_sharpe", "filtered_ew_sharpe", "sharpe_alpha"])
    optimization = pd.DataFrame(opt_rows, columns=["simulator", "engine", "cagr", "sharpe", "cagr_alpha",
                                                   "sharpe_alpha", "cagr_vs_raw_ew"])
    if not optimization.empty:
        optimization = optimization.sort_values(["simulator", "cagr_alpha"], ascending=[True, False],
                                                kind="mergesort").reset_index(drop=True)
    return selection, optimization


def slippage_decay_table(
    summary: pd.DataFrame,
    drag_share: float = 0.25,
    annual_turnover: float = 6.0,
    benchmark_engine: str = MARKET,
) -> pd.DataFrame:
    """Idealized minus realized, per engine, with the over-trading flag.

    Columns: `cagr_idealized`, `cagr_realized`, `cagr_decay` (= idealized - realized, the annual
    return lost to trading and borrow costs), the same for Sharpe, `costs_paid` and
    `turnover_one_way` (realized totals, fractions / multiples of NAV), `annual_turnover =
    turnover_one_way * 252 / n_days`, `edge` (idealized CAGR minus the benchmark engine's
    idealized CAGR), `drag_share = cagr_decay / edge` (only when `edge > 0`), `flag`.

    Over-trading rule: an engine is flagged when `annual_turnover > annual_turnover` (the book is
    replaced more often than that per year) or, having a positive idealized edge over the
    market, its cost drag eats more than `drag_share` of that edge (`cagr_decay > drag_share *
    edge`). `flag` names the reasons.
    """
    ideal = summary[summary["simulator"] == IDEALIZED].set_index("engine")
    real = summary[summary["simulator"] == REALIZED].set_index("engine")
    bench_edge = ideal.at[benchmark_engine, "cagr"] if benchmark_engine in ideal.index else float("nan")
    rows = []
    for engine in [e for e in real.index if e in ideal.index]:
        i, r = ideal.loc[engine], real.loc[engine]
        turnover_year = r["turnover_one_way"] * PERIODS_PER_YEAR / r["n_days"] if r["n_days"] else float("nan")
        decay = i["cagr"] - r["cagr"]
        edge = i["cagr"] - bench_edge
        share = decay / edge if edge > 0 else float("nan")
        reasons = []
        if turnover_year > annual_turnover:
            reasons.append(f"turnover {turnover_year:.1f}x/yr > {annual_turnover:g}x")
        if edge > 0 and decay > drag_share * edge:
            reasons.append(f"cost drag {share:.0%} of edge > {drag_share:.0%}")
        rows.append({
            "engine": engine,
            "cagr_idealized": i["cagr"], "cagr_realized": r["cagr"], "cagr_decay": decay,
            "sharpe_idealized": i["sharpe"], "sharpe_realized": r["sharpe"], "sharpe_decay": i["sharpe"] - r["sharpe"],
            "costs_paid": r["costs_paid"], "turnover_one_way": r["turnover_one_way"], "annual_turnover": turnover_year,
            "edge": edge, "drag_share": share,
            "flag": ("OVER-TRADING: " + "; ".join(reasons)) if reasons else "",
        })
    cols = ["engine", "cagr_idealized", "cagr_realized", "cagr_decay", "sharpe_idealized", "sharpe_realized",
            "sharpe_decay", "costs_paid", "turnover_one_way", "annual_turnover", "edge", "drag_share", "flag"]
    table = pd.DataFrame(rows, columns=cols)
    return table.sort_values(["cagr_decay", "engine"], ascending=[False, True], kind="mergesort").reset_index(drop=True)


def tearsheet_targets(summary: pd.DataFrame, production_engine: str, top_engines: int) -> list[tuple[str, str]]:
    """(engine, simulator) pairs that get a tear-sheet: the production engine under every
    simulator, then the `top_engines` best by Sharpe per simulator (NaN Sharpe never counts as
    best), without duplicates, in that order."""
    simulators = list(dict.fromkeys(summary["simulator"]))
    pairs = [(production_engine, s) for s in simulators
             if ((summary["engine"] == production_engine) & (summary["simulator"] == s)).any()]
    for simulator in simulators:
        group = summary[(summary["simulator"] == simulator) & summary["sharpe"].notna()]
        best = group.sort_values(["sharpe", "engine"], ascending=[False, True], kind="mergesort").head(top_engines)
        pairs += [(e, simulator) for e in best["engine"]]
    return list(dict.fromkeys(pairs))


def tearsheet_name(engine: str, simulator: str, suffix: str) -> str:
    """`tearsheets/<engine>__<simulator>.<suffix>` (names are validated by `ReportInputs`)."""
    return f"{TEARSHEET_DIR}/{engine}__{simulator}.{suffix}"


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------


class _Bundle:
    """The reports directory: atomic writes, the list of written files, links that never dangle."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.written: list[Path] = []

    def write(self, relative: str, data: str | bytes) -> Path:
        path = self.root / relative
        atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
        if path not in self.written:
            self.written.append(path)
        return path

    def exists(self, relative: str) -> bool:
        return (self.root / relative).is_file()

    def link(self, text: str, relative: str, *, image: bool = False, prefix: str = "") -> str:
        """A Markdown link/image to `relative` if that file exists, else a note that it is missing."""
        if not self.exists(relative):
            return f"_({text}: `{relative}` was not written for this partition)_"
        target = prefix + relative
        return md_image(text, target) if image else md_link(text, target)


def _production_fallback_note(prod: pd.Series) -> str:
    """A warning when the production engine's tournament windows came from another engine or ran
    on relaxed caps (counts from the summary; empty when neither happened)."""
    n_fb, n_rx = prod.get("n_fallbacks"), prod.get("n_relaxed")
    parts = []
    if n_fb is not None and not pd.isna(n_fb) and int(n_fb) > 0:
        parts.append(f"fell back in {int(n_fb)} window(s) (engines used: {prod.get('engines_used', 'n/a')})")
    if n_rx is not None and not pd.isna(n_rx) and int(n_rx) > 0:
        parts.append(f"ran on relaxed caps in {int(n_rx)} window(s)")
    return f" **Production engine {' and '.join(parts)}.**" if parts else ""


def _fmt_value(value: float, metric: str) -> str:
    return "n/a" if value is None or pd.isna(value) else format(float(value), METRIC_FORMATS[metric])


def _oos_span(inputs: ReportInputs) -> str:
    sessions = pd.DatetimeIndex(inputs.returns["session"])
    n_windows = inputs.windows["k"].nunique() if not inputs.windows.empty else 0
    return (f"out-of-sample {sessions.min():%Y-%m-%d} to {sessions.max():%Y-%m-%d}, "
            f"{sessions.nunique()} sessions in {n_windows} walk-forward windows")


_UNITS_NOTE = (
    "Units: returns, volatility, drawdown, VaR/CVaR (daily) and costs in %, costs as a share of NAV "
    "summed over the period; turnover one-way in multiples of NAV, summed over all rebalances "
    "including the initial build from cash; Sharpe, Sortino and Calmar annualized with 252 sessions."
)


def _bullets(*items: str) -> str:
    """A Markdown bullet list (one block, so it renders as one list)."""
    return "\n".join(f"- {item}" for item in items)


def _engine_comparison(inputs: ReportInputs) -> str:
    ranked = engine_ranking(inputs.summary, inputs.production_engine)
    parts = [
        f"# Engine comparison, {inputs.partition}",
        f"Profile `{inputs.profile}`. Every engine x simulator of the walk-forward tournament "
        f"({_oos_span(inputs)}) sorted by Sharpe, best first. Production engine: "
        f"**{inputs.production_engine}** (`production` = yes).",
        _UNITS_NOTE,
        "## Ranking",
        md_table(ranked, formats=METRIC_FORMATS),
        "## Leaders per simulator",
    ]
    leaders = []
    for simulator in inputs.simulators:
        top = ranked[ranked["simulator"] == simulator].iloc[0]
        prod = inputs.row(inputs.production_engine, simulator) if (
            (inputs.summary["engine"] == inputs.production_engine) & (inputs.summary["simulator"] == simulator)
        ).any() else None
        line = f"{simulator}: best **{top['engine']}** (Sharpe {_fmt_value(top['sharpe'], 'sharpe')})"
        if prod is not None:
            line += f"; production {inputs.production_engine} Sharpe {_fmt_value(prod['sharpe'], 'sharpe')}"
        leaders.append(line)
    parts.append(_bullets(*leaders))
    win = inputs.windows
    if not win.empty:
        sim = REALIZED if (win["simulator"] == REALIZED).any() else inputs.simulators[0]
        sub = win[win["simulator"] == sim]
        keys = [c for c in ("k", "test_first", "test_last", "regime") if c in sub.columns]
        pivot = sub.pivot_table(index=keys, columns="engine", values="total_return", aggfunc="first")
        order = [e for e in ranked[ranked["simulator"] == sim]["engine"] if e in pivot.columns]
        parts += [f"## Per-window total return ({sim} simulator)",
                  "Each window's compounded test-window return (not annualized), engines in ranking order.",
                  md_table(tidy_cells(pivot[order].reset_index()), floatfmt=".2%")]
        parts += ["## Fallbacks, relaxed caps and constraint violations", _events_block(win)]
    return "\n\n".join(parts) + "\n"


def _events_block(windows: pd.DataFrame) -> str:
    cols = [c for c in ("fallbacks", "relaxations", "violations") if c in windows.columns]
    if not cols:
        return "The window table records no fallback or violation columns."
    mask = np.zeros(len(windows), dtype=bool)
    for c in cols:
        mask |= windows[c].fillna("").astype(str).str.strip().ne("").to_numpy()
    events = windows[mask]
    if events.empty:
        return "None recorded in any window: every engine produced its own weights within the constraints."
    keep = [c for c in ("engine", "simulator", "k", "test_first", "engine_used", *cols) if c in events.columns]
    return md_table(tidy_cells(events[keep].sort_values(["engine", "simulator", "k"])))


def _backtest_comparison(inputs: ReportInputs) -> str:
    sim = REALIZED if REALIZED in inputs.simulators else inputs.simulators[0]
    group = inputs.summary[inputs.summary["simulator"] == sim].set_index("engine")
    others = group.drop(index=[e for e in REFERENCE_ENGINES if e in group.index])
    others = others.sort_values(["sharpe"], ascending=False, na_position="last", kind="mergesort")
    order = [e for e in REFERENCE_ENGINES if e in group.index] + list(others.index)
    market_cagr = group.at[MARKET, "cagr"] if MARKET in group.index else float("nan")
    rows = []
    for engine in order:
        row = group.loc[engine]
        label = REFERENCE_LABELS.get(engine, engine)
        if engine == MARKET:
            label += f" ({inputs.baseline})"
        if engine == inputs.production_engine:
            label += " (production)"
        rows.append({"strategy": label, "engine": engine,
                     **{m: row[m] for m in ("total_return", "cagr", "ann_vol", "sharpe", "sortino", "max_drawdown",
                                            "calmar", "turnover_one_way", "costs_paid")},
                     "excess_cagr_vs_market": row["cagr"] - market_cagr})
    missing = [REFERENCE_LABELS[e] for e in REFERENCE_ENGINES if e not in group.index]
    parts = [
        f"# Strategy resume ({sim} simulator), {inputs.partition}",
        f"Walk-forward, {_oos_span(inputs)}. The {sim} simulator charges slippage and commission on traded "
        "notional at each rebalance and borrow on short-direction streams; holdings carry over between "
        "windows and the first window builds from cash.",
        "Order: market hold, raw-pool equal weight, filtered (selected-universe) equal weight, then every "
        "engine by Sharpe. `excess_cagr_vs_market` = CAGR minus the market hold's CAGR.",
        _UNITS_NOTE,
        md_table(pd.DataFrame(rows), formats={**METRIC_FORMATS, "excess_cagr_vs_market": ".2%"}),
    ]
    if missing:
        parts.append(f"Not in the tournament (no row shown): {', '.join(missing)}.")
    return "\n\n".join(parts) + "\n"


def _alpha_isolation(inputs: ReportInputs) -> str:
    selection, optimization = alpha_isolation_table(inputs.summary)
    fmts = {"raw_ew_cagr": ".2%", "filtered_ew_cagr": ".2%", "cagr_alpha": ".2%", "cagr": ".2%",
            "cagr_vs_raw_ew": ".2%", "raw_ew_sharpe": ".3f", "filtered_ew_sharpe": ".3f", "sharpe_alpha": ".3f",
            "sharpe": ".3f"}
    parts = [
        f"# Alpha isolation audit, {inputs.partition}",
        "Where does the performance come from? Two differences of the tournament's summary metrics, "
        "per simulator:",
        _bullets(
            f"**Selection alpha** = filtered EW (`{FILTERED_EW}`: 1/N over the selected universe) minus raw EW "
            f"(`{RAW_EW}`: 1/N over the whole raw pool). Same naive allocation, different universe: what natural "
            "selection adds.",
            "**Optimization alpha** = engine minus filtered EW. Same universe, different allocation: what the "
            "engine adds over 1/N.",
        ),
        "Annualized return alpha is the difference of CAGRs (percentage points per year); Sharpe alpha the "
        "difference of Sharpe ratios. They add up: engine minus raw EW (`cagr_vs_raw_ew`) = selection + "
        "optimization alpha.",
        "## Selection alpha",
    ]
    if selection.empty:
        parts.append(f"Not available: the tournament lacks `{RAW_EW}` or `{FILTERED_EW}`.")
    else:
        parts.append(md_table(selection, formats=fmts))
    parts.append("## Optimization alpha")
    if optimization.empty:
        parts.append("Not available: no engine besides the reference engines, or no filtered EW.")
    else:
        shown = optimization.assign(
            engine=[f"{e} (production)" if e == inputs.production_engine else e for e in optimization["engine"]])
        parts.append(md_table(shown, formats=fmts))
    return "\n\n".join(parts) + "\n"


def _slippage_decay(inputs: ReportInputs) -> str:
    table = slippage_decay_table(inputs.summary, inputs.overtrading_drag_share,
                                 inputs.overtrading_annual_turnover, inputs.benchmark_engine)
    flagged = table[table["flag"] != ""]
    fmts = {"cagr_idealized": ".2%", "cagr_realized": ".2%", "cagr_decay": ".2%", "sharpe_idealized": ".3f",
            "sharpe_realized": ".3f", "sharpe_decay": ".3f", "costs_paid": ".3%", "turnover_one_way": ".2f",
            "annual_turnover": ".2f", "edge": ".2%", "drag_share": ".0%"}
    parts = [
        f"# Slippage decay audit, {inputs.partition}",
        "Idealized (frictionless) minus realized (slippage + commission on traded notional, borrow on shorts) "
        "performance of every engine over the same walk-forward windows: the return the engine's trading "
        "gives away.",
        "**Over-trading rule.** An engine is flagged OVER-TRADING when either",
        _bullets(
            f"its annualized one-way turnover (`turnover_one_way * 252 / n_days`) exceeds "
            f"**{inputs.overtrading_annual_turnover:g}x NAV per year**, or",
            f"it has a positive idealized edge over `{inputs.benchmark_engine}` (`edge` = idealized CAGR minus "
            f"`{inputs.benchmark_engine}`'s idealized CAGR) and its cost drag (`cagr_decay` = idealized minus "
            f"realized CAGR) exceeds **{inputs.overtrading_drag_share:.0%} of that edge**.",
        ),
        "`costs_paid` and `turnover_one_way` are realized totals over the period (share / multiple of NAV).",
        md_table(table, formats=fmts),
        (f"**Flagged:** {', '.join(flagged['engine'])}." if not flagged.empty
         else "**No engine is flagged** under this rule."),
    ]
    return "\n\n".join(parts) + "\n"


def _selection_audit(inputs: ReportInputs) -> str:
    audit, funnel = inputs.selection_audit, dict(inputs.funnel)
    steps = [(k, funnel[k]) for k in ("scanned", "raw", "with_data", "clusters", "winners") if k in funnel]
    parts = [
        f"# Selection audit, {inputs.partition}",
        "Funnel: " + " → ".join(f"{k.replace('_', ' ')} {v}" for k, v in steps) + "." if steps else "Funnel: n/a.",
        "## Funnel counts",
        md_table(pd.DataFrame({"stage": list(funnel), "count": [funnel[k] for k in funnel]})),
    ]
    rp = inputs.raw_pool_audit
    if not rp.empty:
        pivot = rp.pivot_table(index=["stage", "direction"], columns="family", values="count", aggfunc="sum",
                               fill_value=0, sort=False)
        parts += ["## Raw pool by stage, family and direction", md_table(pivot.reset_index())]
    if not audit.empty:
        by_class = audit.assign(winner=audit["selected"].astype(bool)).groupby(
            ["asset_class", "direction"], dropna=False).agg(candidates=("symbol", "size"), winners=("winner", "sum"))
        outcomes = audit["outcome"].value_counts().rename_axis("outcome").reset_index(name="count")
        winners = audit[audit["selected"].astype(bool)].sort_values(["cluster", "score"], ascending=[True, False])
        losers = audit[~audit["selected"].astype(bool)].sort_values(["outcome", "cluster", "score"],
                                                                   ascending=[True, True, False])
        cols = ["symbol", "direction", "asset_class", "cluster", "score", "outcome", "reason"]
        parts += [
            "## Candidates and winners by asset class and direction",
            md_table(tidy_cells(by_class.reset_index())),
            "## Outcomes",
            md_table(outcomes),
            f"## Winners ({len(winners)})",
            md_table(tidy_cells(winners[cols])),
            f"## Losers ({len(losers)}) and why they lost",
            md_table(tidy_cells(losers[cols])),
        ]
    return "\n\n".join(parts) + "\n"


def _production_weights(weights: pd.DataFrame) -> pd.DataFrame:
    prod = weights[weights["is_production"].astype(bool)]
    cols = [c for c in ("symbol", "bucket", "direction", "asset_class", "sector", "weight", "net_weight",
                        "engine", "engine_used") if c in prod.columns]
    return prod.sort_values(["weight", "symbol"], ascending=[False, True])[cols]


def _weights(inputs: ReportInputs) -> str:
    w = inputs.weights
    prod = _production_weights(w)
    parts = [
        f"# Target weights, {inputs.partition}",
        f"Production engine **{inputs.production_engine}**. `weight` is the long-only weight on the "
        "synthetic-long stream (sums to 1); `net_weight` the published signed weight "
        "(negative = short).",
        f"## Production weights ({len(prod)} positions)",
        md_table(tidy_cells(prod), floatfmt=".4f"),
    ]
    fallbacks = w[w["engine_used"] != w["engine"]] if "engine_used" in w.columns else w.iloc[0:0]
    if not fallbacks.empty:
        used = fallbacks.drop_duplicates("engine")[["engine", "engine_used"]]
        parts.append("Fallbacks taken for today's weights: "
                     + "; ".join(f"{r.engine} → {r.engine_used}" for r in used.itertuples()) + ".")
    if not w.empty:
        pivot = w.pivot_table(index=["bucket", "symbol", "direction"], columns="engine", values="net_weight",
                              aggfunc="sum", fill_value=0.0)
        engines = [inputs.production_engine] + sorted(c for c in pivot.columns if c != inputs.production_engine)
        buckets = w.pivot_table(index="bucket", columns="engine", values="weight", aggfunc="sum", fill_value=0.0)
        parts += [
            "## Every engine (net weights, by bucket)",
            md_table(tidy_cells(pivot[[e for e in engines if e in pivot.columns]].reset_index())),
            "## Weight per risk bucket and engine",
            "Sum of `weight` per bucket (the bucket cap applies to these sums).",
            md_table(buckets[[e for e in engines if e in buckets.columns]].reset_index()),
        ]
    return "\n\n".join(parts) + "\n"


_FEATURE_COLUMNS = ("vol_ann", "vol_pct", "vol_ratio", "turbulence_pct", "drawdown", "dwt_hf_share",
                    "wavelet_entropy", "perm_entropy")


def _regime_distribution(regime: pd.DataFrame) -> pd.DataFrame:
    labels = regime["label"]
    if "warmup" in regime.columns:
        labels = labels[~regime["warmup"].astype(bool)]
    counts = labels.value_counts()
    total = int(counts.sum())
    return pd.DataFrame({"label": counts.index, "sessions": counts.to_numpy(),
                         "share": counts.to_numpy() / total if total else np.nan})


def _regime(inputs: ReportInputs, bundle: _Bundle) -> str:
    reg = inputs.regime
    as_of = pd.Timestamp(reg.index[-1]).strftime("%Y-%m-%d") if len(reg) else "n/a"
    feats = [c for c in _FEATURE_COLUMNS if c in reg.columns]
    recent_cols = [c for c in ("label", "raw_label", "raw_rule", *feats) if c in reg.columns]
    parts = [
        f"# Market regime, {inputs.partition}",
        f"Current label: **{inputs.regime_label}** (as of {as_of}).",
        bundle.link("Regime chart", REGIME_IMAGE, image=True),
        "## Distribution",
        "Sessions per label" + (" (warm-up sessions excluded)." if "warmup" in reg.columns else "."),
        md_table(_regime_distribution(reg), formats={"share": ".1%"}),
    ]
    if len(reg) and feats:
        latest = reg[feats].iloc[-1]
        parts += ["## Latest features", md_table(pd.DataFrame({"feature": feats, "value": latest.to_numpy(dtype=float)}))]
    if len(reg):
        recent = reg[recent_cols].tail(10).copy()
        recent.index = pd.DatetimeIndex(recent.index).strftime("%Y-%m-%d")
        recent.index.name = "session"
        parts += ["## Last 10 sessions", md_table(tidy_cells(recent.reset_index()))]
    return "\n\n".join(parts) + "\n"


def _buckets(inputs: ReportInputs, bundle: _Bundle) -> str:
    stats = inputs.bucket_stats
    parts = [
        f"# Risk buckets, {inputs.partition}",
        f"{len(stats)} Ward-linkage buckets on the 500-session correlation of the synthetic-long streams; "
        "`ann_vol` is the annualized volatility of the bucket's equal-weight return, `lead` the member most "
        "correlated with the others.",
        bundle.link("Dendrogram", DENDROGRAM_IMAGE, image=True),
        bundle.link("Correlation clustermap", CLUSTERMAP_IMAGE, image=True),
        "## Bucket statistics",
        md_table(tidy_cells(stats), formats={"mean_intra_corr": ".3f", "ann_vol": ".2%"}),
        f"## Top {len(inputs.pairs)} correlated pairs",
        md_table(inputs.pairs, formats={"corr": ".3f"}),
    ]
    return "\n\n".join(parts) + "\n"


def _equity_curves_png(inputs: ReportInputs, simulator: str) -> bytes:
    """PNG bytes: cumulative wealth `prod(1 + r)` of every engine under `simulator`, market highlighted."""
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.style
    from matplotlib.figure import Figure

    # A fixed style: QuantStats changes the global rcParams when imported, the chart must not care.
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(11, 6), dpi=100, layout="constrained")
        ax = fig.subplots()
        engines = list(dict.fromkeys(inputs.summary.loc[inputs.summary["simulator"] == simulator, "engine"]))
        for engine in engines:
            r = inputs.series(engine, simulator)
            wealth = (1.0 + r).cumprod()
            if engine == inputs.benchmark_engine:
                style = {"color": "black", "linewidth": 2.6, "zorder": 5, "label": f"{engine} ({inputs.baseline})"}
            elif engine == inputs.production_engine:
                style = {"linewidth": 2.0, "zorder": 4, "label": f"{engine} (production)"}
            else:
                style = {"linewidth": 1.0, "alpha": 0.8, "label": engine}
            ax.plot(wealth.index, wealth.to_numpy(), **style)
        ax.axhline(1.0, color="grey", linewidth=0.6, linestyle=":")
        ax.set_title(f"Cumulative wealth, {simulator} simulator, out-of-sample ({inputs.partition})")
        ax.set_ylabel("wealth (start = 1)")
        ax.legend(loc="upper left", fontsize=8, ncol=2)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    return buf.getvalue()


def _write_tearsheets(inputs: ReportInputs, bundle: _Bundle) -> list[tuple[str, str]]:
    targets = tearsheet_targets(inputs.summary, inputs.production_engine, inputs.top_engines)
    if inputs.quantstats_html:  # the HTML pages in parallel (most of a report's time), then the Markdown
        bundle.written.extend(render_quantstats([
            {"returns": inputs.series(engine, simulator), "benchmark": inputs.series(inputs.benchmark_engine, simulator),
             "path": bundle.root / tearsheet_name(engine, simulator, "html"),
             "title": f"{engine} ({simulator}) vs {inputs.baseline}, {inputs.partition}",
             "strategy_title": engine, "benchmark_title": inputs.baseline,
             "banner_html": _banners_html(inputs, True)}
            for engine, simulator in targets]))
    for engine, simulator in targets:
        strat = inputs.series(engine, simulator)
        bench = inputs.series(inputs.benchmark_engine, simulator)
        srow, brow = inputs.row(engine, simulator), inputs.row(inputs.benchmark_engine, simulator)
        html_rel = tearsheet_name(engine, simulator, "html")
        win = inputs.windows[(inputs.windows["engine"] == engine) & (inputs.windows["simulator"] == simulator)]
        text = tearsheet_markdown(
            engine=engine, simulator=simulator, partition=inputs.partition, returns=strat, benchmark=bench,
            benchmark_label=f"`{inputs.benchmark_engine}` engine ({inputs.baseline} held)",
            turnover=srow["turnover_one_way"], costs=srow["costs_paid"],
            benchmark_turnover=brow["turnover_one_way"], benchmark_costs=brow["costs_paid"],
            is_production=engine == inputs.production_engine, windows=win,
            html_name=Path(html_rel).name if inputs.quantstats_html else None, rf=inputs.rf,
        )
        bundle.write(tearsheet_name(engine, simulator, "md"), _with_banners(text, inputs, True))
    return targets


def _health_line(health: pd.DataFrame) -> str:
    def counts(column: str) -> str:
        return ", ".join(f"{k} {v}" for k, v in health[column].value_counts().items()) or "none"

    bad = sorted(health.loc[health["status"] != "OK", "symbol"])
    text = f"{len(health)} symbols checked. Before recovery: {counts('status_before')}; after: {counts('status')}."
    return text + (f" Not healthy after recovery: {', '.join(bad)}." if bad else " All healthy after recovery.")


# ------------------------------------------------------------------------------------------------
# what a portfolio manager reads first: banners, the decision, today's orders, what changed
# ------------------------------------------------------------------------------------------------

SYNTHETIC_BANNER = (
    "> **SYNTHETIC DATA.** Every price behind this report was generated by the project's embedded "
    "synthetic market (`source.kind = synthetic`): real tickers on invented prices. No number here "
    "describes a real market or a real strategy's past."
)
LOOKAHEAD_BANNER = (
    "> **WARNING: look-ahead.** `feat_pit_fidelity` is off: every walk-forward window used today's "
    "universe, risk buckets and regime, chosen with data from after the window (survivorship). The "
    "tournament results below are optimistic; turn `feat_pit_fidelity` on before trusting them."
)

# What each regime rule means (`quant.regimes.labels`), for the index's one-line reason.
REGIME_RULE_TEXT = {
    "crisis_level": "deep drawdown with extreme volatility",
    "crisis_turbulence": "cross-sectional turbulence while the market falls",
    "turbulent_level": "volatility high in absolute terms or against its own 3-year median",
    "turbulent_spectral": "relative stress with spectral evidence (high-frequency burst or low entropy)",
    "quiet": "volatility low against the trailing year and in absolute terms",
    "normal": "neither a stress rule nor the quiet rule fired",
    "warmup": "warm-up: the features the rules need are not available yet",
}


def banners(inputs: ReportInputs, tournament: bool) -> str:
    """The banners of a report: synthetic data (every report), look-ahead (reports that show
    tournament results, when `pit_fidelity` is off). Empty string when none applies."""
    parts = []
    if inputs.source_kind == "synthetic":
        parts.append(SYNTHETIC_BANNER)
    if tournament and not inputs.pit_fidelity:
        parts.append(LOOKAHEAD_BANNER)
    return "\n\n".join(parts)


def _with_banners(text: str, inputs: ReportInputs, tournament: bool) -> str:
    """`text` with its banners placed right under its title line."""
    block = banners(inputs, tournament)
    if not block:
        return text
    title, _, rest = text.partition("\n\n")
    return f"{title}\n\n{block}\n\n{rest}"


def _banners_html(inputs: ReportInputs, tournament: bool) -> str:
    block = banners(inputs, tournament)
    return markdown_to_html(block) if block else ""


def proposed_orders(inputs: ReportInputs) -> pd.DataFrame | None:
    """Orders from the book (`holdings`) to the production target, exactly as
    `implementation_orders` builds them (`quant.orders.build_orders`); None without a book."""
    if inputs.holdings is None:
        return None
    prod = inputs.weights[inputs.weights["is_production"].astype(bool)].set_index("symbol")
    book = inputs.holdings.set_index("symbol")
    directions = pd.concat([prod["direction"], book["direction"]])
    directions = directions[~directions.index.duplicated()]
    return build_orders(book["net_weight"], prod["net_weight"], directions,
                        partial_rebalance=inputs.partial_rebalance)


def weight_changes(inputs: ReportInputs) -> pd.DataFrame | None:
    """Production net weights of the previous stored session against today's, one row per symbol
    held on either day (`previous`, `today`, `change`, `what`: added / removed / up / down /
    unchanged), largest |change| first; None when the previous session is not stored."""
    if inputs.previous_weights is None:
        return None
    prev_w = inputs.previous_weights
    prev = prev_w[prev_w["is_production"].astype(bool)].groupby("symbol")["net_weight"].sum()
    now_w = inputs.weights[inputs.weights["is_production"].astype(bool)]
    now = now_w.groupby("symbol")["net_weight"].sum()
    symbols = sorted(set(prev.index) | set(now.index))
    table = pd.DataFrame({"symbol": symbols, "previous": prev.reindex(symbols).fillna(0.0).to_numpy(),
                          "today": now.reindex(symbols).fillna(0.0).to_numpy()})
    table["change"] = table["today"] - table["previous"]
    what = np.where(~table["symbol"].isin(prev.index), "added",
                    np.where(~table["symbol"].isin(now.index), "removed",
                             np.where(table["change"].abs() < 1e-12, "unchanged",
                                      np.where(table["change"] > 0, "up", "down"))))
    table["what"] = what
    order = np.lexsort((table["symbol"].to_numpy(), -table["change"].abs().to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def production_flags(inputs: ReportInputs) -> list[str]:
    """Everything the index must flag about the production engine, most serious first: today's
    weights from a fallback engine or on relaxed caps, tournament windows that fell back or ran
    on relaxed caps or violated a rule, and the slippage audit's OVER-TRADING rule (needs both
    simulators). Empty list = nothing to flag."""
    prod_name, flags = inputs.production_engine, []
    today = inputs.weights[inputs.weights["is_production"].astype(bool)]
    if "engine_used" in today.columns and len(today):
        used = sorted(set(today["engine_used"].astype(str)) - {prod_name})
        if used:
            why = ""
            if inputs.diagnostics is not None:
                row = inputs.diagnostics[inputs.diagnostics["engine"] == prod_name]
                if len(row) and str(row["fallbacks"].iloc[0] or ""):
                    why = f" ({row['fallbacks'].iloc[0]})"
            flags.append(f"FALLBACK TODAY: today's weights come from {', '.join(used)}, not {prod_name}{why}")
    if inputs.diagnostics is not None:
        row = inputs.diagnostics[inputs.diagnostics["engine"] == prod_name]
        if len(row) and str(row["relaxations"].iloc[0] or "").strip():
            flags.append(f"RELAXED CAPS TODAY: {row['relaxations'].iloc[0]}")
    n_windows = int(inputs.windows["k"].nunique()) if not inputs.windows.empty else 0
    real = REALIZED if REALIZED in inputs.simulators else inputs.simulators[0]
    prod = inputs.row(prod_name, real)
    for column, text in (("n_fallbacks", "FELL BACK in {n} of {k} tournament windows (engines used: {used})"),
                         ("n_relaxed", "RELAXED CAPS in {n} of {k} tournament windows"),
                         ("n_violations", "RULE VIOLATIONS in {n} of {k} tournament windows")):
        n = prod.get(column)
        if n is not None and not pd.isna(n) and int(n) > 0:
            flags.append(text.format(n=int(n), k=n_windows, used=prod.get("engines_used", "n/a")))
    if {IDEALIZED, REALIZED} <= set(inputs.simulators):
        audit = slippage_decay_table(inputs.summary, inputs.overtrading_drag_share,
                                     inputs.overtrading_annual_turnover, inputs.benchmark_engine)
        hit = audit[(audit["engine"] == prod_name) & (audit["flag"] != "")]
        if len(hit):
            flags.append(str(hit["flag"].iloc[0]))
    return flags


def regime_reason(regime: pd.DataFrame, label: str) -> str:
    """`LABEL since D (previous session: L): rule (meaning): the features` for the last session of
    the regime table."""
    if regime.empty:
        return f"{label} (no regime table)"
    labels = regime["label"].astype(str)
    last = regime.iloc[-1]
    run = labels.to_numpy()[::-1]
    held = int(np.argmax(run != run[0])) if (run != run[0]).any() else len(run)
    since = pd.Timestamp(regime.index[len(regime) - held]).strftime("%Y-%m-%d")
    text = f"**{label}** since {since} ({held} session(s))"
    if len(regime) > 1:
        text += f"; previous session {labels.iloc[-2]}"
    rule = str(last.get("raw_rule", "")) if "raw_rule" in regime.columns else ""
    if rule:
        text += f". Today's rule: `{rule}` ({REGIME_RULE_TEXT.get(rule, 'see docs/regimes.md')})"
        if "raw_label" in regime.columns and str(last["raw_label"]) != label:
            text += f", raw label {last['raw_label']} (the label is held by the hysteresis)"
    values = []
    for col, fmt_ in (("vol_ann", "volatility {:.1%}/yr (annualized, 21 sessions)"),
                      ("vol_pct", "{:.0%} percentile of the trailing year"),
                      ("vol_ratio", "{:.2f}x its 3-year median"),
                      ("drawdown", "drawdown {:.1%} from the peak"),
                      ("turbulence_pct", "turbulence percentile {:.0%}")):
        if col in regime.columns and pd.notna(last[col]):
            values.append(fmt_.format(float(last[col])))
    return text + (": " + ", ".join(values) if values else "") + "."


def decision_table(inputs: ReportInputs) -> pd.DataFrame:
    """The index's first table (`item`, `value`): production engine and where today's weights come
    from, its rank among the engines and against the market (realized simulator), flags, regime,
    data source."""
    real = REALIZED if REALIZED in inputs.simulators else inputs.simulators[0]
    prod_name = inputs.production_engine
    ranked = engine_ranking(inputs.summary[inputs.summary["simulator"] == real], prod_name)
    rank = int(ranked.loc[ranked["engine"] == prod_name, "rank"].iloc[0])
    prod, market = inputs.row(prod_name, real), inputs.row(inputs.benchmark_engine, real)
    market_rank = int(ranked.loc[ranked["engine"] == inputs.benchmark_engine, "rank"].iloc[0])
    today = inputs.weights[inputs.weights["is_production"].astype(bool)]
    used = sorted(set(today["engine_used"].astype(str))) if "engine_used" in today.columns else [prod_name]
    source = ("weights from its own rules" if used == [prod_name]
              else f"**fell back: today's weights come from {', '.join(used)}**")
    diff_cagr = prod["cagr"] - market["cagr"]
    flags = production_flags(inputs)
    data = {None: "not stated", "synthetic": "**SYNTHETIC** (embedded generated market)"}.get(
        inputs.source_kind, f"`{inputs.source_kind}` source")
    rows = [
        ("Production engine", f"**{prod_name}**: {source}; {len(today)} position(s)"),
        (f"Rank ({real}, by Sharpe)", f"{rank} of {len(ranked)} engines (market hold {inputs.baseline}: "
                                      f"{market_rank} of {len(ranked)})"),
        ("Against the market (annualized)",
         f"CAGR {_fmt_value(prod['cagr'], 'cagr')} vs {_fmt_value(market['cagr'], 'cagr')} "
         f"({diff_cagr * 100:+.2f} points/yr); Sharpe {_fmt_value(prod['sharpe'], 'sharpe')} vs "
         f"{_fmt_value(market['sharpe'], 'sharpe')}; max drawdown {_fmt_value(prod['max_drawdown'], 'max_drawdown')} "
         f"vs {_fmt_value(market['max_drawdown'], 'max_drawdown')}"),
        ("Flags", "; ".join(f"**{f}**" for f in flags) if flags else "none"),
        ("Regime", regime_reason(inputs.regime, inputs.regime_label)),
        ("Data", f"{data}; baseline {inputs.baseline}; "
                 + ("point-in-time tournament" if inputs.pit_fidelity else "**look-ahead tournament**")),
    ]
    return pd.DataFrame(rows, columns=["item", "value"])


def _orders_block(inputs: ReportInputs) -> str:
    orders = proposed_orders(inputs)
    if orders is None:
        return "Orders not computed: no book (holdings) was given to the reports."
    counts = orders["action"].value_counts()
    summary = ", ".join(f"{a} {int(counts.get(a, 0))}" for a in ("BUY", "SELL", "HOLD"))
    shown = orders[orders["action"] != "HOLD"].sort_values(["size", "symbol"], ascending=[False, True])
    table = pd.DataFrame({
        "symbol": shown["symbol"], "side": shown["action"], "direction": shown["direction"],
        "size (% NAV)": shown["size"], "from (net % NAV)": shown["current_net_weight"],
        "to (net % NAV)": shown["target_net_weight"], "reason": shown["reason"],
    })
    fmts = {"size (% NAV)": ".2%", "from (net % NAV)": ".2%", "to (net % NAV)": ".2%"}
    text = [
        f"From the book at today's close (the previous book plus the executions accepted with "
        f"`portfolio-assets accept`; nothing accepted = nothing traded) to the production target. "
        f"{summary}; gross traded {orders['size'].sum():.2%} of NAV. Net weights are signed (negative = short). "
        "`implementation_orders` issues them only after every gate has passed.",
    ]
    text.append(md_table(table, formats=fmts) if len(table) else "No trade: the book is at the target.")
    dust = orders[orders["reason"].str.startswith("dust")]
    if len(dust):
        text.append(f"{len(dust)} change(s) under 1% of NAV are held as dust (feat_partial_rebalance).")
    return "\n\n".join(text)


def _changes_block(inputs: ReportInputs) -> str:
    reg = inputs.regime
    regime_line = ""
    if len(reg) > 1:
        prev_label, now_label = str(reg["label"].iloc[-2]), str(reg["label"].iloc[-1])
        regime_line = (f"Regime: {prev_label} → {now_label}." if prev_label != now_label
                       else f"Regime: unchanged ({now_label}).")
    changes = weight_changes(inputs)
    if changes is None:
        return (f"{regime_line} Target weights: the previous session's target weights are not stored in this "
                "lakehouse (a first or single-date run): nothing to compare.").strip()
    moved = changes[changes["what"] != "unchanged"]
    counts = changes["what"].value_counts()
    line = (f"Production target against {inputs.previous_partition}: "
            + ", ".join(f"{w} {int(counts.get(w, 0))}" for w in ("added", "removed", "up", "down", "unchanged"))
            + f"; one-way change {changes['change'].abs().sum() / 2:.2%} of NAV.")
    parts = [f"{regime_line} {line}".strip()]
    if len(moved):
        shown = moved.head(10).rename(columns={"previous": "previous (net % NAV)", "today": "today (net % NAV)",
                                               "change": "change (% NAV)"})
        parts.append(md_table(shown, formats={c: ".2%" for c in shown.columns if "%" in c}))
    return "\n\n".join(parts)


def funnel_line(funnel: Mapping[str, int], raw_pool_audit: pd.DataFrame, baseline: str) -> str:
    """`scanned N (long a, short b) → raw pool N (...) → with data → clusters → selected N (incl. the
    baseline)`: the counts of `funnel`, directions from the raw-pool audit."""
    if not funnel:
        return "Funnel counts not recorded."

    def split(stage: str) -> str:
        rows = raw_pool_audit[raw_pool_audit["stage"] == stage]
        if rows.empty:
            return ""
        by = rows.groupby("direction")["count"].sum()
        return " (" + ", ".join(f"{d} {int(by[d])}" for d in ("long", "short") if d in by.index) + ")"

    steps = []
    if "scanned" in funnel:
        steps.append(f"scanned {funnel['scanned']}{split('scanned')}")
    if "raw" in funnel:
        steps.append(f"raw pool {funnel['raw']}{split('raw_pool')}")
    if "with_data" in funnel:
        steps.append(f"with data {funnel['with_data']}")
    if "clusters" in funnel:
        steps.append(f"clusters {funnel['clusters']}")
    if "winners" in funnel:
        steps.append(f"selected {funnel['winners']} (incl. the baseline {baseline})")
    return " → ".join(steps) + "."


def _index(inputs: ReportInputs, bundle: _Bundle, tearsheets: Sequence[tuple[str, str]], equity: str) -> str:
    funnel = dict(inputs.funnel)
    real = REALIZED if REALIZED in inputs.simulators else inputs.simulators[0]
    prod, market = inputs.row(inputs.production_engine, real), inputs.row(inputs.benchmark_engine, real)
    prod_w = _production_weights(inputs.weights)
    ranked = engine_ranking(inputs.summary, inputs.production_engine)
    headline_cols = ["rank", "engine", "simulator", "production", "cagr", "sharpe", "max_drawdown",
                     "turnover_one_way", "costs_paid", *(c for c in ("n_fallbacks", "n_relaxed") if c in ranked.columns)]
    pairs = inputs.pairs
    top_pair = (f"{pairs.iloc[0]['a']} / {pairs.iloc[0]['b']} (ρ {pairs.iloc[0]['corr']:.3f})" if len(pairs) else "n/a")
    reports = [
        bundle.link("Engine comparison (full table)", ENGINE_COMPARISON),
        bundle.link("Strategy resume: market, raw EW, filtered EW, engines (realized)", BACKTEST_COMPARISON),
        bundle.link("Alpha isolation audit: selection vs optimization alpha", ALPHA_ISOLATION),
    ]
    if bundle.exists(SLIPPAGE_DECAY):
        reports.append(bundle.link("Slippage decay audit: idealized vs realized, over-trading", SLIPPAGE_DECAY))
    sheets = []
    for engine, simulator in tearsheets:
        label = f"{engine} ({simulator})" + (" (production)" if engine == inputs.production_engine else "")
        item = bundle.link(label, tearsheet_name(engine, simulator, "md"))
        if bundle.exists(tearsheet_name(engine, simulator, "html")):
            item += " · " + bundle.link("QuantStats HTML", tearsheet_name(engine, simulator, "html"))
        sheets.append(item)
    parts = [
        f"# Portfolio report, {inputs.partition}",
        banners(inputs, tournament=True),
        f"Profile `{inputs.profile}` · production engine **{inputs.production_engine}** · regime "
        f"**{inputs.regime_label}** · baseline {inputs.baseline}. Walk-forward {_oos_span(inputs)}. "
        "Returns and drawdowns in %, CAGR and volatility annualized (252 sessions), Sharpe annualized.",
        "## Decision",
        md_table(decision_table(inputs)),
        "## Today's proposed orders",
        _orders_block(inputs),
        "## Change since the previous session",
        _changes_block(inputs),
        f"## Production engine ({real} simulator)",
        f"CAGR {_fmt_value(prod['cagr'], 'cagr')}/yr, Sharpe {_fmt_value(prod['sharpe'], 'sharpe')}, max drawdown "
        f"{_fmt_value(prod['max_drawdown'], 'max_drawdown')}. Market hold ({inputs.baseline}): CAGR "
        f"{_fmt_value(market['cagr'], 'cagr')}/yr, Sharpe {_fmt_value(market['sharpe'], 'sharpe')}."
        + _production_fallback_note(prod),
        "## 1. Universe funnel",
        funnel_line(funnel, inputs.raw_pool_audit, inputs.baseline),
        _bullets(bundle.link("Selection audit: every candidate, winners and losers with reasons", SELECTION_AUDIT)),
        "## 2. Data health",
        _health_line(inputs.health),
        _bullets(bundle.link("Data health report", DATA_HEALTH)),
        "## 3. Risk buckets",
        f"{len(inputs.bucket_stats)} buckets; most correlated pair: {top_pair}.",
        _bullets(bundle.link("Bucket statistics and top pairs", BUCKETS),
                 bundle.link("Dendrogram", DENDROGRAM_IMAGE),
                 bundle.link("Correlation clustermap", CLUSTERMAP_IMAGE)),
        "## 4. Market regime",
        regime_reason(inputs.regime, inputs.regime_label),
        _bullets(bundle.link("Regime report: distribution and latest features", REGIME)),
        bundle.link("Regime chart", REGIME_IMAGE, image=True),
        "## 5. Target weights",
        f"Top production positions ({len(prod_w)} in total):",
        md_table(tidy_cells(prod_w.head(10)), floatfmt=".4f"),
        _bullets(bundle.link("All weights, every engine, by bucket", WEIGHTS)),
        "## 6. Walk-forward tournament",
        "Every engine x simulator by Sharpe (first 10 rows). CAGR annualized, max drawdown in %, turnover "
        "one-way in multiples of NAV summed over the period, costs in % of NAV summed over the period; "
        "fallbacks and relaxed caps count windows.",
        md_table(ranked[headline_cols].head(10), formats=METRIC_FORMATS),
        _bullets(*reports),
        "## 7. Tear-sheets",
        _bullets(*sheets) if sheets else "No tear-sheet (no engine with a Sharpe ratio).",
        "## 8. Equity curves",
        bundle.link(f"Cumulative wealth ({equity} simulator)", EQUITY_CURVES, image=True),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _remove_stale(out_dir: Path, written: Iterable[Path], owned: Iterable[str]) -> None:
    """Delete files this module owns (`owned` names and everything in `tearsheets/`) not written now."""
    keep = {p.resolve() for p in written}
    candidates = [out_dir / name for name in owned]
    ts_dir = out_dir / TEARSHEET_DIR
    if ts_dir.is_dir():
        candidates += [p for p in ts_dir.iterdir() if p.is_file() and p.suffix in (".md", ".html")]
    for path in candidates:
        if path.is_file() and path.resolve() not in keep:
            path.unlink()


def build_reports(inputs: ReportInputs, out_dir: Path) -> list[Path]:
    """Write the report bundle into `out_dir`; return the paths written, in writing order.

    Files (relative to `out_dir`): `engine_comparison_report.md`, `backtest_comparison.md`,
    `alpha_isolation_audit.md`, `slippage_decay_audit.md` (only with `feat_decay_audit`),
    `selection_audit.md`, `weights.md`, `regime.md`, `buckets.md`,
    `tearsheets/<engine>__<simulator>.md` (+ `.html` with `quantstats_html`) for
    `tearsheet_targets`, `equity_curves.png` (realized simulator), and last `index.md` +
    `index.html`. Raises `ValueError` when the inputs disagree (`check_summary_matches_returns`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_summary_matches_returns(inputs)
    bundle = _Bundle(out_dir)
    bundle.write(ENGINE_COMPARISON, _with_banners(_engine_comparison(inputs), inputs, True))
    bundle.write(BACKTEST_COMPARISON, _with_banners(_backtest_comparison(inputs), inputs, True))
    bundle.write(ALPHA_ISOLATION, _with_banners(_alpha_isolation(inputs), inputs, True))
    if inputs.features.get("feat_decay_audit", False):
        bundle.write(SLIPPAGE_DECAY, _with_banners(_slippage_decay(inputs), inputs, True))
    bundle.write(SELECTION_AUDIT, _with_banners(_selection_audit(inputs), inputs, False))
    bundle.write(WEIGHTS, _with_banners(_weights(inputs), inputs, False))
    bundle.write(REGIME, _with_banners(_regime(inputs, bundle), inputs, False))
    bundle.write(BUCKETS, _with_banners(_buckets(inputs, bundle), inputs, False))
    tearsheets = _write_tearsheets(inputs, bundle)
    equity_sim = REALIZED if REALIZED in inputs.simulators else inputs.simulators[0]
    bundle.write(EQUITY_CURVES, _equity_curves_png(inputs, equity_sim))
    _remove_stale(out_dir, bundle.written, (SLIPPAGE_DECAY,))
    index_md = _index(inputs, bundle, tearsheets, equity_sim)
    bundle.write(INDEX_MD, index_md)
    bundle.write(INDEX_HTML, html_page(f"Portfolio report {inputs.partition}", markdown_to_html(index_md)))
    return list(bundle.written)
