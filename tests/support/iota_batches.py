"""Factories for batch payout tests: payments, coin references and transactions at the limits."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

from p2p_energy_client.ledger.iota import ObjectRef, Payment
from p2p_energy_client.ledger.iota.batch import signed_size
from p2p_energy_client.ledger.iota.bcs import (
    CallArg,
    Command,
    GasCoin,
    GasData,
    ImmOrOwnedObject,
    Input,
    MergeCoins,
    NestedResult,
    ProgrammableTransaction,
    Pure,
    SplitCoins,
    TransactionData,
    TransferObjects,
    pure_address,
    pure_u64,
)

# One SplitCoins or MergeCoins takes fewer than 512 arguments (iota-protocol-config max_arguments).
_MAX_ARGUMENTS = 511


def recipient(i: int) -> str:
    """A distinct recipient address for each ``i``."""
    return "0x" + hashlib.blake2b(i.to_bytes(8, "little"), digest_size=32).hexdigest()


def payments(n: int, *, amount: int = 1_000, start: int = 0) -> list[Payment]:
    """``n`` payments to distinct recipients, amounts ``amount``, ``amount + 1`` …"""
    return [Payment(recipient(start + i), amount + i) for i in range(n)]


def coin_refs(n: int, *, seed: bytes) -> list[ObjectRef]:
    """``n`` distinct coin references that exist nowhere (for building, not executing)."""
    return [
        ObjectRef(
            "0x" + hashlib.blake2b(seed + i.to_bytes(4, "little"), digest_size=32).hexdigest(),
            i + 1,
            hashlib.blake2b(b"digest" + seed + i.to_bytes(4, "little"), digest_size=32).digest(),
        )
        for i in range(n)
    ]


def ptb_with_splits(
    sender: str,
    split_sizes: Sequence[int],
    *,
    gas: Sequence[ObjectRef],
    merges: Sequence[ObjectRef] = (),
    amount: int = 1_000,
    gas_budget: int = 10_000_000_000,
) -> TransactionData:
    """A payout that needs more than one SplitCoins (or MergeCoins): for reaching limits.

    Merged coins go into the gas coin in MergeCoins of at most 511 each; then
    one SplitCoins per entry of ``split_sizes`` and one TransferObjects per
    new coin, each to its own recipient.
    """
    inputs: list[CallArg] = [ImmOrOwnedObject(ref) for ref in merges]
    commands: list[Command] = [
        MergeCoins(
            GasCoin(),
            tuple(Input(i) for i in range(start, min(start + _MAX_ARGUMENTS, len(merges)))),
        )
        for start in range(0, len(merges), _MAX_ARGUMENTS)
    ]
    splits: list[tuple[int, int]] = []  # (command index, coins)
    for size in split_sizes:
        first = len(inputs)
        inputs.extend(pure_u64(amount) for _ in range(size))
        splits.append((len(commands), size))
        commands.append(SplitCoins(GasCoin(), tuple(Input(first + j) for j in range(size))))
    paid = 0
    for command_index, size in splits:
        for j in range(size):
            commands.append(TransferObjects((NestedResult(command_index, j),), Input(len(inputs))))
            inputs.append(pure_address(recipient(paid)))
            paid += 1
    return TransactionData(
        kind=ProgrammableTransaction(tuple(inputs), tuple(commands)),
        sender=sender,
        gas_data=GasData(tuple(gas), sender, 1_000, gas_budget),
    )


def with_padding(tx: TransactionData, signed_bytes: int) -> TransactionData:
    """``tx`` with unused pure inputs appended so that, signed, it is exactly ``signed_bytes``.

    Each padding input is 128 to 16,383 bytes long, so it costs its length
    plus 3 (the variant tag and a 2-byte length).
    """
    padding: list[Pure] = []
    while True:
        padded = replace(tx, kind=replace(tx.kind, inputs=(*tx.kind.inputs, *padding)))
        missing = signed_bytes - signed_size(padded)
        if missing == 0:
            return padded
        if padding and 128 <= len(padding[-1].value) + missing <= 16_383:
            padding[-1] = Pure(b"\x00" * (len(padding[-1].value) + missing))
        elif missing > 3 + 16_000:
            padding.append(Pure(b"\x00" * 16_000))
        elif missing >= 3 + 128:
            padding.append(Pure(b"\x00" * (missing - 3)))
        else:
            raise ValueError(f"cannot pad {missing} bytes more")
