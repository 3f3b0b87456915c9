"""A household's side of the grid's local ledger, over the grid's HTTP API.

:class:`LocalLedger` is the :class:`~.base.Ledger` interface (``balance``,
``transfer`` as a signed ``transfer`` envelope, ``lookup``) bound to one
household's :class:`~..grid_client.GridClient`. The record format, signing
and the entry chain are :mod:`.local`'s. Paying statements goes through
:mod:`..payments`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from ..crypto import KeyPair, is_address
from ..grid_client import GridClient, GridUnavailable
from ..models import LedgerEntry
from ..protocol import ErrorCode, ProtocolError
from .base import (
    InsufficientFunds,
    LedgerError,
    TransferInDoubt,
    TransferRecord,
    TxStatus,
    ledger_address,
)
from .local import MAX_AMOUNT, SignedTransfer, is_tx_id

if TYPE_CHECKING:
    from .base import Ledger


def is_stale_seq(exc: ProtocolError) -> bool:
    """A refusal because the transfer's ledger sequence number was already used."""
    return exc.code is ErrorCode.PAYMENT_INVALID and (exc.field or "").endswith("record.seq")


def ledger_error(exc: ProtocolError) -> LedgerError:
    """A grid refusal as a ledger error (``InsufficientFunds`` for insufficient_funds)."""
    if exc.code is ErrorCode.INSUFFICIENT_FUNDS:
        return InsufficientFunds(exc.message)
    return LedgerError(str(exc.code), exc.message)


class LocalLedger:
    """The :class:`~.base.Ledger` interface on the grid's local ledger, over HTTP.

    Bound to one household's :class:`~..grid_client.GridClient` (its key signs the
    envelopes and the transfers). Amounts are micro-units of the grid's
    currency. A transfer signs the next ledger sequence number after the one
    the grid reports for the account, so re-trying an unanswered transfer
    signs the very same record again and can never pay twice.
    """

    def __init__(self, client: GridClient, *, currency: str = "EUR") -> None:
        self.client = client
        self.currency = currency
        self._grid: str | None = None
        # The last ledger sequence number the grid applied for this key, as far
        # as this object knows (None: ask the grid).
        self._last_seq: int | None = None

    @property
    def unit(self) -> str:
        return f"micro-{self.currency}"

    def address_of(self, public_key: bytes) -> str:
        return ledger_address(public_key)

    async def _grid_id(self) -> str:
        if self._grid is None:
            info = await self.client.grid_info()
            self._grid = info.grid
            self.currency = info.currency
        return self._grid

    async def balance(self, address: str | None = None) -> int:
        """Balance of ``address`` (default: the client's own; the grid shows own and its own)."""
        try:
            account = await self.client.ledger_account(address)
        except ProtocolError as exc:
            raise ledger_error(exc) from exc
        return account.balance

    async def next_seq(self) -> int:
        """The sequence number for the next transfer: one above the last applied."""
        if self._last_seq is None:
            try:
                account = await self.client.ledger_account()
            except ProtocolError as exc:
                raise ledger_error(exc) from exc
            self._last_seq = account.seq
        return self._last_seq + 1

    def applied(self, transfer: SignedTransfer) -> None:
        """The grid applied ``transfer``: the next one signs the following number."""
        self._last_seq = max(self._last_seq or 0, transfer.record.seq)

    def forget_seq(self) -> None:
        """Ask the grid again (another copy of the key moved the sequence on)."""
        self._last_seq = None

    async def sign_transfer(
        self, keys: KeyPair, recipient: str, amount: int, *, memo: str | None = None
    ) -> SignedTransfer:
        """The transfer :meth:`transfer` would send now (next sequence number)."""
        if keys != self.client.keys:
            raise LedgerError("wrong_key", "a LocalLedger transfers only with its client's key")
        if not is_address(recipient):
            raise LedgerError("invalid_recipient", f"{recipient!r} is not an address")
        if recipient == keys.address:
            raise LedgerError("invalid_recipient", "a payment to oneself pays nothing")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
            raise LedgerError("invalid_amount", "the amount must be a positive integer")
        grid = await self._grid_id()
        seq = await self.next_seq()
        try:
            return SignedTransfer.sign(
                keys, grid=grid, recipient=recipient, amount=amount, seq=seq, memo=memo
            )
        except ProtocolError as exc:
            raise LedgerError("invalid_transfer", exc.message) from exc

    async def transfer(
        self, keys: KeyPair, recipient: str, amount: int, *, memo: str | None = None
    ) -> str:
        for attempt in (1, 2):
            signed = await self.sign_transfer(keys, recipient, amount, memo=memo)
            try:
                entry = await self.client.ledger_transfer(signed.to_wire())
            except ProtocolError as exc:
                if is_stale_seq(exc) and attempt == 1:
                    self.forget_seq()
                    continue
                if exc.code is ErrorCode.PAYMENT_REUSED:
                    # This very record is on the ledger already (an earlier attempt
                    # whose answer was lost): that is the payment.
                    self.applied(signed)
                    return signed.tx_id
                raise ledger_error(exc) from exc
            except GridUnavailable as exc:
                # Not applied, or applied unseen: the next call signs the same number.
                raise TransferInDoubt(
                    "outcome_unknown", signed.tx_id, f"the grid did not answer: {exc}"
                ) from exc
            self.applied(signed)
            return entry.tx_id
        raise AssertionError("unreachable")  # pragma: no cover

    async def lookup(self, tx_id: str) -> TransferRecord | None:
        if not is_tx_id(tx_id):
            raise LedgerError("invalid_tx_id", f"{tx_id!r} is not a transaction id")
        try:
            entry = await self.client.ledger_transaction(tx_id)
        except ProtocolError as exc:
            if exc.code is ErrorCode.NOT_FOUND:
                return None
            raise ledger_error(exc) from exc
        return record_of(entry)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def record_of(entry: LedgerEntry) -> TransferRecord:
    """The :class:`TransferRecord` of a published entry (mints have an empty sender)."""
    return TransferRecord(
        tx_id=entry.tx_id,
        sender=entry.sender or "",
        recipient=entry.recipient,
        amount=entry.amount,
        status=TxStatus.SUCCESS,
        time=entry.time,
        memo=entry.memo,
    )


if TYPE_CHECKING:

    def _implements_ledger(ledger: LocalLedger) -> Ledger:
        return ledger
