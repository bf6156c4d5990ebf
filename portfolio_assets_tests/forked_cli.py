"""`portfolio-assets ARGS` in a process forked from a warm interpreter instead of a fresh one.

A fresh `portfolio-assets` process spends ~1.5 s of CPU importing NumPy, pandas, Arrow and Dagster
before it does anything, and the suite starts ~90 of them. Here one "zygote" process per pytest
process imports those libraries once (and `portfolio_assets`, which pins the numerics before NumPy
loads, as the console script does); each CLI call is a child forked from it that sets the call's
environment and working directory, sends its stdout/stderr to files and runs
`portfolio_assets.cli.run_program(ARGS)`: the console script's own function, exit code and output,
in a process of its own (own pid, own Dagster instance objects, nothing shared with the test).

What a fork does not re-do is the interpreter start and the import of the libraries above (and of
`WARM`'s), so the calls that depend on them stay fresh processes (`conftest.run_cli` decides): an
environment whose settings read at import (`LOAD_TIME_ENV`: the numerics, BLAS and thread settings,
matplotlib's backend and folder, scipy's array API switch, fsspec's `FSSPEC_*`) differ from the
zygote's, and a script run with `python`. The console script itself (interpreter start, entry
point) is run by every test that starts it with `subprocess.Popen` (the killed runs, the second
writer, the UI) and by `make run` in CI.

Protocol (one Unix socket per zygote): the client sends one JSON request per connection; the zygote
forks a handler for it, the handler forks the CLI process, sends `{"pid": P}`, waits for it
(`os.wait4`) and sends `{"returncode": R, "cpu_s": C}`, where C is the CPU of the CLI process and of
the processes it waited for (what `RUSAGE_CHILDREN` would have counted for a subprocess).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

# Read when the zygote's libraries load (NumPy/OpenBLAS, matplotlib, scipy): a call whose environment
# sets them differently must start a fresh interpreter.
LOAD_TIME_ENV = ("PA_NUMERICS", "OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES", "OPENBLAS_NUM_THREADS",
                 "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED", "MPLBACKEND", "MPLCONFIGDIR",
                 "SCIPY_ARRAY_API")
LOAD_TIME_PREFIXES = ("FSSPEC_",)  # fsspec (loaded with Dagster's storage) reads its whole family
PRELOAD = ("portfolio_assets", "numpy", "pandas", "pyarrow", "pyarrow.parquet", "dagster", "sqlalchemy", "yaml",
           "pydantic")
# Imported next: what a graph run loads lazily besides (scipy's linear algebra and clustering, the
# plots' matplotlib, the wavelets, Dagster's SQLite storage and its alembic migrations, the console's
# rich). What they read from the environment at import is in `LOAD_TIME_ENV`. `portfolio_assets`'
# own modules are left to each call: some read the call's `PA_*` settings (the partitions are built
# from the calendar settings).
WARM = ("scipy.linalg", "scipy.sparse", "scipy.spatial", "scipy.special", "scipy.stats", "scipy.optimize",
        "scipy.cluster.hierarchy", "matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg", "pywt",
        "PIL.Image", "alembic", "rich", "pygments", "structlog", "clarabel")


# ---- the zygote (runs as `python -m portfolio_assets_tests.forked_cli SOCKET`) ----------------------


def _recv_all(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _send(conn: socket.socket, message: Mapping[str, object]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _run_cli(request: Mapping[str, object], keep: tuple[int, ...]) -> None:
    """In the forked CLI process: become the call's process and run the console script's function."""
    for fd in keep:
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])  # type: ignore[arg-type]
    os.chdir(str(request["cwd"]))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        out = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, fd)
        os.close(out)
    sys.argv = ["portfolio-assets", *request["args"]]  # type: ignore[misc]
    try:
        from portfolio_assets.cli import run_program

        run_program(list(request["args"]))  # type: ignore[call-overload]  # leaves through os._exit
    except SystemExit as exc:  # argparse's refusals, as the interpreter would turn them into a code
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # an uncaught exception: traceback on stderr, exit 1, as a fresh process
        import traceback

        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 (a closed pipe must not change the exit code)
            pass
    os._exit(code)


def _handle(conn: socket.socket, listener: socket.socket) -> None:
    """In the forked handler: fork the CLI process, report its pid, wait, report its end."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    request = json.loads(_recv_all(conn))
    pid = os.fork()
    if pid == 0:
        try:  # `_run_cli` leaves through os._exit; what fails before its own handling (a missing
            _run_cli(request, (conn.fileno(), listener.fileno()))  # cwd ...) must not go on as a handler
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(1)
    _send(conn, {"pid": pid})
    _, status, usage = os.wait4(pid, 0)
    _send(conn, {"returncode": os.waitstatus_to_exitcode(status), "cpu_s": usage.ru_utime + usage.ru_stime})
    conn.close()
    os._exit(0)


def serve(path: str) -> None:
    """The zygote's loop: preload, then one forked handler per connection (reaped by the kernel)."""
    import importlib

    # A fresh interpreter's signal state, whatever the pytest process had: nothing blocked and SIGTERM
    # at its default action (an ignored disposition and the mask survive fork and exec; a zygote once
    # outlived `terminate` by 30 s in a suite run).
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for name in (*PRELOAD, *WARM):
        importlib.import_module(name)
    from dagster import DagsterInstance

    with DagsterInstance.local_temp():  # loads the SQLite storages every CLI call's instance uses
        pass
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # handlers are reaped without a wait
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        conn, _ = listener.accept()
        if os.fork() == 0:
            try:  # a handler whose client left (a timeout) must end here, not become a second zygote
                _handle(conn, listener)
            finally:
                os._exit(0)
        conn.close()


# ---- the client ------------------------------------------------------------------------------------


class Zygote:
    """One zygote process for this pytest process, started on first use, stopped by `stop`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[str] | None = None
        self.folder = Path(tempfile.mkdtemp(prefix="pa-zygote-"))
        self.socket = self.folder / "zygote.sock"
        self.env: dict[str, str] = {}

    def start(self) -> None:
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                return
            self.env = dict(os.environ)
            self.socket.unlink(missing_ok=True)  # a zygote that died left its socket: bind anew
            self.proc = subprocess.Popen([sys.executable, "-m", __name__, str(self.socket)], env=self.env,
                                         stdout=subprocess.PIPE, text=True,
                                         cwd=Path(__file__).resolve().parents[1])
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"the CLI zygote did not start (exit {self.proc.poll()}): {line!r}")

    def compatible(self, env: Mapping[str, str]) -> bool:
        """Whether a process forked from the zygote computes as a fresh one with `env` would."""
        self.start()

        def loaded(e: Mapping[str, str]) -> dict[str, str]:
            return {k: v for k, v in e.items() if k in LOAD_TIME_ENV or k.startswith(LOAD_TIME_PREFIXES)}

        return loaded(env) == loaded(self.env)

    def run(self, args: list[str], env: Mapping[str, str], cwd: Path,
            timeout: float | None) -> tuple[subprocess.CompletedProcess[str], float]:
        """`portfolio-assets ARGS` forked from the zygote: (the completed process, its CPU seconds)."""
        self.start()
        out = tempfile.NamedTemporaryFile(dir=self.folder, suffix=".out", delete=False)
        err = tempfile.NamedTemporaryFile(dir=self.folder, suffix=".err", delete=False)
        out.close()
        err.close()
        request = {"args": list(args), "env": dict(env), "cwd": str(cwd), "stdout": out.name, "stderr": err.name}
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(self.socket))
            conn.sendall(json.dumps(request).encode())
            conn.shutdown(socket.SHUT_WR)
            reader = conn.makefile("r")
            pid = json.loads(reader.readline())["pid"]
            conn.settimeout(timeout)
            try:
                line = reader.readline()
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(["portfolio-assets", *args], timeout or 0) from None
            if not line:
                raise RuntimeError(f"the CLI zygote's handler for {args} ended without a result")
            end = json.loads(line)
        finally:
            conn.close()
        try:
            stdout = Path(out.name).read_text(errors="replace")
            stderr = Path(err.name).read_text(errors="replace")
        finally:
            os.unlink(out.name)
            os.unlink(err.name)
        proc = subprocess.CompletedProcess(["portfolio-assets", *args], end["returncode"], stdout, stderr)
        return proc, float(end["cpu_s"])

    def stop(self) -> None:
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()  # it holds nothing to write: its handlers and CLI processes run on
                self.proc.wait(timeout=30)
            self.proc = None
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


if __name__ == "__main__":
    serve(sys.argv[1])
