"""Canonical hashing: `canonical_json`, content hashes of frames and files, output entries and price
fingerprints (the same data gives the same hash in every process)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa

from portfolio_assets.ledger.schema import HASH_PREFIX, PRICE_FINGERPRINT_COLUMNS
from portfolio_assets.timestamps import utc_times

# --------------------------------------------------------------------------- canonical hashing


def _normalize(obj: Any, path: str) -> Any:
    """JSON-ready copy of `obj`; `path` is the JSON path used in error messages."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return str.__str__(obj)  # plain str, also for str-mixin enums and np.str_
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(
                f"canonical_json: non-finite number {float(obj)!r} at {path} (NaN/inf are not allowed)"
            )
        return float(obj)
    if obj is pd.NaT:
        raise ValueError(f"canonical_json: NaT at {path} (missing timestamps are not allowed)")
    if isinstance(obj, datetime | date | time):
        return obj.isoformat()
    if isinstance(obj, np.datetime64):
        if np.isnat(obj):
            raise ValueError(f"canonical_json: NaT at {path} (missing timestamps are not allowed)")
        return pd.Timestamp(obj).isoformat()
    if isinstance(obj, np.generic):
        return _normalize(obj.item(), path)
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"canonical_json: key {key!r} at {path} is {type(key).__name__}, keys must be str"
                )
            out[str.__str__(key)] = _normalize(value, f"{path}.{key}")
        return out
    if isinstance(obj, list | tuple | np.ndarray):
        return [_normalize(item, f"{path}[{i}]") for i, item in enumerate(obj)]
    if isinstance(obj, set | frozenset):
        raise TypeError(f"canonical_json: unordered {type(obj).__name__} at {path}; pass a sorted list")
    raise TypeError(
        f"canonical_json: unsupported type {type(obj).__name__} at {path} "
        "(use frame_hash for tables, or convert to dict/list/str/number)"
    )


def canonical_json(obj: Any) -> bytes:
    """Canonical UTF-8 JSON bytes of `obj`: sorted keys, no whitespace, no NaN.

    ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)`` of a
    normalized copy: datetimes/dates/times and ``pd.Timestamp`` become ISO strings, numpy scalars
    become Python numbers, tuples and arrays become lists, ``Path`` objects POSIX strings.

    Raises:
        ValueError: a NaN/inf float or NaT anywhere; the message names the key path, e.g.
            ``$.payload.metrics.sharpe``.
        TypeError: non-string dict keys, sets, or types with no canonical JSON form.
    """
    return _dumps(_normalize(obj, "$"))


def canonical_plain(obj: Any) -> Any:
    """`obj` as the plain JSON a reader parses back from :func:`canonical_json`."""
    return json.loads(canonical_json(obj))


def _dumps(plain: Any) -> bytes:
    """Canonical bytes of an object that is already plain JSON (as :func:`json.loads` returns)."""
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _index_as_columns(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with its index levels moved into leading columns (unnamed levels get `__index__` names)."""
    names = list(df.index.names)
    if len(names) == 1:
        filled = ["__index__" if names[0] is None else names[0]]
    else:
        filled = [f"__index_{i}__" if name is None else name for i, name in enumerate(names)]
    clash = [name for name in filled if name in df.columns]
    if clash:
        raise ValueError(f"frame_hash: index name(s) {clash!r} also used as column name(s)")
    flat = df.copy(deep=False)
    flat.index = flat.index.set_names(filled)
    return flat.reset_index()


_IPC_OPTIONS: Final = pa.ipc.IpcWriteOptions(metadata_version=pa.ipc.MetadataVersion.V5, compression=None)


def frame_hash(df: pd.DataFrame) -> str:
    """``"sha256:<hex>"`` of the canonical bytes of a table's content.

    Canonical bytes: the index is reset into leading columns (index names kept; an unnamed index
    becomes ``__index__``, unnamed MultiIndex levels ``__index_<i>__``), the frame is converted with
    ``pyarrow.Table.from_pandas(preserve_index=False)``, chunks are combined, all schema and field
    metadata (pandas metadata, ``attrs``, index ``freq``...) is dropped, and the table is written as
    one Arrow IPC stream (metadata V5, uncompressed).

    The hash is identical across processes and machines for the same content and changes with
    any value, column name, column order, dtype or row order change. Missing values are Arrow
    nulls, so ``NaN`` and ``None`` in a float column hash alike.

    Raises:
        TypeError: `df` is not a DataFrame.
        ValueError: non-string or duplicate column names (they have no lossless Arrow name).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"frame_hash: expected a pandas DataFrame, got {type(df).__name__}")
    flat = _index_as_columns(df)
    non_str = [c for c in flat.columns if not isinstance(c, str)]
    if non_str:
        raise ValueError(f"frame_hash: column names must be strings, got {non_str[:5]!r}")
    duplicated = sorted(set(flat.columns[flat.columns.duplicated()]))
    if duplicated:
        raise ValueError(f"frame_hash: duplicate column names {duplicated!r}")
    table = pa.Table.from_pandas(flat, preserve_index=False).combine_chunks()
    bare_schema = pa.schema([fld.remove_metadata() for fld in table.schema])
    table = table.cast(bare_schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, bare_schema, options=_IPC_OPTIONS) as writer:
        writer.write_table(table)
    return HASH_PREFIX + _sha256_hex(sink.getvalue().to_pybytes())


def file_hash(path: str | os.PathLike[str]) -> str:
    """``"sha256:<hex>"`` of a stored artifact's content.

    * ``*.parquet`` (file or dataset folder): :func:`frame_hash` of ``pd.read_parquet(path)``, so
      compression, row-group layout and writer metadata do not matter, only the table.
    * other folders: hash of the canonical JSON ``{relative posix path: file_hash}`` of every file
      below it (a report bundle).
    * other files: SHA-256 of the bytes.

    Raises:
        FileNotFoundError: `path` does not exist.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"file_hash: {p} does not exist")
    if p.suffix == ".parquet":
        return frame_hash(pd.read_parquet(p))
    if p.is_dir():
        listing = {
            child.relative_to(p).as_posix(): file_hash(child)
            for child in sorted(p.rglob("*"))
            if child.is_file()
        }
        return HASH_PREFIX + _sha256_hex(canonical_json(listing))
    digest = hashlib.sha256()
    with p.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return HASH_PREFIX + digest.hexdigest()


def _check_relative_path(path: object, where: str) -> str:
    """Return `path` if it is a relative POSIX path that stays below its root, else raise."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"{where}: output path must be a non-empty string, got {path!r}")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise ValueError(f"{where}: output path {path!r} must be relative to the root, without '..'")
    return path


def output_entry(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``{"path": <relative to root>, "hash": file_hash}`` entry for an outcome's ``outputs``.

    Raises:
        ValueError: `path` is not inside `root`.
        FileNotFoundError: `path` does not exist.
    """
    root_resolved = Path(root).resolve()
    target = Path(path)
    if not target.is_absolute():
        target = root_resolved / target
    target = target.resolve()
    if not target.is_relative_to(root_resolved):
        raise ValueError(f"output {target} is not inside the root {root_resolved}")
    return {"path": target.relative_to(root_resolved).as_posix(), "hash": file_hash(target)}


def price_fingerprint(path: str | os.PathLike[str], upto: str) -> str:
    """``"sha256:<hex>"`` of a cached price file's bars up to and including the date `upto`
    (columns time, open, high, low, close, volume): what a partition of date `upto` could read.
    Bars after `upto` (a later partition's fetch) and the cache's bookkeeping columns do not count.
    A path `prices/<EXCH__TICKER>@<day>..<day>` names a range of the columnar price store and is
    hashed from its bars (`price_store.ref_fingerprint`; FileNotFoundError when none is stored)."""
    from portfolio_assets import price_store

    if price_store.is_ref(path):
        return price_store.ref_fingerprint(path, upto)
    frame = pd.read_parquet(path)
    missing = [c for c in PRICE_FINGERPRINT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"price file {path}: missing column(s) {missing}")
    times = utc_times(frame["time"])
    kept = frame.loc[times.dt.date <= date.fromisoformat(upto), list(PRICE_FINGERPRINT_COLUMNS)]
    kept = kept.assign(time=utc_times(kept["time"]))
    return frame_hash(kept.sort_values("time", kind="mergesort").reset_index(drop=True))
