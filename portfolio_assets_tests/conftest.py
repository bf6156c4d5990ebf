"""Shared fixtures and helpers for tests that materialize the whole graph.

The expensive thing is a whole-graph run (~10-20 s on the `development` profile), so one session
fixture materializes `development` for `DEV_DATE` once into a temporary lakehouse:

    def test_something(dev_lakehouse):          # read-only: never write into it
        ...
    def test_something_else(dev_lakehouse_copy):  # a private copy you may change or re-run
        ...

Runs go through the real CLI (`portfolio-assets run`) in a process of their own with the in-process
executor, a temporary `PA_LAKEHOUSE` and `DAGSTER_HOME`, and none of the caller's `PA_*` settings;
`run_cli` forks that process from a warm zygote (`forked_cli.py`) rather than starting a fresh
interpreter, which saves ~1-2 s of CPU a call.
Helpers (`run_cli`, `materialize_dev`, `table_hashes`, `partition_snapshot`, ...)
are importable: ``from portfolio_assets_tests.conftest import materialize_dev``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pytest

from portfolio_assets_tests.forked_cli import Zygote
from portfolio_assets_tests.graph_helpers import table_hashes, table_paths  # noqa: F401 (table_hashes: re-exported)

T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAGSTER_YAML = PROJECT_ROOT / "configs" / "dagster.yaml"
CLI = Path(sys.executable).with_name("portfolio-assets")
DEV_PROFILE = "development"
DEV_DATE = "2026-11-25"  # a closed XNYS session (Wednesday before Thanksgiving)
PREV_DATE = "2026-11-24"  # the session before it
# No wall-clock limit on a run: a whole-graph run took over 300 s on a loaded 2-core machine and
# tripped the old limit although nothing was wrong (issue 18 #10); a run that fails ends by itself.
RUN_TIMEOUT_S: float | None = None
CLI_TIMEOUT_S = 600  # CLI calls that do not materialize (bad input, verify-ledger): a hang guard only


@dataclass(frozen=True)
class GraphRun:
    """A lakehouse (and the Dagster home used with it) and the CLI output that produced it."""

    lakehouse: Path
    dagster_home: Path
    profile: str = DEV_PROFILE
    stdout: str = ""
    stderr: str = ""

    @property
    def root(self) -> Path:
        """The profile root `<lakehouse>/<profile>`."""
        return self.lakehouse / self.profile

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a CLI call against this lakehouse."""
        return graph_env(self.lakehouse, self.dagster_home, self.profile, **extra)

    @property
    def instance_home(self) -> Path:
        """The profile's own Dagster instance under the Dagster home (`cli.dagster_home`)."""
        return self.dagster_home / "profiles" / self.profile

    def ledger(self, partition: str = DEV_DATE) -> Path:
        return self.root / "ledger" / partition / "audit.jsonl"


def graph_env(lakehouse: Path, dagster_home: Path, profile: str = DEV_PROFILE, **extra: str) -> dict[str, str]:
    """A clean environment for the CLI: no inherited `PA_*`/vendor settings, temp storage, in-process
    executor. `extra` adds variables (e.g. `PA_SOURCE__KIND="tradingview"`)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    if not (dagster_home / "dagster.yaml").exists():
        shutil.copyfile(DAGSTER_YAML, dagster_home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PA_") and k not in ("DAGSTER_HOME", "TRADINGVIEW_TOKEN")}
    env.update({
        "PA_LAKEHOUSE": str(lakehouse),
        "PA_PROFILE": profile,
        "DAGSTER_HOME": str(dagster_home),
        "PA_EXECUTOR__KIND": "in_process",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


_ZYGOTE: Zygote | None = None
_ZYGOTE_LOCK = threading.Lock()  # two threads' first calls (the parallel-partition test) make one zygote
_FORKED_CPU = [0.0]  # CPU seconds of the CLI processes forked from the zygote (see `_cpu_seconds`)


def run_cli(args: list[str], env: Mapping[str, str], timeout: float | None = CLI_TIMEOUT_S,
            python: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`portfolio-assets ARGS` (or `python SCRIPT ARGS` when `python` names a script) in a process of
    its own, with `env` as its whole environment and the project as its working directory.

    The CLI runs in a process forked from this pytest process's zygote (`forked_cli.py`: the console
    script's `run_program`, without re-importing NumPy, pandas and Dagster, ~1.5 s of CPU a call),
    unless `env` changes a setting its libraries read when they loaded (numerics, string-hash seed,
    matplotlib, scipy, fsspec: `forked_cli.Zygote.compatible`); then, and for a script, it runs in a
    fresh interpreter."""
    global _ZYGOTE
    if python is None:
        with _ZYGOTE_LOCK:
            if _ZYGOTE is None:
                _ZYGOTE = Zygote()
        if _ZYGOTE.compatible(env):
            proc, cpu = _ZYGOTE.run(args, env, PROJECT_ROOT, timeout)
            with _ZYGOTE_LOCK:
                _FORKED_CPU[0] += cpu
            return proc
    cmd = [sys.executable, str(python), *args] if python is not None else [str(CLI), *args]
    return subprocess.run(cmd, env=dict(env), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)


def run_cli_in_process(args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`portfolio-assets ARGS` as `cli.main(ARGS)` in this process, with `env` as the whole
    environment and the project as the working directory (both restored afterwards); stdout and
    stderr captured. For commands refused before any Dagster work (bad input): it saves the ~2 s of
    CPU a fresh interpreter spends importing. What `run_program` adds on top of `main` (flushing,
    `os._exit` with main's code) stays covered by the subprocess cases kept beside each catalogue."""
    import io

    from portfolio_assets.cli import main

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(PROJECT_ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's own refusals (usage errors)
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
    return subprocess.CompletedProcess([str(CLI), *args], code, out.getvalue(), err.getvalue())


def run_graph_cli(run: GraphRun, partition: str = DEV_DATE, *extra_args: str,
                  env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`portfolio-assets run --profile P --date D [extra]` against `run`'s lakehouse."""
    return run_cli(["run", "--profile", run.profile, "--date", partition, *extra_args],
                   env if env is not None else run.env(), timeout=RUN_TIMEOUT_S)


def describe(proc: subprocess.CompletedProcess[str], tail: int = 4000) -> str:
    """Exit code and the end of stdout/stderr, for assertion messages."""
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-tail:]}\n--- stderr ---\n{proc.stderr[-tail:]}"


def materialize_dev(base: Path, partition: str = DEV_DATE, profile: str = DEV_PROFILE, **extra_env: str) -> GraphRun:
    """Materialize the whole graph for `partition` into `<base>/lakehouse`; fails the test if the run fails."""
    run = GraphRun(base / "lakehouse", base / "dagster_home", profile)
    proc = run_graph_cli(run, partition, env=run.env(**extra_env))
    assert proc.returncode == 0, f"whole-graph run for {partition} failed: {describe(proc)}"
    return replace(run, stdout=proc.stdout, stderr=proc.stderr)


def copy_run(run: GraphRun, dest: Path, *, with_instance: bool = False) -> GraphRun:
    """A private copy of `run`'s lakehouse under `dest`, with a fresh Dagster home, or with a copy of
    `run`'s (`with_instance`: its runs, materializations, check evaluations and ledger anchors, so
    `status`, re-execution and the gates see the run that produced the copy). Nothing in either
    names the other's folders: the CLI takes both from PA_LAKEHOUSE and DAGSTER_HOME."""
    shutil.copytree(run.lakehouse, dest / "lakehouse", symlinks=True)
    if with_instance:
        shutil.copytree(run.dagster_home, dest / "dagster_home", symlinks=True)
    return GraphRun(dest / "lakehouse", dest / "dagster_home", run.profile, run.stdout, run.stderr)


# --------------------------------------------------------------------------------------------------
# what is stored


def byte_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def partition_snapshot(root: Path, partition: str) -> dict[str, str]:
    """SHA-256 of the bytes of every file that belongs to `partition`: its tables, the assets'
    folders (reports, images ...) and its ledger (incl. archives). Lock files are skipped (empty,
    and created by readers)."""
    files = list(table_paths(root, partition))
    for folder in (root / "reports" / partition, root / "ledger" / partition, *root.glob(f"files/*/{partition}")):
        if folder.exists():
            files += [p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    return {p.relative_to(root).as_posix(): byte_digest(p) for p in sorted(files)}


def tree_snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of the bytes of every file below `root` (lock files skipped)."""
    return {p.relative_to(root).as_posix(): byte_digest(p)
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def ledger_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ledger_output_hashes(path: Path) -> dict[tuple[str, str], str]:
    """`{(asset, output name): data hash}` from every `outcome` record of a ledger file."""
    out: dict[tuple[str, str], str] = {}
    for rec in ledger_records(path):
        if rec["kind"] == "outcome":
            for name, entry in rec["payload"].get("outputs", {}).items():
                key = (rec["asset"], name)
                assert key not in out, f"{path}: output {key} recorded twice"
                out[key] = entry["hash"]
    return out


def step_failure_causes(run: GraphRun, proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """`{step key: innermost error "Class: message"}` of the failed steps of the run the CLI started
    (its `run id: ...` line), read from the profile's Dagster instance (what the UI shows)."""
    from dagster import DagsterEventType, DagsterInstance

    m = re.search(r"^run id: ([0-9a-f-]{36})", proc.stdout, re.M)
    assert m, f"no run id in the CLI output: {describe(proc)}"
    causes = {}
    with DagsterInstance.from_config(str(run.instance_home)) as instance:
        for record in instance.all_logs(m.group(1), of_type=DagsterEventType.STEP_FAILURE):
            error = record.dagster_event.event_specific_data.error
            while error is not None and error.cause is not None:
                error = error.cause
            causes[record.dagster_event.step_key] = "" if error is None else error.message.strip()
    return causes


def code_version(root: Path, partition: str = DEV_DATE) -> str:
    """`git:<commit>[+dirty]` recorded by the run manifest of a stored partition."""
    return str(pd.read_parquet(root / "run" / "run_manifest" / f"{partition}.parquet")["code_version"].iloc[0])


def skip_if_code_changed(*roots: Path, partition: str = DEV_DATE) -> None:
    """Comparing two runs only means something for the same code: skip if the checkout moved
    between them (other work committed while the suite ran)."""
    versions = {code_version(root, partition) for root in roots}
    if len(versions) > 1:
        pytest.skip(f"the checkout changed between the compared runs: {sorted(versions)}")


def check_lines(stdout: str) -> dict[str, str]:
    """`{"asset:check": "passed ..." | "FAILED ..."}` from the CLI's run summary."""
    found = {}
    for line in stdout.splitlines():
        m = re.match(r"^  (\w+:\w+): (.*)$", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


# --------------------------------------------------------------------------------------------------
# fixtures


def _shared_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T], load: Callable[[Path], T]) -> T:
    """`build(folder)` once per test session, shared by the pytest-xdist workers: the first worker
    to take `shared-<name>.lock` in the session's common temp folder builds `shared-<name>/` and
    leaves `shared-<name>.done`; the others wait on the lock and `load(folder)` it. A folder left
    without its done marker (a worker died or its build failed) is built again. Without xdist:
    one build in this session."""
    from portfolio_assets.lakehouse import file_lock

    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # `.../pytest-N/popen-gwK` -> the session's `.../pytest-N`
    folder, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with file_lock(root / f"shared-{name}"):
        if done.exists():
            return load(folder)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        built = build(folder)
        done.touch()
        return built


@pytest.fixture(scope="session")
def dev_lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphRun]:
    """The `development` profile materialized once for DEV_DATE (fresh lakehouse, separate process).

    Shared by every test of the session: treat it as read-only (use `dev_lakehouse_copy` to change
    or re-run). Teardown fails if anything below it changed.
    """
    def build(base: Path) -> GraphRun:
        run = materialize_dev(base)
        (base / "stdout.txt").write_text(run.stdout)
        (base / "stderr.txt").write_text(run.stderr)
        return run

    def load(base: Path) -> GraphRun:
        return GraphRun(base / "lakehouse", base / "dagster_home", DEV_PROFILE,
                        (base / "stdout.txt").read_text(), (base / "stderr.txt").read_text())

    run = _shared_once(tmp_path_factory, "dev_lakehouse", build, load)
    before = tree_snapshot(run.root)
    yield run
    after = tree_snapshot(run.root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"a test wrote into the shared dev_lakehouse (use dev_lakehouse_copy): {changed[:10]}"


@pytest.fixture
def dev_lakehouse_copy(dev_lakehouse: GraphRun, tmp_path: Path) -> GraphRun:
    """A private copy of `dev_lakehouse` (own Dagster home) that a test may change or re-run."""
    return copy_run(dev_lakehouse, tmp_path / "copy")


@pytest.fixture
def dev_run_copy(dev_lakehouse: GraphRun, tmp_path: Path) -> GraphRun:
    """A private copy of `dev_lakehouse` with a copy of its Dagster instance: what a fresh
    `portfolio-assets run --profile development --date DEV_DATE` leaves behind (its `stdout` is that
    run's), for tests that go on from there (status, re-execution, accept) without running it again."""
    return copy_run(dev_lakehouse, tmp_path / "copy", with_instance=True)


@pytest.fixture(scope="session")
def realdata(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """skfolio's real closes (20 S&P 500 stocks, `SP:SPX`, 5 factor ETFs; 1990-2022) exported once
    per session through `files_export` into the files layout (`portfolio_assets_tests/realdata.py`).
    Read-only: treat it as shared."""
    from portfolio_assets_tests.realdata import export_skfolio

    return export_skfolio(tmp_path_factory.mktemp("realdata"))


# ---- the longest modules first -----------------------------------------------------------------------
# The modules with the longest wall time, longest first. Much of it is waiting: for Dagster's
# backfill daemon, which looks at backfills every 30 s (the UI's and the CLI's backfills), for a UI
# in a browser, for runs killed on purpose. `make test` runs pytest-xdist with `--dist loadscope
# --no-loadscope-reorder`, which hands out whole modules in collection order: listed first, each
# starts on its own worker at once, and the shorter modules fill the cores while they wait,
# instead of one of them starting late and running on alone.
# Without `--no-loadscope-reorder`, pytest-xdist 3.x hands out the modules with the most tests
# first and this order does nothing: measured 2026-12-04, `test_reliability.py` started at 300 s
# and ran alone for the last 40 s of a 482-s suite (per-worker timeline of `make test`).
LONGEST_FIRST = ("cli/test_ui.py", "benchmarks/test_bench.py", "test_reliability.py", "assets/test_real_history.py",
                 "cli/test_cli.py", "assets/test_trust_cases.py", "cli/test_readme_commands.py", "assets/test_graph.py",
                 "assets/test_pit_and_signing.py", "test_determinism.py", "assets/test_staleness.py",
                 "test_bad_inputs.py", "sources/test_tradingview_graph.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    prefix = f"{Path(__file__).parent.name}/"

    def position(item: pytest.Item) -> int:
        module = item.nodeid.split("::", 1)[0]
        return rank.get(module.removeprefix(prefix), len(LONGEST_FIRST))

    items.sort(key=position)  # stable: every module keeps its own order, the others keep theirs


# ---- progress on a busy machine ----------------------------------------------------------------------
HEARTBEAT_S = float(os.environ.get("TESTS_HEARTBEAT_S", "60"))  # 0 turns the heartbeat off


class _Heartbeat:
    """While a test (its fixtures included) runs longer than HEARTBEAT_S, a line on the terminal
    every HEARTBEAT_S names it and how long it has run: `pytest -q` is never silent for minutes.
    Under pytest-xdist it runs in the controller, which is told when each worker's tests start and
    finish, so it names every test still running on any worker."""

    def __init__(self, config: pytest.Config) -> None:
        import threading

        self.config, self.running, self.lock = config, {}, threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="pytest-heartbeat", daemon=True)

    def _beat(self) -> None:
        import time

        while not self.stop.wait(HEARTBEAT_S):
            with self.lock:
                now = time.monotonic()
                slow = [(nodeid, now - t0) for nodeid, t0 in self.running.items() if now - t0 >= HEARTBEAT_S / 2]
            for nodeid, elapsed in slow:  # beats are HEARTBEAT_S apart: report on the first one after that
                # Output capture is on while a test runs: step around it (as `capsys.disabled()` does).
                capman = self.config.pluginmanager.getplugin("capturemanager")
                with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
                    self.config.get_terminal_writer().write(
                        f"\n  [still running after {elapsed:.0f} s] {nodeid}\n", flush=True)

    def start_test(self, nodeid: str) -> None:
        import time

        with self.lock:
            self.running[nodeid] = time.monotonic()

    def end_test(self, nodeid: str) -> None:
        with self.lock:
            self.running.pop(nodeid, None)


_HEARTBEAT: _Heartbeat | None = None


_OWN_DAGSTER_HOME: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _HEARTBEAT, _OWN_DAGSTER_HOME
    # Each pytest process gets an empty Dagster home of its own. `make test` exports the repo's
    # `.dagster_home`, which exists only after some command created it: a test that reaches
    # `DagsterInstance.get()` in-process (e.g. `cli.partition_lock` looking for active runs) failed
    # when it ran first on a fresh clone, and wrote into the repo when it did not. The tests that
    # need a particular instance set DAGSTER_HOME themselves.
    import tempfile

    _OWN_DAGSTER_HOME = tempfile.mkdtemp(prefix="pa-test-dagster-home-")
    os.environ["DAGSTER_HOME"] = _OWN_DAGSTER_HOME
    if HEARTBEAT_S > 0 and not hasattr(config, "workerinput"):  # an xdist worker's terminal is not shown
        _HEARTBEAT = _Heartbeat(config)
        _HEARTBEAT.thread.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _HEARTBEAT is not None:
        _HEARTBEAT.stop.set()
    if _ZYGOTE is not None:
        _ZYGOTE.stop()
    if _OWN_DAGSTER_HOME is not None:
        shutil.rmtree(_OWN_DAGSTER_HOME, ignore_errors=True)


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    if _HEARTBEAT is not None:
        _HEARTBEAT.start_test(nodeid)


def pytest_runtest_logfinish(nodeid: str, location: tuple[str, int | None, str]) -> None:
    if _HEARTBEAT is not None:
        _HEARTBEAT.end_test(nodeid)


# ---- CPU per test ------------------------------------------------------------------------------
# `--durations` shows wall time, which on 2 cores with 4 xdist workers is mostly waiting for a core
# (and, in the daemon tests, for Dagster's 30-s backfill ticks). What makes the suite slow is CPU,
# so each phase's CPU time is measured too: this process's, plus that of the subprocesses it started
# and waited for (the CLI runs, daemons, code servers: RUSAGE_CHILDREN; the CLI processes forked from
# the zygote, which are not this process's children, as their handler measured them). The controller
# prints the CPU_TOP most expensive tests and the total after the durations table.
CPU_TOP = int(os.environ.get("TESTS_CPU_TOP", "10"))  # more lines: TESTS_CPU_TOP=N
_CPU: dict[str, float] = {}  # nodeid -> CPU seconds (controller)
_CPU_MARK = pytest.StashKey[float]()  # CPU at the end of the item's previous phase (worker)


def _cpu_seconds() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime + _FORKED_CPU[0]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    item.stash[_CPU_MARK] = _cpu_seconds()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    now = _cpu_seconds()
    start = item.stash.get(_CPU_MARK, now)
    item.stash[_CPU_MARK] = now
    outcome.get_result().user_properties.append(("cpu_s", round(now - start, 3)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    cpu = dict(report.user_properties).get("cpu_s")
    if isinstance(cpu, (int, float)):
        _CPU[report.nodeid] = _CPU.get(report.nodeid, 0.0) + float(cpu)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _CPU or hasattr(config, "workerinput"):
        return
    tr = terminalreporter
    tr.write_sep("=", f"most CPU {CPU_TOP} (setup + call + teardown; with the subprocesses they waited for)")
    for nodeid, seconds in sorted(_CPU.items(), key=lambda kv: -kv[1])[:CPU_TOP]:
        tr.write_line(f"{seconds:8.1f}s cpu  {nodeid}")
    tr.write_line(f"{sum(_CPU.values()):8.1f}s cpu  in all {len(_CPU)} tests")
    modules: dict[str, list[float]] = {}
    for nodeid, seconds in _CPU.items():
        modules.setdefault(nodeid.split("::", 1)[0], []).append(seconds)
    tr.write_sep("-", f"most CPU {CPU_TOP} modules")
    for module, each in sorted(modules.items(), key=lambda kv: -sum(kv[1]))[:CPU_TOP]:
        tr.write_line(f"{sum(each):8.1f}s cpu  {module} ({len(each)} tests)")

