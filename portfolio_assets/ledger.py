"""The audit ledger: canonical hashing, the hash chain, signing and verification (SPEC §6 "Ledger (14)").

One ledger per partition, ``lakehouse/<profile>/ledger/<date>/audit.jsonl``: one JSON object per
line, each record chained to the previous one::

    {"seq": 0, "kind": "genesis", "ts": "2025-01-02T21:05:00.123456Z", "partition": "2025-01-02",
     "run_id": "...", "asset": null, "payload": {...}, "prev_hash": "000...0", "hash": "<hex>",
     "sig": "<hex>", "sig_alg": "hmac-sha256", "key_id": "hmac-..."}

* ``hash`` = SHA-256 (hex) of :func:`canonical_json` of the record without ``hash`` and ``sig``
  (so ``sig_alg`` and ``key_id`` are covered by the hash); ``prev_hash`` is the previous record's
  ``hash``, 64 zeros for the genesis.
* ``sig`` = ``signer.sign(bytes.fromhex(hash))`` when a signing key is configured, so rewriting the
  whole chain consistently (recomputing every hash) is detected by anyone holding the key.
* Data hashes (``frame_hash`` / ``file_hash``) are of canonical *content* (an Arrow IPC stream of the
  table without pandas metadata), never of object identities or Parquet writer bytes, so the same
  data gives the same hash in every process.

Kinds: ``genesis`` (exactly one, first), ``resume`` (a later run continuing the chain — never a
second genesis), ``intent``/``outcome`` (one pair per asset materialization), ``note`` and ``close``.
A ``close`` written by :meth:`Ledger.seal` *seals* the chain so far: its payload holds the record
count and head hash it closes (``records`` = its own ``seq``, ``head_hash`` = its ``prev_hash``), the
profile, and the fingerprints of the price data the partition read (``price_data``: cached bars
<= the partition date, re-hashed by the verifier). The seal's ``seq`` and ``hash`` are also written
to an anchor file outside the chain, ``HEAD.json`` next to the ledger (and by the pipeline into
Dagster's event log), so cutting records off the end is detected (docs/ledger.md).
A ``resume`` written by :meth:`Ledger.start` lists the intents that were still open (a step killed
before its outcome) under ``payload["abandoned_intents"]``; the verifier then no longer requires an
outcome for them, and the abandonment itself is part of the signed chain rather than a silent pass.

Appends from several processes are serialized with ``fcntl.flock`` on a sidecar ``<name>.lock``
file; each record is written as one full line with a single ``os.write`` followed by ``fsync``.

This module has no Dagster import: the assets in ``portfolio_assets/assets/audit.py`` call it.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "CHECK_NAMES",
    "GENESIS_PREV_HASH",
    "RECORD_KINDS",
    "CheckResult",
    "Ed25519Signer",
    "HmacSigner",
    "Ledger",
    "LedgerError",
    "Signer",
    "VerificationReport",
    "ANCHOR_NAME",
    "anchor_digest",
    "anchor_path",
    "canonical_json",
    "file_hash",
    "price_fingerprint",
    "read_anchor",
    "format_report",
    "frame_hash",
    "output_entry",
    "record_hash",
    "signer_from_env",
    "verify_ledger",
]

RECORD_KINDS: Final = ("genesis", "resume", "intent", "outcome", "note", "close")
GENESIS_PREV_HASH: Final = "0" * 64
HASH_PREFIX: Final = "sha256:"
ANCHOR_NAME: Final = "HEAD.json"
PRICE_FINGERPRINT_COLUMNS: Final = ("time", "open", "high", "low", "close", "volume")
MIN_HMAC_KEY_BYTES: Final = 16

ENV_HMAC_KEY: Final = "PA_LEDGER_HMAC_KEY"
ENV_ED25519_KEY: Final = "PA_LEDGER_ED25519_KEY"
ENV_ED25519_PUBLIC_KEY: Final = "PA_LEDGER_ED25519_PUBLIC_KEY"

_REQUIRED_FIELDS: Final = (
    "seq",
    "kind",
    "ts",
    "partition",
    "run_id",
    "asset",
    "payload",
    "prev_hash",
    "hash",
)
_SIGNATURE_FIELDS: Final = ("sig", "sig_alg", "key_id")
_UNHASHED_FIELDS: Final = frozenset({"hash", "sig"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_DATA_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")


class LedgerError(ValueError):
    """A ledger operation that would break the chain (second genesis, append to a corrupt file...)."""


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
    times = pd.to_datetime(frame["time"], utc=True)
    kept = frame.loc[times.dt.date <= date.fromisoformat(upto), list(PRICE_FINGERPRINT_COLUMNS)]
    kept = kept.assign(time=pd.to_datetime(kept["time"], utc=True))
    return frame_hash(kept.sort_values("time", kind="mergesort").reset_index(drop=True))


def anchor_path(ledger_path: str | os.PathLike[str]) -> Path:
    """The anchor file of a ledger: ``HEAD.json`` next to ``audit.jsonl``; ``<stem>.HEAD.json`` next
    to any other (archived) ledger file."""
    path = Path(ledger_path)
    return path.with_name(ANCHOR_NAME if path.name == "audit.jsonl" else f"{path.stem}.{ANCHOR_NAME}")


_ANCHOR_FIELDS: Final = ("partition", "profile", "seq", "hash", "records", "run_id", "key_id", "seal_seq", "seal_hash")


def anchor_digest(anchor: Mapping[str, Any]) -> bytes:
    """What an anchor's ``sig`` signs: SHA-256 of its canonical JSON without ``sig``."""
    return hashlib.sha256(canonical_json({k: v for k, v in anchor.items() if k != "sig"})).digest()


def read_anchor(ledger_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The anchor (``HEAD.json``) of a ledger, None if there is none.

    Raises:
        LedgerError: the file is not a JSON object with the anchor's fields.
    """
    path = anchor_path(ledger_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        anchor = json.loads(text)
    except ValueError:
        raise LedgerError(f"{path}: not valid JSON") from None
    if not isinstance(anchor, dict) or any(f not in anchor for f in _ANCHOR_FIELDS):
        raise LedgerError(f"{path}: an anchor needs the fields {', '.join(_ANCHOR_FIELDS)}")
    if not isinstance(anchor["seq"], int) or not isinstance(anchor["hash"], str):
        raise LedgerError(f"{path}: seq must be an integer and hash a string")
    return anchor


# --------------------------------------------------------------------------- signing


@runtime_checkable
class Signer(Protocol):
    """Signs and verifies record hashes; implementations never expose their secret."""

    @property
    def algorithm(self) -> str:
        """Algorithm name stored in ``sig_alg`` (e.g. ``"hmac-sha256"``)."""
        ...

    @property
    def key_id(self) -> str:
        """Public identifier of the key stored in ``key_id`` (never the key itself)."""
        ...

    def sign(self, data: bytes) -> str:
        """Signature of `data` as a hex string."""
        ...

    def verify(self, data: bytes, signature: str) -> bool:
        """True if `signature` is a valid signature of `data` under this key."""
        ...


class HmacSigner:
    """HMAC-SHA256 signer with a shared secret of at least 16 bytes.

    ``key_id`` is ``"hmac-"`` + the first 16 hex digits of ``HMAC(key, "portfolio_assets ledger key id")``:
    it identifies the key without revealing it (no more than any signature does).
    """

    __slots__ = ("_key", "_key_id")
    algorithm: Final = "hmac-sha256"

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray):
            raise TypeError(f"HmacSigner key must be bytes, got {type(key).__name__}")
        if len(key) < MIN_HMAC_KEY_BYTES:
            raise ValueError(f"HMAC key too short: {len(key)} bytes, need at least {MIN_HMAC_KEY_BYTES}")
        self._key = bytes(key)
        label = hmac.new(self._key, b"portfolio_assets ledger key id", hashlib.sha256).hexdigest()
        self._key_id = f"hmac-{label[:16]}"

    @property
    def key_id(self) -> str:
        """Public identifier of the key."""
        return self._key_id

    @property
    def can_sign(self) -> bool:
        """Always true: a shared secret both signs and verifies."""
        return True

    def sign(self, data: bytes) -> str:
        """Hex HMAC-SHA256 of `data`."""
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def verify(self, data: bytes, signature: str) -> bool:
        """Constant-time comparison of `signature` with the HMAC of `data`."""
        if not isinstance(signature, str) or not signature.isascii():
            return False
        return hmac.compare_digest(self.sign(data).encode("ascii"), signature.encode("ascii"))

    def __repr__(self) -> str:
        return f"HmacSigner(key_id={self._key_id!r})"

    __str__ = __repr__


class Ed25519Signer:
    """Ed25519 signer (private key) or verify-only signer (public key only).

    ``Ed25519Signer(private_key)`` signs and verifies; ``Ed25519Signer(public_key=...)`` only
    verifies, so a verifier never needs the secret. Keys may be ``cryptography`` key objects or raw
    32-byte values (private seed / public key). ``key_id`` is ``"ed25519-"`` + the first 16 hex
    digits of SHA-256 of the raw public key.
    """

    __slots__ = ("_private", "_public", "_key_id")
    algorithm: Final = "ed25519"

    def __init__(
        self,
        private_key: Ed25519PrivateKey | bytes | None = None,
        *,
        public_key: Ed25519PublicKey | bytes | None = None,
    ) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

        if private_key is None and public_key is None:
            raise ValueError("Ed25519Signer needs a private key or a public key")
        if isinstance(private_key, bytes | bytearray):
            if len(private_key) != 32:
                raise ValueError(f"Ed25519 private seed must be 32 bytes, got {len(private_key)}")
            private_key = Ed25519PrivateKey.from_private_bytes(bytes(private_key))
        if isinstance(public_key, bytes | bytearray):
            if len(public_key) != 32:
                raise ValueError(f"Ed25519 public key must be 32 bytes, got {len(public_key)}")
            public_key = Ed25519PublicKey.from_public_bytes(bytes(public_key))
        if private_key is not None and not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError(
                f"private_key must be an Ed25519PrivateKey or 32 bytes, got {type(private_key).__name__}"
            )
        if public_key is not None and not isinstance(public_key, Ed25519PublicKey):
            raise TypeError(
                f"public_key must be an Ed25519PublicKey or 32 bytes, got {type(public_key).__name__}"
            )
        derived = private_key.public_key() if private_key is not None else None
        if derived is not None and public_key is not None and _raw_public(derived) != _raw_public(public_key):
            raise ValueError("Ed25519 public key does not belong to the private key")
        self._private = private_key
        self._public = derived if derived is not None else public_key
        self._key_id = "ed25519-" + _sha256_hex(_raw_public(self._public))[:16]

    @classmethod
    def generate(cls) -> Ed25519Signer:
        """A signer with a fresh random private key."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    @property
    def key_id(self) -> str:
        """Public identifier of the key pair."""
        return self._key_id

    @property
    def can_sign(self) -> bool:
        """False for a verify-only signer built from a public key."""
        return self._private is not None

    @property
    def public_key_hex(self) -> str:
        """Hex of the raw 32-byte public key (safe to publish, e.g. as ``PA_LEDGER_ED25519_PUBLIC_KEY``)."""
        return _raw_public(self._public).hex()

    def verify_only(self) -> Ed25519Signer:
        """A verify-only copy holding just the public key."""
        return Ed25519Signer(public_key=self._public)

    def sign(self, data: bytes) -> str:
        """Hex of the 64-byte Ed25519 signature of `data`."""
        if self._private is None:
            raise ValueError(f"Ed25519 key {self._key_id} is verify-only (public key) and cannot sign")
        return self._private.sign(data).hex()

    def verify(self, data: bytes, signature: str) -> bool:
        """True if `signature` (hex) is a valid Ed25519 signature of `data`."""
        from cryptography.exceptions import InvalidSignature

        if not isinstance(signature, str) or not _HEX.match(signature):
            return False
        try:
            self._public.verify(bytes.fromhex(signature), data)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        mode = "sign" if self._private is not None else "verify-only"
        return f"Ed25519Signer(key_id={self._key_id!r}, mode={mode!r})"

    __str__ = __repr__


def _raw_public(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _decode_hex_env(name: str, value: str, n_bytes: int, what: str) -> bytes:
    if len(value) != 2 * n_bytes or not _HEX.match(value):
        # Length only: the value itself is a secret and must not reach logs.
        raise ValueError(f"{name} must be {2 * n_bytes} hex characters ({what}); got {len(value)} characters")
    return bytes.fromhex(value)


def signer_from_env(env: Mapping[str, str] = os.environ) -> Signer | None:
    """The ledger signer configured in the environment, or None when no key is set.

    * ``PA_LEDGER_HMAC_KEY``: HMAC-SHA256 secret. A value made only of an even number of hex
      digits is decoded as hex (``openssl rand -hex 32``); any other value is used as its UTF-8
      bytes. At least 16 bytes after decoding.
    * ``PA_LEDGER_ED25519_KEY``: 64 hex characters, the 32-byte Ed25519 private seed (signs).
    * ``PA_LEDGER_ED25519_PUBLIC_KEY``: 64 hex characters, the raw public key; gives a
      verify-only signer (for auditors without the secret). If set together with the private
      key it must match it.

    Empty values count as unset. Errors never contain the secret, only its length.

    Raises:
        ValueError: both an HMAC and an Ed25519 key are set, or a value is malformed.
    """
    hmac_value = env.get(ENV_HMAC_KEY, "")
    seed_value = env.get(ENV_ED25519_KEY, "")
    public_value = env.get(ENV_ED25519_PUBLIC_KEY, "")
    if hmac_value and (seed_value or public_value):
        raise ValueError(
            f"set only one ledger key: {ENV_HMAC_KEY} or {ENV_ED25519_KEY}/{ENV_ED25519_PUBLIC_KEY}"
        )
    if hmac_value:
        key = bytes.fromhex(hmac_value) if _HEX.match(hmac_value) else hmac_value.encode("utf-8")
        if len(key) < MIN_HMAC_KEY_BYTES:
            raise ValueError(
                f"{ENV_HMAC_KEY} too short: {len(key)} bytes, need at least {MIN_HMAC_KEY_BYTES}"
            )
        return HmacSigner(key)
    seed = _decode_hex_env(ENV_ED25519_KEY, seed_value, 32, "a 32-byte Ed25519 seed") if seed_value else None
    public = (
        _decode_hex_env(ENV_ED25519_PUBLIC_KEY, public_value, 32, "a 32-byte Ed25519 public key")
        if public_value
        else None
    )
    if seed is None and public is None:
        return None
    return Ed25519Signer(seed, public_key=public)


# --------------------------------------------------------------------------- records and parsing


def record_hash(record: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of `record` without its ``hash`` and ``sig`` fields."""
    return _sha256_hex(canonical_json(_hashed_part(record)))


def _hashed_part(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in _UNHASHED_FIELDS}


def _utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name}")


def _parse_line(raw: bytes) -> dict[str, Any]:
    """Parse one ledger line (NaN/Infinity literals are rejected); raise ValueError if not an object."""
    obj = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


@dataclass(frozen=True)
class _Line:
    """One physical line of a ledger file."""

    number: int  # 1-based
    raw: bytes
    terminated: bool  # ended with "\n"


def _split_lines(data: bytes) -> list[_Line]:
    # Split on b"\n" only: str.splitlines would also split on U+2028 inside JSON strings.
    parts = data.split(b"\n")
    lines = [_Line(i + 1, raw, True) for i, raw in enumerate(parts[:-1])]
    if parts[-1]:
        lines.append(_Line(len(parts), parts[-1], False))
    return lines


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextmanager
def _shared_read_lock(path: Path) -> Iterator[None]:
    """Hold a shared lock on the sidecar (if it exists) so a reader never sees a half-written line."""
    try:
        fd = os.open(_lock_path(path), os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_records_strict(path: Path) -> list[dict[str, Any]]:
    """All records of `path` ([] if missing); LedgerError naming the line if any line is unreadable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    records = []
    for line in _split_lines(data):
        if not line.terminated:
            raise LedgerError(f"{path}: line {line.number}: truncated (no trailing newline)")
        try:
            records.append(_parse_line(line.raw))
        except ValueError as exc:
            raise LedgerError(f"{path}: line {line.number}: truncated or invalid JSON ({exc})") from None
    return records


def _read_last_record(path: Path) -> dict[str, Any] | None:
    """The last record of `path`, reading backwards from the end (None if missing or empty)."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return None
    with fh:
        end = fh.seek(0, os.SEEK_END)
        if end == 0:
            return None
        fh.seek(end - 1)
        if fh.read(1) != b"\n":
            raise LedgerError(
                f"{path}: last line is truncated (no trailing newline); verify the ledger and archive() it "
                "before appending"
            )
        pos, tail = end - 1, b""
        while pos > 0:
            step = min(1 << 16, pos)
            pos -= step
            fh.seek(pos)
            tail = fh.read(step) + tail
            cut = tail.rfind(b"\n")
            if cut != -1:
                tail = tail[cut + 1 :]
                break
    try:
        return _parse_line(tail)
    except ValueError as exc:
        raise LedgerError(f"{path}: last line is not a valid record ({exc}); refusing to append") from None


# --------------------------------------------------------------------------- intent/outcome pairing


@dataclass
class _Pairing:
    """Running state of the intent/outcome pairing over a ledger."""

    open: dict[tuple[str, str], tuple[int, int]]  # (run_id, asset) -> (line, seq) of the open intent
    waived: set[tuple[str, str]]  # open intents abandoned by a resume record (no outcome required)
    errors: list[str]
    pairs: int = 0
    failed: int = 0
    abandoned: int = 0

    @classmethod
    def empty(cls) -> _Pairing:
        """A pairing with nothing seen yet."""
        return cls(open={}, waived=set(), errors=[])

    def feed(self, line: int, record: Mapping[str, Any]) -> None:
        """Account for one (schema-valid) record at `line`."""
        kind = record["kind"]
        key = (record["run_id"], record["asset"])
        label = f"asset {record['asset']!r} (run {record['run_id']!r})"
        if kind == "intent":
            if key in self.open and key not in self.waived:
                self.errors.append(
                    f"line {line}: intent for {label} while the intent at line {self.open[key][0]} has no outcome"
                )
            self.open[key] = (line, record["seq"])
            self.waived.discard(key)
        elif kind == "outcome":
            if key not in self.open:
                self.errors.append(f"line {line}: outcome for {label} without a preceding intent")
                return
            del self.open[key]
            self.waived.discard(key)
            self.pairs += 1
            if record["payload"].get("status") == "failed":
                self.failed += 1
        elif kind == "resume":
            self._waive(line, record["payload"].get("abandoned_intents", []))

    def _waive(self, line: int, abandoned: object) -> None:
        if not isinstance(abandoned, list):
            self.errors.append(f"line {line}: abandoned_intents must be a list")
            return
        by_seq = {seq: key for key, (_, seq) in self.open.items()}
        for item in abandoned:
            seq = item.get("seq") if isinstance(item, dict) else None
            key = by_seq.get(seq) if isinstance(seq, int) else None
            if key is None or item != {"seq": seq, "run_id": key[0], "asset": key[1]}:
                self.errors.append(
                    f"line {line}: resume lists {item!r} as abandoned, but it is not an open intent"
                )
                continue
            self.waived.add(key)
            self.abandoned += 1

    def unresolved(self) -> list[tuple[int, int, str, str]]:
        """Open intents still owed an outcome: (line, seq, run_id, asset), in file order."""
        return sorted(
            (ln, seq, run, asset)
            for (run, asset), (ln, seq) in self.open.items()
            if (run, asset) not in self.waived
        )


# --------------------------------------------------------------------------- the ledger


class Ledger:
    """Append-only, hash-chained, optionally signed audit ledger of one partition.

    Safe under concurrent appends from several processes: every append takes an exclusive
    ``fcntl.flock`` on ``<file>.lock``, reads the last record's ``seq`` and ``hash`` under the
    lock, and writes the new line with one ``os.write`` on an ``O_APPEND`` descriptor + ``fsync``.
    """

    def __init__(self, path: str | os.PathLike[str], partition: str, signer: Signer | None = None) -> None:
        if not isinstance(partition, str) or not partition:
            raise ValueError(f"Ledger partition must be a non-empty string, got {partition!r}")
        if signer is not None and not getattr(signer, "can_sign", True):
            raise ValueError(f"signer {signer.key_id} is verify-only and cannot sign ledger records")
        self.path = Path(path)
        self.partition = partition
        self.signer = signer

    def __repr__(self) -> str:
        return f"Ledger(path={str(self.path)!r}, partition={self.partition!r}, signer={self.signer!r})"

    @contextmanager
    def _exclusive_lock(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(_lock_path(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _write_line(self, line: bytes, created: bool) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:  # one write in practice; the loop only guards against a short write
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)

    def _append(
        self,
        kind: str | None,
        run_id: str,
        asset: str | None,
        payload: Mapping[str, Any] | None,
        only_new_run: bool = False,
        seal: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Append one record; ``kind=None`` means genesis on an empty ledger, else resume.

        ``only_new_run`` (with ``kind=None``): append nothing when ``run_id`` already has records."""
        if kind is not None and kind not in RECORD_KINDS:
            raise ValueError(f"record kind must be one of {RECORD_KINDS}, got {kind!r}")
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
        if kind in ("intent", "outcome") and (not isinstance(asset, str) or not asset):
            raise ValueError(f"{kind} record needs an asset name, got {asset!r}")
        if asset is not None and not isinstance(asset, str):
            raise ValueError(f"asset must be a string or None, got {type(asset).__name__}")
        payload = {} if payload is None else payload
        if not isinstance(payload, Mapping):
            raise ValueError(f"payload must be a mapping, got {type(payload).__name__}")
        body: dict[str, Any] = json.loads(canonical_json(payload))  # exactly what a reader will parse
        if kind == "outcome":
            _validate_outputs(body.get("outputs"), "outcome payload")
        if kind is None and "abandoned_intents" in body:
            raise ValueError("payload key 'abandoned_intents' is reserved for the ledger's resume record")

        with self._exclusive_lock():
            last = _read_last_record(self.path)
            if only_new_run and last is not None and any(
                rec.get("run_id") == run_id for rec in _read_records_strict(self.path)
            ):
                return None
            if kind is None:
                kind = "genesis" if last is None else "resume"
                if kind == "resume":
                    pairing = _Pairing.empty()
                    for number, rec in enumerate(_read_records_strict(self.path), start=1):
                        pairing.feed(number, rec)
                    abandoned = [{"seq": s, "run_id": r, "asset": a} for _, s, r, a in pairing.unresolved()]
                    if abandoned:
                        body["abandoned_intents"] = abandoned
            if kind == "genesis" and last is not None:
                raise LedgerError(
                    f"{self.path}: ledger already has {last['seq'] + 1} record(s); refusing a second genesis "
                    "(use start() to resume, or archive() before re-running from step 1)"
                )
            if kind != "genesis" and last is None:
                raise LedgerError(f"{self.path}: ledger has no genesis; call start() or genesis() first")
            if seal is not None:
                if last is None:
                    raise LedgerError(f"{self.path}: nothing to seal (the ledger has no genesis)")
                body["seal"] = {**canonical_plain(seal), "records": int(last["seq"]) + 1, "head_hash": last["hash"]}
            if last is not None and last.get("partition") != self.partition:
                raise LedgerError(
                    f"{self.path}: ledger belongs to partition {last.get('partition')!r}, not {self.partition!r}"
                )
            record: dict[str, Any] = {
                "seq": 0 if last is None else int(last["seq"]) + 1,
                "kind": kind,
                "ts": _utc_now_iso(),
                "partition": self.partition,
                "run_id": run_id,
                "asset": asset,
                "payload": body,
                "prev_hash": GENESIS_PREV_HASH if last is None else last["hash"],
            }
            if self.signer is not None:
                record["sig_alg"] = self.signer.algorithm
                record["key_id"] = self.signer.key_id
            record["hash"] = record_hash(record)
            if self.signer is not None:
                record["sig"] = self.signer.sign(bytes.fromhex(record["hash"]))
            self._write_line(canonical_json(record) + b"\n", created=last is None)
            self._write_anchor(record)
        return record

    def _write_anchor(self, record: Mapping[str, Any]) -> None:
        """Point ``HEAD.json`` at `record` (under the ledger lock, write-then-rename): the last
        record's seq and hash, the latest seal's, the profile; signed like the records."""
        path = anchor_path(self.path)
        try:
            previous = read_anchor(self.path) if record["kind"] != "genesis" else None
        except LedgerError:
            previous = None  # rewritten from the chain's own record below
        payload = record["payload"]
        profile = payload.get("profile") if record["kind"] in ("genesis", "resume") else None
        sealed = record["kind"] == "close" and "seal" in payload
        anchor: dict[str, Any] = {
            "partition": self.partition,
            "profile": profile or (previous or {}).get("profile"),
            "seq": record["seq"], "hash": record["hash"], "records": record["seq"] + 1, "run_id": record["run_id"],
            "key_id": self.signer.key_id if self.signer is not None else None,
            "seal_seq": record["seq"] if sealed else (previous or {}).get("seal_seq"),
            "seal_hash": record["hash"] if sealed else (previous or {}).get("seal_hash"),
        }
        if self.signer is not None:
            anchor["sig"] = self.signer.sign(anchor_digest(anchor))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, canonical_json(anchor) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def append(
        self, kind: str, run_id: str, asset: str | None = None, payload: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Append a record of `kind` and return it (with ``seq``, ``hash`` and ``sig``).

        Raises:
            LedgerError: a genesis on a non-empty ledger, any other kind on an empty one, a ledger
                of another partition, or a truncated last line.
            ValueError: unknown kind, empty run_id, intent/outcome without asset, bad payload.
        """
        if kind is None:
            raise ValueError(f"record kind must be one of {RECORD_KINDS}, got None")
        return self._append(kind, run_id, asset, payload)

    def genesis(self, run_id: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write the genesis record (profile, manifest hash, versions...); never a second one."""
        return self._append("genesis", run_id, None, payload)

    def start(self, run_id: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Genesis for an empty or missing ledger, else a ``resume`` record continuing the chain.

        A resume lists intents still lacking an outcome (a killed step) under
        ``payload["abandoned_intents"] = [{"seq", "run_id", "asset"}, ...]``.
        """
        return self._append(None, run_id, None, payload)

    def ensure_started(self, run_id: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """`start` once per run: genesis or resume unless `run_id` already has records (atomic under
        the ledger lock, so parallel steps of one run write a single resume). Returns the new record
        or None."""
        return self._append(None, run_id, None, payload, only_new_run=True)

    def intent(self, run_id: str, asset: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Record that `asset` is about to materialize (parameters, input hashes...)."""
        return self._append("intent", run_id, asset, payload)

    def outcome(self, run_id: str, asset: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Record the result of `asset` (status, metrics, ``outputs: {name: {"path", "hash"}}``).

        Output paths are relative to the lakehouse root that :func:`verify_ledger` is given; build
        entries with :func:`output_entry`. ``status: "failed"`` outcomes close their intent too.
        """
        return self._append("outcome", run_id, asset, payload)

    def note(self, run_id: str, payload: Mapping[str, Any], asset: str | None = None) -> dict[str, Any]:
        """Record a free-form event (e.g. a fallback taken), optionally about one asset."""
        return self._append("note", run_id, asset, payload)

    def close(self, run_id: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Record the end of a run's entries (a plain close; :meth:`seal` also anchors it)."""
        return self._append("close", run_id, None, payload)

    def seal(
        self,
        run_id: str,
        profile: str,
        price_data: Mapping[str, str] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Close the chain so far with a seal (a ``close`` record) and return it.

        Its payload's ``seal`` names the record count and head hash it closes (``records``,
        ``head_hash``, taken under the ledger lock), the profile and ``price_data`` ({path relative
        to the profile root: :func:`price_fingerprint`}). The anchor (``HEAD.json``) then names it
        as the latest seal.
        """
        seal = {"profile": profile, "price_data": dict(sorted((price_data or {}).items()))}
        return self._append("close", run_id, None, payload, seal=seal)

    def records(self) -> list[dict[str, Any]]:
        """All records in file order ([] for a missing ledger).

        Raises:
            LedgerError: a line is truncated or not valid JSON (the message names the line).
        """
        with _shared_read_lock(self.path):
            return _read_records_strict(self.path)

    def archive(self) -> Path | None:
        """Move the ledger to ``<dir>/archive/<stem>-<UTC timestamp>.jsonl`` (atomic rename).

        Used when a partition is re-run from step 1, so the new run starts a fresh chain. Returns
        the archive path, or None if there was no ledger.
        """
        with self._exclusive_lock():
            if not self.path.exists():
                return None
            archive_dir = self.path.parent / "archive"
            archive_dir.mkdir(exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            target = archive_dir / f"{self.path.stem}-{stamp}{self.path.suffix}"
            n = 1
            while target.exists():
                target = archive_dir / f"{self.path.stem}-{stamp}-{n}{self.path.suffix}"
                n += 1
            os.replace(self.path, target)
            anchor = anchor_path(self.path)
            if anchor.exists():  # the old chain's anchor goes with it: the new chain starts unsealed
                os.replace(anchor, target.with_name(f"{target.stem}.{ANCHOR_NAME}"))
            _fsync_dir(archive_dir)
            _fsync_dir(self.path.parent)
            return target

    def verify(
        self, *, root: str | os.PathLike[str] | None = None, require_signatures: bool | None = None
    ) -> VerificationReport:
        """:func:`verify_ledger` of this ledger with its partition and signer."""
        return verify_ledger(
            self.path,
            root=root,
            signer=self.signer,
            require_signatures=require_signatures,
            partition=self.partition,
        )


def _validate_outputs(outputs: object, where: str) -> list[str]:
    """Raise ValueError unless `outputs` is None or ``{name: {"path": rel, "hash": "sha256:<hex>"}}``."""
    if outputs is None:
        return []
    if not isinstance(outputs, dict):
        raise ValueError(f"{where}: outputs must be a mapping name -> {{'path', 'hash'}}")
    for name, entry in outputs.items():
        if not isinstance(entry, dict) or set(entry) != {"path", "hash"}:
            raise ValueError(f"{where}: outputs[{name!r}] must be {{'path': str, 'hash': 'sha256:<hex>'}}")
        _check_relative_path(entry["path"], f"{where}: outputs[{name!r}]")
        if not isinstance(entry["hash"], str) or not _DATA_HASH.match(entry["hash"]):
            raise ValueError(
                f"{where}: outputs[{name!r}].hash must be 'sha256:<64 hex>', got {entry['hash']!r}"
            )
    return list(outputs)


# --------------------------------------------------------------------------- verification

CheckStatus = Literal["ok", "FAIL", "skip"]
CHECK_NAMES: Final = (
    "parse",
    "schema",
    "sequence",
    "genesis",
    "chain",
    "hashes",
    "pairing",
    "artifacts",
    "signatures",
    "binding",
    "seals",
    "anchor",
)


@dataclass(frozen=True)
class CheckResult:
    """One verification check: ``status`` is ``ok``, ``FAIL`` or ``skip`` (not applicable)."""

    name: str
    status: CheckStatus
    detail: str
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerificationReport:
    """Result of :func:`verify_ledger`: one row per check, in a fixed order."""

    path: Path
    n_records: int
    checks: tuple[CheckResult, ...]
    signed: int = 0  # records carrying a signature
    key_checked: bool = False  # signatures were verified with a key

    @property
    def signatures_unchecked(self) -> bool:
        """True if records are signed but no key verified them: a forger who re-chains the file
        consistently passes every other check (docs/ledger.md)."""
        return self.signed > 0 and not self.key_checked

    @property
    def ok(self) -> bool:
        """True if no check failed (skipped checks do not fail the report)."""
        return all(c.status != "FAIL" for c in self.checks)

    @property
    def errors(self) -> list[str]:
        """Every error message, check by check."""
        return [e for c in self.checks for e in c.errors]

    def check(self, name: str) -> CheckResult:
        """The row of check `name`."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r}; checks are {[c.name for c in self.checks]}")


def _result(name: str, errors: list[str], ok_detail: str) -> CheckResult:
    if errors:
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return CheckResult(name, "FAIL", errors[0] + more, tuple(errors))
    return CheckResult(name, "ok", ok_detail)


def _schema_errors(line: int, rec: Mapping[str, Any]) -> list[str]:
    errors = []
    missing = [f for f in _REQUIRED_FIELDS if f not in rec]
    if missing:
        errors.append(f"line {line}: missing field(s) {', '.join(missing)}")
    extra = sorted(set(rec) - set(_REQUIRED_FIELDS) - set(_SIGNATURE_FIELDS))
    if extra:
        errors.append(f"line {line}: unexpected field(s) {', '.join(extra)}")
    types: dict[str, Callable[[Any], bool]] = {
        "seq": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "kind": lambda v: v in RECORD_KINDS,
        "ts": lambda v: isinstance(v, str),
        "partition": lambda v: isinstance(v, str) and bool(v),
        "run_id": lambda v: isinstance(v, str) and bool(v),
        "asset": lambda v: v is None or isinstance(v, str),
        "payload": lambda v: isinstance(v, dict),
        "prev_hash": lambda v: isinstance(v, str) and bool(_HEX64.match(v)),
        "hash": lambda v: isinstance(v, str) and bool(_HEX64.match(v)),
        "sig": lambda v: isinstance(v, str),
        "sig_alg": lambda v: isinstance(v, str),
        "key_id": lambda v: isinstance(v, str),
    }
    for name, valid in types.items():
        if name in rec and not valid(rec[name]):
            errors.append(f"line {line}: invalid {name} {rec[name]!r}")
    if not errors and rec["kind"] in ("intent", "outcome") and not rec["asset"]:
        errors.append(f"line {line}: {rec['kind']} record without an asset")
    return errors


def verify_ledger(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    signer: Signer | None = None,
    require_signatures: bool | None = None,
    partition: str | None = None,
    profile: str | None = None,
    anchor: Mapping[str, Any] | None = None,
    require_anchor: bool = False,
) -> VerificationReport:
    """Verify a ledger file end to end; never raises for a bad ledger, reports instead.

    Checks, each a row of the report (errors name the line and what is wrong):

    * ``parse``: every line is a complete JSON object ("line N: truncated or invalid JSON").
    * ``schema``: required fields and types, the line is in canonical form (an edited line that
      still parses is caught), one partition throughout (equal to `partition` if given).
    * ``sequence``: ``seq`` runs 0, 1, 2... with no gap or reordering.
    * ``genesis``: line 1 is the genesis, and it is the only one.
    * ``chain``: genesis ``prev_hash`` is 64 zeros; every other ``prev_hash`` equals the hash of
      the line before ("line N: prev_hash does not match hash of line N-1").
    * ``hashes``: every ``hash`` recomputes ("line N: hash mismatch (record content changed)").
    * ``pairing``: per (run_id, asset) every intent has exactly one following outcome and vice
      versa (``status: "failed"`` outcomes count; intents listed as abandoned by a resume are
      excused).
    * ``artifacts``: for each output path, its latest recorded hash equals :func:`file_hash` of
      the file under `root` now ("artifact <path> changed since it was recorded", "... is
      missing"); skipped when `root` is None.
    * ``signatures``: with a `signer`, every record is signed by that key and verifies.
      `require_signatures` defaults to ``signer is not None``; if True without a signer the check
      fails; if False, unsigned records are accepted but present signatures must verify.
    * ``binding``: every genesis/resume names `profile` (when given) and the partition is the one
      expected (`partition`, e.g. from the ledger's path).
    * ``seals``: every ``close`` record carrying a seal closes exactly the records before it
      (``records`` = its seq, ``head_hash`` = its prev_hash); the price data of the latest seal
      still fingerprints the same under `root`.
    * ``anchor``: the record the anchor (``HEAD.json``, or Dagster's copy) names exists with that
      hash, for that partition and profile, and is signed when the anchor names a key: records cut
      off the end or a re-written chain are detected. Without an anchor the check is skipped, or
      fails with `require_anchor`.
    """
    path = Path(path)
    require = (signer is not None) if require_signatures is None else require_signatures
    try:
        with _shared_read_lock(path):
            data = path.read_bytes()
    except FileNotFoundError:
        missing = CheckResult(
            "parse", "FAIL", f"ledger file not found: {path}", (f"ledger file not found: {path}",)
        )
        return VerificationReport(path, 0, (missing,))

    lines = _split_lines(data)
    parse_errors: list[str] = []
    parsed: list[tuple[int, dict[str, Any] | None]] = []
    for line in lines:
        rec: dict[str, Any] | None = None
        if not line.raw.strip():
            parse_errors.append(f"line {line.number}: empty line")
        else:
            try:
                rec = _parse_line(line.raw)
            except (ValueError, RecursionError):
                parse_errors.append(f"line {line.number}: truncated or invalid JSON")
            else:
                if not line.terminated:
                    parse_errors.append(f"line {line.number}: truncated (no trailing newline)")
        parsed.append((line.number, rec))
    if not lines:
        parse_errors.append("ledger is empty")
    checks = [_result("parse", parse_errors, f"{len(lines)} lines")]

    # schema: only schema-valid records take part in the later checks
    schema_errors: list[str] = []
    valid: dict[int, dict[str, Any]] = {}
    expected_partition = partition
    raw_by_line = {line.number: line.raw for line in lines}
    for number, rec in parsed:
        if rec is None:
            continue
        errs = _schema_errors(number, rec)
        if errs:  # structurally broken: excluded from the checks below
            schema_errors.extend(errs)
            continue
        valid[number] = rec
        if expected_partition is None:
            expected_partition = rec["partition"]
        if rec["partition"] != expected_partition:
            schema_errors.append(
                f"line {number}: partition {rec['partition']!r}, expected {expected_partition!r}"
            )
        if _dumps(rec) != raw_by_line[number]:  # parsed JSON needs no normalization
            schema_errors.append(f"line {number}: not in canonical JSON form (line edited)")
    checks.append(_result("schema", schema_errors, f"{len(valid)} records, partition {expected_partition!r}"))
    ordered = sorted(valid.items())

    # sequence
    seq_errors: list[str] = []
    prev_seq: int | None = None
    for number, rec in ordered:
        seq = rec["seq"]
        if prev_seq is None:
            if number == 1 and seq != 0:
                seq_errors.append(f"line 1: seq {seq}, expected 0")
        elif seq <= prev_seq:
            seq_errors.append(
                f"line {number}: seq {seq} is not after seq {prev_seq} (reordered or duplicated)"
            )
        elif seq != prev_seq + 1:
            seq_errors.append(
                f"line {number}: seq {seq} follows seq {prev_seq} ({seq - prev_seq - 1} record(s) missing)"
            )
        prev_seq = seq
    seq_detail = f"seq 0..{ordered[-1][1]['seq']}" if ordered else "no records"
    checks.append(_result("sequence", seq_errors, seq_detail))

    # genesis
    genesis_errors: list[str] = []
    first = valid.get(1)
    if not lines:
        genesis_errors.append("no genesis record (ledger is empty)")
    elif first is None:
        genesis_errors.append("line 1: not a valid record, so there is no genesis")
    elif first["kind"] != "genesis":
        genesis_errors.append(f"line 1: first record is {first['kind']!r}, expected 'genesis'")
    for number, rec in ordered:
        if number != 1 and rec["kind"] == "genesis":
            genesis_errors.append(f"line {number}: second genesis record (a resumed run must write 'resume')")
    checks.append(_result("genesis", genesis_errors, "one genesis, line 1"))

    # chain
    chain_errors: list[str] = []
    for number, rec in ordered:
        if number == 1:
            if rec["prev_hash"] != GENESIS_PREV_HASH:
                chain_errors.append("line 1: genesis prev_hash is not 64 zeros")
        elif number - 1 in valid and rec["prev_hash"] != valid[number - 1]["hash"]:
            chain_errors.append(f"line {number}: prev_hash does not match hash of line {number - 1}")
    checks.append(_result("chain", chain_errors, f"{max(len(ordered) - 1, 0)} links"))

    # hashes
    hash_errors = [
        f"line {number}: hash mismatch (record content changed)"
        for number, rec in ordered
        if _sha256_hex(_dumps(_hashed_part(rec))) != rec["hash"]
    ]
    checks.append(_result("hashes", hash_errors, f"{len(ordered)} hashes recomputed"))

    # pairing
    pairing = _Pairing.empty()
    for number, rec in ordered:
        pairing.feed(number, rec)
    pairing_errors = list(pairing.errors)
    pairing_errors += [
        f"line {ln}: intent for asset {asset!r} (run {run!r}) has no outcome"
        for ln, _, run, asset in pairing.unresolved()
    ]
    pairing_detail = (
        f"{pairing.pairs} intent/outcome pairs ({pairing.failed} failed, {pairing.abandoned} abandoned)"
    )
    checks.append(_result("pairing", pairing_errors, pairing_detail))

    checks.append(_check_artifacts(ordered, root))
    checks.append(_check_signatures(ordered, signer, require))
    checks.append(_check_binding(ordered, partition, profile))
    checks.append(_check_seals(ordered, root))
    checks.append(_check_anchor(ordered, anchor, require_anchor, partition or expected_partition, profile, signer))
    signed = sum("sig" in rec for _, rec in ordered)
    return VerificationReport(path, len(valid), tuple(checks), signed=signed, key_checked=signer is not None)


def _check_binding(ordered: list[tuple[int, dict[str, Any]]], partition: str | None, profile: str | None) -> CheckResult:
    """Every genesis/resume names `profile`; the chain is of `partition` (schema checks each record)."""
    errors: list[str] = []
    for number, rec in ordered:
        if rec["kind"] not in ("genesis", "resume"):
            continue
        named = rec["payload"].get("profile")
        if profile is not None and rec["kind"] == "genesis" and not isinstance(named, str):
            errors.append(f"line {number}: the genesis names no profile (expected {profile!r})")
        elif profile is not None and named is not None and named != profile:
            errors.append(f"line {number}: {rec['kind']} of profile {named!r}, but the ledger is in profile {profile!r}")
    where = f"partition {partition!r}" if partition else "partition not given"
    return _result("binding", errors, f"{where}, profile {profile!r}" if profile else where)


def _check_seals(ordered: list[tuple[int, dict[str, Any]]], root: str | os.PathLike[str] | None) -> CheckResult:
    """Each seal closes the records before it; the latest seal's price data is unchanged under `root`."""
    errors: list[str] = []
    latest: tuple[int, dict[str, Any]] | None = None
    count = 0
    for number, rec in ordered:
        seal = rec["payload"].get("seal") if rec["kind"] == "close" else None
        if seal is None:
            continue
        count += 1
        if not isinstance(seal, dict) or seal.get("records") != rec["seq"] or seal.get("head_hash") != rec["prev_hash"]:
            errors.append(f"line {number}: seal does not close the {rec['seq']} record(s) before it")
            continue
        latest = (number, seal)
        if rec["partition"] and seal.get("profile") is None:
            errors.append(f"line {number}: seal names no profile")
    if latest is None:
        return _result("seals", errors, "no seal (the chain was never closed)")
    number, seal = latest
    prices = seal.get("price_data") or {}
    if not isinstance(prices, dict):
        errors.append(f"line {number}: seal price_data must be a mapping")
        prices = {}
    if root is not None:
        root_resolved = Path(root).resolve()
        partition = ordered[0][1]["partition"]
        for rel, recorded in sorted(prices.items()):
            try:
                _check_relative_path(rel, f"line {number}: price_data")
            except ValueError as exc:
                errors.append(str(exc))
                continue
            target = root_resolved / rel
            try:
                current = price_fingerprint(target, partition)
            except FileNotFoundError:
                errors.append(f"line {number}: price data {rel} is missing")
                continue
            except Exception as exc:  # an unreadable price file is a failed check, not a crash
                errors.append(f"line {number}: price data {rel} could not be read ({type(exc).__name__}: {exc})")
                continue
            if current != recorded:
                errors.append(f"line {number}: price data {rel} changed since the seal (bars <= {partition})")
    checked = "checked" if root is not None else "not checked: no root"
    return _result("seals", errors, f"{count} seal(s), latest at line {number}; {len(prices)} price file(s) {checked}")


def _check_anchor(
    ordered: list[tuple[int, dict[str, Any]]],
    anchor: Mapping[str, Any] | None,
    require: bool,
    partition: str | None,
    profile: str | None,
    signer: Signer | None = None,
) -> CheckResult:
    """The records the anchor names (the last one written and the latest seal) are in the chain
    with those hashes; with a key, the anchor's own signature verifies. Records cut off the end,
    or a chain re-written or replaced, are detected."""
    if anchor is None:
        if require:
            return _result("anchor", [f"no anchor ({ANCHOR_NAME}): the end of the chain is not anchored, so records "
                                      "cut off the end cannot be ruled out"], "")
        return CheckResult("anchor", "skip", "not checked: no anchor given")
    if anchor.get("invalid"):
        return _result("anchor", [f"the anchor is unreadable: {anchor['invalid']}"], "")
    errors: list[str] = []
    if partition is not None and anchor.get("partition") != partition:
        errors.append(f"anchor is of partition {anchor.get('partition')!r}, not {partition!r}")
    if profile is not None and anchor.get("profile") not in (None, profile):
        errors.append(f"anchor is of profile {anchor.get('profile')!r}, not {profile!r}")
    if signer is not None:
        if "sig" not in anchor:
            errors.append("the anchor is not signed")
        elif anchor.get("key_id") != signer.key_id or not signer.verify(anchor_digest(anchor), str(anchor["sig"])):
            errors.append(f"the anchor's signature does not verify (key {signer.key_id!r})")
    by_seq = {rec["seq"]: (number, rec) for number, rec in ordered}
    last_seq = ordered[-1][1]["seq"] if ordered else -1
    seq, head = anchor.get("seq"), anchor.get("hash")
    if not isinstance(seq, int) or seq not in by_seq:
        cut = (seq - last_seq) if isinstance(seq, int) else "?"
        errors.append(f"the chain ends at seq {last_seq}, but the anchor names seq {seq}: {cut} record(s) "
                      "are missing from the end (truncated)")
    elif by_seq[seq][1]["hash"] != head:
        errors.append(f"line {by_seq[seq][0]}: seq {seq} is not the record the anchor names "
                      "(the chain was re-written or replaced)")
    elif anchor.get("key_id") and by_seq[seq][1].get("key_id") != anchor.get("key_id"):
        errors.append(f"line {by_seq[seq][0]}: the anchor names key {anchor.get('key_id')!r}, the record "
                      f"{'is unsigned' if 'sig' not in by_seq[seq][1] else 'names ' + repr(by_seq[seq][1].get('key_id'))}")
    seal_seq = anchor.get("seal_seq")
    if seal_seq is not None:
        found = by_seq.get(seal_seq)
        if found is None or found[1]["hash"] != anchor.get("seal_hash"):
            errors.append(f"the anchor's seal (seq {seal_seq}) is not in the chain (truncated, re-written or replaced)")
        elif found[1]["kind"] != "close" or "seal" not in found[1]["payload"]:
            errors.append(f"line {found[0]}: the anchor names a {found[1]['kind']} record as its seal")
    after = last_seq - seq if isinstance(seq, int) else 0
    sealed = f", seal at seq {seal_seq}" if seal_seq is not None else ", no seal"
    return _result("anchor", errors, f"seq {seq} matches the anchor ({after} record(s) after it){sealed}")


def _check_artifacts(
    ordered: list[tuple[int, dict[str, Any]]], root: str | os.PathLike[str] | None
) -> CheckResult:
    """Latest recorded hash of every output path against the file on disk under `root`."""
    errors: list[str] = []
    latest: dict[str, tuple[int, str]] = {}  # path -> (line, hash); a later outcome supersedes
    for number, rec in ordered:
        if rec["kind"] != "outcome":
            continue
        try:
            names = _validate_outputs(rec["payload"].get("outputs"), f"line {number}")
        except ValueError as exc:
            errors.append(str(exc))
            continue
        for name in names:
            entry = rec["payload"]["outputs"][name]
            latest[entry["path"]] = (number, entry["hash"])
    if root is None:
        if errors:
            return _result("artifacts", errors, "")
        return CheckResult(
            "artifacts", "skip", f"not checked: no root given ({len(latest)} outputs recorded)"
        )
    root_resolved = Path(root).resolve()
    for rel, (number, recorded) in sorted(latest.items(), key=lambda item: item[1][0]):
        target = (root_resolved / rel).resolve()
        if not target.is_relative_to(root_resolved):
            errors.append(f"line {number}: artifact {rel} resolves outside the root")
        elif not target.exists():
            errors.append(f"line {number}: artifact {rel} is missing")
        else:
            try:
                current = file_hash(target)
            except Exception as exc:  # any unreadable artifact is a failed check, not a crash
                errors.append(
                    f"line {number}: artifact {rel} could not be read ({type(exc).__name__}: {exc})"
                )
                continue
            if current != recorded:
                errors.append(f"line {number}: artifact {rel} changed since it was recorded")
    return _result("artifacts", errors, f"{len(latest)} artifacts match")


def _check_signatures(
    ordered: list[tuple[int, dict[str, Any]]], signer: Signer | None, require: bool
) -> CheckResult:
    """Signature of every record's hash under `signer`."""
    signed = sum("sig" in rec for _, rec in ordered)
    if signer is None:
        if require:
            return _result(
                "signatures", ["signatures are required but no verification key is configured"], ""
            )
        return CheckResult(
            "signatures", "skip", f"not checked: no key configured ({signed} of {len(ordered)} signed)"
        )
    errors: list[str] = []
    for number, rec in ordered:
        if "sig" not in rec:
            if require:
                errors.append(f"line {number}: missing signature")
            continue
        if rec.get("sig_alg") != signer.algorithm:
            errors.append(f"line {number}: signed with {rec.get('sig_alg')!r}, expected {signer.algorithm!r}")
        elif rec.get("key_id") != signer.key_id:
            errors.append(f"line {number}: signed by key {rec.get('key_id')!r}, expected {signer.key_id!r}")
        elif not signer.verify(bytes.fromhex(rec["hash"]), rec["sig"]):
            errors.append(f"line {number}: signature does not verify (key {signer.key_id!r})")
    return _result("signatures", errors, f"{signed} signatures valid (key {signer.key_id!r})")


def format_report(report: VerificationReport, *, max_errors: int = 20) -> str:
    """Readable, aligned text table of a report; failing checks list up to `max_errors` lines each."""
    failed = sum(c.status == "FAIL" for c in report.checks)
    verdict = "PASS" if report.ok else f"FAIL ({failed} of {len(report.checks)} checks failed)"
    rows: list[tuple[str, str, str]] = []
    for c in report.checks:
        messages = list(c.errors) or [c.detail]
        shown = messages[:max_errors]
        if len(messages) > max_errors:
            shown.append(f"... and {len(messages) - max_errors} more")
        rows.append((c.name, c.status, shown[0]))
        rows.extend(("", "", msg) for msg in shown[1:])
    w_name = max(len("check"), *(len(r[0]) for r in rows))
    w_status = max(len("status"), *(len(r[1]) for r in rows))
    out = [
        f"ledger   {report.path}",
        f"records  {report.n_records}",
        f"result   {verdict}",
        "",
        f"{'check':<{w_name}}  {'status':<{w_status}}  detail",
        f"{'-' * w_name}  {'-' * w_status}  {'-' * 6}",
    ]
    out += [f"{name:<{w_name}}  {status:<{w_status}}  {detail}".rstrip() for name, status, detail in rows]
    return "\n".join(out) + "\n"
