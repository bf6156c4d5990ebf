"""Record signers (HMAC-SHA256 and Ed25519) and `signer_from_env`, which picks one from the environment."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

from portfolio_assets.ledger.canonical import _sha256_hex
from portfolio_assets.ledger.schema import (
    _HEX,
    ENV_ED25519_KEY,
    ENV_ED25519_PUBLIC_KEY,
    ENV_HMAC_KEY,
    MIN_HMAC_KEY_BYTES,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

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
        public = derived if derived is not None else public_key
        if public is None:  # unreachable: one of the two keys is required above
            raise ValueError("Ed25519Signer needs a private key or a public key")
        self._private = private_key
        self._public = public
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
