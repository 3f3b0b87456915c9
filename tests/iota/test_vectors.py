"""Our BCS, signing and digests against the public IOTA Rebased vectors.

``ts_sdk_transfer`` was built and signed by the official TypeScript SDK
(@iota/iota-sdk 1.15.1): byte-identical output is the proof that the real
network accepts what we send.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from p2p_energy_client.crypto import CryptoError, KeyPair
from p2p_energy_client.ledger.iota import (
    ObjectRef,
    SignedTransaction,
    build_transfer,
    decode_transaction_data,
    encode_transaction_data,
    keypair_from_secret,
    sign_transaction,
    transaction_digest,
)
from p2p_energy_client.ledger.iota.transactions import (
    intent_digest,
    parse_serialized_signature,
    signer_of,
    transfer_terms,
)


def _ts_transfer(vectors: dict[str, Any]) -> tuple[KeyPair, Any]:
    keys = KeyPair.from_hex(vectors["ed25519_keypairs"][0]["secret_hex"])
    # As the vector's "desc" says: gas price 1000, budget 2,000,000, one gas
    # coin 0xee…ee at version 10 with digest bytes 0..31, 1 IOTA to 0xdd…dd.
    tx = build_transfer(
        sender=keys.address,
        recipient="0x" + "dd" * 32,
        amount=1_000_000_000,
        gas_payment=[ObjectRef("0x" + "ee" * 32, 10, bytes(range(32)))],
        gas_price=1000,
        gas_budget=2_000_000,
    )
    return keys, tx


def test_ts_sdk_transfer_bytes_are_identical(iota_vectors: dict[str, Any]) -> None:
    vector = iota_vectors["ts_sdk_transfer"]
    _keys, tx = _ts_transfer(iota_vectors)
    tx_bytes = encode_transaction_data(tx)
    assert tx_bytes.hex() == vector["tx_bytes_hex"]
    assert base64.b64encode(tx_bytes).decode() == vector["tx_bytes_b64"]


def test_ts_sdk_transfer_digest_and_signature(iota_vectors: dict[str, Any]) -> None:
    vector = iota_vectors["ts_sdk_transfer"]
    keys, tx = _ts_transfer(iota_vectors)
    signed = SignedTransaction.sign(keys, tx)
    assert signed.digest == vector["digest"]
    assert signed.signature == vector["serialized_signature_b64"]
    tx_bytes = bytes.fromhex(vector["tx_bytes_hex"])
    assert transaction_digest(tx_bytes) == vector["digest"]
    assert signer_of(tx_bytes, vector["serialized_signature_b64"]) == keys.address


def test_ts_sdk_transfer_decodes_to_what_it_describes(iota_vectors: dict[str, Any]) -> None:
    vector = iota_vectors["ts_sdk_transfer"]
    _keys, expected = _ts_transfer(iota_vectors)
    decoded = decode_transaction_data(bytes.fromhex(vector["tx_bytes_hex"]))
    assert decoded == expected
    assert transfer_terms(decoded) == ("0x" + "dd" * 32, 1_000_000_000)


def test_sign_vector(iota_vectors: dict[str, Any]) -> None:
    vector = iota_vectors["sign_vector"]
    keys = KeyPair.from_hex(vector["secret_hex"])
    tx_bytes = base64.b64decode(vector["tx_bytes_b64"])
    assert intent_digest(tx_bytes) == base64.b64decode(vector["intent_digest_b64"])
    signature, public_key = parse_serialized_signature(sign_transaction(keys, tx_bytes))
    assert base64.b64encode(signature).decode() == vector["signature_b64"]
    assert public_key == keys.public_key


def test_sign_vector_transaction_round_trips(iota_vectors: dict[str, Any]) -> None:
    # A different shape (an owned object input, four gas coins, gas price 1):
    # decoding and re-encoding must give back the very same bytes.
    tx_bytes = base64.b64decode(iota_vectors["sign_vector"]["tx_bytes_b64"])
    decoded = decode_transaction_data(tx_bytes)
    assert len(decoded.gas_data.payment) == 4
    assert decoded.gas_data.price == 1
    assert encode_transaction_data(decoded) == tx_bytes


def test_bech32_secrets_give_the_vector_addresses(iota_vectors: dict[str, Any]) -> None:
    for vector in iota_vectors["ed25519_keypairs"]:
        keys = keypair_from_secret(vector["bech32_secret"])
        assert keys.seed_hex == vector["secret_hex"]
        assert keys.address == vector["address"]
        assert keypair_from_secret(vector["secret_hex"]) == keys


def test_bech32_secret_with_a_flipped_character_is_refused(iota_vectors: dict[str, Any]) -> None:
    secret = iota_vectors["ed25519_keypairs"][0]["bech32_secret"]
    flipped = secret[:-1] + ("q" if secret[-1] != "q" else "p")
    with pytest.raises(CryptoError, match="checksum"):
        keypair_from_secret(flipped)


def test_signature_of_other_bytes_or_key_is_not_accepted(iota_vectors: dict[str, Any]) -> None:
    vector = iota_vectors["ts_sdk_transfer"]
    tx_bytes = bytes.fromhex(vector["tx_bytes_hex"])
    other = KeyPair.from_hex(iota_vectors["ed25519_keypairs"][1]["secret_hex"])
    assert signer_of(tx_bytes[:-1] + b"\x01", vector["serialized_signature_b64"]) is None
    assert signer_of(tx_bytes, sign_transaction(other, tx_bytes)) == other.address
    with pytest.raises(CryptoError, match="sender"):
        SignedTransaction.sign(other, decode_transaction_data(tx_bytes))


def test_signed_transaction_json_round_trip_checks_everything(
    iota_vectors: dict[str, Any],
) -> None:
    keys, tx = _ts_transfer(iota_vectors)
    signed = SignedTransaction.sign(keys, tx)
    assert SignedTransaction.from_json(signed.to_json()) == signed
    with pytest.raises(CryptoError, match="digest"):
        SignedTransaction.from_json({**signed.to_json(), "digest": "1" * 32})
    other = KeyPair.from_hex(iota_vectors["ed25519_keypairs"][1]["secret_hex"])
    forged = {**signed.to_json(), "signature": sign_transaction(other, signed.tx_bytes)}
    with pytest.raises(CryptoError, match="signature"):
        SignedTransaction.from_json(forged)
