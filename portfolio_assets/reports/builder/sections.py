"""Writing the bundle's pages: engine and backtest comparison, alpha isolation, slippage decay, selection
audit, weights, regime, buckets, equity curves and tear-sheets."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from portfolio_assets.lakehouse import atomic_write_bytes
from portfolio_assets.reports.builder.decision import _banners_html, _with_banners
from portfolio_assets.reports.builder.inputs import (
    CLUSTERMAP_IMAGE,
    DENDROGRAM_IMAGE,
    FILTERED_EW,
    MARKET,
    RAW_EW,
    REALIZED,
    REFERENCE_ENGINES,
    REFERENCE_LABELS,
    REGIME_IMAGE,
    ReportInputs,
)
from portfolio_assets.reports.builder.tables import (
    _fmt_value,
    alpha_isolation_table,
    engine_ranking,
    slippage_decay_table,
    tearsheet_name,
    tearsheet_targets,
)
from portfolio_assets.reports.markdown import (
    md_image,
    md_link,
    md_table,
    tidy_cells,
)
from portfolio_assets.reports.tearsheet import METRIC_FORMATS, render_quantstats, tearsheet_markdown

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
        label = str(REFERENCE_LABELS.get(engine, engine))
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


NO_BUCKET = "—"  # the bucket column of a symbol with no risk bucket


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
        unbucketed = w["bucket"].isna()
        # buckets in numeric order, then "—": a raw-pool symbol outside the selection (raw_pool_ew's only)
        w = w.assign(_order=w["bucket"].astype("Float64").fillna(float("inf"))).sort_values(["_order", "symbol"])
        w = w.assign(bucket=[NO_BUCKET if pd.isna(b) else str(int(b)) for b in w["bucket"]])
        pivot = w.pivot_table(index=["bucket", "symbol", "direction"], columns="engine", values="net_weight",
                              aggfunc="sum", fill_value=0.0, sort=False)
        engines = [inputs.production_engine] + sorted(c for c in pivot.columns if c != inputs.production_engine)
        buckets = w.pivot_table(index="bucket", columns="engine", values="weight", aggfunc="sum", fill_value=0.0,
                                sort=False)
        parts += [
            "## Every engine (net weights, by bucket)",
            *([f"Bucket {NO_BUCKET}: a raw-pool symbol outside the selection, held only by `raw_pool_ew`."]
              if unbucketed.any() else []),
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
            style: dict[str, Any]
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


def quantstats_targets(targets: list[tuple[str, str]], inputs: ReportInputs) -> list[tuple[str, str]]:
    """The tear-sheets that also get a QuantStats HTML page: none without `quantstats_html`, the
    production engine's with `quantstats_pages="production"`, every one with `"all"`."""
    if not inputs.quantstats_html:
        return []
    if inputs.quantstats_pages == "all":
        return list(targets)
    if inputs.quantstats_pages != "production":
        raise ValueError(f"quantstats_pages must be 'production' or 'all', got {inputs.quantstats_pages!r}")
    return [(engine, simulator) for engine, simulator in targets if engine == inputs.production_engine]


def _write_tearsheets(inputs: ReportInputs, bundle: _Bundle) -> list[tuple[str, str]]:
    targets = tearsheet_targets(inputs.summary, inputs.production_engine, inputs.top_engines)
    with_html = quantstats_targets(targets, inputs)
    if with_html:  # the HTML pages in parallel (most of a report's time), then the Markdown
        bundle.written.extend(render_quantstats([
            {"returns": inputs.series(engine, simulator), "benchmark": inputs.series(inputs.benchmark_engine, simulator),
             "path": bundle.root / tearsheet_name(engine, simulator, "html"),
             "title": f"{engine} ({simulator}) vs {inputs.baseline}, {inputs.partition}",
             "strategy_title": engine, "benchmark_title": inputs.baseline,
             "banner_html": _banners_html(inputs, True)}
            for engine, simulator in with_html], say=inputs.say))
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
            html_name=Path(html_rel).name if (engine, simulator) in with_html else None, rf=inputs.rf,
        )
        bundle.write(tearsheet_name(engine, simulator, "md"), _with_banners(text, inputs, True))
    return targets


def _health_line(health: pd.DataFrame) -> str:
    def counts(column: str) -> str:
        return ", ".join(f"{k} {v}" for k, v in health[column].value_counts().items()) or "none"

    bad = sorted(health.loc[health["status"] != "OK", "symbol"])
    text = f"{len(health)} symbols checked. Before recovery: {counts('status_before')}; after: {counts('status')}."
    return text + (f" Not healthy after recovery: {', '.join(bad)}." if bad else " All healthy after recovery.")
