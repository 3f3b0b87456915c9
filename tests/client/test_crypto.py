"""Keys and addresses against IOTA Rebased's public vectors."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from p2p_energy_client.crypto import (
    CryptoError,
    KeyPair,
    address_from_public_key,
    b64decode_exact,
    verify,
)


def test_keypair_addresses_match_iota_sdk(iota_vectors: dict[str, Any]) -> None:
    for vector in iota_vectors["ed25519_keypairs"]:
        keys = KeyPair.from_hex(vector["secret_hex"])
        assert keys.public_key_b64 == vector["pubkey_b64"]
        assert keys.address == vector["address"]


def test_public_key_to_address(iota_vectors: dict[str, Any]) -> None:
    for vector in iota_vectors["pubkey_to_address"]:
        assert address_from_public_key(base64.b64decode(vector["pubkey_b64"])) == vector["address"]


def test_sign_vector_is_reproduced(iota_vectors: dict[str, Any]) -> None:
    vector = iota_vectors["sign_vector"]
    keys = KeyPair.from_hex(vector["secret_hex"])
    digest = base64.b64decode(vector["intent_digest_b64"])
    signature = keys.sign(digest)
    assert base64.b64encode(signature).decode() == vector["signature_b64"]
    assert verify(keys.public_key, digest, signature)
    assert not verify(keys.public_key, digest[:-1] + b"\x00", signature)


def test_secret_never_in_repr() -> None:
    keys = KeyPair.generate()
    assert keys.seed_hex not in repr(keys)
    assert keys.address in repr(keys)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "base64 string"),
        ("!!!", "not valid base64"),
        (base64.b64encode(b"x" * 31).decode(), "32 bytes"),
    ],
)
def test_b64_refuses_loose_input(text: object, reason: str) -> None:
    with pytest.raises(CryptoError, match=reason):
        b64decode_exact(text, 32, "public_key")


def test_b64_refuses_non_canonical_padding() -> None:
    canonical = base64.b64encode(b"\x00" * 32).decode()  # ends in "A="
    loose = canonical[:-2] + "B="  # same bytes, non-zero padding bits
    assert base64.b64decode(loose) == b"\x00" * 32
    with pytest.raises(CryptoError, match="canonical"):
        b64decode_exact(loose, 32, "public_key")


def test_bad_seed_length() -> None:
    with pytest.raises(CryptoError):
        KeyPair(b"short")
    with pytest.raises(CryptoError, match="hexadecimal"):
        KeyPair.from_hex("zz" * 32)
