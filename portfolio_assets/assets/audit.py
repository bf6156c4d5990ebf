"""Step 14: close the partition's audit ledger, and the blocking `ledger_integrity` check."""

from __future__ import annotations

import time

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue, asset, asset_check

from portfolio_assets.assets._step import Step, ledger_for
from portfolio_assets.assets.common import DATA_OWNERS, PARTITIONS, after, attrs
from portfolio_assets.assets.gates import seal_problems
from portfolio_assets.ledger import (
    Ledger,
    LedgerError,
    read_anchor,
    signer_from_env,
    verify_ledger,
)
from portfolio_assets.resources import PortfolioSettings


def verify_partition(settings: PortfolioSettings, partition: str, *, require_anchor: bool,
                     anchor: dict | None = None):
    """Verify the partition's ledger file as it is on disk now: bound to this partition and
    profile, against its anchor (`HEAD.json`, or `anchor` when given, e.g. Dagster's copy).
    Returns (report, seconds)."""
    resolved = settings.resolved()
    lake = settings.lakehouse()
    path = lake.ledger_path(partition)
    t0 = time.perf_counter()
    if anchor is None:
        try:
            anchor = read_anchor(path)
        except LedgerError as exc:
            anchor = {"partition": None, "profile": None, "seq": None, "hash": None, "invalid": str(exc)}
    report = verify_ledger(path, root=lake.root, signer=signer_from_env(),
                           require_signatures=resolved.config.ledger.require_signatures or None, partition=partition,
                           profile=resolved.profile, anchor=anchor, require_anchor=require_anchor)
    return report, time.perf_counter() - t0


def _verify(settings: PortfolioSettings, partition: str):
    # Inside the run, before the seal: the previous seal's anchor (if any) must still match.
    return verify_partition(settings, partition, require_anchor=False)


def price_data(settings: PortfolioSettings, partition: str) -> dict[str, str]:
    """`{prices/<EXCH__TICKER>@<first day>..<D>: fingerprint}` of the stored bars the partition
    read (the symbols of its `market_bars`, each over its widest window, up to its date): a hash
    of the bars' content, sealed in the ledger and re-hashed from the price store by the verifier."""
    import datetime as dt

    from portfolio_assets.assets.universe import bar_windows
    from portfolio_assets.price_store import price_ref

    lake = settings.lakehouse()
    if not lake.has_table("history", "market_bars", partition):
        return {}
    cfg = settings.resolved().config
    date = dt.date.fromisoformat(partition)
    (history_start, _), (long_start, _) = bar_windows(cfg, date)
    symbols = lake.read_table("history", "market_bars", partition)["symbol"].astype(str)
    store = lake.price_store()
    ranges = {s: (long_start if s == cfg.selection.baseline else history_start, date) for s in sorted(set(symbols))}
    # A symbol the source delivered no bar of in its window was not read: nothing to seal.
    return {price_ref(s, *ranges[s]): h for s, h in store.fingerprints(ranges, skip_missing=True).items()}


def _report_table(report) -> pd.DataFrame:
    return pd.DataFrame([{"check": c.name, "status": c.status, "detail": c.detail, "errors": " | ".join(c.errors)}
                         for c in report.checks])


@asset(
    **attrs("audit_ledger", 14),
    ins=after("reports", "golden_artifacts", "tournament", "target_weights"),
    kinds={"python", "parquet"},
    owners=DATA_OWNERS,
    description=(
        "Step 14. Seals the partition's hash-chained ledger (`ledger/<date>/audit.jsonl`): a close "
        "record with the record count, head hash and the fingerprints of the price data read, "
        "anchored in `HEAD.json` (and in the `ledger_integrity` evaluation); stores what a "
        "verification of the whole chain found (links, hashes, intent/outcome pairs, every recorded "
        "output against the file on disk, signatures, binding, anchor)."
    ),
)
def audit_ledger(context, settings: PortfolioSettings):
    """Verify the ledger as the pipeline left it, store the verification report, then seal the chain
    with the price data read (`price_data`); with feat_audit_ledger off it stores a `disabled` row."""
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
    ledger_for(settings, step.partition).seal(
        step.run_id, step.resolved.profile, price_data(settings, step.partition),
        {"records_before_close": records, "verified_ok": bool(before.ok)})


@asset_check(
    asset="audit_ledger",
    blocking=True,
    partitions_def=PARTITIONS,
    description=(
        "Blocking. Verifies the partition's ledger now: every prev_hash link, every record hash from "
        "canonical JSON, intent/outcome pairing, every recorded output hash against the file on disk, "
        "signatures when a key is configured, partition/profile binding, the seal's price data, and "
        "the anchor (HEAD.json) naming a seal at the chain's end. A failure leaves no orders."
    ),
)
def ledger_integrity(context, settings: PortfolioSettings) -> AssetCheckResult:
    """Blocking check: re-verifies the ledger against its anchor and that it ends sealed; a failure
    is an ERROR and withdraws the stored orders, feat_audit_ledger off is a WARN."""
    if not settings.resolved().config.features.feat_audit_ledger:
        # The operator turned the ledger off: nothing to verify. A WARN (recorded, alerted), not a pass.
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN,
                                description="feat_audit_ledger is off: no ledger to verify")
    # After the seal: the chain must end sealed, and the anchor must name its end.
    report, seconds = verify_partition(settings, context.partition_key, require_anchor=True)
    errors = list(report.errors)
    path = settings.lakehouse().ledger_path(context.partition_key)
    if report.ok:  # verified; and sealed since the last step that is not implementation/accept?
        errors += seal_problems(Ledger(path, context.partition_key).records(), context.partition_key)
    passed = not errors
    description = (f"{report.n_records} records verified in {seconds * 1000:.0f} ms" if passed
                   else f"{len(errors)} problem(s): " + " | ".join(errors[:10]))
    anchor = read_anchor(path) if passed else None
    if not passed:
        from portfolio_assets.assets.implementation import withdraw_orders

        withdraw_orders(context, settings, f"ledger_integrity FAILED: {description[:500]}")
    return AssetCheckResult(
        passed=passed, severity=AssetCheckSeverity.ERROR, description=description[:1000],
        metadata={"records": report.n_records, "errors": MetadataValue.json(errors[:50]),
                  # Dagster's copy of the anchor (an event log the ledger folder does not hold):
                  # implementation and accept check the ledger against it.
                  "ledger_head": MetadataValue.json(anchor or {}),
                  "checks": MetadataValue.md("\n".join(f"- {c.name}: {c.status} {c.detail}" for c in report.checks))},
    )
