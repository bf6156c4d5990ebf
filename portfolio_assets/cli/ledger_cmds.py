"""`verify-ledger`, `audit`, `recover` and `accept`: the audit ledger from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portfolio_assets.cli.common import (
    EXIT_FAILED,
    EXIT_IN_PROGRESS,
    EXIT_OK,
    EXIT_SIGNATURES_UNCHECKED,
    _err,
    _partition_date,
    _setup_env,
    check_preconditions,
    dagster_home,
    partition_lock,
)
from portfolio_assets.cli.execution import clearance, execute, launcher_gone, summarize_run
from portfolio_assets.cli.selection import selection_keys
from portfolio_assets.manifest import PROJECT_ROOT

if TYPE_CHECKING:
    from dagster import AssetMaterialization


def cmd_verify_ledger(args: argparse.Namespace) -> int:
    """`verify-ledger`: verify an `audit.jsonl` (or a folder holding one) and print the report. Exit 0
    ok, 1 failed, 3 a run is still writing it, 4 signed but no key to check signatures (unless
    `--no-signatures`); a missing ledger raises `ValueError` (exit 2)."""
    from portfolio_assets.ledger import (
        LedgerError,
        format_report,
        read_anchor,
        signer_from_env,
        verify_ledger,
    )

    path = Path(args.path)
    if path.is_dir():
        path = path / "audit.jsonl"
    if not path.exists():
        raise ValueError(f"no ledger at {path}")
    root = Path(args.root) if args.root else _guess_profile_root(path)
    partition, profile = _path_binding(path)
    if args.no_anchor:
        anchor = None
    else:
        try:
            anchor = read_anchor(path)
        except LedgerError as exc:
            anchor = {"invalid": str(exc)}
    report = verify_ledger(path, root=root, signer=signer_from_env(), require_signatures=args.require_signatures or None,
                           partition=partition, profile=profile, anchor=anchor, require_anchor=not args.no_anchor)
    print(format_report(report))
    if not report.ok:
        live = _runs_still_writing(path)
        if live:
            print(f"in progress: run(s) {', '.join(live)} still writing this ledger (Dagster: not finished, their "
                  f"process alive); verify again when they end")
            return EXIT_IN_PROGRESS
        return EXIT_FAILED
    if report.signatures_unchecked and not args.no_signatures:
        _err(f"signatures not checked: {report.signed} of {report.n_records} record(s) are signed but no key is "
             "configured (PA_LEDGER_HMAC_KEY, or PA_LEDGER_ED25519_PUBLIC_KEY to verify without the secret); without "
             "it a re-chained forgery passes every other check (docs/ledger.md). --no-signatures accepts that.")
        return EXIT_SIGNATURES_UNCHECKED
    return EXIT_OK


def _runs_still_writing(path: Path) -> list[str]:
    """Run ids named in the ledger at `path` that Dagster has not seen finish and whose process is
    not known to be gone (a killed run is not "in progress"). Empty without a Dagster home."""
    import json as json_

    ids = []
    with path.open() as fh:
        for line in fh:
            try:
                run_id = json_.loads(line).get("run_id")
            except ValueError:
                continue  # a torn last line: the verifier reports it
            if run_id and run_id not in ids:
                ids.append(run_id)
    if not ids or not (os.environ.get("DAGSTER_HOME") or (PROJECT_ROOT / ".dagster_home").exists()):
        return []
    from dagster import DagsterInstance

    _, ledger_profile = _path_binding(path)
    # The ledger's profile owns the instance that ran it (unless this process already chose a profile);
    # passed explicitly, so checking a ledger does not change the profile of this process.
    dagster_home(os.environ.get("PA_PROFILE") or ledger_profile)
    with DagsterInstance.get() as instance:
        runs = [instance.get_run_by_id(i) for i in ids]
    return [r.run_id for r in runs if r is not None and not r.is_finished and launcher_gone(r) is None]


def _guess_profile_root(path: Path) -> Path | None:
    """`<root>/<profile>/ledger/<date>/audit.jsonl` -> `<root>/<profile>`."""
    parts = path.resolve().parts
    if len(parts) >= 4 and parts[-3] == "ledger":
        return Path(*parts[:-3])
    return None


def _path_binding(path: Path) -> tuple[str | None, str | None]:
    """(partition, profile) a ledger's path names: `<profile>/ledger/<YYYY-MM-DD>/audit.jsonl`; the
    records must be of that partition and profile (a ledger copied from another date fails)."""
    parts = path.resolve().parts
    if len(parts) >= 4 and parts[-3] == "ledger":
        try:
            dt.date.fromisoformat(parts[-2])
        except ValueError:
            return None, None
        return parts[-2], parts[-4]
    return None, None


def _require_stored(profile: str, partition: str, command: str) -> None:
    """`ValueError` (exit 2) when `partition` has no stored table: `audit` and `recover` of a date
    never materialized (a typo, or today before the day's run) are refused before a run that could
    only fail step by step and send error alerts to every sink of the profile."""
    from portfolio_assets.lakehouse import Lakehouse

    if not Lakehouse(profile=profile).partition_files(partition):
        raise ValueError(f"nothing to {command}: partition {partition} of profile {profile!r} has no stored table; "
                         f"materialize it first (portfolio-assets run --profile {profile} --date {partition}); "
                         "nothing was run")


def cmd_audit(args: argparse.Namespace) -> int:
    """Run the blocking gate checks for a partition; non-zero on any failure (never implement then)."""
    resolved = _setup_env(args)
    partition = _partition_date(args.date)
    check_preconditions(resolved)
    _require_stored(resolved.profile, partition, "audit")
    with partition_lock([partition], f"audit --date {partition}"):
        code = summarize_run(execute(partition, None, job="audit"), partition)
    problems = clearance(partition)
    print("implementation: " + ("cleared (every gate passed; ledger verified, sealed and anchored)" if not problems
                                else "REFUSED: " + "; ".join(problems)))
    return code


def cmd_recover(args: argparse.Namespace) -> int:
    """Re-run history recovery and the health gate, then everything downstream of them up to the
    orders, so the re-sealed ledger covers the recovered history (`executions` is only ever written
    by `accept`). A failed gate stops the run there and leaves implementation refused."""
    resolved = _setup_env(args)
    partition = _partition_date(args.date)
    check_preconditions(resolved)
    _require_stored(resolved.profile, partition, "recover")
    keys = [k for k in selection_keys("history_500d*") if k.to_user_string() != "executions"]
    with partition_lock([partition], f"recover --date {partition}"):
        code = summarize_run(execute(partition, keys, {"portfolio_assets/recover": "true"}), partition)
    problems = clearance(partition)
    print("implementation: " + ("cleared (every gate passed; ledger verified, sealed and anchored)" if not problems
                                else "REFUSED: " + "; ".join(problems)))
    return code


def cmd_accept(args: argparse.Namespace) -> int:
    """Record what was executed of a partition's orders (the `executions` asset)."""
    resolved = _setup_env(args)
    partition = _partition_date(args.date)
    check_preconditions(resolved)
    with partition_lock([partition], f"accept --date {partition}"):
        return _accept(args, resolved, partition)


def _data_version(materialization: AssetMaterialization | None) -> str:
    """The Dagster data version a materialization was tagged with ("unknown" without one)."""
    if materialization is None:
        raise ValueError("the stored orders have no materialization event to accept")
    return (materialization.tags or {}).get("dagster/data_version", "unknown")


def _accept(args: argparse.Namespace, resolved: Any, partition: str) -> int:
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

    from portfolio_assets.assets.gates import implementation_clearance
    from portfolio_assets.holdings import executed_orders, read_fills
    from portfolio_assets.lakehouse import Lakehouse
    from portfolio_assets.resources import PortfolioSettings

    lake = Lakehouse(profile=resolved.profile)
    with DagsterInstance.get() as instance:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("implementation_orders"), asset_partitions=[partition]), limit=1).records
        if not records or not lake.has_table("implementation", "implementation_orders", partition):
            raise ValueError(f"no implementation_orders for {partition} in profile {resolved.profile}: nothing to accept")
        # The same rule as implementation_orders: gates, and the ledger as it is on disk now.
        problems = implementation_clearance(instance, PortfolioSettings(), partition)
        if problems:
            raise ValueError(f"refusing to accept {partition} (nothing booked): " + "; ".join(problems))
    orders = lake.read_table("implementation", "implementation_orders", partition)
    if orders.empty:
        raise ValueError(f"the orders of {partition} were refused (no orders stored): nothing to accept")
    not_traded = [s.strip() for s in (args.not_traded or "").split(",") if s.strip()]
    fills = read_fills(Path(args.fills)) if args.fills else None
    trades = executed_orders(orders, not_traded=not_traded, fills=fills)
    config = {"trades": trades.to_dict("records"),
              "orders_version": _data_version(records[0].asset_materialization)}
    result = execute(partition, None, {"portfolio_assets/accept": "true"}, job="accept",
                     run_config={"ops": {"executions": {"config": config}}})
    code = summarize_run(result, partition)
    if code == EXIT_OK:
        executed = int((trades["delta_net_weight"] != 0).sum())
        print(f"accepted {partition}: {executed} of {len(trades)} order(s) executed; the book of the next session "
              f"(`holdings`) includes them")
    return code
