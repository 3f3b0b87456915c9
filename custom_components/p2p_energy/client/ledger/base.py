"""The ledger interface shared by the grid server and the households.

Amounts are integers in the ledger's own unit (micro-units of the grid's
currency on the local ledger, nanos on IOTA). Transaction ids are base58
strings of a 32-byte digest on both, so records and receipts look alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from ..crypto import KeyPair, address_from_public_key


class TxStatus(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Payment:
    """One payment of a batch: ``amount`` (in the ledger's unit) to ``recipient``."""

    recipient: str
    amount: int


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """What a ledger says about one transaction.

    A transaction that pays several recipients (a batch of payouts) lists
    every payment in ``payments``, in the order the transaction makes them
    (a recipient paid twice appears twice), so the grid can check a batch it
    finds against the batch it recorded. ``amount`` is then their sum and
    ``recipient`` is the one recipient if there is exactly one, else ``""``.
    ``payments`` is empty when nothing was paid (a failed transaction) or
    when the ledger does not itemise the transaction.
    """

    tx_id: str
    sender: str
    recipient: str
    amount: int
    status: TxStatus
    time: datetime | None
    memo: str | None = None
    payments: tuple[Payment, ...] = ()


class LedgerError(Exception):
    """A ledger refused or failed an operation; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TransferInDoubt(LedgerError):
    """A transfer may have been applied (or may still be): do not pay again blindly.

    ``tx_id`` names the transfer in question; reconcile with ``lookup(tx_id)``,
    or send the very same signed transfer again (every ledger applies one
    signed transfer at most once). ``code`` says why it is in doubt
    (``outcome_unknown``: no answer; on IOTA also ``not_checkpointed`` and
    ``effects_mismatch``). ``signed``: the ledger's own form of the signed
    bytes in question, when it keeps them (IOTA's ``SignedTransaction``).
    """

    def __init__(self, code: str, tx_id: str, message: str, *, signed: object = None) -> None:
        super().__init__(code, f"{message} (transaction {tx_id})")
        self.tx_id = tx_id
        self.signed = signed


class InsufficientFunds(LedgerError):
    def __init__(self, message: str) -> None:
        super().__init__("insufficient_funds", message)


class Ledger(Protocol):
    """What the grid and the households need from a ledger."""

    @property
    def unit(self) -> str:
        """Name of the integer unit, e.g. ``"micro-EUR"`` or ``"nanos"``."""
        ...

    def address_of(self, public_key: bytes) -> str:
        """The ledger address of an Ed25519 public key."""
        ...

    async def balance(self, address: str) -> int:
        """Spendable balance of ``address`` in the ledger's unit."""
        ...

    async def transfer(
        self, keys: KeyPair, recipient: str, amount: int, *, memo: str | None = None
    ) -> str:
        """Move ``amount`` from the key's address to ``recipient``; returns the tx id.

        Implementations must never pay twice for one call, also when they
        retry after a timeout.
        """
        ...

    async def lookup(self, tx_id: str) -> TransferRecord | None:
        """The transaction with this id, or ``None`` when the ledger does not know it."""
        ...


def ledger_address(public_key: bytes) -> str:
    """Both ledgers use IOTA Rebased addresses: 0x + hex(blake2b-256(public key))."""
    return address_from_public_key(public_key)
