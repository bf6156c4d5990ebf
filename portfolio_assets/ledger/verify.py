"""`verify_ledger`: read a ledger and run every check of `report.CHECK_NAMES` over it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from portfolio_assets.ledger.canonical import _dumps, _sha256_hex
from portfolio_assets.ledger.checks import (
    _check_anchor,
    _check_artifacts,
    _check_binding,
    _check_seals,
    _check_signatures,
    _schema_errors,
)
from portfolio_assets.ledger.lock import LedgerLocked, _shared_read_lock
from portfolio_assets.ledger.pairing import _Pairing
from portfolio_assets.ledger.records import _hashed_part, _parse_line, _split_lines
from portfolio_assets.ledger.report import CheckResult, VerificationReport, _result
from portfolio_assets.ledger.schema import GENESIS_PREV_HASH
from portfolio_assets.ledger.signing import Signer


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
    except LedgerLocked as exc:  # not readable now: a FAIL the CLI reports as "in progress" while its run lives
        return VerificationReport(path, 0, (CheckResult("parse", "FAIL", str(exc), (str(exc),)),))
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
