"""The ledger's record format: kinds, required fields, signing environment names, and `LedgerError`."""

from __future__ import annotations

import re
from typing import Final

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
