"""Build, sign and name IOTA Rebased coin transfers.

* A payment is a programmable transaction: optionally ``MergeCoins(GasCoin,
  [extra coins])`` when the gas coin alone is too small, then
  ``SplitCoins(GasCoin, [amount])`` and ``TransferObjects([the new coin],
  recipient)``. Inputs are the pure u64 amount, the pure recipient address
  and the extra coins, in that order — the same layout as the official
  TypeScript SDK's ``tx.splitCoins(tx.gas, [amount])`` +
  ``tx.transferObjects(...)``, so that without merging the bytes are
  identical to what ``@iota/iota-sdk`` builds.
* Signing: Ed25519 over blake2b-256(intent ``[0, 0, 0]`` ‖ tx bytes); the
  serialized signature is base64(flag ``0x00`` ‖ signature ‖ public key).
* The digest (the transaction id) is base58(blake2b-256(``b"TransactionData::"``
  ‖ tx bytes)): the same signed bytes always have the same digest, which is
  what makes re-submitting them safe.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from ...crypto import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    CryptoError,
    KeyPair,
    address_from_public_key,
    b64decode_exact,
    b64encode,
    blake2b256,
    verify,
)
from .bcs import (
    Argument,
    BcsError,
    CallArg,
    Command,
    GasCoin,
    GasData,
    ImmOrOwnedObject,
    Input,
    MergeCoins,
    NestedResult,
    ObjectRef,
    ProgrammableTransaction,
    Pure,
    SplitCoins,
    TransactionData,
    TransferObjects,
    decode_transaction_data,
    digest_from_base58,
    digest_to_base58,
    encode_transaction_data,
    pure_address,
    pure_as_address,
    pure_as_u64,
    pure_u64,
)

# IntentScope::TransactionData, IntentVersion::V0, AppId::Iota.
TRANSACTION_INTENT = b"\x00\x00\x00"
ED25519_FLAG = 0x00
SERIALIZED_SIGNATURE_BYTES = 1 + SIGNATURE_BYTES + PUBLIC_KEY_BYTES
_DIGEST_DOMAIN = b"TransactionData::"


def build_transfer(
    *,
    sender: str,
    recipient: str,
    amount: int,
    gas_payment: Sequence[ObjectRef],
    merge_coins: Sequence[ObjectRef] = (),
    gas_price: int,
    gas_budget: int,
) -> TransactionData:
    """A transaction that pays ``amount`` nanos from ``sender``'s coins to ``recipient``.

    ``gas_payment`` coins pay for gas and fund the split (the node merges
    them into one gas coin); ``merge_coins`` are further coins of the
    sender merged into the gas coin first, for when the payment coins
    alone do not hold ``amount`` + budget.
    """
    if not gas_payment:
        raise BcsError("a transaction needs at least one gas payment coin")
    inputs: list[CallArg] = [pure_u64(amount), pure_address(recipient)]
    commands: list[Command] = []
    if merge_coins:
        sources: list[Argument] = []
        for ref in merge_coins:
            sources.append(Input(len(inputs)))
            inputs.append(ImmOrOwnedObject(ref))
        commands.append(MergeCoins(GasCoin(), tuple(sources)))
    split_index = len(commands)
    commands.append(SplitCoins(GasCoin(), (Input(0),)))
    commands.append(TransferObjects((NestedResult(split_index, 0),), Input(1)))
    return TransactionData(
        kind=ProgrammableTransaction(tuple(inputs), tuple(commands)),
        sender=sender,
        gas_data=GasData(tuple(gas_payment), sender, gas_price, gas_budget),
    )


def transfer_terms(tx: TransactionData) -> tuple[str, int]:
    """(recipient, amount) of a transaction shaped like :func:`build_transfer`'s.

    Raises :class:`BcsError` for any other shape, so a caller never checks
    effects against terms it guessed.
    """
    inputs, commands = tx.kind.inputs, tx.kind.commands
    if len(inputs) < 2 or not 2 <= len(commands) <= 3:
        raise BcsError("not a coin transfer")
    amount_arg, recipient_arg = inputs[0], inputs[1]
    if not isinstance(amount_arg, Pure) or not isinstance(recipient_arg, Pure):
        raise BcsError("not a coin transfer")
    split_index = len(commands) - 2
    expected_tail = (
        SplitCoins(GasCoin(), (Input(0),)),
        TransferObjects((NestedResult(split_index, 0),), Input(1)),
    )
    if commands[split_index:] != expected_tail:
        raise BcsError("not a coin transfer")
    if split_index == 1:
        merge = commands[0]
        merged = tuple(Input(i) for i in range(2, len(inputs)))
        if merge != MergeCoins(GasCoin(), merged) or not merged:
            raise BcsError("not a coin transfer")
    elif len(inputs) != 2:
        raise BcsError("not a coin transfer")
    return pure_as_address(recipient_arg), pure_as_u64(amount_arg)


def intent_digest(tx_bytes: bytes) -> bytes:
    """What Ed25519 signs: blake2b-256 of the transaction intent message."""
    return blake2b256(TRANSACTION_INTENT + tx_bytes)


def transaction_digest(tx_bytes: bytes) -> str:
    """The transaction id (base58) of BCS ``TransactionData`` bytes."""
    return digest_to_base58(blake2b256(_DIGEST_DOMAIN + tx_bytes))


def is_transaction_digest(text: object) -> bool:
    if not isinstance(text, str):
        return False
    try:
        digest_from_base58(text)
    except BcsError:
        return False
    return True


def sign_transaction(keys: KeyPair, tx_bytes: bytes) -> str:
    """The serialized signature (base64 of flag ‖ signature ‖ public key) of ``tx_bytes``."""
    signature = keys.sign(intent_digest(tx_bytes))
    return b64encode(bytes([ED25519_FLAG]) + signature + keys.public_key)


def parse_serialized_signature(text: str) -> tuple[bytes, bytes]:
    """Split a serialized Ed25519 signature into (signature, public key)."""
    raw = b64decode_exact(text, SERIALIZED_SIGNATURE_BYTES, "serialized signature")
    if raw[0] != ED25519_FLAG:
        raise CryptoError(f"signature scheme flag {raw[0]:#04x} is not Ed25519 (0x00)")
    return raw[1 : 1 + SIGNATURE_BYTES], raw[1 + SIGNATURE_BYTES :]


def signer_of(tx_bytes: bytes, serialized_signature: str) -> str | None:
    """The address whose key made ``serialized_signature`` over ``tx_bytes``, or ``None``."""
    try:
        signature, public_key = parse_serialized_signature(serialized_signature)
    except CryptoError:
        return None
    if not verify(public_key, intent_digest(tx_bytes), signature):
        return None
    return address_from_public_key(public_key)


@dataclass(frozen=True, slots=True)
class SignedTransaction:
    """Signed transaction bytes and their digest: everything needed to (re-)submit them.

    Persist :meth:`to_json` before submitting when a crash must not lose
    track of a payment: re-submitting the same bytes can never pay twice.
    """

    tx_bytes: bytes
    signature: str
    digest: str

    @classmethod
    def sign(cls, keys: KeyPair, tx: TransactionData) -> SignedTransaction:
        if tx.sender != keys.address:
            raise CryptoError("the transaction's sender is not the signing key's address")
        tx_bytes = encode_transaction_data(tx)
        return cls(tx_bytes, sign_transaction(keys, tx_bytes), transaction_digest(tx_bytes))

    @property
    def tx_bytes_b64(self) -> str:
        return b64encode(self.tx_bytes)

    @property
    def data(self) -> TransactionData:
        return decode_transaction_data(self.tx_bytes)

    def to_json(self) -> dict[str, str]:
        return {"tx_bytes": self.tx_bytes_b64, "signature": self.signature, "digest": self.digest}

    @classmethod
    def from_json(cls, obj: dict[str, str]) -> SignedTransaction:
        """Restore what :meth:`to_json` wrote, re-checking digest and signature."""
        try:
            tx_bytes = base64.b64decode(obj["tx_bytes"], validate=True)
        except (KeyError, binascii.Error, ValueError) as exc:
            raise CryptoError("tx_bytes must be base64") from exc
        tx = decode_transaction_data(tx_bytes)
        if transaction_digest(tx_bytes) != obj.get("digest"):
            raise CryptoError("the digest does not match the transaction bytes")
        if signer_of(tx_bytes, obj.get("signature", "")) != tx.sender:
            raise CryptoError("the signature is not the sender's signature over these bytes")
        return cls(tx_bytes, obj["signature"], obj["digest"])
