"""Import an IOTA wallet secret (``iotaprivkey1…``) as a :class:`KeyPair`.

IOTA's wallets and ``iota keytool export`` print secrets as Bech32 (BIP-173)
with the human-readable part ``iotaprivkey``; the payload is the signature
scheme flag (``0x00`` for Ed25519) followed by the 32-byte seed. Households
paste that string, so we accept it besides the hex seed that
:meth:`KeyPair.from_hex` takes.
"""

from __future__ import annotations

from ...crypto import SEED_BYTES, CryptoError, KeyPair

SECRET_HRP = "iotaprivkey"  # noqa: S105 - the Bech32 prefix, not a secret
_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_ED25519_FLAG = 0x00


def _polymod(values: list[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i, generator in enumerate(_GENERATOR):
            if (top >> i) & 1:
                checksum ^= generator
    return checksum


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _bech32_decode(text: str) -> tuple[str, bytes]:
    if text.lower() != text and text.upper() != text:
        raise CryptoError("a Bech32 string must not mix upper and lower case")
    text = text.lower()
    hrp, sep, data_part = text.rpartition("1")
    if not sep or not hrp or len(data_part) < 6:
        raise CryptoError("not a Bech32 string")
    try:
        data = [_CHARSET.index(c) for c in data_part]
    except ValueError as exc:
        raise CryptoError("invalid Bech32 character") from exc
    # Constant 1 is Bech32 (BIP-173); Bech32m would be 0x2BC830A3.
    if _polymod(_hrp_expand(hrp) + data) != 1:
        raise CryptoError("Bech32 checksum mismatch")
    # Regroup the 5-bit words (without the 6 checksum words) into bytes.
    acc = bits = 0
    out = bytearray()
    for value in data[:-6]:
        acc = (acc << 5) | value
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits >= 5 or (acc & ((1 << bits) - 1)):
        raise CryptoError("non-zero Bech32 padding")
    return hrp, bytes(out)


def keypair_from_secret(text: str) -> KeyPair:
    """A key pair from ``iotaprivkey1…`` (Ed25519 only) or a 32-byte hex seed."""
    cleaned = text.strip()
    if not cleaned.lower().startswith(SECRET_HRP + "1"):
        return KeyPair.from_hex(cleaned)
    hrp, payload = _bech32_decode(cleaned)
    if hrp != SECRET_HRP:
        raise CryptoError(f"expected an {SECRET_HRP} secret")
    if len(payload) != 1 + SEED_BYTES:
        raise CryptoError("an iotaprivkey secret holds a flag byte and a 32-byte seed")
    if payload[0] != _ED25519_FLAG:
        raise CryptoError("only Ed25519 secrets (flag 0x00) are supported")
    return KeyPair(payload[1:])
