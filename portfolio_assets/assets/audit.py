"""Step 14: close the partition's audit ledger, and the blocking `ledger_integrity` check."""

from __future__ import annotations

import time

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue, asset, asset_check

from portfolio_assets.assets._step import Step, ledger_for
from portfolio_assets.assets.common import DATA_OWNERS, PARTITIONS, after, attrs
from portfolio_assets.ledger import signer_from_env, verify_ledger
from portfolio_assets.resources import PortfolioSettings


def _verify(settings: PortfolioSettings, partition: str):
    cfg = settings.resolved().config
    lake = settings.lakehouse()
    t0 = time.perf_counter()
    report = verify_ledger(lake.ledger_path(partition), root=lake.root, signer=signer_from_env(),
                           require_signatures=cfg.ledger.require_signatures or None, partition=partition)
    return report, time.perf_counter() - t0


def _report_table(report) -> pd.DataFrame:
    return pd.DataFrame([{"check": c.name, "status": c.status, "detail": c.detail, "errors": " | ".join(c.errors)}
                         for c in report.checks])


@asset(
    **attrs("audit_ledger", 14),
    ins=after("reports", "golden_artifacts", "tournament", "target_weights"),
    kinds={"python", "parquet"},
    owners=DATA_OWNERS,
    description=(
        "Step 14. Closes the partition's hash-chained ledger (`ledger/<date>/audit.jsonl`) with a "
        "close record and stores what a verification of the whole chain found (links, hashes, "
        "intent/outcome pairs, every recorded output against the file on disk, signatures)."
    ),
)
def audit_ledger(context, settings: PortfolioSettings):
    enabled = settings.resolved().config.features.feat_audit_ledger
    # Verify the chain as the pipeline left it, before this asset's own intent is appended.
    before, seconds = _verify(settings, context.partition_key) if enabled else (None, 0.0)
    with Step(context, settings) as step:
        if before is None:
            context.log.warning("feat_audit_ledger is off: no ledger was written for this partition")
            table = pd.DataFrame([{"check": "ledger", "status": "disabled", "detail": "feat_audit_ledger is off",
                                   "errors": ""}])
            yield from step.emit(table, extra={"ledger": "disabled (feat_audit_ledger off)"})
            return
        table = _report_table(before)
        records = len(step.ledger.records())
        yield from step.emit(
            table,
            metrics={"records": records, "verified_ok": bool(before.ok), "verify_seconds": round(seconds, 4),
                     "ledger_bytes": step.lake.ledger_path(step.partition).stat().st_size},
            preview=table[["check", "status", "detail"]],
            extra={"ledger": MetadataValue.path(str(step.lake.ledger_path(step.partition)))},
        )
    ledger_for(settings, step.partition).close(step.run_id, {"records_before_close": records, "verified_ok": bool(before.ok)})


@asset_check(
    asset="audit_ledger",
    blocking=True,
    partitions_def=PARTITIONS,
    description=(
        "Blocking. Verifies the partition's ledger now: every prev_hash link, every record hash from "
        "canonical JSON, intent/outcome pairing, every recorded output hash against the file on disk, "
        "and signatures when a key is configured. A failure leaves no orders."
    ),
)
def ledger_integrity(context, settings: PortfolioSettings) -> AssetCheckResult:
    if not settings.resolved().config.features.feat_audit_ledger:
        # The operator turned the ledger off: nothing to verify. A WARN (recorded, alerted), not a pass.
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN,
                                description="feat_audit_ledger is off: no ledger to verify")
    report, seconds = _verify(settings, context.partition_key)
    errors = list(report.errors)
    description = (f"{report.n_records} records verified in {seconds * 1000:.0f} ms" if report.ok
                   else f"{len(errors)} problem(s): " + " | ".join(errors[:10]))
    return AssetCheckResult(
        passed=report.ok, severity=AssetCheckSeverity.ERROR, description=description[:1000],
        metadata={"records": report.n_records, "errors": MetadataValue.json(errors[:50]),
                  "checks": MetadataValue.md("\n".join(f"- {c.name}: {c.status} {c.detail}" for c in report.checks))},
    )
