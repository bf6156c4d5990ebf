"""Code and package versions recorded in the run manifest and the ledger genesis."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata

from portfolio_assets.manifest import PROJECT_ROOT

RECORDED_PACKAGES = (
    "dagster", "pandas", "polars", "numpy", "scipy", "scikit-learn", "PyWavelets", "riskfolio-lib",
    "quantstats", "duckdb", "pyarrow", "exchange_calendars", "pydantic", "cvxpy", "portfolio_assets",
)


@lru_cache(maxsize=1)
def code_version() -> str:
    """`git:<commit>[+dirty]` when run from a checkout, else `pkg:<version>`."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"git:{commit}{'+dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return f"pkg:{package_versions().get('portfolio_assets', 'unknown')}"


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
