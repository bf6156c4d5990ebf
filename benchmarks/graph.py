"""The real assets, timed by Dagster: one in-process materialization of a partition and the CLI run.

`materialize_graph`: the daily graph of one partition through `dagster.materialize` (in-process
executor, a temporary on-disk instance, a temporary lakehouse). Each step's time is read from
Dagster's event log (`DagsterInstance.all_logs`): from its `STEP_START` to its `STEP_SUCCESS` (or
`STEP_FAILURE`) timestamp, which covers loading the step's inputs, its compute and storing its
outputs. Their sum is the "in-process compute" of the graph; the `materialize` call's wall time
adds Dagster's own work between steps (planning, events, checks).

`cli_run_section`: `portfolio-assets run --profile P --date D` as a subprocess on a fresh temporary
lakehouse and `DAGSTER_HOME` (what `make run` does, without the install), its wall time against
the in-process compute above (`ratio` = wall / compute), and the CLI run's own step compute read
from its instance afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.table import Recorder, Row
from portfolio_assets_tests.graph_helpers import (
    environment,
    materialize_partition,
    persistent_instance,
    run_error,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAGSTER_YAML = PROJECT_ROOT / "configs" / "dagster.yaml"
STEP_END = ("STEP_SUCCESS", "STEP_FAILURE")


@dataclass
class GraphRun:
    """One materialization of the daily graph: where it ran and what it produced."""

    profile: str
    partition: str
    lakehouse: Path
    instance: Any  # the DagsterInstance (kept open for the sections that reuse the stored upstream)
    result: Any
    wall_s: float
    steps: dict[str, float] = field(default_factory=dict)  # step key -> seconds (event log)

    @property
    def compute_s(self) -> float:
        return float(sum(self.steps.values()))

    def value(self, key: str) -> Any:
        """An asset's value as the run produced it (`ExecuteInProcessResult.asset_value`)."""
        return self.result.asset_value(key)


def step_seconds(instance: Any, run_id: str) -> dict[str, float]:
    """Step key -> seconds from its STEP_START to its STEP_SUCCESS/STEP_FAILURE in the event log."""
    from dagster import DagsterEventType

    kinds = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
    starts: dict[str, float] = {}
    out: dict[str, float] = {}
    for entry in instance.all_logs(run_id, of_type=kinds):
        event = entry.dagster_event
        if event is None or entry.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[entry.step_key] = entry.timestamp
        elif entry.step_key in starts:
            out[entry.step_key] = entry.timestamp - starts[entry.step_key]
    missing = set(starts) - set(out)
    if missing:
        raise RuntimeError(f"run {run_id}: steps started but never ended: {sorted(missing)}")
    return out


def materialize_graph(rec: Recorder, profile: str, partition: str, root: Path) -> GraphRun:
    """The `graph` section: materialize the whole daily graph once, one row per step from the event
    log, the sum of the steps and the call's wall time. The caller closes `run.instance`."""
    lake = root / "lakehouse"
    instance = persistent_instance(root / "dagster_home")
    with environment(PA_PROFILE=profile, PA_LAKEHOUSE=str(lake), PA_CLI_OVERRIDES=None, PA_EXECUTOR__KIND=None):
        token = rec.probe.begin()
        t0 = time.perf_counter()
        result = materialize_partition(partition, instance)
        wall = time.perf_counter() - t0
        peak = rec.probe.end(token)
    run = GraphRun(profile, partition, lake, instance, result, wall, step_seconds(instance, result.run_id))
    if not result.success:
        rec.add(Row("graph", f"whole {profile} graph, materialize (in_process)", partition, seconds=wall,
                    peak_mb=peak, note=f"FAILED {run_error(result)}"))
        return run
    for key, seconds in sorted(run.steps.items(), key=lambda kv: -kv[1]):
        rec.add(Row("graph", f"step {key}", seconds=seconds))
    rec.add(Row("graph", "sum of the steps (in-process compute)", f"{len(run.steps)} steps", seconds=run.compute_s,
                note="STEP_START -> STEP_SUCCESS in the event log"))
    rec.add(Row("graph", f"whole {profile} graph, materialize (in_process) vs its steps' sum", partition,
                seconds=wall, peak_mb=peak, ref_seconds=run.compute_s,
                note="ratio = Dagster's own share in-process; incl. QuantStats HTML + ledger"))
    return run


def cli_env(lakehouse: Path, dagster_home: Path, profile: str) -> dict[str, str]:
    """A clean environment for the CLI: no inherited `PA_*` settings or `DAGSTER_HOME`, the
    project's `configs/dagster.yaml` in a fresh `DAGSTER_HOME`, a fresh lakehouse."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DAGSTER_YAML, dagster_home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PA_") and k != "DAGSTER_HOME"}
    env.update(PA_LAKEHOUSE=str(lakehouse), PA_PROFILE=profile, DAGSTER_HOME=str(dagster_home),
               PYTHONUNBUFFERED="1")
    return env


def cli(args: list[str], env: dict[str, str], log: Path) -> tuple[int, float]:
    """`portfolio-assets ARGS` from the project root, output to `log`; (exit code, wall seconds)."""
    exe = Path(sys.executable).with_name("portfolio-assets")
    if not exe.exists():
        raise FileNotFoundError(f"{exe} not found: run `make install` first")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        t0 = time.perf_counter()
        code = subprocess.run([str(exe), *args], env=env, cwd=PROJECT_ROOT, stdout=fh, stderr=subprocess.STDOUT,
                              check=False).returncode
        return code, time.perf_counter() - t0


def last_lines(log: Path, n: int = 1) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return " / ".join(lines[-n:])[:300]


def cli_run_section(rec: Recorder, run: GraphRun, root: Path, object_store: bool = False) -> None:
    """(a) `make run`-equivalent wall time vs the in-process compute of the same partition; with
    `object_store`, then the same CLI run on an `s3://` lakehouse against it (`object_store.py`)."""
    from dagster import DagsterInstance

    home, log = root / "cli_home", root / "cli_run.log"
    env = cli_env(root / "cli_lakehouse", home, run.profile)
    code, wall = cli(["run", "--profile", run.profile, "--date", run.partition], env, log)
    if code != 0:
        rec.add(Row("run", f"CLI run --profile {run.profile} --date {run.partition}", seconds=wall,
                    note=f"FAILED exit {code}: {last_lines(log, 2)}"))
        return
    # The CLI keeps one instance per profile under DAGSTER_HOME (`profiles/<profile>`, see
    # `cli.dagster_home`); the base itself when it keeps none.
    instance_dir = home / "profiles" / run.profile
    instance_dir = instance_dir if (instance_dir / "dagster.yaml").exists() else home
    with environment(DAGSTER_HOME=str(instance_dir)), DagsterInstance.from_config(str(instance_dir)) as instance:
        runs = instance.get_runs(limit=1)
        if not runs:
            raise RuntimeError(f"the CLI run succeeded but no run is recorded in {instance_dir}")
        own = step_seconds(instance, runs[0].run_id)
    rec.add(Row("run", f"`make run` equivalent: CLI run --profile {run.profile} vs in-process compute",
                run.partition, seconds=wall, ref_seconds=run.compute_s,
                note=f"subprocess, fresh lakehouse + DAGSTER_HOME; ref = sum of the {len(run.steps)} steps "
                     "of the in-process materialization (section graph); target ratio <= 1.5"))
    rec.add(Row("run", "CLI run vs its own steps' sum (its event log)", f"{len(own)} steps", seconds=wall,
                ref_seconds=sum(own.values()) or None,
                note="the rest is start-up (imports, manifest, source) and Dagster between steps"))
    if object_store:
        from benchmarks.object_store import s3_run_row

        s3_run_row(rec, run, root / "s3", wall, root / "cli_lakehouse")


def tournament_inputs(run: GraphRun) -> tuple[pd.DataFrame, pd.Series, str]:
    """The comparison's inputs as the assets produced them: the healthy universe's synthetic-long
    500-session streams (the `risk_buckets` asset's own streams: its symbols and directions over
    `history_500d__returns`), their buckets and the partition's regime label."""
    from portfolio_assets.quant.convention import synthetic_long

    rets = run.value("history_500d__returns")
    buckets = run.value("risk_buckets").set_index("symbol")
    regime = str(run.value("market_regime")["label"].iloc[-1])
    streams = synthetic_long(rets[list(buckets.index)], buckets["direction"])
    return streams, buckets["bucket"], regime
