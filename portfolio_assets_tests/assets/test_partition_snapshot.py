"""The stored tables of one `development` partition, against a committed snapshot of their content.

Issue 16 ("keep behaviour"): moving code around must not change a result. The session's
`development` run for DEV_DATE (the shared `dev_lakehouse` fixture: no extra graph run) stores every
asset table as `<group>/<asset>/<date>.parquet`; this test hashes each table's content (the ledger's
`frame_hash`, so the same data gives the same hash in every process) and compares the hashes with
`partition_snapshot.json`. A change to the set of tables or to any table's content fails with the
list of tables that differ.

Excluded from the hashes, because they differ between two runs of the same code on the same inputs
or between two commits with the same behaviour:

* `run/run_manifest`: `code_version` (the git commit, `+dirty` in a modified checkout) and
  `package_versions_json` (the installed packages) -- they describe the checkout, not the result;
* any column named in `VOLATILE_COLUMNS`, in whichever table: wall-clock times (`materialized_at`,
  `started_at`, `created_at`, `ts`) and Dagster run ids (`run_id`). No table stores one today (the
  ledger and Dagster's event log hold them; `test_determinism` finds two fresh runs' tables equal), so
  this only keeps a later one from making the snapshot fail on every run.

Every other column of every table counts. Regenerate after an intended change of results, then
review and commit the JSON diff (and bump the area version in `versions.py`):

    PA_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest portfolio_assets_tests/assets/test_partition_snapshot.py -q
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from portfolio_assets.ledger import frame_hash
from portfolio_assets_tests.conftest import DEV_DATE, DEV_PROFILE, table_paths

pytestmark = pytest.mark.slow

SNAPSHOT = Path(__file__).with_name("partition_snapshot.json")
# Columns that hold wall-clock times or run ids (dropped from any table that has them).
VOLATILE_COLUMNS = frozenset({"materialized_at", "started_at", "created_at", "ts", "run_id"})
# Per-table columns that describe the checkout and its environment, not the result.
CHECKOUT_COLUMNS = {"run/run_manifest": frozenset({"code_version", "package_versions_json"})}


def content_hashes(root: Path, partition: str) -> dict[str, dict[str, object]]:
    """`{<group>/<asset>: {"hash": frame_hash of the kept columns, "dropped": [...], "rows": n}}`."""
    out: dict[str, dict[str, object]] = {}
    for path in table_paths(root, partition):
        table = path.parent.relative_to(root).as_posix()
        frame = pd.read_parquet(path)
        excluded = VOLATILE_COLUMNS | CHECKOUT_COLUMNS.get(table, frozenset())
        dropped = sorted(c for c in frame.columns if c in excluded)
        out[table] = {"hash": frame_hash(frame.drop(columns=dropped)), "dropped": dropped, "rows": len(frame)}
    return out


def test_content_hashes_ignore_only_the_excluded_columns():
    """The hash changes with any kept value and ignores the excluded columns."""
    frame = pd.DataFrame({"symbol": ["A", "B"], "weight": [0.4, 0.6], "run_id": ["r1", "r1"]})
    base = frame_hash(frame.drop(columns=["run_id"]))
    other_run = frame.assign(run_id=["r2", "r2"]).drop(columns=["run_id"])
    assert frame_hash(other_run) == base
    assert frame_hash(frame.assign(weight=[0.4, 0.6000001]).drop(columns=["run_id"])) != base


def test_partition_tables_match_snapshot(dev_lakehouse):
    assert dev_lakehouse.profile == DEV_PROFILE
    actual = content_hashes(dev_lakehouse.root, DEV_DATE)
    assert len(actual) > 25, f"too few tables stored for {DEV_DATE}: {sorted(actual)}"
    if os.environ.get("PA_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps({"profile": DEV_PROFILE, "partition": DEV_DATE, "tables": actual},
                                       indent=2, sort_keys=True) + "\n")
    assert SNAPSHOT.exists(), f"no {SNAPSHOT.name}: run with PA_UPDATE_SNAPSHOT=1 to create it"
    expected = json.loads(SNAPSHOT.read_text())
    assert (expected["profile"], expected["partition"]) == (DEV_PROFILE, DEV_DATE)
    recorded = expected["tables"]
    added, removed = sorted(actual.keys() - recorded.keys()), sorted(recorded.keys() - actual.keys())
    changed = sorted(t for t in actual.keys() & recorded.keys() if actual[t] != recorded[t])
    assert not (added or removed or changed), (
        f"stored tables of {DEV_PROFILE} {DEV_DATE} differ from {SNAPSHOT.name} (if intended, rerun with "
        f"PA_UPDATE_SNAPSHOT=1 and review the diff): new {added}, gone {removed}, content changed {changed}")
