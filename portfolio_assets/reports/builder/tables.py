"""Report tables: plain functions of the inputs (consistency check, engine ranking, alpha isolation,
slippage decay, tear-sheet targets), used by the Markdown writers and the tests."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from portfolio_assets.quant.metrics import PERIODS_PER_YEAR, summarize
from portfolio_assets.reports.builder.inputs import (
    CONSISTENCY_RTOL,
    FILTERED_EW,
    IDEALIZED,
    MARKET,
    RAW_EW,
    REALIZED,
    REFERENCE_ENGINES,
    SERIES_METRICS,
    SUMMARY_METRICS,
    TEARSHEET_DIR,
    ReportInputs,
)
from portfolio_assets.reports.tearsheet import METRIC_FORMATS

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


def _fmt_value(value: float, metric: str) -> str:
    return "n/a" if value is None or pd.isna(value) else format(float(value), METRIC_FORMATS[metric])
