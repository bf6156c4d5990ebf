"""The lakehouse: atomic Parquet partitions, the columnar price store, DuckDB views, path safety.

Layout under `<root>/<profile>/`:

    <group>/<asset>/<date>.parquet          one table per asset key per partition (the IO manager's;
                                            a multi-asset's further tables are keys `<asset>__<part>`)
    files/<asset>/<date>/...                files an asset writes besides its tables (images, Markdown)
    reports/<date>/...                      the `reports` asset's folder
    prices/parts/part-*.parquet             the price store: one table per fetch (symbol, time, OHLCV,
                                            source, fetched_at, attempt), read with predicate pushdown,
                                            the newest fetch winning per bar unless it re-delivers a
                                            repaired fault (`price_store`; never wiped)
    ledger/<date>/audit.jsonl               the partition's audit ledger
    _intermediate/<run id>/...              values passed between the tournament's ops

Every table write goes to a temporary file in the same directory and is renamed into place (POSIX
`os.replace` is atomic), so a killed step leaves the previous partition intact. A folder an asset
owns (`files/<asset>/<date>`, `reports/<date>`) is a symbolic link to a complete version folder,
swapped by one `os.replace` of the link (`publish_dir`): readers see the old or the new folder,
never a mix, and re-materializing an asset replaces only its own tables and folder. Tables are
stored without pandas index columns (a named index, e.g. `session`, is an ordinary column). No
pickle.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from portfolio_assets.constants import WRITER_LOCK
from portfolio_assets.lake_mirror import attach, mirror_of
from portfolio_assets.manifest import PROFILE_RE
from portfolio_assets.manifest.base import lakehouse_base_path
from portfolio_assets.price_store import PART_GLOB, PriceStore
from portfolio_assets.price_store import PRICE_COLUMNS as PRICE_COLUMNS  # re-exported (the old import path)
from portfolio_assets.symbols import symbol_filename, validate_symbol

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
LOCK_LEASE_S = 900.0
"""On an object-store lakehouse, how long a `file_lock` holder keeps the folder's lease before
another host may take it over (alert delivery, the longest holder, retries sinks for minutes)."""
T = TypeVar("T")


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


def atomic_write(path: Path, write: Callable[[str], object]) -> Path:
    """Create `path` atomically: `write(tmp)` fills a temp file in the same directory, which is
    fsynced, renamed over `path`, and the directory fsynced; on any error the temp file is removed
    and `path` is left as it was. The one atomic-write recipe of the package."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    mirrored = mirror_of(path)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if mirrored is not None:  # an object-store lakehouse: in the bucket before it is in place here
            mirror, key = mirrored
            etag = mirror.upload(tmp, key)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if mirrored is not None:
            mirror.record(key, etag)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (`atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def stored_form(df: pd.DataFrame) -> pd.DataFrame:
    """The frame as an asset table stores it: an unnamed index (positions or leftovers of a
    filter) is dropped, a named index (e.g. `session`) is kept and written as a column."""
    names = [n for n in df.index.names if n is not None]
    if not names:
        return df.reset_index(drop=True)
    if len(names) != df.index.nlevels:
        raise ValueError(f"index levels {list(df.index.names)}: name every level or none")
    return df


def read_back(df: pd.DataFrame) -> pd.DataFrame:
    """What a reader gets back from `Lakehouse.write_table(df)`: the same Parquet round trip, in
    memory (it can change dtypes, e.g. a nullable Int32 comes back as Int64)."""
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(stored_form(df), preserve_index=None), buffer)
    buffer.seek(0)
    return pd.read_parquet(buffer)


def atomic_write_frame(path: Path, df: pd.DataFrame, *, preserve_index: bool | None = True) -> Path:
    """Write a DataFrame as Parquet atomically (`atomic_write`). With the default
    `preserve_index=True` every index is kept (the price cache's format); asset tables use
    `write_table`, which stores `stored_form(df)` with `preserve_index=None` (no index columns)."""
    table = pa.Table.from_pandas(df, preserve_index=preserve_index)
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `<path>.lock` (safe across processes on one host)."""
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    mirrored = mirror_of(path)
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            if mirrored is None:
                yield
            else:  # and across hosts: the folder's lease, pulled on entry and pushed on exit
                with mirrored[0].critical(path, hold_s=LOCK_LEASE_S):
                    yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def publish_dir(target: Path, build: Callable[[Path], T]) -> T:
    """Build a folder with `build(staging)` and make it `target` in one atomic step.

    `target` is a relative symbolic link to `.<name>.versions/<token>/`; the new version is built
    beside the old one and the link is swapped with `os.replace`, so readers see the old folder or
    the new one, never a mix, and a failed build leaves the old one in place. Older versions are
    removed after the swap. A `target` that is still a plain folder (written before this layout)
    is moved into the versions folder first.
    """
    versions = target.parent / f".{target.name}.versions"
    versions.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ-"), dir=versions))
    link = target.parent / f".{target.name}.link-{stage.name}"
    try:
        result = build(stage)
        for path in sorted(stage.rglob("*")):
            if path.is_file():
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        if target.exists() and not target.is_symlink():
            os.replace(target, versions / f"legacy-{stage.name}")
        relative = os.path.relpath(stage, target.parent)
        os.symlink(relative, link)
        mirrored = mirror_of(target)
        if mirrored is not None:  # in the bucket first: the version's files, then its pointer (lake_mirror)
            mirrored[0].push_tree(stage)
            mirrored[0].put_link(target, relative)
        os.replace(link, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        raise
    for old in versions.iterdir():
        if old != stage:
            shutil.rmtree(old, ignore_errors=True)
    if mirrored is not None:
        mirrored[0].push_tree(versions)  # deletes the old versions' objects
    return result


def _sql_string(text: str) -> str:
    """`text` as an SQL string literal (a quote is doubled: a root such as `/home/o'brien/lake`)."""
    return "'" + text.replace("'", "''") + "'"


def _duckdb_literal(folder: Path) -> str:
    """`folder` as the literal start of a DuckDB glob: `*`, `?` and `[` are written as the
    one-character classes `[*]`, `[?]`, `[[]`, so a folder named `a?b` matches itself only (as
    written, it also matched a sibling `a*b`, whose tables the view would have read). DuckDB
    reads a backslash as a path separator and has no escape for it: such a root is refused with
    `ValueError`, naming the folder, rather than giving views of another folder or none."""
    text = str(folder)
    if "\\" in text:
        raise ValueError(f"the lakehouse folder {text} contains a backslash, which DuckDB's file globs cannot "
                         "match; use a lakehouse root without one for SQL views")
    return re.sub(r"([*?\[])", r"[\1]", text)


class Lakehouse:
    """One profile's storage root. All paths are validated and stay inside the root.

    On an object-store lakehouse (`s3://`, `lake_mirror`) the root is this host's working copy."""

    def __init__(self, root: Path | str | None = None, profile: str = "demo", *, pull: bool = True):
        if not isinstance(profile, str) or not PROFILE_RE.fullmatch(profile):
            raise UnsafePathError(f"invalid profile name {profile!r}")
        base = lakehouse_base_path(str(root) if root else os.environ.get("PA_LAKEHOUSE"))
        self.base = base
        self.root = (base / profile).resolve()
        self.profile = profile
        self.mirror = attach(base)
        """The object store behind this working copy (`lake_mirror`), None for a local lakehouse;
        opening pulls the profile's changes from it unless `pull` is False (`PortfolioSettings`)."""
        if self.mirror is not None and pull:
            self.mirror.pull(f"{profile}/")

    def _named(self, path: Path) -> Path:
        """`path` as named (links not followed), after checking it resolves inside the root."""
        self._inside(path)
        return Path(os.path.abspath(path))

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise UnsafePathError(f"path {path} resolves outside the lakehouse root {self.root}")
        return resolved

    # ---- asset partitions -------------------------------------------------------------------
    def table_path(self, group: str, asset: str, partition: str, part: str | None = None) -> Path:
        """`<group>/<asset>/<date>.parquet`; `part` names a multi-asset's further table `<asset>__<part>`."""
        name = _check_name("asset", asset) + (f"__{_check_name('part', part)}" if part else "")
        return self._inside(self.root / _check_name("group", group) / name / f"{_check_date(partition)}.parquet")

    def write_table(self, group: str, asset: str, partition: str, df: pd.DataFrame, part: str | None = None) -> Path:
        """Store `stored_form(df)` atomically (no pandas index columns in the file)."""
        return atomic_write_frame(self.table_path(group, asset, partition, part), stored_form(df), preserve_index=None)

    def read_table(self, group: str, asset: str, partition: str, part: str | None = None) -> pd.DataFrame:
        """The stored table of `asset` (or its `part`) for `partition`; `FileNotFoundError` when it is
        not stored."""
        path = self.table_path(group, asset, partition, part)
        if not path.exists():
            label = asset + (f"__{part}" if part else "")
            raise FileNotFoundError(f"{label} has no stored partition {partition} at {path}; materialize it first")
        return pd.read_parquet(path)

    def has_table(self, group: str, asset: str, partition: str, part: str | None = None) -> bool:
        """Whether `asset` (or its `part`) has a stored table for `partition`."""
        return self.table_path(group, asset, partition, part).exists()

    def partition_files(self, partition: str) -> list[Path]:
        """Every stored table of `partition`."""
        _check_date(partition)
        return sorted(p for p in self.root.glob(f"*/*/{partition}.parquet") if p.parent.parent.name != "prices")

    def stored_partitions(self, group: str, asset: str) -> list[str]:
        """Partition keys with a stored table of `asset`, sorted."""
        folder = self.table_path(group, asset, "2000-01-03").parent
        return sorted(p.stem for p in folder.glob("*.parquet")) if folder.exists() else []

    # ---- folders owned by one asset, reports, ledger --------------------------------------
    def files_dir(self, asset: str, partition: str) -> Path:
        """`files/<asset>/<date>`: the folder of files `asset` writes for `partition` besides its
        tables (a link to its current version, see `publish_dir`)."""
        return self._named(self.root / "files" / _check_name("asset", asset) / _check_date(partition))

    def reports_dir(self, partition: str) -> Path:
        """`reports/<date>`: the `reports` asset's folder (a link to its current version)."""
        return self._named(self.root / "reports" / _check_date(partition))

    def report_path(self, partition: str, relative: str) -> Path:
        """`relative` inside `reports/<date>`; `UnsafePathError` when it is absolute, contains `..` or
        resolves outside the root."""
        if relative.startswith("/") or ".." in Path(relative).parts:
            raise UnsafePathError(f"report path {relative!r} must be relative and stay inside the reports folder")
        return self._inside(self.reports_dir(partition) / relative)

    def ledger_path(self, partition: str) -> Path:
        """`ledger/<date>/audit.jsonl`: the partition's audit ledger."""
        return self._inside(self.root / "ledger" / _check_date(partition) / "audit.jsonl")

    def writer_lock_path(self, partition: str) -> Path:
        """`ledger/<date>/writer.lock`: held by the command writing the partition (`cli.partition_lock`)."""
        return self.ledger_path(partition).with_name(WRITER_LOCK)

    def writer_lock_holder(self, partition: str) -> str | None:
        """The command holding `partition`'s writer lock (its JSON line), None when no process holds
        it. Probes with a non-blocking shared lock, which never waits and is dropped at once."""
        path = self.writer_lock_path(partition)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def state_path(self, name: str) -> Path:
        """A path under `state/` (no asset of the graph keeps state there; kept for operators' files)."""
        return self._inside(self.root / "state" / name)

    def relative(self, path: Path) -> str:
        """Path relative to the profile root as the caller named it (what the ledger records),
        after checking that it resolves inside the root (a published folder is a link)."""
        return self._named(path).relative_to(self.root).as_posix()

    # ---- price store ------------------------------------------------------------------------
    def price_path(self, symbol: str) -> Path:
        """The previous layout's per-symbol file `prices/<EXCH__TICKER>.parquet` (no longer
        written; seals of earlier runs name such files and still verify against them)."""
        return self._inside(self.root / "prices" / f"{symbol_filename(symbol)}.parquet")

    def price_store(self) -> PriceStore:
        """The columnar price store (`prices/parts/part-*.parquet`, see `price_store`)."""
        return PriceStore(self._inside(self.root / "prices"))

    def cached_symbols(self) -> list[str]:
        """Symbols with at least one bar in the price store, sorted."""
        return self.price_store().symbols()

    def read_prices(self, symbol: str) -> pd.DataFrame:
        """Every stored bar of `symbol` (`PRICE_COLUMNS`), the newest fetch's per timestamp."""
        validate_symbol(symbol)
        return self.price_store().read_many([symbol])[symbol]

    def read_prices_many(self, symbols: list[str], start: dt.date | None = None,
                         end: dt.date | None = None) -> dict[str, pd.DataFrame]:
        """Stored bars of `symbols` with start <= time <= end (midnight UTC), one scan with the
        symbol and date filters pushed down: {symbol: bars (`PRICE_COLUMNS`)}."""
        return self.price_store().read_many(symbols, start, end)

    def write_prices(self, bars: dict[str, pd.DataFrame], source: str, fetched_at: dt.datetime, *,
                     start: dt.date | None = None, end: dt.date | None = None, attempt: int = 0,
                     scope: str | None = None) -> Path | None:
        """Store one fetch of many symbols as one part (atomic; concurrent writers never collide).
        Bars need a `time` column and finite-or-not OHLCV; per timestamp the newest fetch wins on read."""
        return self.price_store().write(bars, source, fetched_at, start=start, end=end, attempt=attempt, scope=scope)

    def merge_prices(self, symbol: str, bars: pd.DataFrame, source: str, fetched_at: dt.datetime) -> pd.DataFrame:
        """Store one symbol's fetched bars (`write_prices`) and return its merged bars: the newest
        fetch wins per timestamp, sorted, de-duplicated."""
        validate_symbol(symbol)
        self.write_prices({symbol: bars}, source, fetched_at)
        return self.read_prices(symbol)

    # ---- DuckDB ----------------------------------------------------------------------------
    def table_globs(self) -> dict[str, str]:
        """View name -> DuckDB glob for every stored asset table (and `prices`): the folder's path
        with DuckDB's wildcards written as literals (`_duckdb_literal`), then the file pattern."""
        out: dict[str, str] = {}
        if self.root.exists():
            for folder in sorted(self.root.glob("*/*")):
                if (folder.is_dir() and NAME_RE.fullmatch(folder.name)  # asset folders, not e.g. scans/<date>
                        and folder.parent.name not in ("reports", "ledger", "state", "prices", "files")
                        and not folder.parent.name.startswith("_")):
                    if any(folder.glob("*.parquet")):
                        out[folder.name] = f"{_duckdb_literal(folder)}/*.parquet"
            if self.price_store().has_parts():
                out["prices"] = f"{_duckdb_literal(self.price_store().parts_dir)}/{PART_GLOB}"
        return out

    def duckdb(self, database: str = ":memory:"):
        """A DuckDB connection with one view per asset table (and `prices`).

        Asset views lead with the `partition` taken from the file name; a table's own `partition`
        column (the run manifest's) is that same date, so it is not repeated (no `partition_1`).
        Pandas index columns of files written before tables were stored without an index
        (`__index_level_0__`) are left out."""
        import duckdb

        con = duckdb.connect(database)
        for name, glob in self.table_globs().items():
            source = f"read_parquet({_sql_string(glob)}, filename=true, union_by_name=true)"
            columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
            hidden = {"filename", "partition"} | {c for c in columns if re.fullmatch(r"__index_level_\d+__", c)}
            # `prices` lists every stored row (several fetches of one bar are all listed, with `fetched_at`)
            lead = None if name == "prices" else "regexp_extract(filename, '([0-9-]+)\\.parquet$', 1) AS partition"
            keep = ", ".join(f'"{c}"' for c in columns if c not in hidden)
            selected = ", ".join(x for x in (lead, keep) if x)
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT {selected} FROM {source}')
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
