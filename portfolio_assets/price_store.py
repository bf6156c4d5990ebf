"""The columnar price store: one Parquet table per fetch, read back with predicate pushdown.

Layout under a profile's `prices/` folder:

    prices/parts/part-<fetched_at ns>-<pid>-<random>.parquet   one table per fetch (many symbols)
    prices/parts/.lock                                          readers share it, compaction owns it

A part holds the bars one fetch delivered (columns `symbol, time, open, high, low, close, volume,
source, fetched_at, attempt`; rows sorted by symbol, then time; no duplicated (symbol, time)), plus what
the fetch was in the file's key-value metadata (`pa.start`, `pa.end`, `pa.attempt`, `pa.scope`:
the run that fetched it, `pa.symbols`). Parts are written whole, atomically (in memory, then
`atomic_write_bytes`: temp file, fsync, rename, fsync of the folder) under a name no other writer
uses, so two processes writing at once never lose each other's bars and a killed writer leaves
no partial part. Writing the same bars again only adds a part whose rows are the same: reads do not
change.

Reads (`read`) open the parts as one `pyarrow.dataset` and push the symbol and date filters down
to the row groups (statistics on `symbol` and `time`); of several rows for one (symbol, time) the
newest fetch wins (`fetched_at`, then the part's name: the order the old per-symbol merge kept),
with one exception: a first fetch (attempt 0) that delivers again a value a recovery's re-fetch
(attempt >= 1) had replaced does not win over the repair (`_repaired_winners`: the vendor
re-delivering a fault to another run must not flip a repaired bar back). Parts written before the
`attempt` column count as first fetches. `compact` merges parts into one under the exclusive lock
(the row that stands per (symbol, time) is kept, and every row of a bar with a replaced value, so
no read changes), deleting only the parts it merged.

Content hashes (`fingerprint`) are of the bars' content for a symbol and a date range, never of a
file: the same bars give the same hash in any process and whatever the parts look like, and an
edit of any stored bar in the range changes it. A ledger seal names such a range as
`prices/<EXCH__TICKER>@<first day>..<last day>` (`price_ref`); `ref_fingerprint` re-hashes it.
The previous layout's per-symbol files (`prices/<EXCH__TICKER>.parquet`) are left alone and
still verify against the seals that name them (`ledger.price_fingerprint`).

One module past ~500 lines on purpose: the part format, its lock, writing, reading, hashing and
compaction are one idea (every function reads or writes the same part layout under the same lock);
cut apart, each piece would have to know the whole format.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from portfolio_assets.symbols import filename_symbol, symbol_filename, validate_symbol
from portfolio_assets.timestamps import utc_days, utc_times

BAR_FIELDS = ("time", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = (*BAR_FIELDS, "source", "fetched_at")
UTC_NS = pa.timestamp("ns", tz="UTC")
SCHEMA = pa.schema([
    ("symbol", pa.string()), ("time", UTC_NS), ("open", pa.float64()), ("high", pa.float64()),
    ("low", pa.float64()), ("close", pa.float64()), ("volume", pa.float64()), ("source", pa.string()),
    ("fetched_at", UTC_NS), ("attempt", pa.int32()),
])
PART_GLOB = "part-*.parquet"
PART_RE = re.compile(r"^part-(\d{20})-(\d+)-([0-9a-f]{16})\.parquet$")
ROW_GROUP_ROWS = 1 << 16
REF_RE = re.compile(r"^prices/([A-Za-z0-9_.!\-]+)@(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
META = "pa."
COMPACTED = "compacted"  # the scope of a part compaction wrote (no run's fetch)


class PriceStoreError(ValueError):
    """Bars or a request the price store cannot take (bad columns, dates, symbols)."""


@dataclass(frozen=True)
class Part:
    """One stored fetch: its file and what the fetch was (from the file's metadata)."""

    path: Path
    fetched_at: pd.Timestamp
    start: dt.date | None
    end: dt.date | None
    attempt: int
    scope: str | None
    symbols: frozenset[str]

    def covers(self, symbol: str, start: dt.date, end: dt.date) -> bool:
        """Whether this fetch requested `symbol` over a range starting on or before `start` and ending
        exactly on `end`."""
        return (symbol in self.symbols and self.start is not None and self.end is not None
                and self.start <= start and end == self.end)


def _utc(value: object, what: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)  # type: ignore[arg-type]
    if ts is pd.NaT:
        raise PriceStoreError(f"{what} is empty")
    return ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC")


def _day(value: dt.date | str | None, what: str) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise PriceStoreError(f"{what} {value!r}: expected YYYY-MM-DD") from None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    raise PriceStoreError(f"{what} must be a date, got {type(value).__name__}")


def _midnight(day: dt.date) -> pa.Scalar:
    return pa.scalar(pd.Timestamp(day, tz="UTC").value, type=pa.int64()).cast(UTC_NS)


def _utc_ns(symbol: str, times: pd.Series) -> np.ndarray:
    """`times` as int64 UTC nanoseconds (tz-aware are converted, naive are taken as UTC)."""
    dtype = times.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC" and dtype.unit == "ns":
        values = times.to_numpy(dtype="datetime64[ns]").view(np.int64)  # fast path: the usual bars
    else:
        try:
            values = utc_times(times).astype("datetime64[ns, UTC]").to_numpy(
                dtype="datetime64[ns]").view(np.int64)
        except (TypeError, ValueError) as exc:
            raise PriceStoreError(f"bars for {symbol}: unparseable timestamps ({exc})") from None
    if (values == np.iinfo(np.int64).min).any():
        raise PriceStoreError(f"bars for {symbol}: empty timestamp(s)")
    return values


def bars_table(bars: Mapping[str, pd.DataFrame], source: str, fetched_at: dt.datetime | pd.Timestamp,
               attempt: int = 0) -> pa.Table:
    """The rows of one fetch as the store keeps them: symbol, bar columns as float64 and UTC
    nanoseconds, `source`, `fetched_at`, `attempt` (0: a first fetch; 1, 2, ...: a recovery's
    re-fetch); sorted by (symbol, time). Raises on missing columns, unparseable, empty or
    duplicated timestamps of a symbol."""
    stamp = _utc(fetched_at, "fetched_at")
    names = sorted(bars)
    counts = []
    for symbol in names:
        validate_symbol(symbol)
        frame = bars[symbol]
        missing = [c for c in BAR_FIELDS if c not in frame.columns]
        if missing:
            raise PriceStoreError(f"bars for {symbol}: missing columns {missing}")
        counts.append(len(frame))
    if not sum(counts):
        return SCHEMA.empty_table()
    # One concatenation (block-wise, in C) instead of per-symbol column access: ~10x faster at
    # thousands of symbols.
    whole = pd.concat([bars[s].loc[:, list(BAR_FIELDS)] if len(bars[s].columns) != len(BAR_FIELDS) else bars[s]
                       for s in names if len(bars[s])], ignore_index=True, copy=False)
    try:
        time_all = _utc_ns("several symbols", whole["time"])
    except PriceStoreError:  # name the symbol
        for symbol in names:
            _utc_ns(symbol, bars[symbol]["time"])
        raise
    times = [time_all]
    values = {c: [whole[c].to_numpy(dtype=np.float64)] for c in BAR_FIELDS[1:]}
    total = int(sum(counts))
    code = np.repeat(np.arange(len(names), dtype=np.int64), counts)
    time = np.concatenate(times)
    order = np.lexsort((time, code))
    code, time = code[order], time[order]
    dup = (code[1:] == code[:-1]) & (time[1:] == time[:-1])
    if dup.any():
        raise PriceStoreError(f"bars for {names[int(code[1:][dup][0])]}: duplicated timestamps (clean the bars first)")
    columns = {
        "symbol": pa.DictionaryArray.from_arrays(pa.array(code.astype(np.int32)), pa.array(names)).cast(pa.string()),
        "time": pa.array(time, type=pa.int64()).cast(UTC_NS),
        **{c: pa.array(np.concatenate(values[c])[order], type=pa.float64()) for c in BAR_FIELDS[1:]},
        "source": pa.DictionaryArray.from_arrays(pa.array(np.zeros(total, dtype=np.int32)),
                                                 pa.array([source])).cast(pa.string()),
        "fetched_at": pa.array(np.full(total, stamp.value, dtype=np.int64), type=pa.int64()).cast(UTC_NS),
        "attempt": pa.array(np.full(total, attempt, dtype=np.int32)),
    }
    return pa.table(columns, schema=SCHEMA)


def price_ref(symbol: str, start: dt.date, end: dt.date) -> str:
    """The name a ledger seal gives a symbol's bars over [start, end] in the store."""
    if end < start:
        raise PriceStoreError(f"price range of {symbol}: {start} is after {end}")
    return f"prices/{symbol_filename(symbol)}@{start.isoformat()}..{end.isoformat()}"


def parse_ref(ref: str) -> tuple[str, dt.date, dt.date] | None:
    """(symbol, first day, last day) of a `price_ref`, None if `ref` is not one."""
    m = REF_RE.fullmatch(ref)
    if m is None:
        return None
    return filename_symbol(m.group(1)), dt.date.fromisoformat(m.group(2)), dt.date.fromisoformat(m.group(3))


def ref_fingerprint(path: str | os.PathLike[str], upto: str) -> str:
    """`fingerprint` of the store range a seal names, given as `<profile root>/prices/<ref name>`
    (what the ledger's verifier builds from the seal's key); days after `upto` never count.
    Raises FileNotFoundError when the store holds no bar of the symbol in the range."""
    path = Path(path)
    parsed = parse_ref(f"prices/{path.name}")
    if parsed is None or path.parent.name != "prices":
        raise PriceStoreError(f"{path} does not name a price-store range (prices/<EXCH__TICKER>@<day>..<day>)")
    symbol, start, end = parsed
    last = min(end, dt.date.fromisoformat(upto))
    store = PriceStore(path.parent)
    if not store.has_parts():
        raise FileNotFoundError(f"no price store at {store.parts_dir}")
    key = (str(store.parts_dir.resolve()), store.signature(), last)
    if key not in _VERIFY_CACHE:
        _VERIFY_CACHE.clear()
        _VERIFY_CACHE[key] = _by_symbol(_read_untrusted(store, dt.date(1970, 1, 1), last))
    return _hash_ranges(_VERIFY_CACHE[key], {symbol: (start, last)})[symbol]


def is_ref(path: str | os.PathLike[str]) -> bool:
    """Whether `path` ends in `prices/<EXCH__TICKER>@<day>..<day>` (a store range, not a file)."""
    p = Path(path)
    return p.parent.name == "prices" and parse_ref(f"prices/{p.name}") is not None


class PriceStore:
    """The parts under `<folder>/parts/` (`folder` is a profile's `prices/`)."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.parts_dir = self.folder / "parts"

    # ---- locking -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self, mode: int, blocking: bool = True) -> Iterator[bool]:
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        with open(self.parts_dir / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh.fileno(), mode | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def exclusive(self, blocking: bool = True) -> contextlib.AbstractContextManager[bool]:
        """The writers' lock (what compaction holds): yields whether it was taken (always, when blocking)."""
        return self._lock(fcntl.LOCK_EX, blocking)

    @contextlib.contextmanager
    def shared_lock(self) -> Iterator[None]:
        """Hold the readers' lock (no compaction while it is held)."""
        with self._lock(fcntl.LOCK_SH):
            yield

    @contextlib.contextmanager
    def fetch_lock(self, scope: str) -> Iterator[None]:
        """An exclusive lock for one run's fetch (so parallel steps of a run fetch a window once)."""
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", scope)[:120]
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        with open(self.parts_dir / f".fetch-{name}.lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # ---- writing -----------------------------------------------------------------------------
    def has_parts(self) -> bool:
        """Whether the parts folder holds at least one `part-*.parquet` file."""
        return self.parts_dir.is_dir() and any(self.parts_dir.glob(PART_GLOB))

    def part_paths(self) -> list[Path]:
        """Every part, oldest fetch first (the name leads with `fetched_at`)."""
        if not self.parts_dir.is_dir():
            return []
        return sorted(p for p in self.parts_dir.glob(PART_GLOB) if PART_RE.fullmatch(p.name))

    def write(
        self,
        bars: Mapping[str, pd.DataFrame],
        source: str,
        fetched_at: dt.datetime | pd.Timestamp,
        *,
        start: dt.date | None = None,
        end: dt.date | None = None,
        attempt: int = 0,
        scope: str | None = None,
    ) -> Path | None:
        """Store one fetch as one part (None when it delivered no bar). `start`/`end`/`attempt`/
        `scope` describe the request (`parts` and `window_part` read them back)."""
        if not isinstance(source, str) or not source:
            raise PriceStoreError(f"source must be a non-empty string, got {source!r}")
        table = bars_table(bars, source, fetched_at, int(attempt))
        if table.num_rows == 0:
            return None
        stamp = _utc(fetched_at, "fetched_at")
        if stamp.value < 0:
            raise PriceStoreError(f"fetched_at {stamp} is before 1970")
        meta = {"start": _day(start, "start"), "end": _day(end, "end"), "attempt": int(attempt), "scope": scope,
                "symbols": sorted(bars)}
        table = table.replace_schema_metadata({
            f"{META}{k}": json.dumps(v.isoformat() if isinstance(v, dt.date) else v) for k, v in meta.items()})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        name = f"part-{stamp.value:020d}-{os.getpid()}-{secrets.token_hex(8)}.parquet"
        from portfolio_assets.lakehouse import atomic_write_bytes

        return atomic_write_bytes(self.parts_dir / name, sink.getvalue().to_pybytes())

    # ---- what is stored ----------------------------------------------------------------------
    def parts(self) -> list[Part]:
        """Every part with what its fetch was (metadata only; no bars are read)."""
        out = []
        for path in self.part_paths():
            try:
                meta = pq.read_schema(path).metadata or {}
            except FileNotFoundError:  # merged away by a compaction since the listing
                continue
            get = {k.decode()[len(META):]: json.loads(v) for k, v in meta.items() if k.decode().startswith(META)}
            out.append(Part(path=path, fetched_at=pd.Timestamp(int(PART_RE.fullmatch(path.name).group(1)), tz="UTC"),  # type: ignore[union-attr]
                            start=_day(get.get("start"), "start"), end=_day(get.get("end"), "end"),
                            attempt=int(get.get("attempt") or 0), scope=get.get("scope"),
                            symbols=frozenset(get.get("symbols") or ())))
        return out

    def window_part(self, scope: str, symbols: Iterable[str], start: dt.date, end: dt.date) -> Part | None:
        """The newest first fetch (attempt 0) of `scope` (a run) that covers [start, end] for
        every one of `symbols` and ends on `end` (never later: no bar after it), or None."""
        wanted = list(symbols)
        for part in reversed(self.parts()):
            if part.scope == scope and part.attempt == 0 and all(part.covers(s, start, end) for s in wanted):
                return part
        return None

    def symbols(self) -> list[str]:
        """Symbols with at least one stored bar."""
        with self._lock(fcntl.LOCK_SH):
            paths = self.part_paths()
            if not paths:
                return []
            table = ds.dataset([str(p) for p in paths], schema=SCHEMA, format="parquet").to_table(columns=["symbol"])
        return sorted(pc.unique(table["symbol"]).to_pylist())

    # ---- reading -----------------------------------------------------------------------------
    def _filter(self, symbols: list[str] | None, start: dt.date | None, end: dt.date | None,
                end_inclusive_day: bool) -> ds.Expression | None:
        expr: ds.Expression | None = None

        def both(e: ds.Expression) -> None:
            nonlocal expr
            expr = e if expr is None else expr & e

        if symbols is not None:
            both(ds.field("symbol").isin(symbols))
        if start is not None:
            both(ds.field("time") >= _midnight(start))
        if end is not None:
            both(ds.field("time") < _midnight(end + dt.timedelta(days=1)) if end_inclusive_day
                 else ds.field("time") <= _midnight(end))
        return expr

    def scan(self, symbols: Iterable[str] | None = None, start: dt.date | None = None, end: dt.date | None = None,
             *, paths: list[Path] | None = None, whole_last_day: bool = False) -> pa.Table:
        """Every stored row (not de-duplicated) of `symbols` with start <= time <= end (midnight
        UTC of the day; `whole_last_day`: the whole of `end`), of all parts or of `paths`, with
        a leading `_part` column (the part's rank in write order). Filters are pushed down."""
        wanted = None if symbols is None else sorted({validate_symbol(s) for s in symbols})
        start, end = _day(start, "start"), _day(end, "end")
        if start is not None and end is not None and end < start:
            raise PriceStoreError(f"read range {start}..{end}: start is after end")
        with self._lock(fcntl.LOCK_SH):
            chosen = self.part_paths() if paths is None else sorted(paths)
            if not chosen or wanted == []:
                return pa.Table.from_batches([], schema=pa.schema([("_part", pa.int32()), *SCHEMA]))
            dataset = ds.dataset([str(p) for p in chosen], schema=SCHEMA, format="parquet")
            expr = self._filter(wanted, start, end, whole_last_day)
            tables = []
            for rank, fragment in enumerate(dataset.get_fragments()):
                t = fragment.to_table(schema=SCHEMA, filter=expr)
                if t.num_rows:
                    tables.append(t.add_column(0, "_part", pa.array(np.full(t.num_rows, rank, dtype=np.int32))))
        if not tables:
            return pa.Table.from_batches([], schema=pa.schema([("_part", pa.int32()), *SCHEMA]))
        return pa.concat_tables(tables)

    def read(self, symbols: Iterable[str] | None = None, start: dt.date | None = None, end: dt.date | None = None,
             *, paths: list[Path] | None = None, whole_last_day: bool = False) -> pd.DataFrame:
        """The stored bars as one long frame (`symbol` + `PRICE_COLUMNS`), sorted by (symbol,
        time), one row per (symbol, time): the newest fetch's (`fetched_at`, then write order) unless
        it re-delivers a repaired value (`_repaired_winners`)."""
        table = self.scan(symbols, start, end, paths=paths, whole_last_day=whole_last_day)
        if table.num_rows == 0:
            return _empty_long()
        order = pc.sort_indices(table, sort_keys=[("symbol", "ascending"), ("time", "ascending"),
                                                  ("fetched_at", "ascending"), ("_part", "ascending")])
        return _newest_rows(table.take(order)).drop_columns(["attempt"]).to_pandas().reset_index(drop=True)

    def read_many(self, symbols: Iterable[str], start: dt.date | None = None, end: dt.date | None = None,
                  *, paths: list[Path] | None = None) -> dict[str, pd.DataFrame]:
        """`read` split per symbol: {symbol: bars (`PRICE_COLUMNS`)}, an empty frame for a symbol
        with no stored bar."""
        wanted = list(dict.fromkeys(symbols))
        long = self.read(wanted, start, end, paths=paths)
        found: dict[str, pd.DataFrame] = {}
        if len(long):
            codes = long["symbol"].to_numpy()
            bounds = np.flatnonzero(codes[1:] != codes[:-1]) + 1
            starts = np.r_[0, bounds]
            stops = np.r_[bounds, len(long)]
            body = long.loc[:, list(PRICE_COLUMNS)]
            for a, b in zip(starts, stops, strict=True):
                found[codes[a]] = body.iloc[a:b].reset_index(drop=True)
        # An empty frame only for the symbols with no bar (building one for every symbol first
        # cost 0.36 s of a late backfill date's run).
        return {s: found[s] if s in found else _empty_bars() for s in wanted}

    # ---- content hashes ----------------------------------------------------------------------
    def fingerprint(self, symbol: str, start: dt.date, end: dt.date) -> str:
        """`"sha256:<hex>"` of the bars of `symbol` with start <= day <= end (whole days),
        columns time, open, high, low, close, volume, sorted by time; the same hash the previous
        per-symbol files gave for the same bars (`ledger.price_fingerprint`). Raises
        FileNotFoundError when the store holds no such bar."""
        return self.fingerprints({symbol: (start, end)})[symbol]

    def fingerprints(self, ranges: Mapping[str, tuple[dt.date, dt.date]], *, trust_statistics: bool = True,
                     skip_missing: bool = False) -> dict[str, str]:
        """`fingerprint` of many (symbol: (first day, last day)) in one scan. A symbol with no
        stored bar in its range raises FileNotFoundError (is left out with `skip_missing`). With `trust_statistics=False` no filter
        is pushed down (row groups are never skipped on their min/max statistics, which a forged
        part could misstate): what the ledger's verifier uses."""
        if not ranges:
            return {}
        first = min(a for a, _ in ranges.values())
        last = max(b for _, b in ranges.values())
        if trust_statistics:
            long = self.read(list(ranges), first, last, whole_last_day=True)
        else:
            long = _read_untrusted(self, first, last)
        return _hash_ranges(long, ranges, skip_missing=skip_missing)

    def signature(self) -> tuple[tuple[str, int, int, int], ...]:
        """(name, size, mtime ns, inode) of every part: changes with any write, edit or removal."""
        out = []
        for path in self.part_paths():
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                out.append((path.name, st.st_size, st.st_mtime_ns, st.st_ino))
        return tuple(out)

    # ---- compaction --------------------------------------------------------------------------
    def compact(self, *, keep_recent_s: float = 0.0, blocking: bool = True,
                finished: Callable[[str], bool] | None = None, min_parts: int = 2) -> int:
        """Merge the oldest parts into one, keeping the row that stands per (symbol, time) and every
        row of a bar with a repaired value (`_newest_rows`): no read changes.

        A part fetched within the last `keep_recent_s` seconds is kept as it is (a run still in
        progress finds its first fetches there; `fetch.first_fetch`) unless its scope is one
        `finished(scope)` says is over (that run never looks for its parts again); a compaction's
        own part never is kept. The merge takes the parts fetched before the first part kept,
        never one after it: a prefix of the fetch order, so the rule for repaired bars sees in the
        merged part every row that mattered before. Fetches hold the readers' lock from their
        fetch time to their write (`fetch.fetch_into_cache`), so no part older than a merged one
        appears afterwards. Merges only when at least `min_parts` parts qualify. Returns the number of parts merged
        away (0 when another process holds the lock and `blocking` is False)."""
        if keep_recent_s < 0:
            raise PriceStoreError(f"keep_recent_s must be >= 0, got {keep_recent_s}")
        with self._lock(fcntl.LOCK_EX, blocking=blocking) as got:
            if not got:
                return 0
            cutoff = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=keep_recent_s)
            parts = []
            for part in self.parts():  # oldest fetch first
                over = part.scope == COMPACTED or (finished is not None and part.scope is not None
                                                   and finished(part.scope))
                if keep_recent_s > 0 and part.fetched_at >= cutoff and not over:
                    break
                parts.append(part)
            if len(parts) < max(2, min_parts):
                return 0
            paths = [p.path for p in parts]
            dataset = ds.dataset([str(p) for p in paths], schema=SCHEMA, format="parquet")
            tables = [f.to_table(schema=SCHEMA) for f in dataset.get_fragments()]
            table = pa.concat_tables(tables)
            rank = np.concatenate([np.full(t.num_rows, i, dtype=np.int32) for i, t in enumerate(tables)])
            table = table.add_column(0, "_part", pa.array(rank))
            order = pc.sort_indices(table, sort_keys=[("symbol", "ascending"), ("time", "ascending"),
                                                      ("fetched_at", "ascending"), ("_part", "ascending")])
            table = table.take(order)
            table = _newest_rows(table, keep_repaired=True)
            newest = max(p.fetched_at for p in parts)
            table = table.replace_schema_metadata({f"{META}attempt": "0", f"{META}scope": json.dumps(COMPACTED),
                                                   f"{META}symbols": json.dumps([])})
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="zstd", row_group_size=ROW_GROUP_ROWS)
            # Named after the newest merged fetch, so the write order against later parts holds.
            name = f"part-{newest.value:020d}-{os.getpid()}-{secrets.token_hex(8)}.parquet"
            from portfolio_assets.lakehouse import atomic_write_bytes

            atomic_write_bytes(self.parts_dir / name, sink.getvalue().to_pybytes())
            from portfolio_assets.lake_mirror import removed

            for path in paths:
                path.unlink()
                removed(path)
            return len(paths)


def _newest_rows(table: pa.Table, *, keep_repaired: bool = False) -> pa.Table:
    """Of rows sorted by (symbol, time, fetched_at, _part), the one that stands for each (symbol,
    time), without the `_part` column: the newest, except that a first fetch (attempt 0) does not
    replace a repair with a value the repair replaced (`_repaired_winners`). With `keep_repaired`
    (compaction), the rows of a bar that has such a replaced value are all kept, so that the rule
    still holds for the parts written after the compaction."""
    sym = table["symbol"].to_numpy(zero_copy_only=False)
    time = table["time"].cast(pa.int64()).to_numpy()
    n = len(sym)
    last = np.ones(n, dtype=bool)
    if n > 1:
        last[:-1] = (sym[1:] != sym[:-1]) | (time[1:] != time[:-1])
        attempt = table["attempt"].fill_null(0).to_numpy(zero_copy_only=False)
        first = np.ones(n, dtype=bool)
        first[1:] = last[:-1]
        # Only a bar with a repair after its first row can have a replaced value.
        repair_after_first = (attempt > 0) & ~first
        if repair_after_first.any():
            keep = _repaired_winners(table, first, last, np.flatnonzero(repair_after_first), attempt, keep_repaired)
            if keep is not None:
                last = keep
    return table.filter(pa.array(last)).drop_columns(["_part"])


def _repaired_winners(table: pa.Table, first: np.ndarray, last: np.ndarray, repairs: np.ndarray,
                      attempt: np.ndarray, keep_repaired: bool) -> np.ndarray | None:
    """The rows that stand, for the bars that have a repair (a recovery's re-fetch, attempt >= 1)
    after their first row; None when no bar has a replaced value (the newest rows stand).

    A bar's rows are read in fetch order. A repair whose values differ from the row standing
    before it marks that row's values as replaced (a fault the health check caught). A later first
    fetch delivering a replaced value again (the same fault, re-delivered by the vendor to another
    run) does not stand; any other row does (a repair, or a first fetch with new values: a
    revision). Without this, the store's view of a bar flipped back to the fault whenever another
    run's first fetch re-delivered it, until that run's own repair: a seal taken in between
    failed verification for data that had not changed."""
    starts = np.flatnonzero(first)
    group_of = np.cumsum(first) - 1
    # A recovery re-fetches a symbol's whole window, so most of its bars have a repair equal to
    # what stood: only the bars with two different values need the row-by-row rule below.
    rows = np.flatnonzero(np.isin(group_of, np.unique(group_of[repairs])))
    picked = table.take(pa.array(rows))
    values = np.column_stack([picked[c].to_numpy(zero_copy_only=False).astype(np.float64) for c in BAR_FIELDS[1:]])
    head = values[np.searchsorted(rows, starts[group_of[rows]])]
    same = ((values == head) | (np.isnan(values) & np.isnan(head))).all(axis=1)
    out = last.copy()
    changed = False
    for g in np.unique(group_of[rows[~same]]):
        a = int(starts[g])
        b = int(starts[g + 1]) if g + 1 < len(starts) else len(first)
        at = int(np.searchsorted(rows, a))
        bar = values[at:at + (b - a)]
        replaced: list[np.ndarray] = []
        standing = 0
        for i in range(1, b - a):
            if attempt[a + i] > 0:
                if not _same(bar[i], bar[standing]):
                    replaced.append(bar[standing])
                standing = i
            elif not any(_same(bar[i], v) for v in replaced):
                standing = i
        if replaced:
            changed = True
            out[a:b] = keep_repaired
            out[a + standing] = True
    return out if changed else None


def _same(x: np.ndarray, y: np.ndarray) -> bool:
    """The same bar values (NaN equal to NaN: a missing volume delivered twice is the same)."""
    return bool(np.array_equal(x, y, equal_nan=True))


def _read_untrusted(store: PriceStore, first: dt.date, last: dt.date) -> pd.DataFrame:
    """Every part read whole (no statistics used), de-duplicated, days first..last."""
    with store._lock(fcntl.LOCK_SH):
        tables = []
        for rank, path in enumerate(store.part_paths()):
            t = pq.read_table(path, schema=SCHEMA)
            tables.append(t.add_column(0, "_part", pa.array(np.full(t.num_rows, rank, dtype=np.int32))))
    if not tables:
        return _empty_long()
    table = pa.concat_tables(tables)
    times = table["time"]
    keep = pc.and_(pc.greater_equal(times, _midnight(first)), pc.less(times, _midnight(last + dt.timedelta(days=1))))
    table = table.filter(keep)
    order = pc.sort_indices(table, sort_keys=[("symbol", "ascending"), ("time", "ascending"),
                                              ("fetched_at", "ascending"), ("_part", "ascending")])
    return _newest_rows(table.take(order)).drop_columns(["attempt"]).to_pandas().reset_index(drop=True)


def _by_symbol(long: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A long frame sorted by symbol, split into {symbol: its rows} (one pass, no groupby)."""
    if not len(long):
        return {}
    codes = long["symbol"].to_numpy()
    bounds = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    starts, stops = np.r_[0, bounds], np.r_[bounds, len(long)]
    return {codes[a]: long.iloc[a:b] for a, b in zip(starts, stops, strict=True)}


def _hash_ranges(long: pd.DataFrame | Mapping[str, pd.DataFrame], ranges: Mapping[str, tuple[dt.date, dt.date]], *,
                 skip_missing: bool = False) -> dict[str, str]:
    """Fingerprints of `ranges` over the rows of a long frame (sorted by symbol) or of its
    `_by_symbol` split."""
    from portfolio_assets.ledger import frame_hash

    out = {}
    groups = _by_symbol(long) if isinstance(long, pd.DataFrame) else long
    for symbol, (start, end) in ranges.items():
        bars = groups.get(symbol)
        if bars is not None:
            day = utc_days(bars["time"])
            bars = bars[(day >= pd.Timestamp(start)) & (day <= pd.Timestamp(end))]
        if bars is None or bars.empty:
            if skip_missing:
                continue
            raise FileNotFoundError(f"no stored bars of {symbol} between {start} and {end}")
        out[symbol] = frame_hash(bars.loc[:, list(BAR_FIELDS)].reset_index(drop=True))
    return out


# The verifier re-hashes one seal entry at a time: the store is read whole once per state of its
# parts (`PriceStore.signature`) and date, in this process.
_VERIFY_CACHE: dict[tuple, dict[str, pd.DataFrame]] = {}


def _empty_bars_template() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in PRICE_COLUMNS})
    frame["time"] = pd.Series(dtype="datetime64[ns, UTC]")
    frame["source"] = pd.Series(dtype="object")
    frame["fetched_at"] = pd.Series(dtype="datetime64[ns, UTC]")
    return frame


_EMPTY_BARS = _empty_bars_template()


def _empty_bars() -> pd.DataFrame:
    """A new empty frame of `PRICE_COLUMNS` (a copy: callers may add to it)."""
    return _EMPTY_BARS.copy()


def _empty_long() -> pd.DataFrame:
    frame = _empty_bars()
    frame.insert(0, "symbol", pd.Series(dtype="object"))
    return frame


def overlay(base: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """`new` bars over `base` bars (both with a `time` column): per timestamp `new` wins; sorted."""
    if not len(new):
        return base.reset_index(drop=True)
    if not len(base):
        return new.sort_values("time", kind="mergesort").reset_index(drop=True)
    cols = [c for c in base.columns if c in new.columns]
    merged = pd.concat([base.loc[:, cols], new.loc[:, cols]], ignore_index=True)
    merged = merged.sort_values("time", kind="mergesort").drop_duplicates("time", keep="last")
    return merged.reset_index(drop=True)
