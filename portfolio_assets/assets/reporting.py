"""Step 13: tear-sheets and comparison dashboards, and the curated golden bundle."""

from __future__ import annotations

import json

import pandas as pd
from dagster import MetadataValue, asset

from portfolio_assets.assets._step import Step
from portfolio_assets.assets.common import OWNERS, PARTITIONS
from portfolio_assets.ledger import file_hash
from portfolio_assets.resources import PortfolioSettings


def _files_table(step: Step, paths: list) -> pd.DataFrame:
    root = step.lake.reports_dir(step.partition)
    rows = []
    for path in paths:
        name, digest = str(path.relative_to(root)), file_hash(path)
        step.outputs[f"reports/{name}"] = {"path": step.lake.relative(path), "hash": digest}
        rows.append({"file": name, "bytes": path.stat().st_size, "hash": digest})
    return pd.DataFrame(rows, columns=["file", "bytes", "hash"])


@asset(
    group_name="reporting",
    partitions_def=PARTITIONS,
    deps=["tournament", "target_weights", "selected_universe", "raw_pool", "history_500d", "risk_buckets",
          "market_regime"],
    kinds={"python", "html", "markdown"},
    owners=OWNERS,
    description=(
        "Step 13. QuantStats HTML tear-sheets (benchmark = the baseline's own return series, offline) "
        "and Markdown tear-sheets for the production engine and the top engines per simulator; "
        "engine_comparison_report.md, backtest_comparison.md, alpha_isolation_audit.md, "
        "slippage_decay_audit.md (feat_decay_audit), selection_audit.md, weights, regime, buckets, "
        "equity curves, and an index (Markdown + HTML) linking everything."
    ),
)
def reports(context, settings: PortfolioSettings):
    import logging

    from portfolio_assets.reports.builder import ReportInputs, build_reports

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    with Step(context, settings, "reports", "reporting") as step:
        cfg = step.cfg
        regime = step.read("risk", "market_regime")
        selection = step.read("universe", "selected_universe")
        inputs = ReportInputs(
            partition=step.partition,
            profile=step.resolved.profile,
            production_engine=cfg.optimization.production_engine,
            baseline=cfg.selection.baseline,
            summary=step.read("validation", "tournament"),
            windows=step.read("validation", "tournament", "windows"),
            returns=step.read("validation", "tournament", "returns"),
            weights=step.read("allocation", "target_weights"),
            selection_audit=step.read("universe", "selected_universe", "audit"),
            raw_pool_audit=step.read("universe", "raw_pool", "audit"),
            funnel=_funnel(step, selection),
            health=step.read("history", "history_500d", "health"),
            bucket_stats=step.read("risk", "risk_buckets", "stats"),
            pairs=step.read("risk", "risk_buckets", "pairs"),
            regime=regime,
            regime_label=str(regime["label"].iloc[-1]),
            features=cfg.features.model_dump(),
            top_engines=cfg.reports.top_engines,
            quantstats_html=cfg.reports.quantstats_html,
        )
        written = build_reports(inputs, step.lake.reports_dir(step.partition))
        table = _files_table(step, written)
        step.write(table)
        index = step.lake.reports_dir(step.partition) / "index.html"
        return step.result(
            metrics={"files": len(table), "bytes": int(table["bytes"].sum()),
                     "tearsheets": int(table["file"].str.startswith("tearsheets/").sum())},
            preview=table[["file", "bytes"]],
            extra={"index": MetadataValue.path(str(index))},
        )


def _funnel(step: Step, winners: pd.DataFrame) -> dict[str, int]:
    """scanned rows -> raw pool -> candidates with data -> clusters -> winners, and why losers lost."""
    audit = step.read("universe", "selected_universe", "audit")
    scans = step.read("universe", "raw_pool", "audit")
    with_data = audit[audit["outcome"] != "insufficient_data"]
    funnel = {
        "scanned": int(scans.loc[scans["stage"] == "scanned", "count"].sum()),
        "raw": len(audit),
        "with_data": len(with_data),
        "clusters": int(with_data["cluster"].nunique()),
        "winners": len(winners),
    }
    funnel.update({f"lost_{k}": int(v) for k, v in audit.loc[~audit["selected"], "outcome"].value_counts().items()})
    return funnel


@asset(
    group_name="reporting",
    partitions_def=PARTITIONS,
    deps=["reports"],
    kinds={"python", "json"},
    owners=OWNERS,
    description=(
        "The ~32 most important report files copied into `reports/<date>/golden/` with a manifest of "
        "names and hashes; published to a GitHub Gist only when `reports.gist.enabled` and the token "
        "is in the environment (never stored or logged)."
    ),
)
def golden_artifacts(context, settings: PortfolioSettings):
    from portfolio_assets.reports.golden import select_golden, write_golden

    with Step(context, settings, "golden_artifacts", "reporting") as step:
        cfg = step.cfg
        root = step.lake.reports_dir(step.partition)
        # Skip the bundle itself and hidden names (temp files and staging folders of killed writes).
        files = [p for p in root.rglob("*") if p.is_file() and "golden" not in p.relative_to(root).parts
                 and not any(part.startswith(".") for part in p.relative_to(root).parts)]
        selected = select_golden(files, root, cfg.reports.golden_limit, cfg.optimization.production_engine)
        golden = write_golden(root, selected, root)
        manifest = json.loads((golden / "golden_manifest.json").read_text())
        entries = manifest["files"] if isinstance(manifest, dict) else manifest
        table = pd.DataFrame(entries)
        for path in sorted(golden.rglob("*")):
            if path.is_file():
                step.outputs[f"golden/{path.relative_to(golden)}"] = {"path": step.lake.relative(path),
                                                                       "hash": file_hash(path)}
        step.write(table)
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
        return step.result(
            metrics={"files": len(table), "limit": cfg.reports.golden_limit, "gist": published},
            preview=table,
            extra={"folder": MetadataValue.path(str(golden))},
        )
