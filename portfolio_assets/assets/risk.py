"""Steps 9-10: hierarchical risk buckets and the market regime."""

from __future__ import annotations

import pandas as pd
from dagster import MetadataValue, asset

from portfolio_assets.assets._step import Step, preview_md
from portfolio_assets.assets.common import OWNERS, PARTITIONS
from portfolio_assets.assets.history import healthy_returns
from portfolio_assets.assets.universe import fetch_returns
from portfolio_assets.quant.convention import synthetic_long
from portfolio_assets.resources import PortfolioSettings


@asset(
    group_name="risk",
    partitions_def=PARTITIONS,
    deps=["history_500d"],
    kinds={"python", "parquet", "scipy"},
    owners=OWNERS,
    description=(
        "Step 9. Ward-linkage risk buckets on the 500-session pairwise (coverage-aware) correlation of "
        "the synthetic-long streams; distance sqrt(0.5(1-rho)), cut at `risk.threshold` or "
        "`risk.max_clusters`. Parts: `stats` (size, mean intra-rho, vol, lead asset), `pairs` (top "
        "correlated pairs). Images: dendrogram and clustermap."
    ),
)
def risk_buckets(context, settings: PortfolioSettings):
    from portfolio_assets.quant.clustering import bucket_stats, hierarchical_clusters, top_correlated_pairs
    from portfolio_assets.reports.plots.clusters import plot_clustermap, plot_dendrogram

    with Step(context, settings, "risk_buckets", "risk") as step:
        risk = step.cfg.risk
        rets, directions, dropped = healthy_returns(step)
        streams = synthetic_long(rets, directions)
        step.params.update(threshold=risk.threshold, max_clusters=risk.max_clusters, dropped=dropped)
        cr = hierarchical_clusters(streams, threshold=risk.threshold, max_clusters=risk.max_clusters,
                                   min_overlap=step.cfg.data.min_overlap)
        buckets = pd.DataFrame({"symbol": cr.clusters.index, "bucket": cr.clusters.to_numpy(),
                                "direction": directions.reindex(cr.clusters.index).to_numpy()})
        stats = bucket_stats(streams, cr.clusters, cr.corr)
        pairs = top_correlated_pairs(cr.corr, risk.top_pairs)
        step.write(buckets)
        step.write(stats, part="stats")
        step.write(pairs, part="pairs")
        dendro = step.write_with("images/dendrogram.png",
                                 lambda p: plot_dendrogram(cr.linkage, list(cr.clusters.index), p, risk.threshold))
        cmap = step.write_with("images/clustermap.png", lambda p: plot_clustermap(cr.corr, cr.clusters, p, cr.linkage))
        return step.result(
            metrics={"symbols": len(buckets), "buckets": int(cr.n_clusters), "cut": cr.criterion,
                     "imputed_pairs": int(cr.n_imputed_pairs)},
            preview=stats,
            extra={
                "top_pairs": preview_md(pairs.head(10)),
                "dendrogram": MetadataValue.path(str(dendro)),
                "clustermap": MetadataValue.path(str(cmap)),
            },
        )


@asset(
    group_name="risk",
    partitions_def=PARTITIONS,
    deps=["history_500d"],
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
def market_regime(context, settings: PortfolioSettings):
    from portfolio_assets.quant.regimes import detect_regime, history_sessions
    from portfolio_assets.reports.plots.regime import plot_regime

    with Step(context, settings, "market_regime", "risk") as step:
        rets, _, _ = healthy_returns(step)
        baseline = step.cfg.selection.baseline
        params = step.cfg.regime
        spectral = step.cfg.features.feat_spectral_regimes
        # The baseline's own history reaches a warm-up further back than the 500-session window
        # (volatility percentile, 3-year reference and drawdown need full windows), still data <= D only.
        warmup = history_sessions(params)
        _, base = fetch_returns(step, [baseline], len(rets) + warmup)
        base = base[baseline]
        base = base.loc[base.first_valid_index():]
        step.params.update(spectral=spectral, baseline_sessions=len(base), **step.cfg.regime.model_dump())
        result = detect_regime(base, rets.drop(columns=[baseline]).reindex(base.index), params, spectral=spectral)
        step.write(result.features)
        chart = step.write_with("images/regime.png", lambda p: plot_regime(result, base, p, kind="returns"))
        meta = result.metadata()
        return step.result(
            metrics={"label": result.label, "as_of": meta["as_of"], "spectral": spectral,
                     "distribution": meta["counts"], "is_warmup": bool(result.is_warmup)},
            preview=result.features.tail(10).reset_index(),
            extra={"regime_chart": MetadataValue.path(str(chart)), "features_now": MetadataValue.json(meta["features"])},
        )
