"""`ui`: the Dagster webserver and daemon on the profile's instance."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from portfolio_assets.cli.common import _err, _setup_env
from portfolio_assets.manifest import PROJECT_ROOT

# `dagster dev` warns on every start that `dg dev` supersedes it; `dg` (dagster-dg-cli, some twenty
# more packages and a `[tool.dg]` project layout) is not installed, so the launcher runs the `dagster`
# script with that one warning filtered (by its exact text) and every other warning left as it is.
DAGSTER_DEV_LAUNCHER = (
    "import runpy, sys, warnings; import dagster; "
    "warnings.filterwarnings('ignore', message='Function `dev_command` is superseded', "
    "category=dagster.SupersessionWarning); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def cmd_ui(args: argparse.Namespace) -> int:
    """`dagster dev` (webserver + daemon) on the persistent DAGSTER_HOME, loading `workspace.yaml`
    (the same code location name as `pyproject.toml`).

    `dagster dev` runs in its own session: Ctrl-C or SIGTERM reach only this process, which forwards
    one SIGINT, so `dagster dev`'s clean shutdown of the webserver and the daemon is never cut short
    by a second signal. A second Ctrl-C kills the whole `dagster dev` process group.
    """
    import signal

    resolved = _setup_env(args)  # resolves the profile and prepares DAGSTER_HOME (dagster_home())
    home = Path(os.environ["DAGSTER_HOME"])
    exe = Path(sys.executable).with_name("dagster")
    cmd = [sys.executable, "-c", DAGSTER_DEV_LAUNCHER, str(exe if exe.exists() else shutil.which("dagster") or exe),
           "dev", "-h", args.host, "-p", str(args.port), "-w", str(PROJECT_ROOT / "workspace.yaml")]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        _err(f"warning: --host {args.host} exposes the UI (no authentication) beyond this machine")
    print(f"Dagster UI on http://{args.host}:{args.port} (profile {resolved.profile}, DAGSTER_HOME {home})",
          flush=True)
    # SIGTERM stops it like Ctrl-C. SIGINT is handled here too, *before* the child starts: a command
    # started in the background (`&`, nohup, a service manager) inherits SIGINT ignored, and an
    # ignored signal stays ignored across exec, so `dagster dev` would ignore the SIGINT forwarded to
    # it; a handled one is reset to the default by exec, and `dagster dev` shuts down on it.
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env={**os.environ, "DAGSTER_HOME": str(home)},
                            start_new_session=True)
    try:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            _err("stopping the Dagster webserver and daemon (Ctrl-C again to kill them)")
            proc.send_signal(signal.SIGINT)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
