"""Shared asset declarations: partitions, owners, and the per-asset attributes every asset carries.

Groups are not written here or on the decorators: `definitions.py` loads each module of this
package with its own name as the group (`assets/universe.py` -> group `universe`).
"""

from __future__ import annotations

import warnings
from typing import Any

from dagster import AssetIn, AssetOut, BetaWarning, Nothing, PreviewWarning

from portfolio_assets.partitions import trading_date_partitions
from portfolio_assets.versions import asset_code_version

# Partitioned asset checks (one evaluation per trading date) are a preview feature in dagster 1.13,
# and `allow_nonexistent_upstream_partitions` (the book's first session) a beta one.
warnings.filterwarnings("ignore", category=PreviewWarning)
warnings.filterwarnings("ignore", category=BetaWarning)

PARTITIONS = trading_date_partitions()
OWNERS = ["team:quant-research"]
DATA_OWNERS = ["team:data-engineering"]
FAMILIES = ("equity", "crypto", "bond", "forex")
STEP_TAG = "runbook/step"  # the runbook step of an asset: `run --start-step N` re-executes steps >= N


def attrs(asset: str, step: int, **extra: Any) -> dict[str, Any]:
    """Partitions, code version (`versions.ASSETS`) and runbook step of an `@asset`."""
    return {"name": asset, "partitions_def": PARTITIONS, "code_version": asset_code_version(asset),
            "tags": {STEP_TAG: str(step)}, **extra}


def outs(asset: str, step: int, parts: dict[str, str], *, owners: list[str], kinds: set[str],
         description: str) -> dict[str, AssetOut]:
    """The outputs of a multi-table step: `asset` and one key `<asset>__<part>` per part (the
    folder names the tables always had), all with the step's code version and runbook step."""
    version, tags = asset_code_version(asset), {STEP_TAG: str(step)}
    common = {"code_version": version, "tags": tags, "owners": owners, "kinds": kinds}
    main = {asset: AssetOut(description=description, **common)}
    return main | {f"{asset}__{part}": AssetOut(description=f"{text} (a table of `{asset}`.)", **common)
                   for part, text in parts.items()}


def after(*keys: str) -> dict[str, AssetIn]:
    """Ordering-only inputs (loaded as nothing): lineage and blocking without reading data.

    Used for `history_500d`, whose blocking `health_gate` must stop every asset that reads any
    history table (Dagster blocks the consumers of the checked key), and for `market_bars`, the
    fingerprint of the source's bars that makes the assets fetching bars stale when a bar changes."""
    return {key: AssetIn(key, dagster_type=Nothing) for key in keys}
