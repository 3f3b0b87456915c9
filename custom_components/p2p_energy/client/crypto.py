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
import functools
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


# --- strict public keys -------------------------------------------------------
#
# OpenSSL verifies Ed25519 signatures for *any* 32 bytes that decode to a curve
# point. Two kinds of key must be refused before that (as libsodium does):
#
# * small-order points (the 8 points P with [8]P = identity): for such a key a
#   "signature" (R, S=0) with R of small order verifies for about one message
#   in eight, so anyone could sign *for* it;
# * non-canonical encodings (y ≥ p, or x = 0 with the sign bit set): a second
#   string for the same point, so two addresses (blake2b of the bytes) would
#   name one key.
#
# The check is curve arithmetic on Python integers (three point doublings);
# results are cached, since the same few thousand member keys come back all day.

_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decode_point(raw: bytes) -> tuple[int, int] | str:
    """RFC 8032 §5.1.3 point decoding: ``(x, y)``, or why the bytes are no point."""
    number = int.from_bytes(raw, "little")
    sign = number >> 255
    y = number & ((1 << 255) - 1)
    if y >= _P:
        return "is not a canonical encoding (y is not below 2^255 - 19)"
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = (u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P)) % _P
    if (v * x * x - u) % _P:
        if (v * x * x + u) % _P:
            return "is not a point on the Ed25519 curve"
        x = (x * _SQRT_M1) % _P
    if x == 0 and sign:
        return "is not a canonical encoding (x is 0, the sign bit is set)"
    if x & 1 != sign:
        x = _P - x
    return x, y


def _has_small_order(x: int, y: int) -> bool:
    """[8]P is the identity: three doublings in projective coordinates (no inversions)."""
    px, py, pz = x, y, 1
    for _ in range(3):  # dbl-2008-hwcd for a = -1
        a, b, c = px * px % _P, py * py % _P, 2 * pz * pz % _P
        e = ((px + py) * (px + py) - a - b) % _P
        g = (b - a) % _P
        f = (g - c) % _P
        h = (-a - b) % _P
        px, py, pz = e * f % _P, g * h % _P, f * g % _P
    return px == 0 and py == pz


# Sized for a regional grid of 100,000 members (about 320 bytes a key): a smaller
# LRU is emptied by every interval's round of envelopes, each key evicted just
# before it comes back, and each miss costs about 150 µs of Python integer work.
@functools.lru_cache(maxsize=131_072)
def public_key_problem(public_key: bytes) -> str | None:
    """Why ``public_key`` is refused as an Ed25519 key, or ``None`` when it is sound."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        return f"must have {PUBLIC_KEY_BYTES} bytes, not {len(public_key)}"
    decoded = _decode_point(public_key)
    if isinstance(decoded, str):
        return decoded
    if _has_small_order(*decoded):
        return "is a point of small order (anyone could sign for it)"
    return None


@functools.lru_cache(maxsize=65_536)
def _verifier(public_key: bytes) -> Ed25519PublicKey:
    """The key object, built once per key (4 µs of every check, and the keys come back)."""
    return Ed25519PublicKey.from_public_bytes(public_key)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by a sound key."""
    if public_key_problem(public_key) is not None:
        return False
    try:
        _verifier(public_key).verify(signature, message)
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
