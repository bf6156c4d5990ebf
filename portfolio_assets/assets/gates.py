"""Gate records: what each blocking check decided, about which exact data.

Dagster's blocking holds only inside one run. Each gate check therefore also writes a record
`state/gates/<date>/<check>.json` with its verdict and the content hash of every table it
checked. `implementation_orders` refuses unless every gate's latest record passed (or only
warned) *and* was made on the data that is stored now — a re-materialized upstream after the
check, a missing record or a failed one all refuse, with the reason.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from portfolio_assets.lakehouse import atomic_write_bytes
from portfolio_assets.ledger import file_hash
from portfolio_assets.resources import PortfolioSettings

GATES = ("health_gate", "weights_sanity", "ledger_integrity")


def _checked_hashes(settings: PortfolioSettings, partition: str, checked: list[tuple[str, str]]) -> dict[str, str]:
    lake = settings.lakehouse()
    out = {}
    for group, asset in checked:
        path = lake.table_path(group, asset, partition)
        out[f"{group}/{asset}"] = file_hash(path) if path.exists() else "missing"
    return out


def record_gate(
    settings: PortfolioSettings,
    partition: str,
    name: str,
    *,
    passed: bool,
    severity: str,
    description: str,
    checked: list[tuple[str, str]],
    run_id: str,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    record = {
        "check": name,
        "partition": partition,
        "passed": passed,
        "severity": severity,
        "description": description,
        "checked": _checked_hashes(settings, partition, checked),
        "run_id": run_id,
        "evaluated_at": dt.datetime.now(dt.UTC).isoformat(),
        "details": details or {},
    }
    path = settings.lakehouse().state_path(f"gates/{partition}/{name}.json")
    atomic_write_bytes(path, json.dumps(record, indent=2, sort_keys=True, default=str).encode())
    return record


def gate_problems(settings: PortfolioSettings, partition: str, gates: tuple[str, ...] = GATES) -> list[str]:
    """Reasons to refuse implementation (empty list = every gate passed on the current data)."""
    lake = settings.lakehouse()
    problems = []
    for name in gates:
        path = lake.state_path(f"gates/{partition}/{name}.json")
        if not path.exists():
            problems.append(f"{name}: never evaluated for {partition}")
            continue
        record = json.loads(path.read_text())
        if not record["passed"] and record["severity"] == "ERROR":
            problems.append(f"{name}: latest evaluation FAILED ({record['description']})")
            continue
        now = _checked_hashes(settings, partition, [tuple(k.split("/", 1)) for k in record["checked"]])
        stale = [k for k, h in record["checked"].items() if now.get(k) != h]
        if stale:
            problems.append(f"{name}: latest evaluation predates the stored data of {', '.join(stale)}")
    return problems
