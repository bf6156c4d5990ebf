"""Step 13: tear-sheets and comparison dashboards, and the curated golden bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
from dagster import AssetIn, AssetKey, BackfillPolicy, MetadataValue, TimeWindowPartitionMapping, asset

from portfolio_assets.assets._previous import PRIORITY_TAG, reread, wait_for_writer
from portfolio_assets.assets._step import Step, emit_range, previous_sessions, range_steps
from portfolio_assets.assets.common import OWNERS, after, attrs
from portfolio_assets.ledger import file_hash
from portfolio_assets.partitions import sessions_window
from portfolio_assets.resources import PortfolioSettings

# Files of other assets the reports link to, copied into the reports folder so it is complete.
LINKED_FILES = ("history_500d", "risk_buckets", "market_regime")
# The previous session's target weights, for the reports' "what changed since the previous session".
PREVIOUS_SESSION = TimeWindowPartitionMapping(start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True)
TARGET_KEY = AssetKey("target_weights")


def _files_table(root: Path, paths: list[Path]) -> pd.DataFrame:
    rows = [{"file": str(p.relative_to(root)), "bytes": p.stat().st_size, "hash": file_hash(p)} for p in paths]
    return pd.DataFrame(rows, columns=["file", "bytes", "hash"])


def _funnel(selection_audit: pd.DataFrame, raw_pool_audit: pd.DataFrame, winners: pd.DataFrame) -> dict[str, int]:
    """scanned rows -> raw pool -> candidates with data -> clusters -> winners, and why losers lost."""
    with_data = selection_audit[selection_audit["outcome"] != "insufficient_data"]
    funnel = {
        "scanned": int(raw_pool_audit.loc[raw_pool_audit["stage"] == "scanned", "count"].sum()),
        "raw": len(selection_audit),
        "with_data": len(with_data),
        "clusters": int(with_data["cluster"].nunique()),
        "winners": len(winners),
    }
    lost = selection_audit.loc[~selection_audit["selected"], "outcome"].value_counts()
    funnel.update({f"lost_{k}": int(v) for k, v in lost.items()})
    return funnel


PREVIOUS_TARGET_COLUMNS = ("symbol", "engine", "net_weight", "is_production")


def previous_production(target: pd.DataFrame | None) -> pd.DataFrame:
    """The production rows of a session's `target_weights` (an empty table when none is stored)."""
    if target is None:
        return pd.DataFrame({"symbol": pd.Series(dtype=str), "engine": pd.Series(dtype=str),
                             "net_weight": pd.Series(dtype=float), "is_production": pd.Series(dtype=bool)})
    return target.loc[target["is_production"].astype(bool), list(PREVIOUS_TARGET_COLUMNS)].reset_index(drop=True)


@asset(
    **attrs("previous_target", 13),
    ins={"previous": AssetIn("target_weights", partition_mapping=PREVIOUS_SESSION, metadata={"by_partition": True})},
    backfill_policy=BackfillPolicy.single_run(),
    # Last among the steps ready in a run (it reads nothing of its own date): in a run beside the
    # previous date's, it waits for that date's target only once everything else of its own is done.
    op_tags={PRIORITY_TAG: "-1"},
    kinds={"python", "parquet"},
    owners=OWNERS,
    description=(
        "The previous session's production target (its `target_weights` rows with is_production), "
        "against which the reports' index says what changed since the previous session; empty when "
        "that session has no stored target (a first or single-date run). An input on the previous "
        "session's target, not on its reports: a backfill builds the previous target first, so what is "
        "compared never depends on scheduling, and the dates' reports do not wait for one another. "
        "A backfill computes the range in one run (single-run backfill policy), one ledger record pair "
        "per date."
    ),
)
def previous_target(context, settings: PortfolioSettings, previous: dict):
    """Per partition of the range, the production rows of the previous session's stored
    `target_weights` (`previous_production`; empty when that session has none)."""
    sessions = previous_sessions(context, "previous")
    lake = settings.lakehouse()
    refusal = None  # a previous session still being written after WRITER_WAIT_S: refused in the steps
    for partition, session in sessions.items():  # consecutive dates run at once: wait for their targets
        if session is None:
            continue
        writer, waited = wait_for_writer(context, lake, TARGET_KEY, session)
        if writer is not None:
            refusal = (f"the previous target of {partition} is the target of {session}, still being written "
                       f"({writer}) after {waited:.0f} s: run {partition} again once that has finished")
            break
        if waited:
            reread(lake, "allocation", TARGET_KEY, session, previous)
    with range_steps(context, settings, sessions, shifted=("previous",)) as steps:
        if refusal is not None:
            raise ValueError(refusal)
        tables = {}
        for partition, session in sessions.items():
            stored = previous.get(session) if session is not None else None
            tables[partition] = table = previous_production(stored)
            steps[partition].params.update(previous_session=session, stored=stored is not None)
            steps[partition].metrics = {"previous_session": session or "none", "stored": stored is not None,
                                        "positions": len(table)}
        yield from emit_range(context, steps, tables)


@asset(
    **attrs("reports", 13),
    ins={"summary": AssetIn("tournament"), "windows": AssetIn("tournament__windows"),
         "returns": AssetIn("tournament__returns"), "weights": AssetIn("target_weights"),
         "selection_audit": AssetIn("selected_universe__audit"), "raw_pool_audit": AssetIn("raw_pool__audit"),
         "health": AssetIn("history_500d__health"), "bucket_stats": AssetIn("risk_buckets__stats"),
         "pairs": AssetIn("risk_buckets__pairs"), "diagnostics": AssetIn("target_weights__diagnostics"),
         "holdings": AssetIn("holdings"), "previous_target": AssetIn("previous_target"),
         **after("history_500d", "risk_buckets")},
    kinds={"python", "html", "markdown"},
    owners=OWNERS,
    description=(
        "Step 13. QuantStats HTML tear-sheets (benchmark = the baseline's own return series, offline) "
        "and Markdown tear-sheets for the production engine and the top engines per simulator; "
        "engine_comparison_report.md, backtest_comparison.md, alpha_isolation_audit.md, "
        "slippage_decay_audit.md (feat_decay_audit), selection_audit.md, weights, regime, buckets, "
        "equity curves, and an index (Markdown + HTML) that opens with the decision (production engine, "
        "its rank and flags, regime and why), today's proposed orders from the book, and what changed "
        "since the previous session, then links everything. Synthetic data and a look-ahead tournament "
        "(feat_pit_fidelity off) are bannered. The folder `reports/<date>` is replaced as a whole, atomically."
    ),
)
def reports(context, settings: PortfolioSettings, summary: pd.DataFrame, windows: pd.DataFrame,
            returns: pd.DataFrame, weights: pd.DataFrame, selection_audit: pd.DataFrame, raw_pool_audit: pd.DataFrame,
            health: pd.DataFrame, bucket_stats: pd.DataFrame, pairs: pd.DataFrame, selected_universe: pd.DataFrame,
            market_regime: pd.DataFrame, diagnostics: pd.DataFrame, holdings: pd.DataFrame,
            previous_target: pd.DataFrame):
    """Build every report (`reports.builder.build_reports`) with the linked history, risk and regime
    files copied in; publish the folder `reports/<date>` atomically and store its file table."""
    import logging

    from portfolio_assets.reports.builder import ReportInputs, build_reports

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    with Step(context, settings) as step:
        cfg = step.cfg
        stored = not previous_target.empty  # a stored target always has production rows
        previous_session = sessions_window(step.partition, 2)[0].strftime("%Y-%m-%d")
        step.params.update(previous_weights=f"{previous_session}: {'stored' if stored else 'not stored'}")
        previous_partition = previous_session if stored else None
        previous_weights = previous_target if stored else None
        inputs = ReportInputs(
            partition=step.partition, profile=step.resolved.profile,
            production_engine=cfg.optimization.production_engine, baseline=cfg.selection.baseline,
            summary=summary, windows=windows, returns=returns, weights=weights,
            selection_audit=selection_audit, raw_pool_audit=raw_pool_audit,
            funnel=_funnel(selection_audit, raw_pool_audit, selected_universe),
            health=health, bucket_stats=bucket_stats, pairs=pairs,
            regime=market_regime, regime_label=str(market_regime["label"].iloc[-1]),
            features=cfg.features.model_dump(), top_engines=cfg.reports.top_engines,
            quantstats_html=cfg.reports.quantstats_html, quantstats_pages=cfg.reports.quantstats_pages,
            say=context.log.info,
            source_kind=cfg.source.kind, pit_fidelity=cfg.features.feat_pit_fidelity, diagnostics=diagnostics,
            holdings=holdings, partial_rebalance=cfg.features.feat_partial_rebalance,
            previous_weights=previous_weights, previous_partition=previous_partition,
        )

        def build(stage: Path) -> pd.DataFrame:
            for asset_name in LINKED_FILES:
                folder = step.lake.files_dir(asset_name, step.partition)
                if folder.exists():
                    shutil.copytree(folder, stage, dirs_exist_ok=True)
            return _files_table(stage, build_reports(inputs, stage))

        folder = step.lake.reports_dir(step.partition)
        _, table = step.publish(build, target=folder)
        yield from step.emit(
            table,
            metrics={"files": len(table), "bytes": int(table["bytes"].sum()),
                     "tearsheets": int(table["file"].str.startswith("tearsheets/").sum())},
            preview=table[["file", "bytes"]],
            extra={"index": MetadataValue.path(str(folder / "index.html"))},
        )


@asset(
    **attrs("golden_artifacts", 13),
    ins=after("reports"),
    kinds={"python", "json"},
    owners=OWNERS,
    description=(
        "The ~32 most important report files copied into `files/golden_artifacts/<date>/golden/` "
        "with a manifest of names and hashes; published to a GitHub Gist only when "
        "`reports.gist.enabled` and the token is in the environment (never stored or logged)."
    ),
)
def golden_artifacts(context, settings: PortfolioSettings):
    """Copy the selected golden report files with their manifest (`reports.golden`) and store the
    manifest table; publish them to a Gist when `reports.gist.enabled` (the token must be set)."""
    from portfolio_assets.reports.golden import select_golden, write_golden

    with Step(context, settings) as step:
        cfg = step.cfg
        root = step.lake.reports_dir(step.partition)
        # Skip hidden names (temp files and staging folders of killed writes).
        files = [p for p in root.rglob("*") if p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(root).parts)]
        selected = select_golden(files, root, cfg.reports.golden_limit, cfg.optimization.production_engine)
        _, golden = step.publish(lambda stage: write_golden(stage, selected, root))
        manifest = json.loads((golden / "golden_manifest.json").read_text())
        table = pd.DataFrame(manifest["files"] if isinstance(manifest, dict) else manifest)
        published = "disabled"
        gist = cfg.reports.gist
        if gist.enabled:
            from portfolio_assets.reports.gist import publish_gist, token_from_env

            token = token_from_env(gist.token_env)
            if token is None:
                raise ValueError(f"reports.gist.enabled but {gist.token_env} is not set in the environment")
            result = publish_gist(golden, token=token, api_base=gist.api_base, gist_id=gist.gist_id,
                                  public=gist.public, description=f"portfolio_assets {step.partition}")
            published = str(result.get("html_url"))
            step.event("gist_published", url=published, files=len(result.get("files", [])),
                       skipped=result.get("skipped", []))
        yield from step.emit(table, metrics={"files": len(table), "limit": cfg.reports.golden_limit, "gist": published},
                             preview=table, extra={"folder": MetadataValue.path(str(golden))})
