"""Step 1: the run manifest — resolved profile, versions, and the ledger genesis."""

from __future__ import annotations

import json

import pandas as pd
from dagster import MetadataValue, asset

from portfolio_assets.assets._step import Step, genesis_payload, ledger_for
from portfolio_assets.assets.common import DATA_OWNERS, attrs
from portfolio_assets.partitions import validate_partition_date
from portfolio_assets.resources import PortfolioSettings


@asset(
    **attrs("run_manifest", 1),
    kinds={"python", "parquet"},
    owners=DATA_OWNERS,
    description=(
        "Step 1. The resolved profile (CLI > PA_* env > profile > defaults > code), a snapshot of the "
        "manifest, code and package versions. A run from step 1 starts a new ledger chain: the "
        "partition's previous ledger is archived and the genesis written. Other assets' files are "
        "never touched: each asset replaces only its own."
    ),
)
def run_manifest(context, settings: PortfolioSettings):
    """Validate the partition date, archive the partition's previous ledger and write the genesis
    (when feat_audit_ledger is on), then store one row of profile, hashes, versions and config."""
    validate_partition_date(context.partition_key)  # before the previous ledger is archived
    resolved = settings.resolved()
    ledger = ledger_for(settings, context.partition_key)
    archived = None
    if ledger is not None:
        archived = ledger.archive()
        ledger.genesis(context.run_id, {**genesis_payload(resolved),
                                        "archived_previous_ledger": str(archived) if archived else None})
    with Step(context, settings, params={"profile": resolved.profile}) as step:
        snap = genesis_payload(resolved)
        table = pd.DataFrame([{
            "partition": step.partition,
            "profile": resolved.profile,
            "resolved_from": " -> ".join(resolved.resolved_from),
            "manifest_sha256": resolved.manifest_sha256,
            "config_hash": resolved.config_hash,
            "code_version": snap["code_version"],
            "config_json": json.dumps(resolved.config.model_dump(mode="json"), sort_keys=True),
            "overrides_json": json.dumps(resolved.overrides, sort_keys=True),
            "package_versions_json": json.dumps(snap["package_versions"], sort_keys=True),
        }])
        yield from step.emit(table, metrics={"source": resolved.config.source.kind}, extra={
            "resolved_from": " -> ".join(resolved.resolved_from),
            "config_hash": resolved.config_hash,
            "features": MetadataValue.json(resolved.config.features.model_dump()),
            "code_version": snap["code_version"],
            "ledger_archived": str(archived) if archived else "none",
        })
