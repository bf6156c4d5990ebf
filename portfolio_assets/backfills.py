"""Dagster's backfills and stale status, driven from the command line through public APIs only.

* GraphQL goes through the `dagster-graphql` command (`dagster_graphql`'s own CLI: it loads the
  code location from `workspace.yaml` on the instance in DAGSTER_HOME, in a subprocess), so the
  CLI speaks to Dagster exactly as the UI does: `launchPartitionBackfill`, `cancelPartitionBackfill`,
  `assetNodes { staleStatusByPartition staleCausesByPartition }`. A backfill of a date range is a
  job backfill (`launch_job_backfill`: one run of the selection per date, consecutive dates side
  by side, the book waiting for the date before's run); stale pairs go in an asset backfill
  (`launch_backfill`).
* A backfill needs the daemon. A live one is recognized from its heartbeats; otherwise
  `BackfillDaemon` starts a temporary `dagster-daemon run` for the duration of the command.
* Progress is read from the instance: the backfill's status and the runs tagged with its id
  (`dagster/backfill`), one line per run whenever it changes state (a ranged run, `holdings`' one
  run for the range's books, counts for every date of its range).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portfolio_assets.manifest import PROJECT_ROOT

WORKSPACE = PROJECT_ROOT / "workspace.yaml"
HEARTBEAT_FRESH_S = 90.0  # a daemon whose backfill heartbeat is older than this is not running
HEARTBEAT_WAIT_S = 40.0  # daemons heartbeat every 30 s: a live one shows a newer beat within this
POLL_MARGIN_S = 5.0  # a poll re-reads the runs updated this long before the latest one it saw
STATUS_EVERY_S = 5.0  # how often an idle watcher reads the backfill's status
BACKFILL_TAG = "dagster/backfill"
PARTITION_TAG = "dagster/partition"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
COMMAND_TAG = "portfolio_assets/command"  # host:pid of the `backfill` command holding the dates' writer locks


def run_partitions(tags: Mapping[str, str], among: Iterable[str]) -> list[str]:
    """The partitions of `among` a Dagster run materializes: its `dagster/partition` tag, or every
    one inside the range of a ranged run (`holdings`' single-run backfill policy: one run computes
    the book of every date of a backfill's range)."""
    if tags.get(PARTITION_TAG) is not None:
        return [p for p in among if p == tags[PARTITION_TAG]]
    start, end = (tags.get(t) for t in RANGE_TAGS)
    if start is None or end is None:
        return []
    return [p for p in among if start <= p <= end]


def run_label(tags: Mapping[str, str]) -> str | None:
    """How a run's partitions are shown: the date, or `start..end` for a ranged run."""
    if tags.get(PARTITION_TAG) is not None:
        return tags[PARTITION_TAG]
    start, end = (tags.get(t) for t in RANGE_TAGS)
    return f"{start}..{end}" if start is not None and end is not None else None


class GraphQLError(RuntimeError):
    """A GraphQL request failed or answered with errors."""


def _bin(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else name


def _see(log: Path | None) -> str:
    """Where a failed request's details are: the code server's log (e.g. why the code location did
    not load, which Dagster reports only as a missing partition set)."""
    return f"; see {log}" if log else ""


def graphql(query: str, variables: dict[str, Any] | None = None, log: Path | None = None,
            workspace: Path = WORKSPACE) -> dict[str, Any]:
    """Run one GraphQL document against `workspace` on DAGSTER_HOME's instance; its `data`.

    The code location is loaded by `dagster-graphql` in a subprocess with this process's
    environment (profile, lakehouse, overrides), its log going to `log` (default: discarded)."""
    with tempfile.TemporaryDirectory(prefix="pa-graphql-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [_bin("dagster-graphql"), "-w", str(workspace), "-t", query, "-o", str(out)]
        if variables is not None:
            cmd += ["-v", json.dumps(variables)]
        with (log.open("ab") if log else open(os.devnull, "wb")) as sink:
            proc = subprocess.run(cmd, cwd=PROJECT_ROOT, stdout=sink, stderr=sink, env=dict(os.environ))
        if proc.returncode != 0 or not out.exists():
            raise GraphQLError(f"dagster-graphql exited {proc.returncode}" + _see(log))
        body = json.loads(out.read_text())
    if body.get("errors"):
        raise GraphQLError("; ".join(str(e.get("message")) for e in body["errors"]))
    return body["data"]


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on PartitionSetNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on RunConflict { message }
  }
}
"""

CANCEL_BACKFILL = """
mutation Cancel($id: String!) {
  cancelPartitionBackfill(backfillId: $id) { __typename ... on PythonError { message } }
}
"""


def launch_backfill(assets_by_partitions: dict[str, list[str]], tags: dict[str, str], title: str,
                    log: Path | None = None) -> str:
    """Submit one asset backfill (`{asset key: [partition keys]}`); returns its id."""
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": [key]}, "partitions": {"ranges": [{"start": p, "end": p} for p in parts]}}
            for key, parts in sorted(assets_by_partitions.items())
        ],
        "tags": [{"key": k, "value": v} for k, v in sorted(tags.items())],
        "title": title,
    }
    answer = graphql(LAUNCH_BACKFILL, {"params": params}, log)["launchPartitionBackfill"]
    if answer["__typename"] != "LaunchBackfillSuccess":
        raise GraphQLError(f"{answer['__typename']}: {answer.get('message')}" + _see(log))
    return answer["backfillId"]


LOCATION = "portfolio_assets"  # workspace.yaml's code location
REPOSITORY = "__repository__"  # the repository Dagster makes of a `Definitions`


def launch_job_backfill(job: str, partitions: list[str], asset_keys: list[str] | None, tags: dict[str, str],
                        title: str, log: Path | None = None) -> str:
    """Submit one backfill of `job` (one run of the job, or of `asset_keys` within it, per partition,
    all submitted at the daemon's first look; Dagster's queue runs them); returns its id."""
    params: dict[str, Any] = {
        "selector": {"partitionSetName": f"{job}_partition_set",
                     "repositorySelector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}},
        "partitionNames": partitions,
        "tags": [{"key": k, "value": v} for k, v in sorted(tags.items())],
        "title": title,
    }
    if asset_keys is not None:
        params["assetSelection"] = [{"path": [key]} for key in sorted(asset_keys)]
    answer = graphql(LAUNCH_BACKFILL, {"params": params}, log)["launchPartitionBackfill"]
    if answer["__typename"] != "LaunchBackfillSuccess":
        raise GraphQLError(f"{answer['__typename']}: {answer.get('message')}" + _see(log))
    return answer["backfillId"]


def cancel_backfill(backfill_id: str, log: Path | None = None) -> None:
    """Ask Dagster to cancel backfill `backfill_id`; raises `GraphQLError` when the mutation fails."""
    answer = graphql(CANCEL_BACKFILL, {"id": backfill_id}, log)["cancelPartitionBackfill"]
    if answer["__typename"] == "PythonError":
        raise GraphQLError(answer.get("message") or "cancel failed")


def stale_pairs(assets_by_partitions: dict[str, list[str]], log: Path | None = None,
                workspace: Path = WORKSPACE) -> list[tuple[str, str, str]]:
    """`(asset, partition, root cause)` for every pair Dagster reports STALE, sorted."""
    if not assets_by_partitions:
        return []
    fields = []
    for i, (key, parts) in enumerate(sorted(assets_by_partitions.items())):
        fields.append(
            f'a{i}: assetNodes(assetKeys: [{{path: [{json.dumps(key)}]}}]) {{ assetKey {{ path }} '
            f'staleStatusByPartition(partitions: {json.dumps(parts)}) '
            f'staleCausesByPartition(partitions: {json.dumps(parts)}) {{ reason key {{ path }} partitionKey }} }}')
    data = graphql("query Stale { " + " ".join(fields) + " }", None, log, workspace)
    out = []
    for i, (key, parts) in enumerate(sorted(assets_by_partitions.items())):
        (node,) = data[f"a{i}"]
        for part, status, causes in zip(parts, node["staleStatusByPartition"], node["staleCausesByPartition"], strict=True):
            if status == "STALE":
                why = "; ".join(f"{'/'.join(c['key']['path'])}"
                                f"{'@' + c['partitionKey'] if c.get('partitionKey') else ''} {c['reason']}"
                                for c in causes[:3])
                out.append((key, part, why))
    return sorted(out, key=lambda t: (t[1], t[0]))


# ---- the daemon ----------------------------------------------------------------------------------
def daemon_alive(instance: Any, wait_s: float = HEARTBEAT_WAIT_S, poll_s: float = 1.0) -> bool:
    """True when a daemon's backfill loop is running: its latest heartbeat is recent *and* a newer
    one arrives within `wait_s` (a daemon that just stopped leaves a recent heartbeat behind)."""
    def latest() -> float | None:
        beat = instance.get_daemon_heartbeats().get("BACKFILL")
        return None if beat is None else beat.timestamp

    first = latest()
    if first is None or time.time() - first > HEARTBEAT_FRESH_S:
        return False
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(poll_s)
        now = latest()
        if now is not None and now > first:
            return True
    return False


@dataclass
class BackfillDaemon:
    """A `dagster-daemon run` started for one command when no daemon is running (a context
    manager: stopped with SIGTERM, then killed after a deadline, on exit)."""

    instance: Any
    log: Path
    started: subprocess.Popen | None = None
    started_at: float = 0.0
    replaced: set[str] = field(default_factory=set)  # ids of the daemons `restart` stopped

    def __enter__(self) -> BackfillDaemon:
        if daemon_alive(self.instance):
            return self
        self._start()
        return self

    def _start(self) -> None:
        self.started_at = time.time()
        with self.log.open("ab") as sink:
            self.started = subprocess.Popen(
                [_bin("dagster-daemon"), "run", "-w", str(WORKSPACE)], cwd=PROJECT_ROOT, env=dict(os.environ),
                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)

    def _stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)

    def restart(self) -> bool:
        """Stop the daemon we started and start a new one (False, doing nothing, when the daemon
        is not ours). Dagster's backfill daemon looks at backfills once every 30 s, from its start
        (a fixed interval no setting changes): a backfill whose runs have all finished is marked
        complete at the next such iteration, up to 30 s later, and an asset backfill's next wave
        of runs waits for it too. A new daemon's first iteration does either within seconds of
        its start. The stopped daemon finishes the iteration it is in (dagster-daemon lets its
        threads end on SIGTERM)."""
        proc = self.started
        if proc is None:
            return False
        self._stop(proc)
        stopped = self._own_daemon_id()  # read once it has exited, as in `__exit__`
        if stopped is not None:
            self.replaced.add(stopped)
        self._start()
        return True

    def __exit__(self, *exc: object) -> None:
        proc = self.started
        if proc is None:
            return
        self._stop(proc)
        # Read once it has exited: a daemon `restart` started just before the backfill completed
        # may write its first heartbeat up to its stop, or never.
        self._forget_heartbeats(self._own_daemon_id())

    def _own_daemon_id(self) -> str | None:
        """The id in every heartbeat written since our daemon started (None if none, or several ids)."""
        ids = {b.daemon_id for b in self.instance.get_daemon_heartbeats().values() if b.timestamp >= self.started_at}
        return ids.pop() if len(ids) == 1 else None

    def _forget_heartbeats(self, ours: str | None) -> None:
        """Once our daemon has exited, wipe the heartbeats when every recent one is its own (what
        `dagster-daemon wipe` does). A stopped daemon's last heartbeat otherwise looks alive for
        a while, and the next backfill command waits `HEARTBEAT_WAIT_S` (40 s) for a newer one
        before starting its own daemon. The daemons `restart` stopped count as ours (`ours` is None
        when the last one never wrote a heartbeat). A recent heartbeat of another daemon keeps them
        all, and so does not knowing any id of ours."""
        mine = self.replaced | ({ours} if ours is not None else set())
        beats = self.instance.get_daemon_heartbeats().values()
        recent = [b for b in beats if time.time() - b.timestamp <= HEARTBEAT_FRESH_S]
        if mine and all(b.daemon_id in mine for b in recent):
            self.instance.wipe_daemon_heartbeats()

    def check_running(self) -> None:
        """Raise `RuntimeError` (pointing at the log) if the daemon we started has already exited."""
        if self.started is not None and self.started.poll() is not None:
            raise RuntimeError(f"the temporary dagster-daemon exited ({self.started.returncode}); see {self.log}")


# ---- watching a backfill ---------------------------------------------------------------------
TERMINAL_RUN = {"SUCCESS", "FAILURE", "CANCELED"}
TERMINAL_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


@dataclass
class BackfillProgress:
    """Per-partition state of a backfill, from its runs. The daemon launches what is ready, so a
    partition may take several runs (e.g. the book waits for the previous session's): it failed if
    any of them failed or was canceled, and succeeded when all of them did."""

    partitions: list[str]
    runs: dict[str, dict[str, str]] = field(default_factory=dict)  # partition -> run id -> status
    statuses: dict[str, str] = field(default_factory=dict)  # run id -> status
    ranged: dict[str, str] = field(default_factory=dict)  # run id of a ranged run -> its assets

    def update(self, runs: Iterable[Any]) -> list[tuple[str, str, str]]:
        """Fold in the backfill's runs (a ranged run counts for every partition of its range);
        returns `(partition or start..end, run id, status)` of every run that started or finished
        since the last call."""
        events = []
        for run in runs:
            parts, label = run_partitions(run.tags, self.partitions), run_label(run.tags)
            if not parts or label is None:
                continue
            status = run.status.value
            if PARTITION_TAG not in run.tags:
                self.ranged[run.run_id] = ", ".join(sorted(k.to_user_string() for k in run.asset_selection or ()))
            before = self.statuses.get(run.run_id)
            self.statuses[run.run_id] = status
            for part in parts:
                self.runs.setdefault(part, {})[run.run_id] = status
            if status != before and (status in TERMINAL_RUN or status == "STARTED"):
                events.append((label, run.run_id, status))
        return sorted(events)

    def state(self, part: str) -> str:
        """State of partition `part`: FAILURE or CANCELED if any of its runs ended so, SUCCESS when
        all succeeded, RUNNING while it has runs, WAITING before its first."""
        values = set(self.runs.get(part, {}).values())
        bad = values & {"FAILURE", "CANCELED"}
        return sorted(bad)[-1] if bad else "SUCCESS" if values == {"SUCCESS"} else "RUNNING" if values else "WAITING"

    @property
    def finished_runs(self) -> tuple[int, int]:
        """`(runs in a terminal state, runs seen)` of the backfill so far."""
        return sum(s in TERMINAL_RUN for s in self.statuses.values()), len(self.statuses)

    @property
    def failed(self) -> list[str]:
        """The partitions whose state is FAILURE or CANCELED, in partition order."""
        return [p for p in self.partitions if self.state(p) in ("FAILURE", "CANCELED")]

    @property
    def succeeded(self) -> list[str]:
        """The partitions every run of which succeeded, in partition order."""
        return [p for p in self.partitions if self.state(p) == "SUCCESS"]


def watch_backfill(instance: Any, backfill_id: str, partitions: list[str], say: Callable[[str], None],
                   daemon: BackfillDaemon, poll_s: float = 2.0) -> BackfillProgress:
    """Poll until the backfill is terminal; print a line per partition state change."""
    from dagster import RunsFilter

    progress = BackfillProgress(partitions)
    t0 = time.monotonic()
    since = None  # only runs updated since the last poll (minus a margin) are read again
    status_read = -STATUS_EVERY_S
    restarted_after: tuple[int, int] | None = None  # finished runs when the daemon was restarted
    while True:
        daemon.check_running()
        runs = instance.get_run_records(RunsFilter(tags={BACKFILL_TAG: backfill_id}, updated_after=since))
        if runs:
            since = max(r.update_timestamp for r in runs) - dt.timedelta(seconds=POLL_MARGIN_S)
        for label, run_id, status in progress.update([r.dagster_run for r in runs]):
            done, total = progress.finished_runs
            state = (f"{progress.ranged[run_id] or 'every asset'} of every date in the range" if run_id in progress.ranged
                     else f"partition {progress.state(label)}")
            say(f"  [{time.monotonic() - t0:5.0f} s] {label}: run {run_id[:8]} {status} "
                f"({done}/{total} runs finished; {state})")
        active = any(s not in TERMINAL_RUN for s in progress.statuses.values())
        # Reading the backfill costs ~0.3 s of CPU (Dagster deserializes its partitions with every
        # holiday of the calendar): only when no run is active, at most every STATUS_EVERY_S
        # (every second once the daemon has been restarted, whose first iteration is imminent).
        every = 1.0 if restarted_after is not None else STATUS_EVERY_S
        if not active and time.monotonic() - status_read >= every:
            status_read = time.monotonic()
            backfill = instance.get_backfill(backfill_id)
            status = backfill.status.value if backfill is not None else "MISSING"
            if status in TERMINAL_BACKFILL:
                return progress
            # No run is going and every partition has its outcome so far: what is left waits for
            # the daemon's next look (marking the backfill complete, or an asset backfill's next
            # wave). Our own daemon is restarted once per set of finished runs to do it now.
            settled = all(progress.state(p) in TERMINAL_RUN for p in partitions)
            if settled and restarted_after != progress.finished_runs and daemon.restart():
                restarted_after = progress.finished_runs
                say(f"  [{time.monotonic() - t0:5.0f} s] no run is going: restarted the temporary daemon, whose "
                    "first iteration completes the backfill or launches its next runs now (it looks every 30 s)")
        time.sleep(poll_s)
