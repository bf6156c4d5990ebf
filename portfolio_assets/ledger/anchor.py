"""The anchor file `HEAD.json` next to a ledger: the last seal's `seq` and `hash`, kept outside the chain
so cutting records off the end is detected."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from portfolio_assets.ledger.canonical import canonical_json
from portfolio_assets.ledger.lock import pull_ledger
from portfolio_assets.ledger.schema import ANCHOR_NAME, LedgerError


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
    """The anchor (``HEAD.json``) of a ledger, None if there is none. On an object-store lakehouse
    the ledger's folder is pulled first, under its lease (`lock.pull_ledger`).

    Raises:
        LedgerError: the file is not a JSON object with the anchor's fields.
    """
    pull_ledger(Path(ledger_path))
    return load_anchor(ledger_path)


def load_anchor(ledger_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """`read_anchor` of the local file as it is (for a writer holding the ledger's lock)."""
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
