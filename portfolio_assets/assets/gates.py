"""Gate decisions, read from Dagster's own check records.

Dagster's blocking holds only inside one run. A later run of `implementation_orders` (or
`accept`) therefore asks Dagster, for each blocking gate, for its latest evaluation on the
partition and refuses unless it passed (or only warned) *and* was made on the data stored now:
the evaluation's target materialization must be the checked asset's latest materialization of
that partition (a re-materialized `target_weights` after its check "predates the stored data").
A missing evaluation or a failed one refuses too, with the reason.

`implementation_clearance` adds the ledger as it is on disk at decision time (verified, sealed,
anchored): the one rule implementation_orders, `accept`, `status` and the run summary apply.
"""

from __future__ import annotations

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
)

GATES = (
    AssetCheckKey(AssetKey("history_500d"), "health_gate"),
    AssetCheckKey(AssetKey("target_weights"), "weights_sanity"),
    AssetCheckKey(AssetKey("audit_ledger"), "ledger_integrity"),
)
HISTORY_PAGE = 100


def latest_evaluation(instance: DagsterInstance, check: AssetCheckKey, partition: str) -> AssetCheckEvaluation | None:
    """The most recent evaluation of `check` for `partition` (None if it never ran there)."""
    cursor = None
    while True:
        records = instance.event_log_storage.get_asset_check_execution_history(check, limit=HISTORY_PAGE, cursor=cursor)
        for record in records:
            event = record.event.dagster_event if record.event else None
            evaluation = event.event_specific_data if event is not None else None
            if isinstance(evaluation, AssetCheckEvaluation) and evaluation.partition == partition:
                return evaluation
        if len(records) < HISTORY_PAGE:
            return None
        cursor = records[-1].id


def gate_problems(instance: DagsterInstance, partition: str, gates: tuple[AssetCheckKey, ...] = GATES) -> list[str]:
    """Reasons to refuse implementation (empty list = every gate passed on the current data)."""
    problems = []
    for check in gates:
        evaluation = latest_evaluation(instance, check, partition)
        if evaluation is None:
            problems.append(f"{check.name}: never evaluated for {partition}")
            continue
        if not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR:
            problems.append(f"{check.name}: latest evaluation FAILED ({evaluation.description})")
            continue
        latest = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=check.asset_key, asset_partitions=[partition]), limit=1).records
        target = evaluation.target_materialization_data
        if latest and (target is None or target.storage_id != latest[0].storage_id):
            problems.append(f"{check.name}: latest evaluation predates the stored data of "
                            f"{check.asset_key.to_user_string()}")
    return problems


def gate_summary(instance: DagsterInstance, partition: str) -> dict[str, dict]:
    """`{check: {passed, severity, run_id, description}}` of every gate's latest evaluation: what
    implementation and accept were decided on, recorded in the ledger with their outcome."""
    out = {}
    for check in GATES:
        ev = latest_evaluation(instance, check, partition)
        target = ev.target_materialization_data if ev is not None else None
        out[check.to_user_string()] = None if ev is None else {
            "passed": bool(ev.passed), "severity": ev.severity.value, "description": (ev.description or "")[:300],
            "target_run_id": target.run_id if target is not None else None}
    return out


# Steps whose records may follow the seal: implementing and accepting the sealed partition.
AFTER_SEAL = frozenset({"implementation_orders", "executions"})


def dagster_anchor(instance: DagsterInstance, partition: str) -> dict | None:
    """The ledger head the latest `ledger_integrity` evaluation recorded in Dagster's event log
    (None if it recorded none): the anchor the ledger folder does not hold."""
    evaluation = latest_evaluation(instance, GATES[-1], partition)
    value = evaluation.metadata.get("ledger_head") if evaluation is not None else None
    head = getattr(value, "value", None)
    return head if isinstance(head, dict) and head else None


def seal_problems(records: list[dict], partition: str) -> list[str]:
    """Why the chain is not sealed for implementation: no seal, or a step other than
    implementation/accept wrote after the latest seal (its output was never audited)."""
    seals = [i for i, rec in enumerate(records) if rec.get("kind") == "close" and "seal" in (rec.get("payload") or {})]
    if not seals:
        return [f"the ledger of {partition} is not sealed (no audit_ledger seal: did a run stop before step 14?)"]
    later = [rec for rec in records[seals[-1] + 1:]
             if rec.get("kind") in ("intent", "outcome") and rec.get("asset") not in AFTER_SEAL]
    if later:
        return [f"the ledger of {partition} is not sealed since {later[0].get('asset')} was materialized "
                f"(seq {later[0].get('seq')}): re-run audit_ledger first"]
    return []


def implementation_clearance(instance: DagsterInstance, settings, partition: str) -> list[str]:
    """The one rule for "may this partition be implemented or accepted" (implementation_orders,
    `accept`, `status`, the run summary). Empty list = yes; else every reason, decided now:

    * every blocking gate's latest evaluation passed, on the data stored now (`gate_problems`);
    * the ledger file, read now, verifies (links, hashes, pairing, artifacts, signatures, binding,
      price data) and ends sealed by audit_ledger, its head anchored in `HEAD.json`;
    * the record Dagster's copy of the anchor names (in the `ledger_integrity` evaluation) is in
      the chain with that hash, so cutting the file and its HEAD.json is detected too;
    * a signed ledger is refused when no key is configured to check its signatures.
    """
    from portfolio_assets.assets.audit import verify_partition
    from portfolio_assets.ledger import Ledger, LedgerError

    problems = gate_problems(instance, partition)
    resolved = settings.resolved()
    if not resolved.config.features.feat_audit_ledger:
        return problems  # the operator turned the ledger off: ledger_integrity WARNs, recorded
    lake = settings.lakehouse()
    path = lake.ledger_path(partition)
    if not path.exists():
        return [*problems, f"no ledger for {partition} ({lake.relative(path)} does not exist)"]
    report, _ = verify_partition(settings, partition, require_anchor=True)
    if not report.ok:
        problems.append("the ledger fails verification now: " + " | ".join(report.errors[:5])
                        + (f" (+{len(report.errors) - 5} more)" if len(report.errors) > 5 else ""))
    if report.signatures_unchecked:
        problems.append(f"signatures not checked: {report.signed} record(s) are signed but no key is configured")
    try:
        records = Ledger(path, partition).records()
    except LedgerError as exc:
        return [*problems, f"the ledger cannot be read: {exc}"]
    problems += seal_problems(records, partition)
    head = dagster_anchor(instance, partition)
    if head is not None:
        by_seq = {rec.get("seq"): rec for rec in records}
        rec = by_seq.get(head.get("seq"))
        if rec is None or rec.get("hash") != head.get("hash"):
            problems.append(f"the ledger does not contain the head Dagster recorded (seq {head.get('seq')}, "
                            f"{str(head.get('hash'))[:16]}...): it was truncated or replaced")
    return problems
