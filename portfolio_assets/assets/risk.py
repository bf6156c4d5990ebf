"""Steps 9-10: hierarchical risk buckets and the market regime."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from dagster import MetadataValue, asset, multi_asset

from portfolio_assets.assets._step import Step, preview_md
from portfolio_assets.assets.common import OWNERS, PARTITIONS, after, attrs, outs
from portfolio_assets.assets.history import healthy_returns
from portfolio_assets.assets.universe import fetch_returns
from portfolio_assets.quant.convention import synthetic_long
from portfolio_assets.resources import PortfolioSettings, PriceCache


def _images(stage: Path, *writers) -> None:
    (stage / "images").mkdir()
    for name, write in writers:
        write(stage / "images" / name)


@multi_asset(
    name="risk_buckets",
    outs=outs("risk_buckets", 9, {
        "stats": "Per bucket: size, members, mean intra-bucket correlation, volatility, lead asset",
        "pairs": "The most correlated pairs of the universe",
    }, owners=OWNERS, kinds={"python", "parquet", "scipy"}, description=(
        "Step 9. Ward-linkage risk buckets on the 500-session pairwise (coverage-aware) correlation of "
        "the synthetic-long streams; distance sqrt(0.5(1-rho)), cut at `risk.threshold` or "
        "`risk.max_clusters`. Images: dendrogram and clustermap.")),
    ins=after("history_500d"),
    partitions_def=PARTITIONS,
)
def risk_buckets(context, settings: PortfolioSettings, history_500d__returns: pd.DataFrame,
                 history_500d__health: pd.DataFrame, selected_universe: pd.DataFrame):
    """Cluster the healthy winners' synthetic-long 500-session streams into Ward-linkage risk buckets;
    stores the bucket of each symbol, per-bucket stats and the top correlated pairs, plus the images."""
    from portfolio_assets.quant.clustering import bucket_stats, hierarchical_clusters, top_correlated_pairs
    from portfolio_assets.reports.plots.clusters import plot_clustermap, plot_dendrogram

    with Step(context, settings) as step:
        risk = step.cfg.risk
        rets, directions, dropped = healthy_returns(step, history_500d__returns, history_500d__health, selected_universe)
        streams = synthetic_long(rets, directions)
        step.params.update(threshold=risk.threshold, max_clusters=risk.max_clusters, dropped=dropped)
        cr = hierarchical_clusters(streams, threshold=risk.threshold, max_clusters=risk.max_clusters,
                                   min_overlap=step.cfg.data.min_overlap)
        buckets = pd.DataFrame({"symbol": cr.clusters.index, "bucket": cr.clusters.to_numpy(),
                                "direction": directions.reindex(cr.clusters.index).to_numpy()})
        stats = bucket_stats(streams, cr.clusters, cr.corr)
        pairs = top_correlated_pairs(cr.corr, risk.top_pairs)
        folder, _ = step.publish(lambda stage: _images(
            stage,
            ("dendrogram.png", lambda p: plot_dendrogram(cr.linkage, list(cr.clusters.index), p, risk.threshold)),
            ("clustermap.png", lambda p: plot_clustermap(cr.corr, cr.clusters, p, cr.linkage)),
        ))
        yield from step.emit(
            {"risk_buckets": buckets, "risk_buckets__stats": stats, "risk_buckets__pairs": pairs},
            metrics={"symbols": len(buckets), "buckets": int(cr.n_clusters), "cut": cr.criterion,
                     "imputed_pairs": int(cr.n_imputed_pairs)},
            preview=stats,
            extra={
                "top_pairs": preview_md(pairs.head(10)),
                "dendrogram": MetadataValue.path(str(folder / "images" / "dendrogram.png")),
                "clustermap": MetadataValue.path(str(folder / "images" / "clustermap.png")),
            },
        )


@asset(
    **attrs("market_regime", 10),
    ins=after("history_500d", "market_bars"),
    kinds={"python", "parquet", "pywavelets"},
    owners=OWNERS,
    description=(
        "Step 10. Regime on the baseline and the universe, data <= D only: realized-volatility "
        "percentile, turbulence (Mahalanobis distance of the cross-section, percentile), drawdown "
        "from the 252-session high, causal DWT energy shares and wavelet entropy, permutation entropy "
        "— each spectral threshold calibrated against white noise. Labels QUIET/NORMAL/TURBULENT/"
        "CRISIS with hysteresis; volatility judged against its trailing year and against fixed bands and "
        "its 3-year median; feat_spectral_regimes adds an earlier, spectral route into TURBULENT."
    ),
)
def market_regime(context, settings: PortfolioSettings, price_cache: PriceCache, history_500d__returns: pd.DataFrame,
                  history_500d__health: pd.DataFrame, selected_universe: pd.DataFrame):
    """Detect the regime (`quant.regimes.detect_regime`) from the baseline's returns, reaching back over
    the regime warm-up, and the healthy universe's; stores per-session features and labels, and a chart."""
    from portfolio_assets.assets.history import regime_warmup
    from portfolio_assets.quant.regimes import detect_regime
    from portfolio_assets.reports.plots.regime import plot_regime

    with Step(context, settings, price_cache=price_cache) as step:
        rets, _, _ = healthy_returns(step, history_500d__returns, history_500d__health, selected_universe)
        baseline = step.cfg.selection.baseline
        params = step.cfg.regime
        spectral = step.cfg.features.feat_spectral_regimes
        # The baseline's own history reaches a warm-up further back than the 500-session window
        # (volatility percentile, 3-year reference and drawdown need full windows), still data <= D only.
        _, base = fetch_returns(step, [baseline], len(rets) + regime_warmup(step.cfg))
        base = base[baseline]
        base = base.loc[base.first_valid_index():]
        step.params.update(spectral=spectral, baseline_sessions=len(base), **step.cfg.regime.model_dump())
        result = detect_regime(base, rets.drop(columns=[baseline]).reindex(base.index), params, spectral=spectral)
        folder, _ = step.publish(lambda stage: _images(
            stage, ("regime.png", lambda p: plot_regime(result, base, p, kind="returns"))))
        meta = result.metadata()
        yield from step.emit(
            result.features,
            metrics={"label": result.label, "as_of": meta["as_of"], "spectral": spectral,
                     "distribution": meta["counts"], "is_warmup": bool(result.is_warmup)},
            preview=result.features.tail(10).reset_index(),
            extra={"regime_chart": MetadataValue.path(str(folder / "images" / "regime.png")),
                   "features_now": MetadataValue.json(meta["features"])},
        )
