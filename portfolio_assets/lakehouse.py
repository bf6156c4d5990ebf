"""The lakehouse: atomic Parquet partitions, the per-symbol price cache, DuckDB views, path safety.

Layout under `<root>/<profile>/`:

    <group>/<asset>/<date>.parquet          one table per asset per partition
    <group>/<asset>__<part>/<date>.parquet  further tables of the same asset (queryable the same way)
    prices/<EXCH__TICKER>.parquet           the price cache (merged, de-duplicated; never wiped)
    reports/<date>/...                      reports and images
    ledger/<date>/audit.jsonl               the partition's audit ledger
    state/...                               accepted holdings, gate records

Every write goes to a temporary file in the same directory and is renamed into place (POSIX
`os.replace` is atomic), so a killed step leaves the previous partition intact. No pickle.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from portfolio_assets.manifest import PROFILE_RE, PROJECT_ROOT
from portfolio_assets.symbols import filename_symbol, symbol_filename, validate_symbol

DEFAULT_ROOT = PROJECT_ROOT / "lakehouse"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
PRICE_COLUMNS = ("time", "open", "high", "low", "close", "volume", "source", "fetched_at")


class UnsafePathError(ValueError):
    """A path built from external input would leave the lakehouse root."""


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise UnsafePathError(f"invalid {kind} name {name!r}: lower-case letters, digits and '_' only")
    return name


def _check_date(partition: str) -> str:
    try:
        canonical = dt.date.fromisoformat(partition).isoformat()
    except (TypeError, ValueError):
        canonical = None
    if canonical != partition:  # fromisoformat also takes '20261125' and '2026-W48-3': one file per date
        raise UnsafePathError(f"invalid partition {partition!r}: expected YYYY-MM-DD")
    return partition


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (temp file in the same directory, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_frame(path: Path, df: pd.DataFrame) -> Path:
    """Write a DataFrame as Parquet atomically. The index is kept (restored on read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `<path>.lock` (safe across processes on one host)."""
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class Lakehouse:
    """One profile's storage root. All paths are validated and stay inside the root."""

    def __init__(self, root: Path | str | None = None, profile: str = "demo"):
        if not isinstance(profile, str) or not PROFILE_RE.fullmatch(profile):
            raise UnsafePathError(f"invalid profile name {profile!r}")
        base = Path(root or os.environ.get("PA_LAKEHOUSE") or DEFAULT_ROOT).resolve()
        self.base = base
        self.root = (base / profile).resolve()
        self.profile = profile

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise UnsafePathError(f"path {path} resolves outside the lakehouse root {self.root}")
        return resolved

    # ---- asset partitions -------------------------------------------------------------------
    def table_path(self, group: str, asset: str, partition: str, part: str | None = None) -> Path:
        name = _check_name("asset", asset) + (f"__{_check_name('part', part)}" if part else "")
        return self._inside(self.root / _check_name("group", group) / name / f"{_check_date(partition)}.parquet")

    def write_table(self, group: str, asset: str, partition: str, df: pd.DataFrame, part: str | None = None) -> Path:
        return atomic_write_frame(self.table_path(group, asset, partition, part), df)

    def read_table(self, group: str, asset: str, partition: str, part: str | None = None) -> pd.DataFrame:
        path = self.table_path(group, asset, partition, part)
        if not path.exists():
            label = asset + (f"__{part}" if part else "")
            raise FileNotFoundError(
                f"{label} has no stored partition {partition} at {path}; materialize it first"
            )
        return pd.read_parquet(path)

    def has_table(self, group: str, asset: str, partition: str, part: str | None = None) -> bool:
        return self.table_path(group, asset, partition, part).exists()

    def partition_files(self, partition: str) -> list[Path]:
        """Every stored table of `partition` (used by step 1 to clear stale derived artifacts)."""
        _check_date(partition)
        return sorted(p for p in self.root.glob(f"*/*/{partition}.parquet") if p.parent.parent.name != "prices")

    # ---- reports, ledger, state ------------------------------------------------------------
    def reports_dir(self, partition: str) -> Path:
        return self._inside(self.root / "reports" / _check_date(partition))

    def report_path(self, partition: str, relative: str) -> Path:
        if relative.startswith("/") or ".." in Path(relative).parts:
            raise UnsafePathError(f"report path {relative!r} must be relative and stay inside the reports folder")
        return self._inside(self.reports_dir(partition) / relative)

    def ledger_path(self, partition: str) -> Path:
        return self._inside(self.root / "ledger" / _check_date(partition) / "audit.jsonl")

    def state_path(self, name: str) -> Path:
        return self._inside(self.root / "state" / name)

    def relative(self, path: Path) -> str:
        """Path relative to the profile root (what the ledger records)."""
        return str(self._inside(path).relative_to(self.root))

    def clear_partition(self, partition: str, keep_groups: tuple[str, ...] = ("run",)) -> list[str]:
        """Move this partition's derived artifacts (tables, reports, gate records) out of the way,
        into `_archive/<partition>/<UTC time>/`, so no stale file of an earlier run can be read as
        this run's; never the price cache. Nothing is deleted: a re-run that fails part-way leaves
        the previous partition whole in the archive. Returns the moved paths (relative)."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        archive = self._inside(self.root / "_archive" / _check_date(partition) / stamp)
        moved: list[str] = []
        targets = [p for p in self.partition_files(partition) if p.parent.parent.name not in keep_groups]
        for extra in (self.reports_dir(partition), self.root / "state" / "gates" / partition):
            if extra.exists():
                targets.append(extra)
        for path in targets:
            rel = self.relative(path)
            dest = archive / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
            moved.append(rel)
        return moved

    # ---- price cache ------------------------------------------------------------------------
    def price_path(self, symbol: str) -> Path:
        return self._inside(self.root / "prices" / f"{symbol_filename(symbol)}.parquet")

    def cached_symbols(self) -> list[str]:
        folder = self.root / "prices"
        return sorted(filename_symbol(p.stem) for p in folder.glob("*.parquet")) if folder.exists() else []

    def read_prices(self, symbol: str) -> pd.DataFrame:
        path = self.price_path(symbol)
        if not path.exists():
            return pd.DataFrame({c: pd.Series(dtype="float64") for c in PRICE_COLUMNS})
        return pd.read_parquet(path)

    def merge_prices(self, symbol: str, bars: pd.DataFrame, source: str, fetched_at: dt.datetime) -> pd.DataFrame:
        """Merge fetched bars into the symbol's cache: the newest fetch wins per timestamp.

        Bars must have a tz-aware UTC `time` and finite positive OHLC; the cache stays sorted and
        de-duplicated. Locked per symbol so parallel steps and partitions can share it.
        """
        validate_symbol(symbol)
        new = bars.loc[:, ["time", "open", "high", "low", "close", "volume"]].copy()
        new["source"] = source
        new["fetched_at"] = pd.Timestamp(fetched_at).tz_convert("UTC") if pd.Timestamp(fetched_at).tzinfo else pd.Timestamp(fetched_at, tz="UTC")
        path = self.price_path(symbol)
        with file_lock(path):
            old = self.read_prices(symbol)
            merged = pd.concat([old, new], ignore_index=True) if len(old) else new
            merged["time"] = pd.to_datetime(merged["time"], utc=True)
            merged = (
                merged.sort_values(["time", "fetched_at"], kind="mergesort")
                .drop_duplicates("time", keep="last")
                .reset_index(drop=True)
            )
            atomic_write_frame(path, merged)
        return merged

    # ---- DuckDB ----------------------------------------------------------------------------
    def table_globs(self) -> dict[str, str]:
        """View name -> Parquet glob for every stored asset table (and `prices`)."""
        out: dict[str, str] = {}
        if self.root.exists():
            for folder in sorted(self.root.glob("*/*")):
                if (folder.is_dir() and NAME_RE.fullmatch(folder.name)  # asset folders, not e.g. scans/<date>
                        and folder.parent.name not in ("reports", "ledger", "state", "prices")
                        and not folder.parent.name.startswith("_")):
                    if any(folder.glob("*.parquet")):
                        out[folder.name] = str(folder / "*.parquet")
            if any((self.root / "prices").glob("*.parquet")):
                out["prices"] = str(self.root / "prices" / "*.parquet")
        return out

    def duckdb(self, database: str = ":memory:"):
        """A DuckDB connection with one view per asset; each view has a `partition` (or `symbol`) column."""
        import duckdb

        con = duckdb.connect(database)
        for name, glob in self.table_globs().items():
            if name == "prices":
                select = (
                    f"SELECT replace(regexp_extract(filename, '([^/]+)\\.parquet$', 1), '__', ':') AS symbol, * "
                    f"EXCLUDE (filename) FROM read_parquet('{glob}', filename=true, union_by_name=true)"
                )
            else:
                select = (
                    f"SELECT regexp_extract(filename, '([0-9-]+)\\.parquet$', 1) AS partition, * EXCLUDE (filename) "
                    f"FROM read_parquet('{glob}', filename=true, union_by_name=true)"
                )
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {select}')
        return con

    def write_catalog(self) -> Path:
        """Write `catalog.duckdb` (views only) for ad-hoc SQL. Run from the CLI, never from parallel steps."""
        path = self._inside(self.root / "catalog.duckdb")
        tmp = path.with_name(".catalog.duckdb.tmp")
        tmp.unlink(missing_ok=True)
        con = self.duckdb(str(tmp))
        con.close()
        os.replace(tmp, path)
        return path
