"""Batch payouts without a node: building, reading back, the protocol's limits, the planner."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.ledger.base import LedgerError
from p2p_energy_client.ledger.iota import (
    PLANNING_LIMITS,
    PROTOCOL_LIMITS,
    BatchTooLarge,
    ObjectRef,
    Payment,
    SignedTransaction,
    TransactionLimits,
    batch_terms,
    build_batch,
    check_limits,
    decode_transaction_data,
    payment_terms,
    plan_batches,
    transaction_digest,
)
from p2p_energy_client.ledger.iota.batch import (
    SIGNED_OVERHEAD_BYTES,
    batch_capacity,
    check_payments,
    signed_size,
)
from p2p_energy_client.ledger.iota.bcs import (
    BcsError,
    GasCoin,
    Input,
    MergeCoins,
    ProgrammableTransaction,
    Pure,
    SplitCoins,
    TransactionData,
    TransferObjects,
)
from tests.support.iota_batches import coin_refs, payments, ptb_with_splits, with_padding

KEYS = KeyPair(bytes(range(32)))
GAS = [ObjectRef("0x" + "ee" * 32, 10, bytes(range(32)))]


def _batch(n: int, **options: Any) -> TransactionData:
    return build_batch(
        sender=KEYS.address,
        payments=payments(n),
        gas_payment=options.pop("gas_payment", GAS),
        gas_price=1000,
        gas_budget=50_000_000,
        **options,
    )


def test_batch_signs_and_names_its_bytes() -> None:
    tx = _batch(3)
    signed = SignedTransaction.sign(KEYS, tx)
    assert signed.digest == transaction_digest(signed.tx_bytes)
    assert SignedTransaction.from_json(signed.to_json()) == signed
    assert decode_transaction_data(signed.tx_bytes) == tx
    assert batch_terms(signed.data) == tuple(payments(3))
    # What the node measures: our bytes plus the one Ed25519 signature around them.
    assert signed_size(tx) == len(signed.tx_bytes) + SIGNED_OVERHEAD_BYTES


def test_merged_coins_come_first_as_the_sdk_puts_them() -> None:
    merges = coin_refs(2, seed=b"merge")
    tx = _batch(2, merge_coins=merges)
    assert tx.kind.commands[0] == MergeCoins(GasCoin(), (Input(0), Input(1)))
    assert tx.kind.commands[1] == SplitCoins(GasCoin(), (Input(2), Input(3)))
    assert batch_terms(tx) == tuple(payments(2))


def test_a_batch_needs_a_payment_and_a_gas_coin() -> None:
    with pytest.raises(BcsError, match="at least one payment"):
        _batch(0)
    with pytest.raises(BcsError, match="gas payment"):
        _batch(1, gas_payment=[])


def _reshaped(tx: TransactionData, **kind: Any) -> TransactionData:
    return replace(tx, kind=replace(tx.kind, **kind))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda tx: _reshaped(tx, commands=tx.kind.commands[:-1]), id="transfer_lost"),
        pytest.param(
            lambda tx: _reshaped(tx, inputs=(*tx.kind.inputs, Pure(b"\x00"))), id="extra_input"
        ),
        pytest.param(
            lambda tx: _reshaped(
                tx,
                commands=(
                    tx.kind.commands[0],
                    TransferObjects(tx.kind.commands[2].objects, Input(3)),  # type: ignore[union-attr]
                    TransferObjects(tx.kind.commands[1].objects, Input(2)),  # type: ignore[union-attr]
                ),
            ),
            id="transfers_swapped",
        ),
        pytest.param(
            lambda tx: _reshaped(
                tx, inputs=(Pure(b"\x01" * 7), *tx.kind.inputs[1:])
            ),  # a 7-byte "u64"
            id="short_amount",
        ),
        pytest.param(
            lambda tx: _reshaped(tx, commands=(MergeCoins(GasCoin(), ()), *tx.kind.commands)),
            id="empty_merge",
        ),
    ],
)
def test_reading_back_refuses_every_other_shape(mangle: Any) -> None:
    tx = mangle(_batch(2))
    with pytest.raises(BcsError):
        batch_terms(tx)
    with pytest.raises(BcsError):
        payment_terms(tx)


@pytest.mark.parametrize(
    ("given", "code", "field"),
    [
        ([], "invalid_payments", "payments:"),
        ([("not a payment")], "invalid_payments", "payments[0]"),
        ([Payment("0x1234", 5)], "invalid_recipient", "payments[0].recipient"),
        ([Payment("0x" + "AB" * 32, 5)], "invalid_recipient", "payments[0].recipient"),
        ([Payment("0x" + "11" * 32, 5), Payment(KEYS.address, 5)], "invalid_recipient", "[1]"),
        ([Payment("0x" + "11" * 32, 0)], "invalid_amount", "payments[0].amount"),
        ([Payment("0x" + "11" * 32, -1)], "invalid_amount", "payments[0].amount"),
        ([Payment("0x" + "11" * 32, True)], "invalid_amount", "payments[0].amount"),
        ([Payment("0x" + "11" * 32, 2**64)], "invalid_amount", "payments[0].amount"),
        ([Payment("0x" + "11" * 32, 1.5)], "invalid_amount", "payments[0].amount"),  # type: ignore[arg-type]
    ],
)
def test_invalid_payments_are_named(given: list[Any], code: str, field: str) -> None:
    with pytest.raises(LedgerError) as info:
        check_payments(given, sender=KEYS.address)
    assert info.value.code == code
    assert field in str(info.value)


# --- the protocol's limits: exactly at each one passes, one over is refused ---------


def _at_commands(extra: int) -> TransactionData:
    # Two splits (511 + 510 coins) and a transfer per coin: 1,023 commands.
    return ptb_with_splits(KEYS.address, [511, 510 + extra], gas=GAS)


def _at_arguments(extra: int) -> TransactionData:
    return _batch(511 + extra)


def _at_pure_bytes(extra: int) -> TransactionData:
    tx = _batch(1)
    return _reshaped(tx, inputs=(*tx.kind.inputs, Pure(b"\x00" * (16_383 + extra))))


def _at_input_objects(extra: int) -> TransactionData:
    # 255 gas coins and 1,793 + extra merged coins (in several MergeCoins).
    # 2,048 owned coins take ~155 KB, over the size limit: that limit binds
    # first for coins, so this one is checked with the size limit lifted.
    merges = coin_refs(1_793 + extra, seed=b"merged")
    return ptb_with_splits(KEYS.address, [1], gas=coin_refs(255, seed=b"gas"), merges=merges)


def _at_gas_coins(extra: int) -> TransactionData:
    return _batch(1, gas_payment=coin_refs(255 + extra, seed=b"gas"))


def _at_signed_bytes(extra: int) -> TransactionData:
    return with_padding(_batch(1), PROTOCOL_LIMITS.signed_bytes + extra)


AT_LIMIT = {
    "commands": _at_commands,
    "arguments_per_command": _at_arguments,
    "pure_input_bytes": _at_pure_bytes,
    "input_objects": _at_input_objects,
    "gas_coins": _at_gas_coins,
    "signed_bytes": _at_signed_bytes,
}


def _limits_for(limit: str) -> TransactionLimits:
    if limit == "input_objects":
        return replace(PROTOCOL_LIMITS, signed_bytes=10**6)
    return PROTOCOL_LIMITS


@pytest.mark.parametrize("limit", sorted(AT_LIMIT))
def test_exactly_at_each_protocol_limit_passes(limit: str) -> None:
    tx = AT_LIMIT[limit](0)
    check_limits(tx, _limits_for(limit))
    if limit == "signed_bytes":
        assert signed_size(tx) == 131_072


@pytest.mark.parametrize("limit", sorted(AT_LIMIT))
def test_one_over_each_protocol_limit_is_refused(limit: str) -> None:
    with pytest.raises(BatchTooLarge) as info:
        check_limits(AT_LIMIT[limit](1), _limits_for(limit))
    assert info.value.limit == limit
    assert info.value.code == "batch_too_large"


def test_the_protocol_values_and_their_margin() -> None:
    # iota-protocol-config: 1024 commands, 512 arguments, 16 KiB pure, 256 gas
    # coins (all compared with <), 2048 objects and 128 KiB (compared with <=).
    assert PROTOCOL_LIMITS.commands == 1023
    assert PROTOCOL_LIMITS.arguments_per_command == 511
    assert PROTOCOL_LIMITS.pure_input_bytes == 16_383
    assert PROTOCOL_LIMITS.gas_coins == 255
    assert PROTOCOL_LIMITS.input_objects == 2048
    assert PROTOCOL_LIMITS.signed_bytes == 131_072
    assert PLANNING_LIMITS.arguments_per_command == 459  # 10 % under 511


# --- the planner --------------------------------------------------------------------


def test_capacity_is_the_largest_batch_within_the_limits() -> None:
    # One SplitCoins takes every amount, so the argument limit binds first.
    assert batch_capacity(PROTOCOL_LIMITS, coins=256) == 511
    assert batch_capacity(PLANNING_LIMITS, coins=256) == 459
    largest = _batch(459, merge_coins=coin_refs(255, seed=b"m"))
    check_limits(largest, PLANNING_LIMITS)
    with pytest.raises(BatchTooLarge):
        check_limits(_batch(460, merge_coins=coin_refs(255, seed=b"m")), PLANNING_LIMITS)


def test_size_binds_when_the_limits_make_it_bind() -> None:
    # With a smaller size limit the bisection finds the byte boundary exactly.
    tight = replace(PROTOCOL_LIMITS, signed_bytes=10_000)
    capacity = batch_capacity(tight, coins=3)
    fits = _batch(capacity, merge_coins=coin_refs(2, seed=b"m"))
    check_limits(fits, tight)
    with pytest.raises(BatchTooLarge) as info:
        check_limits(_batch(capacity + 1, merge_coins=coin_refs(2, seed=b"m")), tight)
    assert info.value.limit == "signed_bytes"


@pytest.mark.parametrize(
    ("count", "sizes"),
    [(0, []), (1, [1]), (459, [459]), (460, [459, 1]), (1_000, [459, 459, 82])],
)
def test_plan_cuts_into_the_fewest_batches_in_order(count: int, sizes: list[int]) -> None:
    given = payments(count)
    plan = plan_batches(given, coins=256)
    assert [len(batch) for batch in plan] == sizes
    assert [p for batch in plan for p in batch] == given
    assert plan == plan_batches(list(given), coins=256)  # the same input, the same batches


def test_repeated_recipients_stay_separate_payments() -> None:
    one = Payment("0x" + "11" * 32, 5)
    assert plan_batches([one, one, one], coins=256) == [(one, one, one)]


def test_a_coin_count_that_cannot_fund_a_transaction_is_refused() -> None:
    with pytest.raises(ValueError, match="coins"):
        batch_capacity(PROTOCOL_LIMITS, coins=0)
    with pytest.raises(ValueError, match="coins"):
        batch_capacity(PROTOCOL_LIMITS, coins=600)  # 599 merged coins > 511 arguments


def test_programmable_transaction_helper_counts() -> None:
    tx = _at_commands(0)
    assert isinstance(tx.kind, ProgrammableTransaction)
    assert len(tx.kind.commands) == 1023
