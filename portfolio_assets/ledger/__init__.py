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

The package is cut at the ledger's seams: ``schema`` (record format, :class:`LedgerError`),
``canonical`` (canonical JSON and content hashes), ``anchor`` (``HEAD.json``), ``signing``,
``records`` (parsing and reading), ``lock`` (``flock`` and fsync), ``pairing`` (intent/outcome),
``chain`` (:class:`Ledger`: append, seal), ``report`` / ``checks`` / ``verify`` (verification).
Every public name is re-exported here: import from ``portfolio_assets.ledger``.
"""

from __future__ import annotations

from portfolio_assets.ledger.anchor import anchor_digest, anchor_path, read_anchor
from portfolio_assets.ledger.canonical import (
    canonical_json,
    canonical_plain,
    file_hash,
    frame_hash,
    output_entry,
    price_fingerprint,
)
from portfolio_assets.ledger.chain import Ledger
from portfolio_assets.ledger.lock import LedgerLocked
from portfolio_assets.ledger.records import record_hash
from portfolio_assets.ledger.report import (
    CHECK_NAMES,
    CheckResult,
    CheckStatus,
    VerificationReport,
    format_report,
)
from portfolio_assets.ledger.schema import (
    ANCHOR_NAME,
    ENV_ED25519_KEY,
    ENV_ED25519_PUBLIC_KEY,
    ENV_HMAC_KEY,
    GENESIS_PREV_HASH,
    HASH_PREFIX,
    MIN_HMAC_KEY_BYTES,
    PRICE_FINGERPRINT_COLUMNS,
    RECORD_KINDS,
    LedgerError,
)
from portfolio_assets.ledger.signing import Ed25519Signer, HmacSigner, Signer, signer_from_env
from portfolio_assets.ledger.verify import verify_ledger

__all__ = [
    "ANCHOR_NAME",
    "CHECK_NAMES",
    "CheckResult",
    "CheckStatus",
    "ENV_ED25519_KEY",
    "ENV_ED25519_PUBLIC_KEY",
    "ENV_HMAC_KEY",
    "Ed25519Signer",
    "GENESIS_PREV_HASH",
    "HASH_PREFIX",
    "HmacSigner",
    "Ledger",
    "LedgerError",
    "LedgerLocked",
    "MIN_HMAC_KEY_BYTES",
    "PRICE_FINGERPRINT_COLUMNS",
    "RECORD_KINDS",
    "Signer",
    "VerificationReport",
    "anchor_digest",
    "anchor_path",
    "canonical_json",
    "canonical_plain",
    "file_hash",
    "format_report",
    "frame_hash",
    "output_entry",
    "price_fingerprint",
    "read_anchor",
    "record_hash",
    "signer_from_env",
    "verify_ledger",
]
