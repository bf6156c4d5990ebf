"""Records and parsing: a record's hash, strict line parsing and reading a ledger file's records."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from portfolio_assets.ledger.canonical import _check_relative_path, _sha256_hex, canonical_json
from portfolio_assets.ledger.schema import _DATA_HASH, _UNHASHED_FIELDS, LedgerError

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
