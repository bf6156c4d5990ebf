"""Steps 3-6: raw pool, 60-session returns, natural selection, enrichment (+ the helpers that fetch bars)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from dagster import asset, multi_asset

from portfolio_assets.assets._step import Step
from portfolio_assets.assets.common import FAMILIES, OWNERS, PARTITIONS, after, attrs, outs
from portfolio_assets.fetch import coverage, fetch_and_recover, load_panel, window_bounds
from portfolio_assets.manifest import Config
from portfolio_assets.partitions import sessions_window
from portfolio_assets.quant.calendar import simple_returns
from portfolio_assets.quant.health import HealthParams
from portfolio_assets.quant.rawpool import build_raw_pool
from portfolio_assets.resources import PortfolioSettings, PriceCache
from portfolio_assets.sources.base import MarketData

KINDS = {"python", "parquet"}


def merge_scans(
    cfg: Config, source: MarketData, scans: dict[str, pd.DataFrame], as_of: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The raw pool from scans; when the baseline failed every scanner filter, its own scanner row
    is fetched (it is always forced in)."""
    sel = cfg.selection
    baseline_row = None
    if not any((df["symbol"] == sel.baseline).any() for df in scans.values() if len(df)):
        baseline_row = source.scan("equity", as_of, {"name": "baseline", "filter": [], "symbols": [sel.baseline], "limit": 1})
        baseline_row = baseline_row[baseline_row["symbol"] == sel.baseline].assign(direction="long", preset="baseline")
    return build_raw_pool(scans, sel.class_cap, sel.baseline, baseline_row)


def raw_pool_as_of(cfg: Config, source: MarketData, as_of: dt.date) -> pd.DataFrame:
    """Discovery + raw pool as of a past date (the tournament's point-in-time universe)."""
    from portfolio_assets.assets.discovery import scan_family

    scans = {}
    for family in FAMILIES:
        scanned = scan_family(cfg, source, family, as_of)
        if scanned is not None:
            scans[family] = scanned[0]
    return merge_scans(cfg, source, scans, as_of)[0]


def calendars_of(step: Step, symbols: list[str]) -> dict[str, str]:
    """Each symbol's trading calendar from the source's metadata; raises ValueError when the
    source gives no calendar for one or more of them."""
    meta = step.settings.source().metadata(list(symbols))
    missing = [s for s in symbols if s not in meta.index or pd.isna(meta.at[s, "calendar"])]
    if missing:
        raise ValueError(f"source has no calendar for {len(missing)} symbol(s), e.g. {missing[:3]}")
    return {s: str(meta.at[s, "calendar"]) for s in symbols}


def bar_windows(cfg: Config, date: dt.date) -> tuple[tuple[dt.date, dt.date], tuple[dt.date, dt.date]]:
    """The partition's two widest fetch windows: (the history window every raw-pool symbol is
    read over, the baseline's longer one with the regime's warm-up), as (first day, last day)."""
    from portfolio_assets.quant.regimes import history_sessions

    n = cfg.data.lookback_history
    return (window_bounds(sessions_window(date, n + 1)),
            window_bounds(sessions_window(date, n + history_sessions(cfg.regime) + 1)))


def widest_starts(step: Step, symbols: list[str]) -> dict[str, dt.date]:
    """Per symbol, the first day of the widest window any asset of the partition reads: the
    first fetch of a run fetches from there (`fetch.first_fetch`)."""
    (history_start, _), (long_start, _) = bar_windows(step.cfg, step.date)
    baseline = step.cfg.selection.baseline
    return {s: long_start if s == baseline else history_start for s in symbols}


def health_params(step: Step, symbols: list[str], min_days_floor: int | None = None) -> dict[str, HealthParams]:
    """Per-symbol health thresholds from the manifest (crypto's bad-tick threshold is wider)."""
    data = step.cfg.data
    meta = step.settings.source().metadata(symbols)
    out = {}
    for s in symbols:
        crypto = s in meta.index and meta.at[s, "asset_class"] == "crypto"
        out[s] = HealthParams(
            min_days_floor=data.min_days_floor if min_days_floor is None else min_days_floor,
            staleness=data.staleness_sessions,
            max_abs_return=data.max_abs_return_crypto if crypto else data.max_abs_return,
        )
    return out


def fetch_returns(step: Step, symbols: list[str], n_sessions: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fetch `n_sessions` master sessions of bars (+1 for the first return) into the cache; returns
    (prices panel, returns) with exactly `n_sessions` return rows.

    The window is fetched and repaired as for the 500-session history (`fetch_and_recover`; the
    repair attempts are recorded as a `prep_recovery` event) but not gated: what stays bad is
    masked instead. A non-positive or non-finite price, and a return beyond the bad-tick
    threshold, become NaN (no data) instead of poisoning correlations; the count per symbol is in
    `returns.attrs["masked"]` and recorded as an event.
    """
    window = sessions_window(step.date, n_sessions + 1)
    calendars = calendars_of(step, symbols)
    data = step.cfg.data
    # The same fetch + repair as the 500-session history (not gated here: the light prep only
    # masks what stays bad), so a re-run finds the cache in the state a fresh run leaves it.
    view: dict[str, pd.DataFrame] = {}
    _, healed, log = fetch_and_recover(step.settings.source(), step.lake, symbols, calendars, window, step.date,
                                      health_params(step, symbols, min_days_floor=0), data.recovery_attempts,
                                      data.recovery_backoff_s, scope=step.fetch_scope,
                                      widest=widest_starts(step, symbols), view=view)
    if log.rows:
        step.event("prep_recovery", attempts=len(log.rows),
                   still_unhealthy=healed.loc[healed["status"] != "OK", "status"].to_dict())
    panel = load_panel(step.lake, symbols, calendars, window, step.date, view=view)
    bad_price = panel.notna() & ~(panel > 0)
    panel = panel.where(~bad_price)
    rets = simple_returns(panel)
    limit = pd.Series({s: step.cfg.data.max_abs_return_crypto if calendars[s] == "24/7" else step.cfg.data.max_abs_return
                       for s in rets.columns})
    jumps = rets.abs() > limit
    rets = rets.where(~jumps).iloc[1:]
    masked = bad_price.iloc[1:].sum() + jumps.iloc[1:].sum()
    masked = masked[masked > 0]
    if len(masked):
        step.event("bad_ticks_masked", counts={k: int(v) for k, v in masked.items()})
    rets.attrs["masked"] = {k: int(v) for k, v in masked.items()}
    return panel.iloc[1:], rets


@multi_asset(
    name="raw_pool",
    outs=outs("raw_pool", 3, {"audit": "Counts per stage, family and direction: scanned, merged, capped, forced"},
              owners=OWNERS, kinds=KINDS, description=(
                  "Step 3. The scans merged: exact instrument-identity merge across venues (best venue kept, "
                  "alternates listed), composite score per asset class (liquidity, ADX, momentum, volatility "
                  "sanity), class cap, the baseline forced in. All scanner fields are kept.")),
    partitions_def=PARTITIONS,
)
def raw_pool(context, settings: PortfolioSettings, equity_scan: pd.DataFrame, crypto_scan: pd.DataFrame,
             bond_scan: pd.DataFrame, forex_scan: pd.DataFrame):
    """Merge the four scan tables into the raw pool (`merge_scans`) and store it with its
    per-stage audit; records a `baseline_forced` event when the baseline was absent from every scan."""
    with Step(context, settings) as step:
        sel = step.cfg.selection
        step.params.update(class_cap=sel.class_cap, baseline=sel.baseline)
        scans = {"equity": equity_scan, "crypto": crypto_scan, "bond": bond_scan, "forex": forex_scan}
        pool, audit = merge_scans(step.cfg, step.settings.source(), scans, step.date)
        if (audit["stage"] == "forced_baseline").any():
            step.event("baseline_forced", symbol=sel.baseline, reason="absent from every scan")
        by_class = pool.groupby(["asset_class", "direction"]).size().rename("n").reset_index()
        yield from step.emit(
            {"raw_pool": pool.reset_index(), "raw_pool__audit": audit},
            metrics={
                "rows": len(pool),
                "by_class": {f"{c}/{d}": int(n) for c, d, n in by_class.itertuples(index=False)},
                "identities_merged": int((pool["n_venues"] > 1).sum()),
            },
            preview=pool.reset_index()[["symbol", "asset_class", "direction", "score", "alternates"]],
        )


@multi_asset(
    name="returns_60d",
    outs=outs("returns_60d", 4, {"coverage": "Share of sessions with data and masked bad ticks per symbol"},
              owners=OWNERS, kinds=KINDS, description=(
                  "Step 4. 60-session return matrix (master sessions x symbols) for the raw pool + baseline, "
                  "aligned to XNYS sessions from each symbol's own calendar: no zero-filled closed days, crypto "
                  "weekends folded into the next session.")),
    ins=after("market_bars"),
    partitions_def=PARTITIONS,
)
def returns_60d(context, settings: PortfolioSettings, price_cache: PriceCache, raw_pool: pd.DataFrame):
    """Fetch `data.lookback_prep` sessions of returns for the raw pool + baseline (`fetch_returns`,
    bad ticks masked) and store them with each symbol's coverage and masked bad-tick count."""
    with Step(context, settings, price_cache=price_cache) as step:
        n = step.cfg.data.lookback_prep
        step.params.update(sessions=n)
        symbols = sorted(set(raw_pool["symbol"]) | {step.cfg.selection.baseline})
        _, rets = fetch_returns(step, symbols, n)
        cov = coverage(rets).reset_index().rename(columns={"index": "symbol"})
        cov["masked_bad_ticks"] = cov["symbol"].map(rets.attrs["masked"]).fillna(0).astype(int)
        yield from step.emit(
            {"returns_60d": rets, "returns_60d__coverage": cov},
            metrics={"sessions": len(rets), "symbols": rets.shape[1], "masked_bad_ticks": sum(rets.attrs["masked"].values()),
                     "first_session": str(rets.index[0].date()), "last_session": str(rets.index[-1].date()),
                     "mean_coverage": float(cov["coverage"].mean())},
            preview=cov.sort_values("coverage").head(10),
        )


@multi_asset(
    name="selected_universe",
    outs=outs("selected_universe", 5, {"audit": "Every candidate with its cluster, scores and why it won or lost"},
              owners=OWNERS, kinds={"python", "parquet", "scipy"}, description=(
                  "Step 5. Natural selection: coverage-aware pairwise correlation, angular distance "
                  "sqrt(0.5(1-rho)), Ward linkage cut at the manifest threshold (or max_clusters); alpha score "
                  "(return, inverse vol, antifragility, liquidity) ranked globally with feat_xs_momentum, "
                  "within-cluster otherwise; diversity-scaled top-n per cluster and direction, momentum gate, "
                  "one venue per identity, baseline kept; below selection.min_winners the next best fill in "
                  "round-robin over clusters (docs/selection.md).")),
    partitions_def=PARTITIONS,
)
def selected_universe(context, settings: PortfolioSettings, raw_pool: pd.DataFrame, returns_60d: pd.DataFrame):
    """Run natural selection (`quant.selection.select_universe`) on the raw pool's candidates and
    their 60-session returns; stores the winners and the audit of every candidate."""
    from portfolio_assets.quant.selection import SelectionParams, select_universe

    with Step(context, settings) as step:
        params = SelectionParams.from_config(step.cfg)
        step.params.update(params.record())
        pool = raw_pool.set_index("symbol")
        candidates = pool[["direction", "identity", "asset_class"]].assign(value_traded=pool["Value.Traded"])
        result = select_universe(candidates, returns_60d, params)
        winners = result.winners.reset_index(drop=True)
        yield from step.emit(
            {"selected_universe": winners, "selected_universe__audit": result.audit.reset_index(drop=True)},
            metrics={"funnel": result.funnel, "winners": len(winners), "clusters": int(result.clusters.n_clusters),
                     "ranking": "global percentile (feat_xs_momentum)" if params.xs_momentum else "within-cluster min-max"},
            preview=winners[["symbol", "direction", "asset_class", "cluster", "score", "reason"]],
        )


@asset(
    **attrs("enriched_universe", 6),
    kinds=KINDS,
    owners=OWNERS,
    description=(
        "Step 6. Sector, industry, description and asset class for every winner, each with its "
        "provenance: scanner row, source metadata, built-in map of well-known ETFs, class fallback."
    ),
)
def enriched_universe(context, settings: PortfolioSettings, selected_universe: pd.DataFrame, raw_pool: pd.DataFrame):
    """Join each winner's direction, cluster and score with its asset class, sector, industry and
    description (`quant.enrichment.enrich`), every field with a `<field>_source` column."""
    from portfolio_assets.quant.enrichment import FIELDS, enrich

    with Step(context, settings) as step:
        winners = selected_universe.set_index("symbol")
        pool = raw_pool.set_index("symbol")
        meta = step.settings.source().metadata(list(winners.index))
        enriched = enrich(winners, pool, meta)
        out = winners[["direction", "cluster", "score"]].join(enriched).reset_index()
        provenance = {f: out[f"{f}_source"].value_counts().to_dict() for f in FIELDS}
        yield from step.emit(out, metrics={"rows": len(out), "provenance": provenance},
                             preview=out[["symbol", "asset_class", "sector", "sector_source", "description"]])
