"""Symbol validation: every symbol that reaches a file path or a query passes through here."""

from __future__ import annotations

import re

SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9._\-!]{0,31}:[A-Z0-9][A-Z0-9._\-!]{0,47}$")


class InvalidSymbolError(ValueError):
    """A symbol that is not `EXCHANGE:TICKER` (or tries to escape a directory)."""


def validate_symbol(symbol: object) -> str:
    """Return `symbol` unchanged if it is a well-formed `EXCHANGE:TICKER`, else raise.

    Allowed: upper-case letters, digits, `.`, `_`, `-`, `!`, exactly one `:`; no `..`, no `/`.
    """
    if not isinstance(symbol, str):
        raise InvalidSymbolError(f"symbol must be a string 'EXCHANGE:TICKER', got {type(symbol).__name__}")
    if ".." in symbol or not SYMBOL_RE.fullmatch(symbol):
        raise InvalidSymbolError(
            f"invalid symbol {symbol!r}: expected 'EXCHANGE:TICKER' of A-Z, 0-9, '.', '_', '-', '!'"
        )
    return symbol


def symbol_filename(symbol: str) -> str:
    """File-system name of a validated symbol (':' is not portable in file names)."""
    return validate_symbol(symbol).replace(":", "__")


def filename_symbol(name: str) -> str:
    """Inverse of `symbol_filename`."""
    return validate_symbol(name.replace("__", ":", 1))
