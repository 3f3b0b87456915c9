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
    public_key_problem,
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


# Every small-order point of Ed25519 (in both sign variants where they differ) and
# non-canonical encodings; libsodium refuses the same keys.
WEAK_KEYS = {
    "identity": "0100000000000000000000000000000000000000000000000000000000000000",
    "order-2": "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "order-4": "0000000000000000000000000000000000000000000000000000000000000000",
    "order-4-neg": "0000000000000000000000000000000000000000000000000000000000000080",
    "order-8-a": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "order-8-a-neg": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "order-8-b": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "order-8-b-neg": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "y-equals-p": "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "y-above-p": "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "negative-zero-x": "0100000000000000000000000000000000000000000000000000000000000080",
    "not-on-curve": "0200000000000000000000000000000000000000000000000000000000000000",
}


@pytest.mark.parametrize("key", WEAK_KEYS.values(), ids=WEAK_KEYS.keys())
def test_weak_public_keys_are_refused(key: str) -> None:
    raw = bytes.fromhex(key)
    assert public_key_problem(raw) is not None
    # No signature verifies for such a key, whatever the bytes.
    assert not verify(raw, b"message", bytes(64))


def test_a_forged_signature_for_a_small_order_key_does_not_verify() -> None:
    """With A of order 8 and S = 0, [S]B = R + [k]A holds for R = -[k]A: about one
    message in eight; without the check OpenSSL accepts such a forgery."""
    key = bytes.fromhex(WEAK_KEYS["identity"])  # [k]A is the identity for every k
    forged = bytes.fromhex(WEAK_KEYS["identity"]) + bytes(32)  # R = identity, S = 0
    assert not verify(key, b"any message at all", forged)


def test_sound_keys_pass() -> None:
    for _ in range(50):
        keys = KeyPair.generate()
        assert public_key_problem(keys.public_key) is None
        assert verify(keys.public_key, b"m", keys.sign(b"m"))
