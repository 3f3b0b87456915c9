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
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.ledger import (
    PayoutPlan,
    StatementPosition,
    TransferRefused,
    ledger_amount,
    plan_payouts,
)
from grid_server.storage import audit_log
from grid_server.storage.db import advisory_key
from grid_server.storage.schema import (
    participants,
    payout_items,
    payouts,
    statement_terms,
    statements,
)
from p2p_energy_client.ledger.base import LedgerError, TxStatus
from p2p_energy_client.ledger.iota import (
    SignedTransaction,
    TransactionRejected,
    TransferFailed,
    TransferInDoubt,
)
from p2p_energy_client.ledger.local import SignedTransfer
from p2p_energy_client.protocol import LedgerKind, canonical_json

from .background import BackgroundLoop
from .events import add_events

if TYPE_CHECKING:
    from .grid import GridService
    from .payments import PaymentService

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


class PayoutWorker:
    def __init__(self, grid: GridService, payments: PaymentService) -> None:
        self.grid = grid
        self.payments = payments
        self._loop = BackgroundLoop(
            "p2p-payouts",
            self.run_once,
            lambda: self.payments.config.payout_interval_seconds,
            failure="payout pass failed; retrying",
            logger=_LOGGER,
        )
        self._lock = asyncio.Lock()
        self._stopping = False

    # --- running --------------------------------------------------------------------

    def start(self) -> None:
        self._stopping = False
        self._loop.start()

    def wake(self) -> None:
        self._loop.wake()

    async def stop(self) -> None:
        self._stopping = True
        await self._loop.stop()

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[bool]:
        """True when this process may pay out now (one worker of all, one pass at a time)."""
        async with self._lock:
            db = self.grid.db
            if not db.is_postgres:
                yield True
                return
            key = advisory_key(self.grid.grid_id, "payouts")
            async with db.write_engine.connect() as conn:
                got = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))
                await conn.commit()
                try:
                    yield got
                finally:
                    if got:
                        await conn.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        await conn.commit()

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
                if self._stopping:
                    break
                await self._pay(plan, report)
        return report

    # --- planning -------------------------------------------------------------------

    async def _plan(self, report: PayoutReport) -> list[PayoutPlan]:
        kind = str(self.payments.kind)
        async with self.grid.db.read() as conn:
            owed = (
                await conn.execute(
                    select(
                        statements.c.id,
                        statements.c.participant_id,
                        statements.c.period_start,
                        statement_terms.c.amount_due,
                        statement_terms.c.paid,
                    )
                    .join(statement_terms, statement_terms.c.statement_id == statements.c.id)
                    .join(participants, participants.c.id == statements.c.participant_id)
                    .where(
                        statement_terms.c.ledger == kind,
                        statement_terms.c.amount_due < 0,
                        statement_terms.c.paid > statement_terms.c.amount_due,
                        participants.c.status != "removed",
                    )
                )
            ).all()
            if not owed:
                return []
            periods = {r.period_start for r in owed}
            billed = (
                await conn.execute(
                    select(
                        statements.c.id,
                        statements.c.participant_id,
                        statements.c.period_start,
                        statement_terms.c.amount_due,
                        statement_terms.c.paid,
                    )
                    .join(statement_terms, statement_terms.c.statement_id == statements.c.id)
                    .where(
                        statement_terms.c.amount_due > 0,
                        statements.c.period_start.in_(periods),
                    )
                )
            ).all()
            in_flight = {
                r.statement_id: int(r.amount)
                for r in await conn.execute(
                    select(
                        payout_items.c.statement_id, func.sum(payout_items.c.amount).label("amount")
                    )
                    .join(payouts, payouts.c.id == payout_items.c.payout_id)
                    .where(payouts.c.state == "prepared")
                    .group_by(payout_items.c.statement_id)
                )
            }
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
        factory = await self.payments.terms_factory(self.grid.clock.now())
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
        async with self.grid.db.read() as conn:
            balance, _ = await self.payments.store.account(conn, self.payments.address)
        return balance

    # --- paying ---------------------------------------------------------------------

    async def _pay(self, plan: PayoutPlan, report: PayoutReport) -> None:
        payments = self.payments
        async with self.grid.db.read() as conn:
            recipient = await conn.scalar(
                select(participants.c.address).where(participants.c.id == plan.participant_id)
            )
        assert recipient is not None
        # A distinct memo per payout: a transfer that failed is never the same record again.
        memo = f"payout {secrets.token_hex(4)}: " + " ".join(sid for sid, _ in plan.items)
        memo = memo if len(memo) <= 128 else memo[:125] + "..."
        signed: dict[str, Any]
        if payments.kind is LedgerKind.IOTA:
            try:
                tx = await payments.iota().prepare_transfer(
                    payments.grid_keys, recipient, plan.total
                )
            except LedgerError as exc:
                _LOGGER.warning(
                    "payout of %d nanos to %s not prepared: %s", plan.total, recipient, exc
                )
                report.failed.append(
                    {"recipient": recipient, "amount": plan.total, "error": str(exc)}
                )
                return
            tx_id, signed = tx.digest, tx.to_json()
        else:
            async with self.grid.db.read() as conn:
                _, seq = await payments.store.account(conn, payments.address)
            transfer = SignedTransfer.sign(
                payments.grid_keys,
                grid=self.grid.grid_id,
                recipient=recipient,
                amount=plan.total,
                seq=seq + 1,
                memo=memo,
            )
            tx_id, signed = transfer.tx_id, transfer.to_wire()
        payout = await self._store_intent(plan, recipient, tx_id, signed)
        await self._send(payout, report)

    async def _store_intent(
        self, plan: PayoutPlan, recipient: str, tx_id: str, signed: dict[str, Any]
    ) -> _Payout:
        db = self.grid.db
        now = self.grid.clock.now()
        kind = str(self.payments.kind)
        async with db.write() as conn:
            await audit_log.lock_head(conn, db, self.grid.grid_id)
            payout_id = await conn.scalar(
                insert(payouts)
                .values(
                    tx_id=tx_id,
                    participant_id=plan.participant_id,
                    recipient=recipient,
                    ledger=kind,
                    amount=plan.total,
                    state="prepared",
                    signed=orjson.dumps(signed),
                    created_at=now,
                )
                .returning(payouts.c.id)
            )
            assert payout_id is not None
            await conn.execute(
                insert(payout_items),
                [
                    {"payout_id": payout_id, "statement_id": sid, "amount": amount}
                    for sid, amount in plan.items
                ],
            )
            record = {
                "payout": int(payout_id),
                "state": "prepared",
                "tx_id": tx_id,
                "ledger": kind,
                "recipient": recipient,
                "amount": plan.total,
                "statements": [{"id": sid, "amount": amount} for sid, amount in plan.items],
            }
            await audit_log.append(
                conn, db, self.grid.grid_id, [("payout", tx_id, canonical_json(record))], now
            )
        return _Payout(
            int(payout_id),
            tx_id,
            plan.participant_id,
            recipient,
            kind,
            plan.total,
            signed,
            list(plan.items),
        )

    async def _send(self, payout: _Payout, report: PayoutReport) -> None:
        """Send a stored payout and record the outcome (also used to recover)."""
        if payout.ledger == LedgerKind.IOTA:
            await self._send_iota(payout, report)
        else:
            await self._send_local(payout, report)

    async def _send_local(self, payout: _Payout, report: PayoutReport) -> None:
        transfer = SignedTransfer.from_wire(payout.signed)
        db = self.grid.db
        now = self.grid.clock.now()
        try:
            async with db.write() as conn:
                await audit_log.lock_head(conn, db, self.grid.grid_id)
                entry = await self.payments.store.apply_transfer(
                    conn, transfer, signer=self.payments.grid_keys.public_key, now=now
                )
                await audit_log.append(
                    conn,
                    db,
                    self.grid.grid_id,
                    [("ledger", entry.tx_id, canonical_json(entry.to_wire()))],
                    now,
                )
                await self._record_done(conn, payout, report)
                await self.grid.faults.reach("payout.send", payout.tx_id)
        except TransferRefused as exc:
            await self._record_failed(payout, f"{exc.code}: {exc.message}", report)
            return
        self.grid.hub.notify()

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
        db = self.grid.db
        async with db.write() as conn:
            await audit_log.lock_head(conn, db, self.grid.grid_id)
            await self._record_done(conn, payout, report)
        self.grid.hub.notify()

    async def _record_done(
        self, conn: AsyncConnection, payout: _Payout, report: PayoutReport
    ) -> None:
        db = self.grid.db
        now = self.grid.clock.now()
        changed = await conn.execute(
            update(payouts)
            .where(payouts.c.id == payout.id, payouts.c.state == "prepared")
            .values(state="done", completed_at=now)
        )
        if changed.rowcount != 1:
            return  # recorded already (by another pass): nothing more to do
        updated = []
        settled = []
        for statement_id, amount in payout.items:
            row = await self.payments.statement_for_update(conn, statement_id)
            assert row is not None
            paid, micro, status = await self.payments.settle(conn, row, -amount)
            updated.append(statement_id)
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
        await audit_log.append(
            conn, db, self.grid.grid_id, [("payout", payout.tx_id, canonical_json(record))], now
        )
        event = {
            "direction": "out",
            "tx_id": payout.tx_id,
            "amount": payout.amount,
            "unit": self.payments.unit_of(payout.ledger),
            "ledger": payout.ledger,
            "statements": [{"id": sid, "amount": amount} for sid, amount in payout.items],
        }
        rows: list[tuple[int | None, str, dict[str, Any]]] = [
            (payout.participant_id, "payment", event)
        ]
        for statement_id in updated:
            view = await self.payments.statement_view(conn, statement_id)
            assert view is not None
            rows.append((payout.participant_id, "statement", view.to_wire()))
        await add_events(conn, rows, now, postgres=db.is_postgres)
        report.paid.append(
            {"recipient": payout.recipient, "amount": payout.amount, "tx_id": payout.tx_id}
        )

    async def _record_failed(self, payout: _Payout, error: str, report: PayoutReport) -> None:
        db = self.grid.db
        now = self.grid.clock.now()
        _LOGGER.warning("payout %s failed: %s", payout.tx_id, error)
        async with db.write() as conn:
            await audit_log.lock_head(conn, db, self.grid.grid_id)
            changed = await conn.execute(
                update(payouts)
                .where(payouts.c.id == payout.id, payouts.c.state == "prepared")
                .values(state="failed", completed_at=now, error=error[:2000])
            )
            if changed.rowcount != 1:
                return
            record = {
                "payout": payout.id,
                "state": "failed",
                "tx_id": payout.tx_id,
                "error": error[:500],
            }
            await audit_log.append(
                conn, db, self.grid.grid_id, [("payout", payout.tx_id, canonical_json(record))], now
            )
        report.failed.append(
            {"recipient": payout.recipient, "amount": payout.amount, "error": error}
        )

    # --- recovery -------------------------------------------------------------------

    async def _recover(self, report: PayoutReport) -> None:
        for payout in await self._prepared():
            report.recovered += 1
            if payout.ledger == LedgerKind.IOTA:
                try:
                    found = await self.payments.iota().lookup(payout.tx_id)
                except LedgerError as exc:
                    _LOGGER.warning("cannot look payout %s up: %s", payout.tx_id, exc)
                    report.in_doubt += 1
                    continue
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
                continue
            async with self.grid.db.read() as conn:
                entry = await self.payments.store.entry(conn, payout.tx_id)
            if entry is not None:
                # Applied, not recorded (cannot happen: one transaction), recorded now.
                db = self.grid.db
                async with db.write() as conn:
                    await audit_log.lock_head(conn, db, self.grid.grid_id)
                    await self._record_done(conn, payout, report)
            else:
                await self._send_local(payout, report)

    async def _prepared(self) -> list[_Payout]:
        async with self.grid.db.read() as conn:
            rows = (
                await conn.execute(
                    select(payouts)
                    .where(
                        payouts.c.state == "prepared", payouts.c.ledger == str(self.payments.kind)
                    )
                    .order_by(payouts.c.id)
                )
            ).all()
            items: dict[int, list[tuple[str, int]]] = {}
            if rows:
                for r in await conn.execute(
                    select(payout_items).where(payout_items.c.payout_id.in_([r.id for r in rows]))
                ):
                    items.setdefault(r.payout_id, []).append((r.statement_id, int(r.amount)))
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
        async with self.grid.db.read() as conn:
            rows = await conn.execute(select(payouts).order_by(payouts.c.id.desc()).limit(limit))
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
