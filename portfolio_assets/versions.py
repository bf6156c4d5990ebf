"""Versions: every asset's Dagster `code_version`, and the code/package versions of a run.

The rule (docs/ARCHITECTURE.md, "Code versions"): an asset's code version is derived, never
written by hand on the asset. Its own part:

    own(asset) = "w<wiring>|" + ",".join(f"{area}.{AREA_VERSIONS[area]}" for area in sorted(uses))
                 (just "w<wiring>" for an asset that uses no area)

and, for an asset with upstream assets, the fingerprint of what computed its inputs:

    code_version(asset) = own(asset) + "|up:" + sha256(sorted (ancestor, own(ancestor)))[:12]

so bumping an area changes the code version of the assets that use it *and of everything
downstream of them*: Dagster then reports that whole cone stale at once (its own staleness only
follows data versions, i.e. only after the changed asset has been re-materialized), and nothing
upstream.

* `AREA_VERSIONS` gives each area of the science (a quant module or package, the sources, the
  reports ...) a version. Bump it when a change to that area can change a result: every asset
  that uses the area gets a new code version, and Dagster reports it and everything downstream
  stale (e.g. `regimes` 1 -> 2 makes `market_regime` stale, not `risk_buckets`).
* `ASSETS[asset] = (wiring, areas)`: the wiring version covers the asset's own module in
  `assets/` (bump it when the asset computes something differently); `areas` are what it calls.
* `AREA_SOURCES` says which files make up an area. `versions_snapshot.json` records, per area,
  its version and a hash of those files' syntax trees (comments, docstrings and formatting do
  not count). A guard test fails when an area's files changed but neither its version nor the
  snapshot was updated; `portfolio-assets versions --refresh` rewrites the snapshot (after
  deciding whether the change needs a version bump).

The table is central on purpose: quant modules carry no Dagster or version constants.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from portfolio_assets.manifest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "portfolio_assets"
SNAPSHOT = PACKAGE / "versions_snapshot.json"

AREA_VERSIONS: dict[str, int] = {
    "sources": 2,        # market data: scans and bars of every vendor
    "prices": 3,         # price store, window fetch and automated recovery (2: columnar store, one first fetch per run; 3: a re-delivered fault does not undo a repair)
    "calendar": 1,       # session alignment and the master calendar
    "health": 1,         # per-symbol health rules
    "rawpool": 2,        # scans -> raw pool
    "selection": 2,      # natural selection
    "clustering": 1,     # correlation, distance, Ward linkage, bucket statistics
    "enrichment": 1,     # sector / industry provenance
    "convention": 1,     # synthetic-long streams and net weights
    "regimes": 2,        # regime detector
    "engines": 2,        # portfolio engines and their fallbacks
    "weights_audit": 3,  # the weights rules
    "backtest": 2,       # walk-forward windows, simulators, metrics, the tournament
    "reports": 4,        # report builder, tear-sheets, figures, golden bundle
    "ledger": 3,         # hashing, chain and verification (2: seal, anchor, binding, price data; 3: price ranges of the columnar store)
    "orders": 1,         # orders from the book to the target
    "moments": 1,        # pairwise co-moments, covariance, Ledoit-Wolf, antifragility
    "numerics": 1,       # the floating-point kernels NumPy and OpenBLAS run (numerics.py)
}

# Files of each area, relative to the package: a module `x.py`, or every file under `x/`.
AREA_SOURCES: dict[str, tuple[str, ...]] = {
    "sources": ("sources", "symbols.py"),
    "prices": ("fetch.py", "price_store.py"),
    "calendar": ("quant/calendar.py", "partitions.py", "session_tables.py", "timestamps.py"),
    "health": ("quant/health.py",),
    "rawpool": ("quant/rawpool.py",),
    "selection": ("quant/selection.py", "quant/selection"),
    "clustering": ("quant/clustering.py", "quant/clustering", "quant/correlation.py"),
    "enrichment": ("quant/enrichment.py",),
    "convention": ("quant/convention.py", "constants.py"),
    "regimes": ("quant/regimes.py", "quant/regimes"),
    "engines": ("quant/engines.py", "quant/engines"),
    "weights_audit": ("quant/weights_audit.py",),
    "backtest": ("quant/walkforward.py", "quant/simulate.py", "quant/metrics.py", "quant/tournament.py"),
    "reports": ("reports",),
    "ledger": ("ledger.py", "ledger"),
    "orders": ("quant/orders.py", "holdings.py"),
    "moments": ("quant/moments.py",),
    "numerics": ("numerics.py",),
}

_FETCHED = ("sources", "prices", "calendar", "health")

# asset -> (wiring version, areas it uses)
ASSETS: dict[str, tuple[int, tuple[str, ...]]] = {
    "run_manifest": (1, ()),
    "equity_scan": (1, ("sources", "numerics")),
    "crypto_scan": (1, ("sources", "numerics")),
    "bond_scan": (1, ("sources", "numerics")),
    "forex_scan": (1, ("sources", "numerics")),
    "raw_pool": (1, ("sources", "rawpool", "numerics")),
    "market_bars": (2, ("sources", "prices", "calendar", "numerics")),
    "returns_60d": (1, (*_FETCHED, "numerics")),
    "selected_universe": (1, ("selection", "clustering", "moments", "numerics")),
    "enriched_universe": (1, ("sources", "enrichment")),
    "history_500d": (1, (*_FETCHED, "reports", "numerics")),
    "raw_pool_history": (1, (*_FETCHED, "numerics")),
    "risk_buckets": (1, ("convention", "clustering", "reports", "numerics")),
    "market_regime": (1, (*_FETCHED, "regimes", "moments", "reports", "numerics")),
    "holdings": (1, ("orders", "numerics")),
    "target_weights": (2, ("convention", "engines", "moments", "numerics")),  # 2: no bucket 0 for raw-pool-only symbols
    "tournament": (1, (*_FETCHED, "rawpool", "selection", "clustering", "convention", "regimes", "engines",
                       "moments", "weights_audit", "backtest", "numerics")),
    "previous_target": (1, ("reports",)),
    "reports": (2, ("reports", "backtest", "numerics")),  # 2: the previous target is an input (previous_target)
    "golden_artifacts": (1, ("reports",)),
    "audit_ledger": (1, ("ledger",)),
    "implementation_orders": (2, ("orders", "numerics")),
    "executions": (1, ("orders", "numerics")),
}


def asset_code_version(asset: str) -> str:
    """The own part of `asset`'s code version (KeyError: the asset is not in `ASSETS`)."""
    wiring, areas = ASSETS[asset]
    used = ",".join(f"{area}.{AREA_VERSIONS[area]}" for area in sorted(set(areas)))
    return f"w{wiring}|{used}" if used else f"w{wiring}"


def with_upstream(own: dict[str, str], parents: dict[str, set[str]]) -> dict[str, str]:
    """Full code versions: `own[key]` plus the fingerprint of the own versions of all its
    ancestors (`parents`: key -> upstream keys; a self-dependency is not an ancestor)."""
    out = {}
    for key in own:
        seen: set[str] = set()
        stack = [p for p in parents.get(key, ()) if p != key]
        while stack:
            node = stack.pop()
            if node not in seen and node != key:
                seen.add(node)
                stack.extend(parents.get(node, ()))
        if seen:
            fingerprint = hashlib.sha256(json.dumps(sorted((a, own[a]) for a in seen)).encode()).hexdigest()[:12]
            out[key] = f"{own[key]}|up:{fingerprint}"
        else:
            out[key] = own[key]
    return out


def area_files(area: str, package: Path = PACKAGE) -> list[Path]:
    """The Python files of `area` that exist in this checkout (modules and packages)."""
    files: set[Path] = set()
    for entry in AREA_SOURCES[area]:
        path = package / entry
        if path.is_file():
            files.add(path)
        elif path.is_dir():
            files.update(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
    return sorted(files)


def _syntax_digest(path: Path) -> str:
    """SHA-256 of the module's syntax tree without docstrings: comments, docstrings and
    formatting changes do not count as code changes."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def area_digest(area: str, package: Path = PACKAGE) -> str:
    """One hash over the area's files (relative path + syntax digest of each)."""
    listing = {p.relative_to(package).as_posix(): _syntax_digest(p) for p in area_files(area, package)}
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()


def current_snapshot(package: Path = PACKAGE) -> dict[str, dict[str, object]]:
    """Per area, its version in `AREA_VERSIONS` and the digest of its files (what `SNAPSHOT` records)."""
    return {area: {"version": AREA_VERSIONS[area], "sources": area_digest(area, package)}
            for area in sorted(AREA_VERSIONS)}


def snapshot_problems(package: Path = PACKAGE, snapshot: Path = SNAPSHOT) -> list[str]:
    """Areas whose files changed since the snapshot while their version stayed the same, and
    areas whose version or file set moved without a refreshed snapshot (empty = consistent)."""
    recorded = json.loads(snapshot.read_text()) if snapshot.exists() else {}
    problems = []
    for area, now in current_snapshot(package).items():
        then = recorded.get(area)
        if then is None:
            problems.append(f"{area}: not in {snapshot.name}; run `portfolio-assets versions --refresh`")
        elif then["sources"] != now["sources"] and then["version"] == now["version"]:
            problems.append(
                f"{area}: its source files changed but AREA_VERSIONS['{area}'] is still {now['version']}: "
                f"bump it if the change can alter results, then run `portfolio-assets versions --refresh`")
        elif then != now:
            problems.append(f"{area}: version {then['version']} -> {now['version']} not recorded; "
                            f"run `portfolio-assets versions --refresh`")
    problems += [f"{area}: in {snapshot.name} but not in AREA_VERSIONS" for area in sorted(set(recorded) - set(AREA_VERSIONS))]
    return problems


def refresh_snapshot(package: Path = PACKAGE, snapshot: Path = SNAPSHOT) -> Path:
    """Rewrite `snapshot` with the current versions and digests of every area; returns its path."""
    snapshot.write_text(json.dumps(current_snapshot(package), indent=2, sort_keys=True) + "\n")
    return snapshot


# ---- the run's code and package versions (run manifest, ledger genesis) ----------------------
RECORDED_PACKAGES = (  # what the package imports for its results (the run manifest records their versions)
    "dagster", "pandas", "numpy", "scipy", "PyWavelets", "clarabel", "quantstats", "duckdb", "pyarrow",
    "exchange_calendars", "pydantic", "portfolio_assets",
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
    """The installed version of each of `RECORDED_PACKAGES` (`not installed` when missing), cached per
    process."""
    out = {}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
