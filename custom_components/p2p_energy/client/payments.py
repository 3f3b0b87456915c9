"""Paying statements from a household: the ``PaymentPort`` for each ledger, and the wallet.

Both payers are idempotent per statement: before paying they ask the grid
for the statement, and a statement that is already paid returns the
transaction that paid it instead of paying again.

* :class:`LocalPayer` (the grid's local ledger) signs a transfer of what is
  outstanding to the grid's address with the next ledger sequence number
  and posts it in a ``payment`` envelope. Stateless: if an answer is lost,
  the next call signs the very same transfer (the account's sequence number
  has not moved), and the grid applies at most one transfer per sequence
  number and never more than is outstanding.
* :class:`IotaPayer` pays on chain with :class:`~.ledger.iota.IotaLedger`
  and posts the digest. Before sending it stores the signed transaction in
  its state (``to_state()``, and the ``save`` callback is awaited first), so
  after a restart it finishes *that* transaction — looks it up, re-submits
  the same bytes, posts the digest — and never signs a second payment for
  the same statement while the first can still land.

``wallet_balance()`` on either gives the balance for the household's
dashboard. :func:`make_payer` picks the payer from ``GridInfo``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import aiohttp

from .grid_client import GridClient
from .ledger.base import LedgerError, TxStatus
from .ledger.iota import (
    IotaConfig,
    IotaLedger,
    SignedTransaction,
    TransactionRejected,
    TransferFailed,
)
from .ledger.local import SignedTransfer
from .ledger.local_client import LocalLedger, is_stale_seq
from .models import GridInfo, PaymentResult, Statement
from .protocol import ErrorCode, LedgerKind, ProtocolError
from .units import MICRO_PER_UNIT, NANOS_PER_IOTA

_LOGGER = logging.getLogger(__name__)

SaveState = Callable[[dict[str, Any]], Awaitable[None]]


class NothingToPay(LedgerError):
    """The statement is owed by the grid (or is zero): households do not pay it."""

    def __init__(self, statement_id: str) -> None:
        super().__init__("nothing_to_pay", f"statement {statement_id} is not owed to the grid")


@dataclass(frozen=True, slots=True)
class WalletBalance:
    """The household's balance on the grid's ledger.

    ``amount`` in ``unit`` (micro-units of the currency, or nanos);
    ``value`` the same as a decimal in ``display_unit`` (EUR, IOTA).
    """

    ledger: str
    address: str
    amount: int
    unit: str
    value: Decimal
    display_unit: str


class Payer(Protocol):
    """A ``PaymentPort`` that can also show the wallet's balance."""

    async def pay(self, statement: Statement) -> str: ...

    async def wallet_balance(self) -> WalletBalance: ...


def _paid_tx(statement: Statement) -> str | None:
    """The last incoming payment recorded against a statement."""
    incoming = [p for p in statement.payments if p.direction == "in"]
    return incoming[-1].tx_id if incoming else None


def _outstanding(statement: Statement) -> int:
    """What is left to pay, in ledger units (0 for statements owed by the grid)."""
    if statement.amount_due_micro <= 0:
        return 0
    if statement.ledger is None:
        return max(0, statement.amount_due_micro - statement.paid_micro)
    return statement.ledger.outstanding


def _settled(statement: Statement) -> str | None:
    """The paying transaction when nothing is outstanding (``""`` if none was needed)."""
    if statement.amount_due_micro > 0 and _outstanding(statement) > 0:
        return None
    return _paid_tx(statement) or ""


class LocalPayer:
    """Pays statements on the grid's local ledger through the household's GridClient."""

    def __init__(self, client: GridClient, *, currency: str = "EUR") -> None:
        self.client = client
        self.ledger = LocalLedger(client, currency=currency)
        self._lock = asyncio.Lock()

    async def pay(self, statement: Statement) -> str:
        async with self._lock:
            fresh = await self.client.statement(statement.id)
            if fresh.amount_due_micro <= 0:
                raise NothingToPay(statement.id)
            done = _settled(fresh)
            if done is not None:
                return done
            if fresh.ledger is not None and fresh.ledger.kind != LedgerKind.LOCAL:
                raise LedgerError("wrong_ledger", f"{statement.id} is paid on {fresh.ledger.kind}")
            info = await self.client.grid_info()
            if info.ledger_address is None:
                raise LedgerError("no_grid_address", "the grid publishes no ledger address")
            amount = _outstanding(fresh)
            for attempt in (1, 2):
                transfer = await self.ledger.sign_transfer(
                    self.client.keys, info.ledger_address, amount, memo=statement.id
                )
                try:
                    result = await self.client.pay(statement.id, transfer=transfer.to_wire())
                except ProtocolError as exc:
                    if is_stale_seq(exc) and attempt == 1:
                        self.ledger.forget_seq()  # another copy of the key moved on
                        continue
                    return await self._after_refusal(exc, statement.id, transfer)
                self.ledger.applied(transfer)
                return result.payment.tx_id
            raise AssertionError("unreachable")  # pragma: no cover

    async def _after_refusal(
        self, exc: ProtocolError, statement_id: str, transfer: SignedTransfer
    ) -> str:
        """A refusal can mean an earlier attempt got through: then that is the answer."""
        if exc.code in (ErrorCode.PAYMENT_REUSED, ErrorCode.PAYMENT_INVALID):
            fresh = await self.client.statement(statement_id)
            if any(p.tx_id == transfer.tx_id for p in fresh.payments):
                return transfer.tx_id
            done = _settled(fresh)
            if done:
                return done
        raise exc

    async def wallet_balance(self) -> WalletBalance:
        account = await self.client.ledger_account()
        currency = self.ledger.currency
        return WalletBalance(
            "local",
            account.address,
            account.balance,
            account.unit,
            Decimal(account.balance) / MICRO_PER_UNIT,
            currency,
        )


class IotaPayer:
    """Pays statements on IOTA Rebased and proves them to the grid by digest.

    ``state`` is what :meth:`to_state` returned before (persist it with the
    household's other state); ``save`` is awaited with the new state before
    a transaction is sent and after it is settled — give it, so that a crash
    at any moment leaves the signed transaction on disk.
    """

    def __init__(
        self,
        client: GridClient,
        ledger: IotaLedger,
        *,
        state: Mapping[str, Any] | None = None,
        save: SaveState | None = None,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.save = save
        self._pending: dict[str, dict[str, Any]] = {
            k: dict(v) for k, v in (state or {}).get("pending", {}).items()
        }
        self._lock = asyncio.Lock()

    def to_state(self) -> dict[str, Any]:
        return {"pending": {k: dict(v) for k, v in self._pending.items()}}

    @property
    def pending(self) -> dict[str, str]:
        """Statement id → digest of a payment sent (or about to be) but not yet recorded."""
        return {k: v["digest"] for k, v in self._pending.items()}

    async def _save(self) -> None:
        if self.save is not None:
            await self.save(self.to_state())

    async def pay(self, statement: Statement) -> str:
        async with self._lock:
            fresh = await self.client.statement(statement.id)
            if fresh.amount_due_micro <= 0:
                raise NothingToPay(statement.id)
            entry = self._pending.get(statement.id)
            if entry is not None and any(p.tx_id == entry["digest"] for p in fresh.payments):
                await self._forget(statement.id)
                return str(entry["digest"])
            done = _settled(fresh)
            if done is not None:
                await self._forget(statement.id)
                return done
            if fresh.ledger is not None and fresh.ledger.kind != LedgerKind.IOTA:
                raise LedgerError("wrong_ledger", f"{statement.id} is paid on {fresh.ledger.kind}")
            signed = await self._finish_pending(statement.id) if entry is not None else None
            if signed is None:
                signed = await self._new_payment(fresh)
            return await self._prove(statement.id, signed.digest)

    async def _finish_pending(self, statement_id: str) -> SignedTransaction | None:
        """Land the stored transaction (same bytes); None when it can never pay."""
        signed = SignedTransaction.from_json(self._pending[statement_id]["signed"])
        found = await self.ledger.lookup(signed.digest)
        if found is not None and found.status is TxStatus.FAILURE:
            await self._forget(statement_id)
            return None
        if found is None:
            try:
                await self.ledger.submit(signed)
            except TransferFailed:
                await self._forget(statement_id)
                return None
            except TransactionRejected as exc:
                if not exc.can_never_land:
                    raise
                await self._forget(statement_id)
                return None
        return signed

    async def _new_payment(self, statement: Statement) -> SignedTransaction:
        info = await self.client.grid_info()
        if info.ledger_address is None:
            raise LedgerError("no_grid_address", "the grid publishes no ledger address")
        signed = await self.ledger.prepare_transfer(
            self.client.keys, info.ledger_address, _outstanding(statement)
        )
        self._pending[statement.id] = {"digest": signed.digest, "signed": signed.to_json()}
        await self._save()  # on disk before it can land
        try:
            await self.ledger.submit(signed)
        except TransferFailed:
            await self._forget(statement.id)  # executed and failed: nothing was paid
            raise
        except TransactionRejected as exc:
            if exc.can_never_land:
                await self._forget(statement.id)
            raise
        return signed

    async def _prove(self, statement_id: str, digest: str) -> str:
        try:
            result: PaymentResult = await self.client.pay(statement_id, tx=digest)
        except ProtocolError as exc:
            if exc.code in (ErrorCode.PAYMENT_REUSED, ErrorCode.PAYMENT_INVALID):
                fresh = await self.client.statement(statement_id)
                if any(p.tx_id == digest for p in fresh.payments):
                    await self._forget(statement_id)
                    return digest
            raise  # PAYMENT_PENDING and the rest: keep the digest, prove it later
        await self._forget(statement_id)
        return result.payment.tx_id

    async def _forget(self, statement_id: str) -> None:
        if self._pending.pop(statement_id, None) is not None:
            await self._save()

    async def wallet_balance(self) -> WalletBalance:
        address = self.client.keys.address
        nanos = await self.ledger.balance(address)
        return WalletBalance(
            "iota", address, nanos, "nanos", Decimal(nanos) / NANOS_PER_IOTA, "IOTA"
        )


def make_payer(
    client: GridClient,
    grid: GridInfo,
    *,
    iota: IotaLedger | IotaConfig | str | None = None,
    state: Mapping[str, Any] | None = None,
    save: SaveState | None = None,
    session: aiohttp.ClientSession | None = None,
) -> LocalPayer | IotaPayer:
    """The payer for the grid's ledger.

    For IOTA give ``iota``: a ledger, a config, or a node URL (default: the
    node the grid publishes, else the IOTA Foundation's node of its network).
    A ledger made here uses ``session`` (the caller's, which it closes) when
    given, else one of its own.
    """
    if grid.ledger_kind == LedgerKind.LOCAL:
        return LocalPayer(client, currency=grid.currency)
    if grid.ledger_kind != LedgerKind.IOTA:
        raise LedgerError("unknown_ledger", f"the grid's ledger {grid.ledger_kind!r} is unknown")
    if isinstance(iota, IotaLedger):
        ledger = iota
    elif iota is not None:
        ledger = IotaLedger(iota, session=session)
    elif grid.ledger_node_url is not None:
        ledger = IotaLedger(grid.ledger_node_url, session=session)
    elif grid.ledger_network is not None:
        ledger = IotaLedger(IotaConfig.for_network(grid.ledger_network), session=session)
    else:
        raise LedgerError("no_node", "the grid names no IOTA node or network; configure one")
    return IotaPayer(client, ledger, state=state, save=save)


async def wallet_balance(payer: LocalPayer | IotaPayer) -> WalletBalance:
    """The household's ledger balance (for the Home Assistant sensor)."""
    return await payer.wallet_balance()


__all__ = [
    "IotaPayer",
    "LocalPayer",
    "NothingToPay",
    "Payer",
    "WalletBalance",
    "make_payer",
    "wallet_balance",
]
