"""What the report bundle is built from: `ReportInputs` (the stored tables, checked on construction) and
the names of the files the bundle owns or links."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from portfolio_assets.quant.metrics import METRIC_COLUMNS
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
    simulator by Sharpe, besides the production engine), `quantstats_html` and `quantstats_pages`
    (QuantStats HTML for the production engine's tear-sheets, or for all), `say` (progress lines of
    the QuantStats rendering: a step's `context.log.info`, or None), `benchmark_engine`
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
    quantstats_pages: str = "production"
    say: Callable[[str], None] | None = None
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
