"""Shared asset declarations: partitions, owners, the asset-key contract of SPEC §2."""

from __future__ import annotations

import warnings

from dagster import PreviewWarning

from portfolio_assets.partitions import trading_date_partitions

# Partitioned asset checks (one evaluation per trading date) are a preview feature in dagster 1.13.
warnings.filterwarnings("ignore", category=PreviewWarning)

PARTITIONS = trading_date_partitions()
OWNERS = ["team:quant-research"]
DATA_OWNERS = ["team:data-engineering"]
FAMILIES = ("equity", "crypto", "bond", "forex")

# step number -> asset keys (the runbook's 14 steps; implementation after 14)
STEPS: dict[int, tuple[str, ...]] = {
    1: ("run_manifest",),
    2: tuple(f"{f}_scan" for f in FAMILIES),
    3: ("raw_pool",),
    4: ("returns_60d",),
    5: ("selected_universe",),
    6: ("enriched_universe",),
    7: ("history_500d", "raw_pool_history"),
    8: (),  # the health_gate check on history_500d
    9: ("risk_buckets",),
    10: ("market_regime",),
    11: ("target_weights",),
    12: ("tournament",),
    13: ("reports", "golden_artifacts"),
    14: ("audit_ledger",),
    15: ("implementation_orders",),
}
