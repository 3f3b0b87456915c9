"""The local ledger's rules: when a signed transfer may be applied, and the chain check.

A transfer is applied only when

* its signature verifies for the sender's key and names this grid,
* its ``seq`` is above the last one applied for the sender (so of two
  transfers signed with one ``seq`` at most one is ever applied),
* its transaction id was never applied before,
* the sender's balance covers the amount: balances never go negative, and
  since money only moves between accounts (or is minted by the operator),
  the sum of all balances always equals the sum minted.
"""

from __future__ import annotations

from collections.abc import Iterable

from p2p_energy_client.ledger.local import GENESIS_HASH, SignedTransfer, check_entry
from p2p_energy_client.models import LedgerEntry
from p2p_energy_client.protocol import ErrorCode


class TransferRefused(Exception):
    """A transfer the ledger must not apply (``code`` as in the protocol's ErrorCode)."""

    def __init__(self, code: ErrorCode, field: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message


def check_transfer(
    signed: SignedTransfer,
    *,
    grid: str,
    signer: bytes | None,
    balance: int | None,
    last_seq: int | None,
    already_applied: bool,
    path: str = "transfer",
) -> None:
    """Raise :class:`TransferRefused` unless ``signed`` may be applied now.

    ``signer`` is the public key that must have signed (the envelope's), or
    None to accept any key whose address is the sender. ``balance`` and
    ``last_seq`` None: check everything but the sender's account.
    """
    record = signed.record
    if signer is not None and signed.public_key != signer:
        raise TransferRefused(
            ErrorCode.PAYMENT_INVALID,
            f"{path}.public_key",
            "the transfer must be signed by the key that signs the envelope",
        )
    if not signed.verify():
        raise TransferRefused(
            ErrorCode.PAYMENT_INVALID,
            f"{path}.signature",
            "the signature does not verify over the transfer record for its sender",
        )
    if record.grid != grid:
        raise TransferRefused(
            ErrorCode.PAYMENT_INVALID, f"{path}.record.grid", f"the transfer is for grid {grid!r}"
        )
    if record.recipient == record.sender:
        raise TransferRefused(
            ErrorCode.PAYMENT_INVALID, f"{path}.record.recipient", "a transfer to oneself"
        )
    if already_applied:
        raise TransferRefused(
            ErrorCode.PAYMENT_REUSED,
            f"{path}.record",
            f"transaction {record.tx_id} was already applied",
        )
    if last_seq is not None and record.seq <= last_seq:
        raise TransferRefused(
            ErrorCode.PAYMENT_INVALID,
            f"{path}.record.seq",
            f"the ledger sequence number must be above {last_seq}, the sender's last",
        )
    if balance is not None and balance < record.amount:
        raise TransferRefused(
            ErrorCode.INSUFFICIENT_FUNDS,
            f"{path}.record.amount",
            f"the balance is {balance}, less than {record.amount}",
        )


def verify_chain(entries: Iterable[LedgerEntry], grid: str) -> tuple[int, str] | None:
    """``(index, reason)`` of the first entry that is wrong, or None for a sound chain.

    Entries must come in index order from 1: each is checked against its
    predecessor's hash, its record, its id and (transfers) its signature.
    """
    prev = GENESIS_HASH
    expected = 1
    for entry in entries:
        if entry.index != expected:
            return entry.index, f"entry {expected} is missing"
        problem = check_entry(entry, grid, prev)
        if problem is not None:
            return entry.index, problem
        prev = bytes.fromhex(entry.hash)
        expected += 1
    return None
