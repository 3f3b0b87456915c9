"""Batch payouts on IOTA Rebased: one programmable transaction that pays many recipients.

The layout is exactly what the official TypeScript SDK (``@iota/iota-sdk``)
builds for ``tx.mergeCoins(tx.gas, coins)`` (only when the gas coin alone is
too small), ``tx.splitCoins(tx.gas, [a1, a2, …])`` and one
``tx.transferObjects([coin_i], recipient_i)`` per payment::

    inputs   = [merge coins …, a1 … an, recipient1 … recipientn]
    commands = [MergeCoins(GasCoin, merge coins)]?, SplitCoins(GasCoin, amounts),
               TransferObjects([NestedResult(split, i)], recipient_i) for each i

The SDK never merges equal pure values, so a repeated amount or recipient is
a new input each time; a recipient paid twice gets two coins. The committed
vectors (tests/iota/vectors/batch_ts_sdk.json, made by make_batch_vectors.mjs
with the SDK) prove the bytes and digests identical. With one payment and no
merge this is also byte for byte :func:`~.transactions.build_transfer`.

How many payments fit in one transaction is bounded by the node's limits
(:data:`PROTOCOL_LIMITS`, each with its source); :func:`plan_batches` cuts a
list of payments into as few transactions as :data:`PLANNING_LIMITS` (the
protocol's limits less a safety margin) allow, in the given order, so the
same input always gives the same batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ...crypto import is_address
from ..base import LedgerError, Payment
from .bcs import (
    U64_MAX,
    Argument,
    BcsError,
    CallArg,
    Command,
    GasCoin,
    GasData,
    ImmOrOwnedObject,
    Input,
    MergeCoins,
    MoveCall,
    NestedResult,
    ObjectRef,
    ProgrammableTransaction,
    Pure,
    Receiving,
    SharedObject,
    SplitCoins,
    TransactionData,
    TransferObjects,
    encode_transaction_data,
    pure_address,
    pure_as_address,
    pure_as_u64,
    pure_u64,
)
from .transactions import SERIALIZED_SIGNATURE_BYTES, transfer_terms

# What an Ed25519-signed transaction adds to its TransactionData bytes in the
# SenderSignedData the size limit is checked on (iota-types transaction.rs):
# the one-element vector (1), the intent (3), the signature vector (1), the
# signature's length (1) and the serialized signature (flag ‖ sig ‖ key, 97).
SIGNED_OVERHEAD_BYTES = 1 + 3 + 1 + 1 + SERIALIZED_SIGNATURE_BYTES


@dataclass(frozen=True, slots=True)
class TransactionLimits:
    """The most a transaction may hold; every field is an inclusive maximum."""

    commands: int
    arguments_per_command: int
    pure_input_bytes: int
    input_objects: int  # object inputs plus gas coins
    gas_coins: int
    signed_bytes: int  # the serialized SenderSignedData

    def with_margin(self, percent: int) -> TransactionLimits:
        """Each limit less ``percent`` (rounded down): room for what we did not foresee."""
        keep = 100 - percent
        return TransactionLimits(
            commands=self.commands * keep // 100,
            arguments_per_command=self.arguments_per_command * keep // 100,
            pure_input_bytes=self.pure_input_bytes * keep // 100,
            input_objects=self.input_objects * keep // 100,
            gas_coins=self.gas_coins * keep // 100,
            signed_bytes=self.signed_bytes * keep // 100,
        )


# IOTA Rebased's limits. Values: iotaledger/iota crates/iota-protocol-config/src/lib.rs
# (set in protocol version 1, unchanged through version 12). Where and how the node
# compares them: crates/iota-types/src/transaction.rs, validity checks run on
# submission (and on dry runs, except the gas-coin count and the size).
PROTOCOL_LIMITS = TransactionLimits(
    # max_programmable_tx_commands = 1024; ProgrammableTransaction::validity_check
    # requires commands.len() < 1024.
    commands=1_023,
    # max_arguments = 512; Command::validity_check requires the objects of
    # TransferObjects, the amounts of SplitCoins and the sources of MergeCoins
    # (and a MoveCall's arguments) to number < 512 each, and at least one.
    arguments_per_command=511,
    # max_pure_argument_size = 16 * 1024; CallArg::validity_check: p.len() < 16384.
    pure_input_bytes=16_383,
    # max_input_objects = 2048; ProgrammableTransaction::validity_check:
    # input objects (gas coins included) + receiving objects <= 2048.
    input_objects=2_048,
    # max_gas_payment_objects = 256; TransactionData::validity_check: gas().len() < 256.
    gas_coins=255,
    # max_tx_size_bytes = 128 * 1024; SenderSignedData::validity_check:
    # bcs::serialized_size(SenderSignedData) <= 131072.
    signed_bytes=131_072,
)
# The limit of 511 amounts in one SplitCoins binds first for a batch; the
# others are checked all the same. Owned coins (75 bytes each as inputs) reach
# the size limit before 2,048 input objects. Not checked here because a batch
# stays far below them: max_num_new_move_object_ids (2,048 new objects, one
# per payment), max_serialized_tx_effects_size_bytes (512 KiB of effects, about
# 100 bytes per new coin) and max_tx_gas (50 IOTA; a new coin's storage costs
# about 0.001 IOTA, and the budget is capped at it in ledger.py).

# The planner stays 10 % under every limit.
PLANNING_MARGIN_PERCENT = 10
PLANNING_LIMITS = PROTOCOL_LIMITS.with_margin(PLANNING_MARGIN_PERCENT)


class BatchTooLarge(LedgerError):
    """A transaction over one of :class:`TransactionLimits` (``limit`` names it)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__("batch_too_large", message)
        self.limit = limit


# --- building and reading -----------------------------------------------------------


def build_batch(
    *,
    sender: str,
    payments: Sequence[Payment],
    gas_payment: Sequence[ObjectRef],
    merge_coins: Sequence[ObjectRef] = (),
    gas_price: int,
    gas_budget: int,
) -> TransactionData:
    """One transaction paying every ``payments[i].amount`` to ``payments[i].recipient``.

    ``gas_payment`` coins pay for gas and fund the split (the node merges
    them into one gas coin); ``merge_coins`` are merged into the gas coin
    first, for when the payment coins alone do not hold the total + budget.
    """
    if not gas_payment:
        raise BcsError("a transaction needs at least one gas payment coin")
    if not payments:
        raise BcsError("a batch needs at least one payment")
    inputs: list[CallArg] = [ImmOrOwnedObject(ref) for ref in merge_coins]
    commands: list[Command] = []
    if merge_coins:
        commands.append(MergeCoins(GasCoin(), tuple(Input(i) for i in range(len(merge_coins)))))
    split_index = len(commands)
    amounts_at = len(inputs)
    inputs.extend(pure_u64(p.amount) for p in payments)
    commands.append(
        SplitCoins(GasCoin(), tuple(Input(amounts_at + i) for i in range(len(payments))))
    )
    for i, payment in enumerate(payments):
        commands.append(TransferObjects((NestedResult(split_index, i),), Input(len(inputs))))
        inputs.append(pure_address(payment.recipient))
    return TransactionData(
        kind=ProgrammableTransaction(tuple(inputs), tuple(commands)),
        sender=sender,
        gas_data=GasData(tuple(gas_payment), sender, gas_price, gas_budget),
    )


def batch_terms(tx: TransactionData) -> tuple[Payment, ...]:
    """The payments of a transaction shaped exactly like :func:`build_batch`'s.

    Raises :class:`BcsError` for any other shape, so that effects are never
    checked against terms that were guessed.
    """
    inputs, commands = tx.kind.inputs, tx.kind.commands
    merges = 0
    if commands and isinstance(commands[0], MergeCoins):
        merges = len(commands[0].sources)
        expected_merge = MergeCoins(GasCoin(), tuple(Input(i) for i in range(merges)))
        if not merges or commands[0] != expected_merge:
            raise BcsError("not a batch payment")
        if not all(isinstance(arg, ImmOrOwnedObject) for arg in inputs[:merges]):
            raise BcsError("not a batch payment")
    split_index = 1 if merges else 0
    count = len(commands) - split_index - 1
    if count < 1 or len(inputs) != merges + 2 * count:
        raise BcsError("not a batch payment")
    expected = [
        SplitCoins(GasCoin(), tuple(Input(merges + i) for i in range(count))),
        *(
            TransferObjects((NestedResult(split_index, i),), Input(merges + count + i))
            for i in range(count)
        ),
    ]
    if list(commands[split_index:]) != expected:
        raise BcsError("not a batch payment")
    payments = []
    for i in range(count):
        amount, recipient = inputs[merges + i], inputs[merges + count + i]
        if not isinstance(amount, Pure) or not isinstance(recipient, Pure):
            raise BcsError("not a batch payment")
        payments.append(Payment(pure_as_address(recipient), pure_as_u64(amount)))
    return tuple(payments)


def payment_terms(tx: TransactionData) -> tuple[Payment, ...]:
    """The payments of a batch, or of a single transfer (:func:`~.transactions.build_transfer`).

    Raises :class:`BcsError` for a transaction of neither shape.
    """
    try:
        return batch_terms(tx)
    except BcsError:
        recipient, amount = transfer_terms(tx)
        return (Payment(recipient, amount),)


def check_payments(payments: Iterable[Payment], *, sender: str) -> tuple[Payment, ...]:
    """The payments as a tuple, or :class:`LedgerError` naming the first bad one."""
    checked = tuple(payments)
    if not checked:
        raise LedgerError("invalid_payments", "payments: a batch needs at least one payment")
    for i, payment in enumerate(checked):
        if not isinstance(payment, Payment):
            raise LedgerError("invalid_payments", f"payments[{i}]: not a Payment")
        if not is_address(payment.recipient):
            raise LedgerError(
                "invalid_recipient",
                f"payments[{i}].recipient: {payment.recipient!r} is not an IOTA address",
            )
        if payment.recipient == sender:
            raise LedgerError(
                "invalid_recipient", f"payments[{i}].recipient: a payment to oneself pays nothing"
            )
        amount = payment.amount
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= U64_MAX:
            raise LedgerError(
                "invalid_amount", f"payments[{i}].amount: must be a positive integer of nanos"
            )
    return checked


# --- limits ---------------------------------------------------------------------------


def check_limits(tx: TransactionData, limits: TransactionLimits = PROTOCOL_LIMITS) -> None:
    """Raise :class:`BatchTooLarge` when ``tx`` (Ed25519-signed) breaks one of ``limits``."""
    commands = tx.kind.commands
    if len(commands) > limits.commands:
        raise BatchTooLarge(
            "commands", f"{len(commands)} commands; at most {limits.commands} are allowed"
        )
    for k, command in enumerate(commands):
        arguments = _command_arguments(command)
        if len(arguments) > limits.arguments_per_command:
            raise BatchTooLarge(
                "arguments_per_command",
                f"command {k} has {len(arguments)} arguments;"
                f" at most {limits.arguments_per_command} are allowed",
            )
    for i, arg in enumerate(tx.kind.inputs):
        if isinstance(arg, Pure) and len(arg.value) > limits.pure_input_bytes:
            raise BatchTooLarge(
                "pure_input_bytes",
                f"input {i} has {len(arg.value)} bytes; at most {limits.pure_input_bytes}",
            )
    objects = len(tx.gas_data.payment) + sum(
        isinstance(arg, ImmOrOwnedObject | SharedObject | Receiving) for arg in tx.kind.inputs
    )
    if objects > limits.input_objects:
        raise BatchTooLarge(
            "input_objects", f"{objects} input objects; at most {limits.input_objects}"
        )
    if len(tx.gas_data.payment) > limits.gas_coins:
        raise BatchTooLarge(
            "gas_coins", f"{len(tx.gas_data.payment)} gas coins; at most {limits.gas_coins}"
        )
    size = signed_size(tx)
    if size > limits.signed_bytes:
        raise BatchTooLarge(
            "signed_bytes", f"{size} bytes signed; at most {limits.signed_bytes} are allowed"
        )


def signed_size(tx: TransactionData) -> int:
    """Bytes of ``tx`` as the node measures it: its SenderSignedData with one Ed25519 signature."""
    return len(encode_transaction_data(tx)) + SIGNED_OVERHEAD_BYTES


def _command_arguments(command: Command) -> tuple[Argument, ...]:
    match command:
        case TransferObjects(objects, _):
            return objects
        case SplitCoins(_, amounts):
            return amounts
        case MergeCoins(_, sources):
            return sources
        case MoveCall(arguments=arguments):
            return arguments
    raise BcsError(f"unknown command {command!r}")


@lru_cache(maxsize=32)
def batch_capacity(limits: TransactionLimits = PLANNING_LIMITS, *, coins: int) -> int:
    """The most payments one transaction funded by up to ``coins`` coins can carry.

    Counted on the largest such transaction: one gas coin and ``coins - 1``
    merged ones (a merged coin takes more room than a gas coin), the widest
    amounts and addresses. Every payment adds the same bytes, so the most
    that fit is found by bisection on real encodings.
    """
    if coins < 1 or coins > limits.input_objects or coins - 1 > limits.arguments_per_command:
        raise ValueError(f"{coins} coins cannot fund one transaction within {limits}")
    coin = ObjectRef("0x" + "ff" * 32, U64_MAX, b"\xff" * 32)
    filler = Payment("0x" + "ff" * 32, U64_MAX)

    def fits(n: int) -> bool:
        tx = build_batch(
            sender=coin.object_id,
            payments=[filler] * n,
            gas_payment=[coin],
            merge_coins=[coin] * (coins - 1),
            gas_price=U64_MAX,
            gas_budget=U64_MAX,
        )
        try:
            check_limits(tx, limits)
        except BatchTooLarge:
            return False
        return True

    # SplitCoins holds every amount, and the commands are the merge, the split
    # and one transfer per payment.
    low, high = 0, min(limits.arguments_per_command, limits.commands - 2)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    if low < 1:
        raise ValueError(f"not one payment fits with {coins} coins within {limits}")
    return low


def plan_batches(
    payments: Sequence[Payment],
    *,
    coins: int,
    limits: TransactionLimits = PLANNING_LIMITS,
) -> list[tuple[Payment, ...]]:
    """Cut ``payments`` into as few transactions as ``limits`` allow, keeping their order.

    Every payment costs the same room, so filling each transaction to
    :func:`batch_capacity` in turn gives the fewest transactions, and the
    same payments always give the same batches. ``coins`` is the most coins
    one transaction may spend (``IotaConfig.max_coins``).
    """
    capacity = batch_capacity(limits, coins=coins)
    ordered = tuple(payments)
    return [ordered[start : start + capacity] for start in range(0, len(ordered), capacity)]
