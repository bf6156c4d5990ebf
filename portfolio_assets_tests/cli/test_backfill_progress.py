"""`backfills.BackfillProgress`: a backfill's state per partition, from its runs, including the one
run a backfill launches for a range's books (`holdings`, single-run backfill policy)."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from types import SimpleNamespace

from dagster import AssetKey

from portfolio_assets.backfills import BackfillProgress, run_label, run_partitions

DATES = ["2026-11-23", "2026-11-24", "2026-11-25"]
RANGE = {"dagster/asset_partition_range_start": "2026-11-24", "dagster/asset_partition_range_end": "2026-11-25"}


class Status(Enum):
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


def run(run_id: str, status: str, **tags: str):
    selection = None if "dagster/partition" in tags else {AssetKey("holdings")}
    return SimpleNamespace(run_id=run_id, status=Status(status), tags=tags, asset_selection=selection)


def test_a_run_writes_its_partition_or_every_date_of_its_range():
    assert run_partitions({"dagster/partition": "2026-11-24"}, DATES) == ["2026-11-24"]
    assert run_partitions({"dagster/partition": "2026-11-20"}, DATES) == []
    assert run_partitions(RANGE, DATES) == ["2026-11-24", "2026-11-25"]
    assert run_partitions({"dagster/asset_partition_range_start": "2026-11-24"}, DATES) == []  # half a range
    assert run_partitions({}, DATES) == []
    assert run_label(RANGE) == "2026-11-24..2026-11-25"
    assert run_label({"dagster/partition": "2026-11-23"}) == "2026-11-23"
    assert run_label({}) is None


def test_a_ranged_run_counts_once_and_for_every_date_of_its_range():
    progress = BackfillProgress(DATES)
    events = progress.update([run(f"day{i}", "SUCCESS", **{"dagster/partition": d}) for i, d in enumerate(DATES)]
                             + [run("book", "STARTED", **RANGE)])
    assert ("2026-11-24..2026-11-25", "book", "STARTED") in events
    assert progress.finished_runs == (3, 4)  # the ranged run is one run, not one per date
    assert progress.ranged == {"book": "holdings"}
    assert [progress.state(d) for d in DATES] == ["SUCCESS", "RUNNING", "RUNNING"]

    assert progress.update([run("book", "FAILURE", **RANGE)]) == [("2026-11-24..2026-11-25", "book", "FAILURE")]
    assert progress.update([run("book", "FAILURE", **RANGE)]) == []  # no change, no event
    assert progress.failed == ["2026-11-24", "2026-11-25"]
    assert progress.succeeded == ["2026-11-23"]
    assert progress.finished_runs == (4, 4)


class Beats:
    """An instance's heartbeat store, as `BackfillDaemon` reads and wipes it."""

    def __init__(self, beats: dict[str, tuple[float, str]]):
        self.beats = {kind: SimpleNamespace(timestamp=ts, daemon_type=kind, daemon_id=who)
                      for kind, (ts, who) in beats.items()}
        self.wiped = False

    def get_daemon_heartbeats(self):
        return dict(self.beats)

    def wipe_daemon_heartbeats(self):
        self.wiped, self.beats = True, {}


def test_a_stopped_temporary_daemon_forgets_only_its_own_heartbeats(tmp_path):
    """After the command's daemon has exited, its heartbeats are wiped so that the next command can
    tell at once that no daemon runs; never while a recent heartbeat is another daemon's."""
    import time

    from portfolio_assets.backfills import HEARTBEAT_FRESH_S, BackfillDaemon

    now = time.time()
    cases = [  # heartbeats after our daemon stopped -> wiped?
        ({"BACKFILL": (now - 2, "ours"), "SCHEDULER": (now - 3, "ours")}, True),
        ({"BACKFILL": (now - 2, "ours"), "SENSOR": (now - 5, "other")}, False),  # another daemon is alive
        ({"BACKFILL": (now - 2, "ours"), "SENSOR": (now - HEARTBEAT_FRESH_S - 60, "old")}, True),  # a dead one's
        ({}, True),
    ]
    for beats, wiped in cases:
        store = Beats(beats)
        daemon = BackfillDaemon(store, tmp_path / "log", started_at=now - 10)
        daemon._forget_heartbeats("ours")
        assert store.wiped is wiped, beats
    # Whose heartbeats are ours: the one id written since our daemon started, if there is exactly one.
    assert BackfillDaemon(Beats({"BACKFILL": (now - 2, "ours"), "SENSOR": (now - 99, "old")}), tmp_path,
                          started_at=now - 10)._own_daemon_id() == "ours"
    assert BackfillDaemon(Beats({"BACKFILL": (now - 2, "ours"), "SENSOR": (now - 1, "other")}), tmp_path,
                          started_at=now - 10)._own_daemon_id() is None
    assert BackfillDaemon(Beats({}), tmp_path, started_at=now - 10)._own_daemon_id() is None
    store = Beats({"BACKFILL": (now - 2, "ours")})
    BackfillDaemon(store, tmp_path)._forget_heartbeats(None)  # not knowing which id is ours: keep them
    assert not store.wiped
    # A daemon our `restart` stopped is ours too: its last heartbeat does not keep the others.
    store = Beats({"BACKFILL": (now - 2, "ours"), "SENSOR": (now - 20, "first")})
    BackfillDaemon(store, tmp_path, started_at=now - 10)._forget_heartbeats("ours")
    assert not store.wiped
    BackfillDaemon(store, tmp_path, started_at=now - 10, replaced={"first"})._forget_heartbeats("ours")
    assert store.wiped


def test_a_restart_racing_the_backfills_completion_still_forgets_the_stopped_daemons_heartbeats(tmp_path):
    """`restart` stopped the first daemon just as its own iteration completed the backfill, and the
    command ended before the new daemon wrote any heartbeat: only the first daemon's heartbeats are
    left, and they are ours (seen failing a fresh-clone check: left behind, they made the next command
    wait 40 s for a daemon that had gone)."""
    import time

    from portfolio_assets.backfills import BackfillDaemon

    now = time.time()
    exited = SimpleNamespace(poll=lambda: 0, pid=999_999_999)  # the new daemon, already stopped
    first = {"BACKFILL": (now - 1, "first"), "SENSOR": (now - 1, "first"), "ASSET": (now - 31, "first")}
    store = Beats(first)
    BackfillDaemon(store, tmp_path / "log", started=exited, started_at=now, replaced={"first"}).__exit__()
    assert store.wiped
    # The new daemon's heartbeats are read after it exited, so a first heartbeat written up to its
    # stop is known as ours too.
    store = Beats({**first, "BACKFILL": (now + 0.5, "second")})
    BackfillDaemon(store, tmp_path / "log", started=exited, started_at=now, replaced={"first"}).__exit__()
    assert store.wiped
    # Another daemon's recent heartbeat keeps them all, as without a restart.
    store = Beats({**first, "SCHEDULER": (now - 2, "someone else")})
    BackfillDaemon(store, tmp_path / "log", started=exited, started_at=now, replaced={"first"}).__exit__()
    assert not store.wiped
    # `restart` also reads the id of the daemon it stops once that one has exited: a first
    # heartbeat written while it was stopping is known as ours.
    store = Beats({})
    daemon = BackfillDaemon(store, tmp_path / "log", started=exited, started_at=now - 10)
    daemon._stop = lambda proc: store.beats.update(Beats({"BACKFILL": (now - 1, "first")}).beats)
    daemon._start = lambda: None
    assert daemon.restart() and daemon.replaced == {"first"}


class Watched:
    """An instance whose backfill runs are all finished and whose backfill status turns terminal
    only when its daemon has been restarted (or after `flips_after` status reads by itself)."""

    def __init__(self, runs, flips_after: int | None = None):
        self.runs = runs
        self.reads = 0
        self.flips_after = flips_after
        self.restarts = 0

    def get_run_records(self, filters):
        return [SimpleNamespace(dagster_run=r, update_timestamp=dt.datetime(2026, 12, 4, 12)) for r in self.runs]

    def get_backfill(self, backfill_id):
        self.reads += 1
        done = self.restarts > 0 or (self.flips_after is not None and self.reads > self.flips_after)
        return SimpleNamespace(status=SimpleNamespace(value="COMPLETED_SUCCESS" if done else "REQUESTED"))


class Daemon:
    def __init__(self, instance: Watched, ours: bool):
        self.instance, self.ours = instance, ours

    def check_running(self) -> None:
        pass

    def restart(self) -> bool:
        if self.ours:
            self.instance.restarts += 1
        return self.ours


def test_a_finished_backfill_restarts_only_its_own_daemon_and_once(monkeypatch):
    """Every run has finished but the backfill waits for the daemon's next 30-s iteration: the
    command's own daemon is restarted once (its first iteration closes the backfill); a daemon
    the command did not start is never touched, the command waits for it. A partition still
    running or waiting restarts nothing."""
    from portfolio_assets import backfills

    monkeypatch.setattr(backfills, "STATUS_EVERY_S", 0.0)
    finished = [run(f"day{i}", "SUCCESS", **{"dagster/partition": d}) for i, d in enumerate(DATES)]
    said: list[str] = []
    ours = Watched(finished)
    progress = backfills.watch_backfill(ours, "bf1", DATES, said.append, Daemon(ours, True), poll_s=0.0)
    assert progress.succeeded == DATES and ours.restarts == 1 and ours.reads == 2
    assert "no run is going: restarted the temporary daemon" in said[-1]

    shared = Watched(finished, flips_after=3)
    said.clear()
    backfills.watch_backfill(shared, "bf2", DATES, said.append, Daemon(shared, False), poll_s=0.0)
    assert shared.restarts == 0 and shared.reads == 4 and not any("restarted" in s for s in said)

    waiting = Watched(finished[:2], flips_after=2)  # the last date has no run yet
    backfills.watch_backfill(waiting, "bf3", DATES, said.append, Daemon(waiting, True), poll_s=0.0)
    assert waiting.restarts == 0
