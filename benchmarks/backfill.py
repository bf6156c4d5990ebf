"""CLI backfill of consecutive development dates (issue 15: 20 dates through the CLI <= 3 min).

`portfolio-assets backfill --profile development --from D1 --to D2` as a subprocess on a fresh
temporary lakehouse and `DAGSTER_HOME` (the project's `configs/dagster.yaml`: Dagster's run queue
with its concurrency limit; the CLI starts a temporary daemon when none runs), D1..D2 the last
`n_dates` XNYS sessions up to the bench date. One row for the whole backfill (wall, partitions that
succeeded as the CLI reports them) and one for the wall time per date.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from benchmarks.graph import cli, cli_env, last_lines
from benchmarks.table import Recorder, Row

BACKFILL_DATES = 20
PROFILE = "development"
SUMMARY = re.compile(r"^backfill \S+: (\d+)/(\d+) partition\(s\) succeeded in ([0-9.]+) s", re.M)


def backfill_dates(end: dt.date, n_dates: int) -> list[str]:
    """The last `n_dates` master sessions up to `end`."""
    from portfolio_assets.partitions import master_sessions

    if n_dates < 1:
        raise ValueError(f"n_dates must be >= 1, got {n_dates}")
    return [d.date().isoformat() for d in master_sessions(end=end)[-n_dates:]]


def backfill_section(rec: Recorder, end: dt.date, root: Path, n_dates: int = BACKFILL_DATES) -> None:
    dates = backfill_dates(end, n_dates)
    env = cli_env(root / "lakehouse", root / "dagster_home", PROFILE)
    log = root / "backfill.log"
    token = rec.probe.begin()
    code, wall = cli(["backfill", "--profile", PROFILE, "--from", dates[0], "--to", dates[-1]], env, log)
    peak = rec.probe.end(token)  # this process only: the runs are in the daemon's subprocesses
    text = log.read_text(errors="replace")
    summary = SUMMARY.search(text)
    if code != 0 or summary is None:
        note = f"FAILED exit {code}: {last_lines(log, 2)}"
    else:
        note = f"{summary.group(1)}/{summary.group(2)} partitions succeeded; target <= 180 s (quiet machine)"
    rec.add(Row("backfill", f"CLI backfill --profile {PROFILE} --from {dates[0]} --to {dates[-1]}",
                f"{len(dates)} date{'' if len(dates) == 1 else 's'}", seconds=wall, peak_mb=peak, note=note))
    rec.add(Row("backfill", "per date (wall / dates)", "1 date", seconds=wall / len(dates),
                note="runs from Dagster's queue (configs/dagster.yaml concurrency)"))
