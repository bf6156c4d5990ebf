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

The package is cut at the builder's seams: ``inputs`` (:class:`ReportInputs` and the bundle's file
names), ``tables`` (plain table functions), ``sections`` (the pages), ``decision`` (banners, decision
table, orders, changes); this module writes the index and the bundle (:func:`build_reports`). Every
public name of those modules is re-exported here.
"""


from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from portfolio_assets.reports.builder.decision import (
    LOOKAHEAD_BANNER,
    REGIME_RULE_TEXT,
    SYNTHETIC_BANNER,
    _changes_block,
    _orders_block,
    _with_banners,
    banners,
    decision_table,
    funnel_line,
    production_flags,
    proposed_orders,
    regime_reason,
    weight_changes,
)
from portfolio_assets.reports.builder.inputs import (
    ALPHA_ISOLATION,
    BACKTEST_COMPARISON,
    BUCKETS,
    CLUSTERMAP_IMAGE,
    CONSISTENCY_RTOL,
    DATA_HEALTH,
    DENDROGRAM_IMAGE,
    ENGINE_COMPARISON,
    EQUITY_CURVES,
    FILTERED_EW,
    IDEALIZED,
    INDEX_HTML,
    INDEX_MD,
    MARKET,
    RAW_EW,
    REALIZED,
    REFERENCE_ENGINES,
    REFERENCE_LABELS,
    REGIME,
    REGIME_IMAGE,
    SELECTION_AUDIT,
    SERIES_METRICS,
    SLIPPAGE_DECAY,
    SUMMARY_METRICS,
    TEARSHEET_DIR,
    WEIGHTS,
    ReportInputs,
)
from portfolio_assets.reports.builder.sections import (
    _alpha_isolation,
    _backtest_comparison,
    _buckets,
    _bullets,
    _Bundle,
    _engine_comparison,
    _equity_curves_png,
    _health_line,
    _oos_span,
    _production_fallback_note,
    _production_weights,
    _regime,
    _selection_audit,
    _slippage_decay,
    _weights,
    _write_tearsheets,
)
from portfolio_assets.reports.builder.tables import (
    _fmt_value,
    alpha_isolation_table,
    check_summary_matches_returns,
    engine_ranking,
    slippage_decay_table,
    tearsheet_name,
    tearsheet_targets,
)
from portfolio_assets.reports.markdown import (
    html_page,
    markdown_to_html,
    md_table,
    tidy_cells,
)
from portfolio_assets.reports.tearsheet import METRIC_FORMATS

__all__ = [
    "ALPHA_ISOLATION",
    "BACKTEST_COMPARISON",
    "BUCKETS",
    "CLUSTERMAP_IMAGE",
    "CONSISTENCY_RTOL",
    "DATA_HEALTH",
    "DENDROGRAM_IMAGE",
    "ENGINE_COMPARISON",
    "EQUITY_CURVES",
    "FILTERED_EW",
    "IDEALIZED",
    "INDEX_HTML",
    "INDEX_MD",
    "LOOKAHEAD_BANNER",
    "MARKET",
    "RAW_EW",
    "REALIZED",
    "REFERENCE_ENGINES",
    "REFERENCE_LABELS",
    "REGIME",
    "REGIME_IMAGE",
    "REGIME_RULE_TEXT",
    "ReportInputs",
    "SELECTION_AUDIT",
    "SERIES_METRICS",
    "SLIPPAGE_DECAY",
    "SUMMARY_METRICS",
    "SYNTHETIC_BANNER",
    "TEARSHEET_DIR",
    "WEIGHTS",
    "alpha_isolation_table",
    "banners",
    "build_reports",
    "check_summary_matches_returns",
    "decision_table",
    "engine_ranking",
    "funnel_line",
    "production_flags",
    "proposed_orders",
    "regime_reason",
    "slippage_decay_table",
    "tearsheet_name",
    "tearsheet_targets",
    "weight_changes",
]


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
