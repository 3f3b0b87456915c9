"""Paying producers: plan, record the intent, send, record the result — never twice.

One pass (:meth:`PayoutWorker.run_once`), run by exactly one worker at a time
(a PostgreSQL session advisory lock; on SQLite the grid runs in one process):

1. **Recover** every payout left ``prepared`` by an earlier pass (a crash, a
   node that timed out): look its transaction id up on the ledger. Found and
   final → record it ``done``; failed on chain → ``failed`` (nothing was
   paid; its statements become payable again); unknown → send the *same*
   signed bytes again (IOTA: the same bytes can land only once; local: the
   same transfer with the same ledger sequence number can be applied only
   once). An outcome that stays unknown leaves the payout ``prepared``, and
   no new payout is made while one is in doubt.
2. **Plan** (:func:`grid_server.domain.ledger.plan_payouts`): what producer
   statements are owed under the payout policy, per producer, at or above
   the threshold, within the grid's balance.
3. For each planned payout: sign the transfer (local: the grid's next
   ledger sequence number; IOTA: ``prepare_transfer`` — coins, gas by dry
   run), and **store the intent** — the signed bytes and the transaction id,
   with the statements it pays — in one transaction with its audit entry.
   Only then **send** it, and **record** the outcome: the statements' paid
   amounts and status, the audit entry, a ``payment`` event and the updated
   ``statement`` events on the producer's live stream. On the local ledger
   applying the transfer and recording it are one database transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.clock import Clock
from grid_server.domain.ledger import PayoutPlan, StatementPosition, TransferRefused, plan_payouts
from grid_server.storage import audit_log
from grid_server.storage import payout_queries as oq
from grid_server.storage import statements as stored_statements
from grid_server.storage.db import Database, advisory_key
from p2p_energy_client.ledger.base import LedgerError, TxStatus
from p2p_energy_client.ledger.iota import (
    SignedTransaction,
    TransactionRejected,
    TransferFailed,
    TransferInDoubt,
)
from p2p_energy_client.ledger.local import SignedTransfer
from p2p_energy_client.protocol import LedgerKind, canonical_json
from p2p_energy_client.units import ledger_amount

from .background import BackgroundLoop
from .events import EventHub, add_events
from .faults import Faults
from .local_ledger import log_item
from .payments import PaymentService
from .transaction import Event

_LOGGER = logging.getLogger(__name__)


@dataclass(slots=True)
class PayoutReport:
    """What one pass did (also the operator API's answer)."""

    recovered: int = 0
    paid: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    in_doubt: int = 0
    skipped: str | None = None
    # Payable but more than the grid's account holds: fund it (see the README).
    unfunded: list[dict[str, Any]] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return {
            "recovered": self.recovered,
            "paid": self.paid,
            "failed": self.failed,
            "in_doubt": self.in_doubt,
            "skipped": self.skipped,
            "unfunded": self.unfunded,
        }


@dataclass(slots=True)
class _Payout:
    id: int
    tx_id: str
    participant_id: int
    recipient: str
    ledger: str
    amount: int
    signed: dict[str, Any]
    items: list[tuple[str, int]]


@dataclass(kw_only=True, eq=False)
class PayoutWorker:
    grid_id: str
    db: Database
    clock: Clock
    payments: PaymentService
    hub: EventHub
    faults: Faults
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def __post_init__(self) -> None:
        # The worker's own task: a pass every payout interval, or when woken.
        self.loop = BackgroundLoop(
            "p2p-payouts",
            self.run_once,
            lambda: self.payments.config.payout_interval_seconds,
            failure="payout pass failed; retrying",
            logger=_LOGGER,
        )

    # --- running --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[bool]:
        """True when this process may pay out now (one worker of all, one pass at a time)."""
        async with self._lock:
            db = self.db
            if not db.is_postgres:
                yield True
                return
            key = advisory_key(self.grid_id, "payouts")
            async with db.write_engine.connect() as conn:
                got = await oq.try_session_lock(conn, key)
                try:
                    yield got
                finally:
                    if got:
                        await oq.session_unlock(conn, key)

    async def run_once(self) -> PayoutReport:
        report = PayoutReport()
        async with self._exclusive() as mine:
            if not mine:
                report.skipped = "another worker is paying out"
                return report
            await self._recover(report)
            if report.in_doubt:
                report.skipped = "a payout is in doubt; no new payouts until it is resolved"
                return report
            for plan in await self._plan(report):
                if self.loop.stopping:
                    break
                await self._pay(plan, report)
        return report

    # --- planning -------------------------------------------------------------------

    async def _plan(self, report: PayoutReport) -> list[PayoutPlan]:
        async with self.db.read() as conn:
            owed = await oq.owed(conn, str(self.payments.kind))
            if not owed:
                return []
            billed = await oq.billed(conn, {r.period_start for r in owed})
            in_flight = await oq.in_flight(conn)
        positions = [
            StatementPosition(
                r.id,
                r.participant_id,
                r.period_start,
                int(r.amount_due),
                int(r.paid),
                in_flight.get(r.id, 0),
            )
            for r in (*owed, *billed)
        ]
        config = self.payments.config
        factory = await self.payments.terms_factory(self.clock.now())
        threshold = ledger_amount(-config.payout_threshold_micro, factory.rate) * -1
        budget = await self._budget()
        plans, unfunded = plan_payouts(
            positions, policy=config.payout_policy, threshold=threshold, budget=budget
        )
        if unfunded:
            short = sum(p.total for p in unfunded)
            _LOGGER.warning(
                "%d payouts (%d %s) wait: the grid's account holds %d",
                len(unfunded),
                short,
                self.payments.unit,
                budget,
            )
            report.unfunded = [
                {"participant_id": p.participant_id, "amount": p.total} for p in unfunded
            ]
        return plans

    async def _budget(self) -> int:
        """What the grid's account can pay out now (IOTA: less a reserve for gas)."""
        if self.payments.kind is LedgerKind.IOTA:
            try:
                balance = await self.payments.iota().balance(self.payments.address)
            except LedgerError:
                _LOGGER.warning("cannot read the grid's IOTA balance; no payouts now")
                return 0
            return max(0, balance - self.payments.config.iota.gas_reserve_nanos)
        async with self.db.read() as conn:
            balance, _ = await self.payments.store.account(conn, self.payments.address)
        return balance

    # --- paying ---------------------------------------------------------------------

    async def _pay(self, plan: PayoutPlan, report: PayoutReport) -> None:
        async with self.db.read() as conn:
            recipient = await oq.address_of(conn, plan.participant_id)
        assert recipient is not None
        # A distinct memo per payout: a transfer that failed is never the same record again.
        memo = f"payout {secrets.token_hex(4)}: " + " ".join(sid for sid, _ in plan.items)
        memo = memo if len(memo) <= 128 else memo[:125] + "..."
        if self.payments.kind is LedgerKind.IOTA:
            signed = await self._sign_iota(plan, recipient, report)
            if signed is None:
                return
        else:
            signed = await self._sign_local(plan, recipient, memo)
        payout = await self._store_intent(plan, recipient, *signed)
        await self._send(payout, report)

    async def _sign_iota(
        self, plan: PayoutPlan, recipient: str, report: PayoutReport
    ) -> tuple[str, dict[str, Any]] | None:
        """``(digest, signed transaction)``, or None when it could not be prepared."""
        payments = self.payments
        try:
            tx = await payments.iota().prepare_transfer(payments.grid_keys, recipient, plan.total)
        except LedgerError as exc:
            _LOGGER.warning("payout of %d nanos to %s not prepared: %s", plan.total, recipient, exc)
            report.failed.append({"recipient": recipient, "amount": plan.total, "error": str(exc)})
            return None
        return tx.digest, tx.to_json()

    async def _sign_local(
        self, plan: PayoutPlan, recipient: str, memo: str
    ) -> tuple[str, dict[str, Any]]:
        """``(tx id, signed transfer)`` with the grid's next ledger sequence number."""
        payments = self.payments
        async with self.db.read() as conn:
            _, seq = await payments.store.account(conn, payments.address)
        transfer = SignedTransfer.sign(
            payments.grid_keys,
            grid=self.grid_id,
            recipient=recipient,
            amount=plan.total,
            seq=seq + 1,
            memo=memo,
        )
        return transfer.tx_id, transfer.to_wire()

    async def _store_intent(
        self, plan: PayoutPlan, recipient: str, tx_id: str, signed: dict[str, Any]
    ) -> _Payout:
        db = self.db
        now = self.clock.now()
        kind = str(self.payments.kind)
        async with db.write() as conn:
            await audit_log.lock_head(conn, db, self.grid_id)
            payout_id = await oq.insert_intent(
                conn,
                tx_id=tx_id,
                participant_id=plan.participant_id,
                recipient=recipient,
                ledger=kind,
                amount=plan.total,
                signed=signed,
                items=plan.items,
                now=now,
            )
            record = {
                "payout": payout_id,
                "state": "prepared",
                "tx_id": tx_id,
                "ledger": kind,
                "recipient": recipient,
                "amount": plan.total,
                "statements": [{"id": sid, "amount": amount} for sid, amount in plan.items],
            }
            await self._log(conn, tx_id, record, now)
        return _Payout(
            payout_id,
            tx_id,
            plan.participant_id,
            recipient,
            kind,
            plan.total,
            signed,
            list(plan.items),
        )

    async def _log(
        self, conn: AsyncConnection, ref: str, record: dict[str, Any], now: datetime
    ) -> None:
        await audit_log.append(
            conn, self.db, self.grid_id, [("payout", ref, canonical_json(record))], now
        )

    async def _send(self, payout: _Payout, report: PayoutReport) -> None:
        """Send a stored payout and record the outcome (also used to recover)."""
        if payout.ledger == LedgerKind.IOTA:
            await self._send_iota(payout, report)
        else:
            await self._send_local(payout, report)

    async def _send_local(self, payout: _Payout, report: PayoutReport) -> None:
        transfer = SignedTransfer.from_wire(payout.signed)
        db = self.db
        now = self.clock.now()
        try:
            async with db.write() as conn:
                await audit_log.lock_head(conn, db, self.grid_id)
                entry = await self.payments.store.apply_transfer(
                    conn, transfer, signer=self.payments.grid_keys.public_key, now=now
                )
                await audit_log.append(conn, db, self.grid_id, [log_item(entry)], now)
                await self._record_done(conn, payout, report)
                await self.faults.reach("payout.send", payout.tx_id)
        except TransferRefused as exc:
            await self._record_failed(payout, f"{exc.code}: {exc.message}", report)
            return
        self.hub.notify()

    async def _send_iota(self, payout: _Payout, report: PayoutReport) -> None:
        ledger = self.payments.iota()
        signed = SignedTransaction.from_json(payout.signed)
        try:
            await ledger.submit(signed)
        except TransferInDoubt as exc:
            _LOGGER.warning("payout %s in doubt: %s", payout.tx_id, exc)
            report.in_doubt += 1
            return
        except TransferFailed as exc:
            await self._record_failed(payout, str(exc), report)
            return
        except TransactionRejected as exc:
            if exc.can_never_land:
                await self._record_failed(payout, str(exc), report)
            else:
                _LOGGER.warning("payout %s refused for now: %s", payout.tx_id, exc)
                report.in_doubt += 1
            return
        except LedgerError as exc:
            _LOGGER.warning("payout %s not sent: %s", payout.tx_id, exc)
            report.in_doubt += 1
            return
        await self._complete(payout, report)

    async def _complete(self, payout: _Payout, report: PayoutReport) -> None:
        """Record a payout that is on the ledger (IOTA)."""
        async with self.db.write() as conn:
            await audit_log.lock_head(conn, self.db, self.grid_id)
            await self._record_done(conn, payout, report)
        self.hub.notify()

    async def _record_done(
        self, conn: AsyncConnection, payout: _Payout, report: PayoutReport
    ) -> None:
        now = self.clock.now()
        if not await oq.finish(conn, payout.id, state="done", completed_at=now):
            return  # recorded already (by another pass): nothing more to do
        settled = []
        for statement_id, amount in payout.items:
            row = await self.payments.statement_for_update(conn, statement_id)
            assert row is not None
            paid, micro, status = await self.payments.settle(conn, row, -amount)
            # The statement after the payout, so the log alone tells its state.
            settled.append(
                {
                    "id": statement_id,
                    "amount": amount,
                    "paid": paid,
                    "paid_micro": micro,
                    "status": status,
                }
            )
        record = {
            "payout": payout.id,
            "state": "done",
            "tx_id": payout.tx_id,
            "ledger": payout.ledger,
            "recipient": payout.recipient,
            "amount": payout.amount,
            "statements": settled,
        }
        await self._log(conn, payout.tx_id, record, now)
        await add_events(
            conn, await self._paid_events(conn, payout), now, postgres=self.db.is_postgres
        )
        report.paid.append(
            {"recipient": payout.recipient, "amount": payout.amount, "tx_id": payout.tx_id}
        )

    async def _paid_events(self, conn: AsyncConnection, payout: _Payout) -> list[Event]:
        """The ``payment`` event and the statements it paid, on the producer's stream."""
        event = {
            "direction": "out",
            "tx_id": payout.tx_id,
            "amount": payout.amount,
            "unit": self.payments.unit_of(payout.ledger),
            "ledger": payout.ledger,
            "statements": [{"id": sid, "amount": amount} for sid, amount in payout.items],
        }
        rows: list[Event] = [(payout.participant_id, "payment", event)]
        for statement_id, _ in payout.items:
            view = await stored_statements.statement_view(conn, statement_id)
            assert view is not None
            rows.append((payout.participant_id, "statement", view.to_wire()))
        return rows

    async def _record_failed(self, payout: _Payout, error: str, report: PayoutReport) -> None:
        now = self.clock.now()
        _LOGGER.warning("payout %s failed: %s", payout.tx_id, error)
        async with self.db.write() as conn:
            await audit_log.lock_head(conn, self.db, self.grid_id)
            if not await oq.finish(
                conn, payout.id, state="failed", completed_at=now, error=error[:2000]
            ):
                return
            record = {
                "payout": payout.id,
                "state": "failed",
                "tx_id": payout.tx_id,
                "error": error[:500],
            }
            await self._log(conn, payout.tx_id, record, now)
        report.failed.append(
            {"recipient": payout.recipient, "amount": payout.amount, "error": error}
        )

    # --- recovery -------------------------------------------------------------------

    async def _recover(self, report: PayoutReport) -> None:
        for payout in await self._prepared():
            report.recovered += 1
            if payout.ledger == LedgerKind.IOTA:
                await self._recover_iota(payout, report)
                continue
            async with self.db.read() as conn:
                entry = await self.payments.store.entry(conn, payout.tx_id)
            if entry is not None:
                # Applied, not recorded (cannot happen: one transaction), recorded now.
                async with self.db.write() as conn:
                    await audit_log.lock_head(conn, self.db, self.grid_id)
                    await self._record_done(conn, payout, report)
            else:
                await self._send_local(payout, report)

    async def _recover_iota(self, payout: _Payout, report: PayoutReport) -> None:
        """Look a prepared IOTA payout up on the node and finish it (see the module doc)."""
        try:
            found = await self.payments.iota().lookup(payout.tx_id)
        except LedgerError as exc:
            _LOGGER.warning("cannot look payout %s up: %s", payout.tx_id, exc)
            report.in_doubt += 1
            return
        if found is None:
            await self._send_iota(payout, report)  # the same bytes again
        elif found.status is TxStatus.FAILURE:
            await self._record_failed(payout, "failed on chain", report)
        elif found.status is TxStatus.PENDING:
            report.in_doubt += 1
        elif found.recipient == payout.recipient and found.amount == payout.amount:
            await self._complete(payout, report)
        else:
            _LOGGER.error("payout %s on chain differs from its record", payout.tx_id)
            report.in_doubt += 1

    async def _prepared(self) -> list[_Payout]:
        async with self.db.read() as conn:
            rows, items = await oq.prepared(conn, str(self.payments.kind))
        return [
            _Payout(
                int(r.id),
                r.tx_id,
                int(r.participant_id),
                r.recipient,
                r.ledger,
                int(r.amount),
                orjson.loads(r.signed),
                sorted(items.get(r.id, [])),
            )
            for r in rows
        ]

    # --- views ----------------------------------------------------------------------

    async def list(self, limit: int = 200) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = await oq.newest(conn, limit)
        return [
            {
                "id": r.id,
                "tx_id": r.tx_id,
                "recipient": r.recipient,
                "ledger": r.ledger,
                "amount": r.amount,
                "state": r.state,
                "created_at": r.created_at.isoformat(),
                "completed_at": None if r.completed_at is None else r.completed_at.isoformat(),
                "error": r.error,
            }
            for r in rows
        ]
