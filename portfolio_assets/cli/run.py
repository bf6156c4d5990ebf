"""`run`, `backfill` and `stale`: materialize partitions."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from portfolio_assets.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    _date_range,
    _err,
    _log_path,
    _partition_date,
    _setup_env,
    check_history,
    check_preconditions,
    partition_lock,
)
from portfolio_assets.cli.execution import (
    _launch_tags,
    execute,
    launcher_gone,
    reexecute,
    runbook_steps,
    start_step_selection,
    summarize_run,
    this_process,
    where_outputs,
)
from portfolio_assets.cli.selection import _key, missing_upstream, missing_upstream_message, selection_keys


def cmd_run(args: argparse.Namespace) -> int:
    """`run`: materialize one date (the daily graph or `--select`), or with `--start-step N --run-id ID`
    re-execute a finished daily-graph run from runbook step N (a killed one is first marked failed).
    Exit 0 ok, 1 the run failed; bad arguments raise `ValueError` (exit 2)."""
    from dagster import DagsterInstance

    from portfolio_assets.jobs import DAILY_JOB

    resolved = _setup_env(args)
    if (args.run_id is None) != (args.start_step is None):
        raise ValueError("--start-step N and --run-id ID go together: re-execute run ID from step N "
                         "(`portfolio-assets status` lists a partition's run ids)")
    t0 = time.time()
    if args.run_id is not None:
        if args.date or args.select:
            raise ValueError("a re-execution takes its partition and steps from --run-id and --start-step; "
                             "drop --date/--select")
        known = runbook_steps()
        if args.start_step not in known:
            raise ValueError(f"--start-step {args.start_step}: not a runbook step; the daily graph's steps are "
                             f"{', '.join(map(str, known))}")
        steps = start_step_selection(args.start_step)
        with DagsterInstance.get() as instance:
            parent = instance.get_run_by_id(args.run_id)
            gone = launcher_gone(parent) if parent is not None else None
            if parent is not None and gone is not None:  # killed mid-run: record it as failed in Dagster, then it can be resumed
                instance.report_run_failed(parent, f"the process that ran it (pid {gone}) is gone: killed")
                parent = instance.get_run_by_id(args.run_id)
                print(f"run {args.run_id} was killed (its process {gone} is gone): marked FAILURE in Dagster")
        if parent is None:
            raise ValueError(f"--run-id {args.run_id}: no such run in {os.environ['DAGSTER_HOME']} "
                             f"(`portfolio-assets status --date D` lists a partition's runs)")
        if parent.job_name != DAILY_JOB or "dagster/partition" not in parent.tags:
            raise ValueError(f"--run-id {args.run_id} is a run of {parent.job_name!r}, not of the daily graph")
        if not parent.is_finished:
            raise ValueError(f"--run-id {args.run_id} is still {parent.status.value}: wait for it to finish")
        if parent.asset_selection:  # Dagster re-executes only steps of the parent's own plan
            raise ValueError(f"--run-id {args.run_id} ran a selection of {len(parent.asset_selection)} asset(s), not "
                             f"the daily graph: resume a run of the whole graph (`portfolio-assets status --date "
                             f"{parent.tags['dagster/partition']}` marks selections) or run --select again")
        partition = parent.tags["dagster/partition"]
        check_preconditions(resolved)
        with partition_lock([partition], f"run --start-step {args.start_step} --run-id {args.run_id}"):
            print(f"profile {resolved.profile}, partition {partition}: re-executing run {args.run_id} "
                  f"from step {args.start_step} ({', '.join(steps)})")
            result = reexecute(args.run_id, partition, steps)
    else:
        partition = _partition_date(args.date)
        keys = selection_keys(args.select) if args.select else None
        check_history(partition)
        check_preconditions(resolved)
        scope = "the daily graph" if keys is None else f"{len(keys)} asset(s)"
        with partition_lock([partition], f"run --date {partition}" + (f" --select {args.select}" if args.select else "")):
            print(f"profile {resolved.profile} ({' -> '.join(resolved.resolved_from)}), partition {partition}, {scope}")
            result = execute(partition, keys)
    code = summarize_run(result, partition)
    print(f"wall time {time.time() - t0:.1f} s")
    where_outputs(partition)
    return code


STALE_ROUNDS = 10  # rounds of `backfill --stale` before giving up (the graph is ~15 steps deep)


def cmd_backfill(args: argparse.Namespace) -> int:
    """A Dagster backfill, run to completion (see `backfills.py`): a job backfill, one run of the
    selection per date (consecutive dates run at once; a date's book and previous target wait for
    the date before's run). With `--stale`: asset backfills of what Dagster reports stale in the
    range, round after round (an asset re-materialized with new data makes its children stale in
    turn) until nothing is stale."""
    from dagster import DagsterInstance

    from portfolio_assets import backfills
    from portfolio_assets.jobs import DAILY_JOB

    resolved = _setup_env(args)
    dates = _date_range(args.date_from, args.date_to)
    log = _log_path("backfill")
    title = f"{resolved.profile} {dates[0]}..{dates[-1]}"
    if args.stale and args.select:
        raise ValueError("--stale re-materializes what Dagster reports stale: drop --select")
    keys = selection_keys(args.select)  # a bad selection is refused before the source is read
    for day in dict.fromkeys((dates[0], dates[-1])):  # enough history at the start, data up to the end
        check_history(day)
    check_preconditions(resolved)
    with (partition_lock(dates, f"backfill {dates[0]}..{dates[-1]}"), DagsterInstance.get() as instance,
          contextlib.ExitStack() as stack):
        daemon = CommandDaemon(instance, log, stack)
        if not args.stale:
            missing = missing_upstream(instance, keys, dates)
            if missing:
                raise ValueError(missing_upstream_message(missing, resolved.profile, args.select))
            # One run of the selection per date (a job backfill), all queued at once: the queue runs
            # two at a time, and a date's book and previous target wait for the date before's run.
            selected = None if args.select is None else [k.to_user_string() for k in keys]
            return _backfill(instance, dates, title, log, daemon, what=f"{len(keys)} asset(s)", launch=partial(
                backfills.launch_job_backfill, DAILY_JOB, dates, selected, title=title, log=log))
        for round_ in range(1, STALE_ROUNDS + 1):
            pairs = backfills.stale_pairs(_materialized(instance, selection_keys(None), dates), log)
            if not pairs:
                print(f"nothing is stale in {dates[0]}..{dates[-1]}")
                return EXIT_OK
            targets: dict[str, list[str]] = {}
            for asset, part, _ in pairs:
                targets.setdefault(asset, []).append(part)
            stale_title = f"{title} (stale, round {round_})"
            # Stale pairs differ from date to date: an asset backfill of exactly those pairs.
            code = _backfill(instance, sorted({p for _, p, _ in pairs}), stale_title, log, daemon,
                             what=f"{len(targets)} asset(s)",
                             launch=partial(backfills.launch_backfill, targets, title=stale_title, log=log))
            if code != EXIT_OK:
                return code
    raise RuntimeError(f"still stale after {STALE_ROUNDS} rounds of backfill --stale")


@dataclass
class CommandDaemon:
    """The backfill daemon of one `backfill` command: a daemon already running is used; otherwise
    one is started after the command's first submission and kept, on `stack`, for every later
    round of `--stale`. (A new one per round waited up to 40 s at each round for the stopped
    daemon's last heartbeat to go stale before it could tell that no daemon was running.)"""

    instance: Any
    log: Path
    stack: contextlib.ExitStack
    daemon: Any = None

    def ensure(self) -> Any:
        """The command's `BackfillDaemon`, entered on `stack` at the first call (starting a daemon
        only when none is running) and reused afterwards. Called after each submission: a daemon
        the command started is restarted at a later round, so that its first iteration finds the
        new backfill at once instead of at its next 30-s iteration (`BackfillDaemon.restart`)."""
        from portfolio_assets import backfills

        if self.daemon is None:
            self.daemon = self.stack.enter_context(backfills.BackfillDaemon(self.instance, self.log))
            if self.daemon.started is not None:
                print(f"no dagster-daemon running: started one for this backfill (pid {self.daemon.started.pid})")
        elif self.daemon.restart():
            print("restarted the temporary dagster-daemon: its first iteration takes up this round now")
        return self.daemon


def _backfill(instance: Any, partitions: list[str], title: str, log: Path, command_daemon: CommandDaemon, *,
              what: str, launch: Callable[[dict[str, str]], str]) -> int:
    """Submit a backfill (`launch(tags)` returns its id), make sure a daemon runs it, and watch it to
    the end; Ctrl-C cancels it. Exit 0 when every partition succeeded."""
    from portfolio_assets import backfills

    print(f"backfill {len(partitions)} partition(s) x {what}, {title}; log: {log}")
    # Submitted before a temporary daemon starts: the daemon evaluates backfills once every 30 s,
    # starting when it starts, so its first iteration then finds this backfill instead of running
    # just before it exists (the first runs started ~30 s after the submission).
    # The runs carry this command's host:pid: it holds their dates' writer locks on their behalf.
    tags = {**_launch_tags(), backfills.COMMAND_TAG: this_process()}
    backfill_id = launch(tags)
    print(f"backfill {backfill_id} submitted (the UI's backfills page shows it; Ctrl-C cancels it)")
    t0 = time.time()
    daemon = command_daemon.ensure()
    try:
        progress = backfills.watch_backfill(instance, backfill_id, partitions, print, daemon)
    except KeyboardInterrupt:
        _err(f"canceling backfill {backfill_id} ...")
        backfills.cancel_backfill(backfill_id, log)
        progress = backfills.watch_backfill(instance, backfill_id, partitions, print, daemon)
        print(f"backfill {backfill_id} canceled: {len(progress.succeeded)}/{len(partitions)} partition(s) succeeded")
        return EXIT_FAILED
    print(f"backfill {backfill_id}: {len(progress.succeeded)}/{len(partitions)} partition(s) succeeded in "
          f"{time.time() - t0:.1f} s" + (f"; failed: {', '.join(progress.failed)}" if progress.failed else ""))
    return EXIT_OK if not progress.failed and len(progress.succeeded) == len(partitions) else EXIT_FAILED


def _materialized(instance: Any, keys: list[Any], dates: list[str]) -> dict[str, list[str]]:
    """`{asset: [partitions in dates with a materialization]}` (stale status applies to those)."""
    wanted = set(dates)
    out = {}
    for key in keys:
        have = sorted(instance.get_materialized_partitions(key) & wanted)
        if have:
            out[key.to_user_string()] = have
    return out


def cmd_stale(args: argparse.Namespace) -> int:
    """List the (asset, partition) pairs Dagster reports stale, with their root cause."""
    from dagster import DagsterInstance

    from portfolio_assets import backfills

    _setup_env(args)
    log = _log_path("stale")
    with DagsterInstance.get() as instance:
        if args.date_from or args.date_to:
            dates = _date_range(args.date_from or args.date_to, args.date_to or args.date_from)
        else:
            dates = sorted(instance.get_materialized_partitions(_key("run_manifest")))
        if args.check_market_data and dates:
            print(f"re-fingerprinting the source's bars (market_bars) for {len(dates)} partition(s) ...")
            for day in dates:
                with partition_lock([day], f"stale --check-market-data ({day})"):
                    result = execute(day, [_key("market_bars")], {"portfolio_assets/check": "market_data"})
                if not result.success:
                    return summarize_run(result, day)
        pairs = backfills.stale_pairs(_materialized(instance, selection_keys(None), dates), log)
    for asset, part, why in pairs:
        print(f"{part}  {asset:28s} {why}")
    print(f"{len(pairs)} stale (asset, partition) pair(s) in {len(dates)} partition(s)"
          + (f"; re-materialize them: portfolio-assets backfill --stale --from {dates[0]} --to {dates[-1]}"
             if pairs else ""))
    return EXIT_OK
