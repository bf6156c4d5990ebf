"""A Redis broker and dagster-celery workers on this host, for `executor.kind: celery`.

What docs/deployment.md tells an operator to run by hand (`redis-server`, then
`dagster-celery worker start`), as context managers for the test and the benchmark: each starts
its processes, waits until they answer, and stops exactly the processes it started (by pid) on
exit. Workers inherit the caller's environment (`PA_PROFILE`, `PA_LAKEHOUSE`, `DAGSTER_HOME`), as
a deployed worker must share the run's settings and storage.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

READY_TIMEOUT_S = 300.0  # generous: a busy 2-core machine imports dagster slowly


class ScaleOutError(RuntimeError):
    """A broker or a worker that did not start; the message carries its log tail."""


def redis_server_path() -> str | None:
    """The `redis-server` binary on PATH (Debian package `redis-server`), or None."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound as port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def local_redis(workdir: Path, port: int | None = None) -> Iterator[str]:
    """`redis-server --port <port> --daemonize yes` on 127.0.0.1 (no persistence); yields its URL."""
    import redis

    binary = redis_server_path()
    if binary is None:
        raise ScaleOutError("redis-server is not installed (Debian: apt-get install redis-server)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    pidfile, log = workdir / f"redis-{port}.pid", workdir / f"redis-{port}.log"
    subprocess.run([binary, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes",
                    "--pidfile", str(pidfile), "--logfile", str(log), "--dir", str(workdir),
                    "--save", "", "--appendonly", "no"], check=True)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise ScaleOutError(f"redis-server on port {port} did not answer:\n{_tail(log)}") from None
                time.sleep(0.1)
        yield url
    finally:
        pid = int(pidfile.read_text().strip()) if pidfile.exists() else None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)


def _celery_app(broker: str) -> object:
    from dagster_celery.make_app import make_app

    return make_app({"broker": broker, "backend": broker})


def write_worker_config(path: Path, broker: str, backend: str | None = None) -> Path:
    """The `-y` config of `dagster-celery worker start`: the broker and the result backend (the
    broker when None). Written by the YAML library, so a URL with a quote or a backslash (in a
    password) stays the one string it was."""
    import yaml

    path.write_text(yaml.safe_dump({"execution": {"config": {"broker": broker, "backend": backend or broker}}}))
    return path


@contextlib.contextmanager
def celery_workers(broker: str, n: int, workdir: Path, backend: str | None = None,
                   worker_env: Sequence[Mapping[str, str]] | None = None) -> Iterator[list[str]]:
    """`n` workers (`dagster-celery worker start`, one process each) on `broker`; yields their names
    once every one answers a ping. `worker_env[i]` adds to worker i's environment (e.g. its own
    `PA_CACHE_DIR`, so that it keeps its own working copy of an `s3://` lakehouse, as a worker on
    another host would).

    Each worker opens the Dagster instance of its `DAGSTER_HOME` as it starts. On a fresh home, two
    processes creating its SQLite storages at the same moment can both stamp Alembic's version
    table and leave the instance unusable ("alembic_version has more than one head",
    dagster-io/dagster#27390; 2 of 9 double starts failed here), so the storages are created here
    first, once."""
    from dagster import DagsterInstance

    workdir.mkdir(parents=True, exist_ok=True)
    home = os.environ.get("DAGSTER_HOME")
    if home:
        Path(home).mkdir(parents=True, exist_ok=True)
        DagsterInstance.from_config(home).dispose()
    config = write_worker_config(workdir / "celery.yaml", broker, backend)
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    host = socket.gethostname()
    bases = [f"pa{i}-{os.getpid()}" for i in range(1, n + 1)]  # the CLI appends "@<host>"
    names = [f"{base}@{host}" for base in bases]
    procs: list[tuple[subprocess.Popen, Path]] = []
    if worker_env is not None and len(worker_env) != n:
        raise ValueError(f"worker_env has {len(worker_env)} entries for {n} workers")
    try:
        for i, base in enumerate(bases):
            log = workdir / f"{base}.log"
            with log.open("w") as fh:
                procs.append((subprocess.Popen(
                    [str(Path(bindir) / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                     "-y", str(config), "-n", base, "-l", "WARNING", "--", "--concurrency=1"],
                    env={**env, **(worker_env[i] if worker_env else {})}, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True), log))
        app = _celery_app(broker)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            for proc, log in procs:
                if proc.poll() is not None:
                    raise ScaleOutError(f"celery worker exited with {proc.returncode}:\n{_tail(log)}")
            answered = {name for reply in (app.control.ping(timeout=1.0) or []) for name in reply}
            if set(names) <= answered:
                break
            if time.monotonic() > deadline:
                raise ScaleOutError(f"celery workers {sorted(set(names) - answered)} did not answer within "
                                    f"{READY_TIMEOUT_S:.0f} s:\n" + "\n".join(_tail(log) for _, log in procs))
        yield names
    finally:
        for proc, _ in procs:  # each worker's own process group: the CLI and the celery it started
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in procs:
            _wait_group(proc, 60.0)


def _wait_group(proc: subprocess.Popen, timeout: float) -> None:
    """Wait until the worker's process group (CLI and celery pool) is gone; SIGKILL after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.2)
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
