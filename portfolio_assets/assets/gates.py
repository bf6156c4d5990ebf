"""Gate decisions, read from Dagster's own check records.

Dagster's blocking holds only inside one run. A later run of `implementation_orders` (or
`accept`) therefore asks Dagster, for each blocking gate, for its latest evaluation on the
partition and refuses unless it passed (or only warned) *and* was made on the data stored now:
the evaluation's target materialization must be the checked asset's latest materialization of
that partition (a re-materialized `target_weights` after its check "predates the stored data").
A missing evaluation or a failed one refuses too, with the reason.
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
