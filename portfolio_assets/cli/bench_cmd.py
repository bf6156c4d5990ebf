"""`bench`: hands over to the benchmark harness, `python -m benchmarks` in the project tree.

The bench lives outside the package, in `benchmarks/` (issue 16: it times the real assets through
Dagster and is not shipped with the package); this subcommand starts it with the same options in
the project root, where `benchmarks/` is, and returns its exit code.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from portfolio_assets.manifest import PROJECT_ROOT


def cmd_bench(args: argparse.Namespace) -> int:
    """`python -m benchmarks [--quick] [--markdown PATH]`; its exit code."""
    if not (PROJECT_ROOT / "benchmarks" / "__main__.py").exists():
        raise FileNotFoundError(f"benchmarks/ not found under {PROJECT_ROOT}: the bench runs from a source checkout")
    argv = [sys.executable, "-m", "benchmarks"]
    if getattr(args, "quick", False):
        argv.append("--quick")
    if getattr(args, "markdown", None):
        argv += ["--markdown", str(Path(args.markdown).resolve())]  # the child runs in PROJECT_ROOT
    return subprocess.call(argv, cwd=PROJECT_ROOT)
