"""The ledger itself: `Ledger` appends chained, signed records (genesis, resume, intent/outcome, note,
close) and seals the chain (`Ledger.seal`, which also writes the anchor)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, overload

from portfolio_assets.ledger.anchor import anchor_digest, anchor_path, load_anchor
from portfolio_assets.ledger.canonical import canonical_json, canonical_plain
from portfolio_assets.ledger.lock import _exclusive_write_lock, _fsync_dir, _shared_read_lock
from portfolio_assets.ledger.pairing import _Pairing
from portfolio_assets.ledger.records import (
    _read_last_record,
    _read_records_strict,
    _utc_now_iso,
    _validate_outputs,
    record_hash,
)
from portfolio_assets.ledger.report import VerificationReport
from portfolio_assets.ledger.schema import ANCHOR_NAME, GENESIS_PREV_HASH, RECORD_KINDS, LedgerError
from portfolio_assets.ledger.signing import Signer
from portfolio_assets.ledger.verify import verify_ledger

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
        with _exclusive_write_lock(self.path):
            yield

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

    @overload
    def _append(
        self,
        kind: str | None,
        run_id: str,
        asset: str | None,
        payload: Mapping[str, Any] | None,
        only_new_run: Literal[False] = False,
        seal: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]: ...

    @overload
    def _append(
        self,
        kind: str | None,
        run_id: str,
        asset: str | None,
        payload: Mapping[str, Any] | None,
        only_new_run: bool,
        seal: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None: ...

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
            previous = load_anchor(self.path) if record["kind"] != "genesis" else None
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
