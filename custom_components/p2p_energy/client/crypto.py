"""Keys, addresses and signatures.

A participant is an Ed25519 key pair; its id is its IOTA Rebased address,
``"0x" + hex(blake2b-256(public key))`` (no signature-scheme flag byte). The
same key signs protocol envelopes and, with the IOTA ledger, transactions.
Keys travel as standard base64 (as IOTA's SDKs print them); secrets are
stored as 32-byte hex seeds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
SEED_BYTES = 32
_ADDRESS_RE = re.compile(r"^0x[0-9a-f]{64}$")


class CryptoError(ValueError):
    """A key, signature or address is malformed."""


def blake2b256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def address_from_public_key(public_key: bytes) -> str:
    """IOTA Rebased address of an Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise CryptoError(
            f"an Ed25519 public key has {PUBLIC_KEY_BYTES} bytes, not {len(public_key)}"
        )
    return "0x" + blake2b256(public_key).hex()


def is_address(text: object) -> bool:
    return isinstance(text, str) and _ADDRESS_RE.match(text) is not None


def b64decode_exact(text: object, length: int, what: str) -> bytes:
    """Decode standard base64 of exactly ``length`` bytes, refusing anything loose."""
    if not isinstance(text, str):
        raise CryptoError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CryptoError(f"{what} is not valid base64") from exc
    if len(raw) != length:
        raise CryptoError(f"{what} must decode to {length} bytes, not {len(raw)}")
    if base64.b64encode(raw).decode("ascii") != text:
        # Non-canonical padding bits would let two strings name one key.
        raise CryptoError(f"{what} is not canonical base64")
    return raw


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class KeyPair:
    """An Ed25519 key pair held in memory (the secret never appears in ``repr``)."""

    __slots__ = ("_private", "address", "public_key", "seed")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise CryptoError(f"an Ed25519 secret seed has {SEED_BYTES} bytes, not {len(seed)}")
        self.seed = bytes(seed)
        self._private = Ed25519PrivateKey.from_private_bytes(self.seed)
        self.public_key = self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.address = address_from_public_key(self.public_key)

    @classmethod
    def generate(cls) -> KeyPair:
        private = Ed25519PrivateKey.generate()
        return cls(
            private.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        )

    @classmethod
    def from_hex(cls, text: str) -> KeyPair:
        """Import a 32-byte seed given as hex (with or without ``0x``)."""
        cleaned = text.strip().removeprefix("0x")
        try:
            seed = bytes.fromhex(cleaned)
        except ValueError as exc:
            raise CryptoError("the secret key must be 64 hexadecimal characters") from exc
        return cls(seed)

    @property
    def public_key_b64(self) -> str:
        return b64encode(self.public_key)

    @property
    def seed_hex(self) -> str:
        return self.seed.hex()

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyPair) and other.seed == self.seed

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __repr__(self) -> str:
        return f"KeyPair(address={self.address})"
