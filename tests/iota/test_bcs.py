"""BCS: encode/decode are exact inverses, and the decoder accepts only canonical bytes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_energy_client.ledger.iota.bcs import (
    BcsError,
    GasCoin,
    GasData,
    ImmOrOwnedObject,
    Input,
    MergeCoins,
    NestedResult,
    ObjectRef,
    ProgrammableTransaction,
    Pure,
    Receiving,
    Result,
    SharedObject,
    SplitCoins,
    TransactionData,
    TransferObjects,
    decode_transaction_data,
    digest_from_base58,
    digest_to_base58,
    encode_transaction_data,
    normalize_address,
    split_sender_signed_data,
)

U64 = st.integers(min_value=0, max_value=2**64 - 1)
U16 = st.integers(min_value=0, max_value=0xFFFF)
addresses = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())
object_refs = st.builds(ObjectRef, addresses, U64, st.binary(min_size=32, max_size=32))
call_args = st.one_of(
    st.builds(Pure, st.binary(max_size=200)),
    st.builds(ImmOrOwnedObject, object_refs),
    st.builds(SharedObject, addresses, U64, st.booleans()),
    st.builds(Receiving, object_refs),
)
arguments = st.one_of(
    st.just(GasCoin()),
    st.builds(Input, U16),
    st.builds(Result, U16),
    st.builds(NestedResult, U16, U16),
)
arg_lists = st.lists(arguments, max_size=5).map(tuple)
commands = st.one_of(
    st.builds(TransferObjects, arg_lists, arguments),
    st.builds(SplitCoins, arguments, arg_lists),
    st.builds(MergeCoins, arguments, arg_lists),
)
transactions = st.builds(
    TransactionData,
    kind=st.builds(
        ProgrammableTransaction,
        st.lists(call_args, max_size=6).map(tuple),
        st.lists(commands, max_size=6).map(tuple),
    ),
    sender=addresses,
    gas_data=st.builds(GasData, st.lists(object_refs, max_size=4).map(tuple), addresses, U64, U64),
    expiration_epoch=st.none() | U64,
)


@settings(max_examples=150, deadline=None)
@given(transactions)
def test_decode_inverts_encode(tx: TransactionData) -> None:
    assert decode_transaction_data(encode_transaction_data(tx)) == tx


@settings(max_examples=150, deadline=None)
@given(transactions, st.data())
def test_truncated_or_extended_bytes_are_refused(tx: TransactionData, data: Any) -> None:
    raw = encode_transaction_data(tx)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises(BcsError):
        decode_transaction_data(raw[:cut])
    with pytest.raises(BcsError, match="trailing"):
        decode_transaction_data(raw + b"\x00")


def _minimal() -> TransactionData:
    return TransactionData(
        kind=ProgrammableTransaction((Pure(b"\x01"),), ()),
        sender="0x" + "11" * 32,
        gas_data=GasData((), "0x" + "11" * 32, 1, 2),
    )


def test_known_layout_of_a_small_transaction() -> None:
    raw = encode_transaction_data(_minimal())
    # V1, Programmable, 1 input: Pure(len 1, 0x01), 0 commands, sender,
    # 0 payment coins, owner, price 1, budget 2, no expiration.
    assert raw == (
        b"\x00\x00\x01\x00\x01\x01\x00"
        + b"\x11" * 32
        + b"\x00"
        + b"\x11" * 32
        + (1).to_bytes(8, "little")
        + (2).to_bytes(8, "little")
        + b"\x00"
    )


def test_long_pure_value_uses_multi_byte_uleb128_length() -> None:
    tx = TransactionData(
        kind=ProgrammableTransaction((Pure(b"\xab" * 300),), ()),
        sender="0x" + "11" * 32,
        gas_data=GasData((), "0x" + "11" * 32, 1, 2),
    )
    raw = encode_transaction_data(tx)
    assert raw[:6] == b"\x00\x00\x01\x00\xac\x02"  # 300 = 0b10_0101100 → 0xac 0x02
    assert decode_transaction_data(raw) == tx


def test_non_canonical_uleb128_is_refused() -> None:
    raw = bytearray(encode_transaction_data(_minimal()))
    # The input count 1 written as 0x81 0x00 means the same number, non-minimally.
    padded = bytes(raw[:2]) + b"\x81\x00" + bytes(raw[3:])
    with pytest.raises(BcsError, match="non-canonical"):
        decode_transaction_data(padded)


def test_unknown_versions_and_variants_are_refused() -> None:
    raw = encode_transaction_data(_minimal())
    with pytest.raises(BcsError, match="TransactionData version"):
        decode_transaction_data(b"\x01" + raw[1:])
    with pytest.raises(BcsError, match="TransactionKind"):
        decode_transaction_data(raw[:1] + b"\x01" + raw[2:])
    with pytest.raises(BcsError, match="CallArg"):
        decode_transaction_data(raw[:3] + b"\x02" + raw[4:])


def test_move_calls_are_refused_not_skipped() -> None:
    tx = TransactionData(
        kind=ProgrammableTransaction((), (SplitCoins(GasCoin(), ()),)),
        sender="0x" + "11" * 32,
        gas_data=GasData((), "0x" + "11" * 32, 1, 2),
    )
    raw = bytearray(encode_transaction_data(tx))
    assert raw[4] == 2  # the SplitCoins tag, right after "0 inputs, 1 command"
    raw[4] = 0  # MoveCall
    with pytest.raises(BcsError, match="Move calls"):
        decode_transaction_data(bytes(raw))


def test_bool_must_be_zero_or_one() -> None:
    tx = TransactionData(
        kind=ProgrammableTransaction((SharedObject("0x6", 1, True),), ()),
        sender="0x" + "11" * 32,
        gas_data=GasData((), "0x" + "11" * 32, 1, 2),
    )
    raw = bytearray(encode_transaction_data(tx))
    position = 3 + 2 + 32 + 8  # count, CallArg+ObjectArg tags, id, version
    assert raw[position] == 1
    raw[position] = 2
    with pytest.raises(BcsError, match="bool"):
        decode_transaction_data(bytes(raw))


def test_values_out_of_range_cannot_be_built() -> None:
    with pytest.raises(BcsError):
        ObjectRef("0x1", 2**64, bytes(32))
    with pytest.raises(BcsError):
        ObjectRef("0x1", 1, bytes(31))
    with pytest.raises(BcsError):
        Input(70_000)
    with pytest.raises(BcsError):
        GasData((), "0x1", -1, 0)
    with pytest.raises(BcsError):
        normalize_address("0x" + "1" * 65)
    with pytest.raises(BcsError):
        normalize_address("11")


def test_short_addresses_are_padded() -> None:
    assert normalize_address("0x2") == "0x" + "0" * 63 + "2"
    assert normalize_address("0xAB") == "0x" + "0" * 62 + "ab"


@given(st.binary(min_size=32, max_size=32))
def test_base58_digests_round_trip(raw: bytes) -> None:
    assert digest_from_base58(digest_to_base58(raw)) == raw


def test_base58_digest_must_be_32_bytes() -> None:
    with pytest.raises(BcsError):
        digest_from_base58(digest_to_base58(bytes(31) + b"\x01")[:-1])
    with pytest.raises(BcsError):
        digest_from_base58("0OIl")  # not in the base58 alphabet


def _signed_data(tx_bytes: bytes, *, count: int = 1, intent: bytes = b"\x00\x00\x00") -> bytes:
    signature = bytes(97)
    return bytes([count]) + intent + tx_bytes + b"\x01" + bytes([len(signature)]) + signature


def _some_tx_bytes() -> bytes:
    gas = GasData((ObjectRef("0x1", 1, bytes(32)),), "0x2", 1000, 2_000_000)
    kind = ProgrammableTransaction((Pure(b"\x01" * 8),), (SplitCoins(GasCoin(), (Input(0),)),))
    return encode_transaction_data(TransactionData(kind, "0x2", gas))


def test_sender_signed_data_gives_back_the_signed_bytes() -> None:
    tx_bytes = _some_tx_bytes()
    assert split_sender_signed_data(_signed_data(tx_bytes)) == (tx_bytes, (bytes(97),))


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda raw: raw[:1] + b"\x01" + raw[2:], "intent"),
        (lambda raw: b"\x02" + raw[1:], "exactly one"),
        (lambda raw: raw + b"\x00", "trailing"),
        (lambda raw: raw[:-1], "exceeds the remaining input"),
    ],
    ids=["other_intent", "two_transactions", "trailing_bytes", "cut_short"],
)
def test_sender_signed_data_refuses_anything_else(mangle: Any, message: str) -> None:
    with pytest.raises(BcsError, match=message):
        split_sender_signed_data(mangle(_signed_data(_some_tx_bytes())))
