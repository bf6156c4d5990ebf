"""The previous session's table, for the steps that read it (`holdings` chains the book,
`previous_target` compares with the previous target): waited for while another run or command is
writing that session, so that consecutive dates can run at once (a job backfill's runs, two at a
time in Dagster's queue) and still read what the previous date's run stores, never what happened
to be on disk when the step started.

A writer of session P for asset A is a Dagster run in progress (starting, started or canceling)
whose partition, or range, holds P and whose selection holds A, or a command holding P's writer
lock. The lock of the command that launched this run does not count: a `backfill` command holds
the writer locks of every date it backfills, on behalf of its own runs. Neither does a run whose
CLI process is gone (killed: Dagster still says started; `cli.execution.launcher_gone`), as for
the writer lock's own check.
"""

from __future__ import annotations

import json
import time
from typing import Any

from dagster import AssetKey, DagsterRunStatus, RunsFilter

from portfolio_assets.backfills import COMMAND_TAG, run_partitions
from portfolio_assets.lakehouse import Lakehouse

WRITER_WAIT_S = 1800.0
"""How long a step waits for a writer of the previous session before it refuses (a whole-graph
run of a real market takes a few minutes; half an hour means something is stuck)."""
WRITER_POLL_S = 0.5
PRIORITY_TAG = "dagster/priority"
"""Dagster's executors start the ready step of highest priority first (default 0): the two steps
that read the previous session carry -1, so that a run computes everything of its own date before
it may wait for the previous date's run."""
ACTIVE = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def session_writer(context: Any, lake: Lakehouse, key: AssetKey, session: str) -> str | None:
    """Who is writing `key` for `session` now (module docstring), None when nobody is."""
    holder = lake.writer_lock_holder(session)
    if holder is not None and not _own_command(context, holder):
        return f"the command {holder}"
    from portfolio_assets.cli.execution import launcher_gone

    records = context.instance.get_run_records(RunsFilter(statuses=ACTIVE))
    runs = [r.dagster_run.run_id for r in records if r.dagster_run.run_id != context.run.run_id
            and run_partitions(r.dagster_run.tags, [session])
            and (r.dagster_run.asset_selection is None or key in r.dagster_run.asset_selection)
            and launcher_gone(r.dagster_run) is None]
    return f"Dagster run(s) {', '.join(runs)}" if runs else None


def _own_command(context: Any, holder: str) -> bool:
    """True when the lock holder is the command that launched this run (its `COMMAND_TAG`)."""
    launched_by = context.run.tags.get(COMMAND_TAG)
    if launched_by is None:
        return False
    try:
        held = json.loads(holder)
    except ValueError:
        return False
    return isinstance(held, dict) and f"{held.get('host')}:{held.get('pid')}" == launched_by


def wait_for_writer(context: Any, lake: Lakehouse, key: AssetKey, session: str) -> tuple[str | None, float]:
    """Wait while someone writes `key` for `session`, at most `WRITER_WAIT_S`: `(the writer still
    writing then, or None; seconds waited)`. After a wait, read the session's table again: what
    the step's inputs loaded before it may be an older version, or missing."""
    t0 = time.monotonic()
    deadline, said = t0 + WRITER_WAIT_S, False
    while True:
        writer = session_writer(context, lake, key, session)
        waited = time.monotonic() - t0 if said else 0.0
        if writer is None or time.monotonic() >= deadline:
            if said and writer is None:
                context.log.info(f"{key.to_user_string()} of {session} is written (waited {waited:.1f} s): reading it")
            return writer, waited
        if not said:
            context.log.info(f"waiting for {key.to_user_string()} of the previous session {session}: "
                             f"{writer} is writing it")
            said = True
        time.sleep(WRITER_POLL_S)


def reread(lake: Lakehouse, group: str, key: AssetKey, session: str, loaded: dict) -> None:
    """Replace `loaded[session]` (a `by_partition` input) by the table stored now, or drop it."""
    asset = key.to_user_string()
    if lake.has_table(group, asset, session):
        loaded[session] = lake.read_table(group, asset, session)
    else:
        loaded.pop(session, None)
