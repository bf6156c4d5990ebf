"""`portfolio-assets`: run, re-execute, backfill, stale, accept, audit, status, UI, SQL, versions, bench.

Exit codes: 0 ok; 1 a run or check failed (the reason is printed); 2 bad input (manifest, profile,
date, selection, run id, arguments, a missing signing key, a partition another command is
writing), refused before Dagster is involved; 3 `verify-ledger` of a ledger that a live run is
still writing ("in progress", not a failure); 4 (`verify-ledger`) every check that could run
passed but the ledger is signed and no key was configured to check the signatures.

Selections (`--select`) are Dagster's asset selection syntax, as in the UI (`risk_buckets+` is one
layer downstream, `risk_buckets*` or `risk_buckets+++` all of it); the only addition, Dagster's own
rule for steps that compute several tables at once, is that selecting one table of such a step
selects all of them (`AssetSelection.required_multi_asset_neighbors`).

The package is cut by command group: ``common`` (exit codes, the profile's Dagster instance, the
partition lock), ``selection``, ``execution`` (launch, re-execute, summarize a run), ``run``
(run/backfill/stale), ``ledger_cmds`` (verify-ledger/audit/recover/accept), ``inspection``
(status/versions/sql/manifest-schema), ``ui``, ``data`` (import-closes) and ``bench_cmd``; this
module builds the parser and dispatches (:func:`main`). The names of those modules are re-exported
here (``portfolio_assets.cli.partition_lock`` ...). To monkeypatch a module global (such as
``PROJECT_ROOT``), patch it in the module that reads it (``portfolio_assets.cli.common``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from portfolio_assets.cli.bench_cmd import cmd_bench
from portfolio_assets.cli.common import (
    DAGSTER_YAML,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_IN_PROGRESS,
    EXIT_OK,
    EXIT_SIGNATURES_UNCHECKED,
    PROFILE_TAG,
    PROFILES_DIR,
    WRITER_LOCK,
    _err,
    check_history,
    check_preconditions,
    dagster_home,
    partition_lock,
)
from portfolio_assets.cli.data import cmd_import_closes
from portfolio_assets.cli.execution import (
    LAUNCHER_TAG,
    clearance,
    execute,
    launcher_gone,
    reexecute,
    runbook_steps,
    start_step_selection,
    summarize_run,
    where_outputs,
)
from portfolio_assets.cli.inspection import cmd_manifest_schema, cmd_sql, cmd_status, cmd_versions
from portfolio_assets.cli.ledger_cmds import cmd_accept, cmd_audit, cmd_recover, cmd_verify_ledger
from portfolio_assets.cli.run import STALE_ROUNDS, cmd_backfill, cmd_run, cmd_stale
from portfolio_assets.cli.selection import missing_upstream, missing_upstream_message, selection_keys
from portfolio_assets.cli.ui import DAGSTER_DEV_LAUNCHER, cmd_ui
from portfolio_assets.manifest import PROJECT_ROOT, ManifestError, parse_cli_overrides, resolve

__all__ = [
    "DAGSTER_DEV_LAUNCHER",
    "DAGSTER_YAML",
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_IN_PROGRESS",
    "EXIT_OK",
    "EXIT_SIGNATURES_UNCHECKED",
    "LAUNCHER_TAG",
    "ManifestError",
    "PROFILES_DIR",
    "PROFILE_TAG",
    "PROJECT_ROOT",
    "STALE_ROUNDS",
    "WRITER_LOCK",
    "build_parser",
    "check_history",
    "check_preconditions",
    "clearance",
    "cmd_accept",
    "cmd_audit",
    "cmd_backfill",
    "cmd_bench",
    "cmd_import_closes",
    "cmd_manifest_schema",
    "cmd_recover",
    "cmd_run",
    "cmd_sql",
    "cmd_stale",
    "cmd_status",
    "cmd_ui",
    "cmd_verify_ledger",
    "cmd_versions",
    "dagster_home",
    "execute",
    "launcher_gone",
    "main",
    "run_program",
    "missing_upstream",
    "missing_upstream_message",
    "parse_cli_overrides",
    "partition_lock",
    "reexecute",
    "resolve",
    "runbook_steps",
    "selection_keys",
    "start_step_selection",
    "summarize_run",
    "where_outputs",
]


def build_parser() -> argparse.ArgumentParser:
    """The `portfolio-assets` argument parser: one subcommand per command, each with its `cmd_*`
    function as `func`."""
    p = argparse.ArgumentParser(prog="portfolio-assets", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, date: bool = True) -> None:
        sp.add_argument("--profile", help="manifest profile (default: PA_PROFILE or the manifest's default)")
        sp.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a setting (JSON value)")
        if date:
            sp.add_argument("--date", help="trading date YYYY-MM-DD (default: the latest closed XNYS session)")
        sp.add_argument("--verbose", action="store_true",
                        help="stream Dagster's DEBUG log to the terminal (PA_LOG_LEVEL=DEBUG does the same)")

    select_help = "Dagster asset selection (e.g. 'risk_buckets*' = it and everything downstream; default: all)"
    r = sub.add_parser("run", help="materialize the graph for one trading date, or re-execute a run from a step")
    common(r)
    r.add_argument("--select", help=select_help)
    r.add_argument("--start-step", type=int, help="re-execute run --run-id from runbook step N on (Dagster re-execution)")
    r.add_argument("--run-id", help="the Dagster run id to re-execute (what `run` prints; `status` lists them)")
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("backfill", help="a Dagster backfill of a selection over a date range (one run per date), run to completion")
    common(b, date=False)
    b.add_argument("--from", dest="date_from", required=True)
    b.add_argument("--to", dest="date_to", required=True)
    b.add_argument("--select", help=select_help)
    b.add_argument("--stale", action="store_true", help="re-materialize exactly what Dagster reports stale in the range")
    b.set_defaults(func=cmd_backfill)

    st = sub.add_parser("stale", help="the (asset, partition) pairs Dagster reports stale, with the root cause")
    common(st, date=False)
    st.add_argument("--from", dest="date_from")
    st.add_argument("--to", dest="date_to")
    st.add_argument("--check-market-data", action="store_true",
                    help="first re-fingerprint the source's bars (market_bars) so new or corrected bars show")
    st.set_defaults(func=cmd_stale)

    v = sub.add_parser("verify-ledger", help="verify an audit.jsonl (links, hashes, pairing, files, signatures)")
    v.add_argument("path")
    v.add_argument("--root", help="profile root that output paths are relative to (default: inferred)")
    v.add_argument("--require-signatures", action="store_true")
    v.add_argument("--no-signatures", action="store_true",
                   help="accept a signed ledger verified without its key (exit 0 instead of 4; docs/ledger.md)")
    v.add_argument("--no-anchor", action="store_true",
                   help="do not require HEAD.json (an unsealed ledger: truncation cannot be ruled out)")
    v.set_defaults(func=cmd_verify_ledger)

    s = sub.add_parser("status", help="a date's runs (their ids), what is materialized, gate results")
    common(s)
    s.set_defaults(func=cmd_status)

    a = sub.add_parser("audit", help="run the blocking gate checks for a date; non-zero on any failure")
    common(a)
    a.set_defaults(func=cmd_audit)

    rc = sub.add_parser("recover", help="re-run history recovery and the health gate for a date")
    common(rc)
    rc.set_defaults(func=cmd_recover)

    ac = sub.add_parser("accept", help="record what was executed of a date's orders (the next book starts from it)")
    common(ac)
    ac.add_argument("--not-traded", metavar="SYM,SYM", help="orders that were not executed at all")
    ac.add_argument("--fills", metavar="FILE", help="CSV/Parquet of executed changes: symbol, delta_net_weight")
    ac.set_defaults(func=cmd_accept)

    u = sub.add_parser("ui", help="start the Dagster UI (and daemon) on 127.0.0.1")
    common(u, date=False)
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=3000)
    u.set_defaults(func=cmd_ui)

    q = sub.add_parser("sql", help="run SQL over every stored asset (DuckDB views)")
    q.add_argument("--profile")
    q.add_argument("query")
    q.add_argument("--max-rows", type=int, default=60)
    q.set_defaults(func=cmd_sql)

    m = sub.add_parser("manifest-schema", help="write (or --check) configs/manifest.schema.json")
    m.add_argument("--check", action="store_true")
    m.set_defaults(func=cmd_manifest_schema)

    ic = sub.add_parser("import-closes", help="convert a CSV of closes into the files source's layout")
    ic.add_argument("csv", help="first column a date, one column per EXCHANGE:TICKER symbol")
    ic.add_argument("dest", help="the directory to write (bars/ and universe.csv)")
    ic.add_argument("--universe", help="CSV: symbol, asset_class, calendar, sector, industry, description, "
                                       "currency, direction (default: every symbol an equity on XNYS)")
    ic.set_defaults(func=cmd_import_closes)

    ve = sub.add_parser("versions", help="every asset's code version; --refresh records the source snapshot")
    ve.add_argument("--refresh", action="store_true")
    ve.set_defaults(func=cmd_versions)

    be = sub.add_parser("bench", help="time the stages and compare with reference implementations")
    be.add_argument("--quick", action="store_true", help="smaller scale universes, no Dagster sections")
    be.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown to PATH")
    be.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen subcommand; returns its exit code (a `ManifestError` or
    `ValueError` is printed and gives 2, a reader closing stdout gives 0)."""
    args = build_parser().parse_args(argv)
    if getattr(args, "verbose", False):
        os.environ["PA_LOG_LEVEL"] = "DEBUG"
    try:
        return int(args.func(args))
    except ManifestError as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    except ValueError as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `portfolio-assets status | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def run_program(argv: list[str] | None = None) -> None:
    """The `portfolio-assets` program (console script and `python -m portfolio_assets.cli`): `main`,
    then leave through `os._exit` once its output is flushed.

    The command's work is finished and written (atomically) when `main` returns; skipping the
    interpreter's teardown keeps Arrow's native Parquet thread pool from aborting the exit
    ("terminate called without an active exception", exit -6, intermittently on a loaded machine:
    apache/arrow#34314) and replacing the command's exit code. An exception leaves the normal way
    (traceback, exit 1)."""
    import logging

    code = main(argv)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe must not turn success into a traceback
            stream.flush()
    os._exit(code)
