"""The verifier's per-topic checks: record schema, partition binding, seals, anchor, artifacts, signatures."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from portfolio_assets.ledger.anchor import anchor_digest
from portfolio_assets.ledger.canonical import _check_relative_path, file_hash, price_fingerprint
from portfolio_assets.ledger.records import _validate_outputs
from portfolio_assets.ledger.report import CheckResult, _result
from portfolio_assets.ledger.schema import (
    _HEX64,
    _REQUIRED_FIELDS,
    _SIGNATURE_FIELDS,
    ANCHOR_NAME,
    RECORD_KINDS,
)
from portfolio_assets.ledger.signing import Signer


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
