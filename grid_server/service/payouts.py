"""Paying producers in batches: plan, record the intent, send, record the result — never twice.

One pass (:meth:`PayoutWorker.run_once`), run by exactly one worker at a time
(a PostgreSQL session advisory lock; on SQLite the grid runs in one process):

1. **Recover** every batch left ``prepared`` by an earlier pass (a crash, a
   node that timed out). IOTA: look its transaction id (the batch's digest)
   up on the node. Found, final and paying exactly what the batch records →
   ``done``; failed on chain → ``failed`` (nothing was paid; its statements
   become payable again); unknown → send the *same* signed bytes again (the
   same bytes can land only once). Local: the batch is applied and recorded
   in one database transaction, so a prepared batch was never applied; it
   is applied now with the transfers it stored (the same ledger sequence
   numbers: if the grid's account moved on they are refused, the batch is
   ``failed`` and its statements are planned again). An outcome that stays
   unknown leaves the batch ``prepared``, and no new payout is made while
   one is in doubt.
2. **Plan** (:func:`grid_server.domain.ledger.plan_payouts`): what producer
   statements are owed under the payout policy, per producer, at or above
   the threshold, within the grid's balance.
3. Cut the plans into batches — local: :data:`LOCAL_BATCH_SIZE` payouts;
   IOTA: :meth:`~p2p_energy_client.ledger.iota.IotaLedger.plan_batches`,
   within the protocol's limits on commands, arguments and size — and for
   each batch: sign it (local: one transfer per producer with the grid's
   next ledger sequence numbers; IOTA: one programmable transaction by
   ``prepare_batch``, gas by a dry run), **store the intent** — the batch,
   its payouts with their transaction ids and signed bytes, the statements
   each pays — in one transaction with one audit entry per payout. Only then
   **send** it and **record** the outcome of the whole batch: the
   statements' paid amounts and status, one audit entry per payout, a
   ``payment`` event and the updated ``statement`` events on each
   producer's live stream. On the local ledger applying the batch's
   transfers and recording them are one database transaction.

A batch pays all of its payouts or none of them; batches of one pass succeed
or fail independently (a failed batch's statements are planned again by the
next pass, the others stay paid).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.clock import Clock
from grid_server.domain.ledger import PayoutPlan, TransferRefused, plan_payouts
from grid_server.storage import audit_log
from grid_server.storage import payout_queries as oq
from grid_server.storage import statements as stored_statements
from grid_server.storage.db import Database, advisory_key
from p2p_energy_client.ledger.base import LedgerError, Payment, TransferRecord, TxStatus
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


LOCAL_BATCH_SIZE = 1_000  # payouts applied in one database transaction (local ledger)


@dataclass(slots=True)
class _Payout:
    id: int
    tx_id: str
    participant_id: int
    recipient: str
    amount: int
    signed: dict[str, Any] | None  # local: the signed transfer; IOTA: None (see the batch)
    items: list[tuple[str, int]]
    # Local: the transfer itself when signed in this pass (not parsed again from ``signed``).
    transfer: SignedTransfer | None = None


@dataclass(slots=True)
class _Batch:
    id: int
    tx_id: str
    ledger: str
    signed: dict[str, Any] | None  # IOTA: the signed transaction; local: None
    payouts: list[_Payout]

    @property
    def amount(self) -> int:
        return sum(p.amount for p in self.payouts)


@dataclass(slots=True)
class _Signed:
    """A batch signed and not yet stored: its transaction id and what each payout carries."""

    tx_id: str
    signed: dict[str, Any] | None
    # (plan, recipient, transaction id, signed transfer or None), in the order paid
    payouts: Sequence[tuple[PayoutPlan, str, str, dict[str, Any] | None]]
    transfers: Sequence[SignedTransfer] = ()  # local: the same transfers, as signed


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
            plans = await self._plan(report)
            if not plans:
                return report
            async with self.db.read() as conn:
                recipients = await oq.addresses_of(conn, {p.participant_id for p in plans})
            for batch in self._batches(plans, recipients):
                if self.loop.stopping or report.in_doubt:
                    break  # in doubt: its coins may yet be spent; nothing new until resolved
                signed = await self._sign(batch, recipients, report)
                if signed is not None:
                    await self._send(await self._store_intent(signed), report)
        return report

    # --- planning -------------------------------------------------------------------

    async def _plan(self, report: PayoutReport) -> list[PayoutPlan]:
        async with self.db.read() as conn:
            positions = await oq.positions(conn, str(self.payments.kind))
        if not positions:
            return []
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

    def _batches(
        self, plans: list[PayoutPlan], recipients: dict[int, str]
    ) -> list[list[PayoutPlan]]:
        """The plans cut into batches: IOTA within the protocol's limits, local by size."""
        if self.payments.kind is not LedgerKind.IOTA:
            return [plans[i : i + LOCAL_BATCH_SIZE] for i in range(0, len(plans), LOCAL_BATCH_SIZE)]
        cut = self.payments.iota().plan_batches(
            [Payment(recipients[p.participant_id], p.total) for p in plans]
        )
        batches, first = [], 0
        for group in cut:  # in the given order: the groups follow the plans
            batches.append(plans[first : first + len(group)])
            first += len(group)
        return batches

    # --- signing and storing the intent ---------------------------------------------

    async def _sign(
        self, plans: list[PayoutPlan], recipients: dict[int, str], report: PayoutReport
    ) -> _Signed | None:
        if self.payments.kind is LedgerKind.IOTA:
            return await self._sign_iota(plans, recipients, report)
        return await self._sign_local(plans, recipients)

    async def _sign_iota(
        self, plans: list[PayoutPlan], recipients: dict[int, str], report: PayoutReport
    ) -> _Signed | None:
        """One transaction paying the batch, or None when it could not be prepared."""
        payments = self.payments
        terms = [Payment(recipients[p.participant_id], p.total) for p in plans]
        try:
            tx = await payments.iota().prepare_batch(payments.grid_keys, terms)
        except LedgerError as exc:
            _LOGGER.warning("a batch of %d payouts not prepared: %s", len(plans), exc)
            report.failed.extend(
                {"recipient": t.recipient, "amount": t.amount, "error": str(exc)} for t in terms
            )
            return None
        return _Signed(
            tx.digest,
            tx.to_json(),
            [(p, recipients[p.participant_id], tx.digest, None) for p in plans],
        )

    async def _sign_local(self, plans: list[PayoutPlan], recipients: dict[int, str]) -> _Signed:
        """One transfer per payout, with the grid's next ledger sequence numbers."""
        payments = self.payments
        async with self.db.read() as conn:
            _, seq = await payments.store.account(conn, payments.address)
        signed, transfers = [], []
        for k, plan in enumerate(plans, start=1):
            recipient = recipients[plan.participant_id]
            transfer = SignedTransfer.sign(
                payments.grid_keys,
                grid=self.grid_id,
                recipient=recipient,
                amount=plan.total,
                seq=seq + k,
                memo=_memo(plan),
            )
            signed.append((plan, recipient, transfer.tx_id, transfer.to_wire()))
            transfers.append(transfer)
        return _Signed(signed[0][2], None, signed, transfers)

    async def _store_intent(self, signed: _Signed) -> _Batch:
        db = self.db
        now = self.clock.now()
        kind = str(self.payments.kind)
        batch = _Batch(
            0,
            signed.tx_id,
            kind,
            signed.signed,
            [
                _Payout(
                    0, tx_id, plan.participant_id, recipient, plan.total, wire, list(plan.items)
                )
                for plan, recipient, tx_id, wire in signed.payouts
            ],
        )
        for payout, transfer in zip(batch.payouts, signed.transfers, strict=False):
            payout.transfer = transfer
        members = [
            {
                "tx_id": p.tx_id,
                "participant_id": p.participant_id,
                "recipient": p.recipient,
                "amount": p.amount,
                "signed": p.signed,
                "items": p.items,
            }
            for p in batch.payouts
        ]
        async with db.write() as conn:
            batch.id, ids = await oq.insert_batch(
                conn, tx_id=batch.tx_id, ledger=kind, signed=batch.signed, members=members, now=now
            )
            for payout, payout_id in zip(batch.payouts, ids, strict=True):
                payout.id = payout_id
            await self._log(
                conn,
                [(p.tx_id, _record(p, kind, "prepared", p.items)) for p in batch.payouts],
                now,
            )
        return batch

    async def _log(
        self, conn: AsyncConnection, records: list[tuple[str, dict[str, Any]]], now: datetime
    ) -> None:
        await audit_log.append(
            conn,
            self.db,
            self.grid_id,
            [("payout", ref, canonical_json(record)) for ref, record in records],
            now,
        )

    # --- sending and recording ------------------------------------------------------

    async def _send(self, batch: _Batch, report: PayoutReport) -> None:
        """Send a stored batch and record the outcome (also used to recover)."""
        if batch.ledger == LedgerKind.IOTA:
            await self._send_iota(batch, report)
        else:
            await self._send_local(batch, report)

    async def _send_local(self, batch: _Batch, report: PayoutReport) -> None:
        """Apply the batch's transfers and record them: one database transaction."""
        transfers = [p.transfer or SignedTransfer.from_wire(p.signed) for p in batch.payouts]
        db = self.db
        now = self.clock.now()
        try:
            async with db.write() as conn:
                entries = await self.payments.store.apply_batch(
                    conn, transfers, signer=self.payments.grid_keys.public_key, now=now
                )
                await self._record_done(conn, batch, report, [log_item(e) for e in entries])
                await self.faults.reach("payout.send", batch.tx_id)
        except TransferRefused as exc:
            await self._record_failed(batch, f"{exc.code}: {exc.field}: {exc.message}", report)
            return
        self.hub.notify()

    async def _send_iota(self, batch: _Batch, report: PayoutReport) -> None:
        ledger = self.payments.iota()
        assert batch.signed is not None
        signed = SignedTransaction.from_json(batch.signed)
        try:
            await ledger.submit(signed)
        except TransferInDoubt as exc:
            _LOGGER.warning("payout batch %s in doubt: %s", batch.tx_id, exc)
            report.in_doubt += 1
            return
        except TransferFailed as exc:
            await self._record_failed(batch, str(exc), report)
            return
        except TransactionRejected as exc:
            if exc.can_never_land:
                await self._record_failed(batch, str(exc), report)
            else:
                _LOGGER.warning("payout batch %s refused for now: %s", batch.tx_id, exc)
                report.in_doubt += 1
            return
        except LedgerError as exc:
            _LOGGER.warning("payout batch %s not sent: %s", batch.tx_id, exc)
            report.in_doubt += 1
            return
        await self._complete(batch, report)

    async def _complete(self, batch: _Batch, report: PayoutReport) -> None:
        """Record a batch that is on the ledger (IOTA)."""
        async with self.db.write() as conn:
            await self._record_done(conn, batch, report)
        self.hub.notify()

    async def _record_done(
        self,
        conn: AsyncConnection,
        batch: _Batch,
        report: PayoutReport,
        ledger_log: list[tuple[str, str, bytes]] | None = None,
    ) -> None:
        """Record a whole batch paid: its statements, audit entries and events (set-based)."""
        now = self.clock.now()
        if not await oq.finish_batch(conn, batch.id, state="done", completed_at=now):
            return  # recorded already (by another pass): nothing more to do
        deltas = {sid: -amount for p in batch.payouts for sid, amount in p.items}
        settled = await self.payments.settle_many(conn, deltas)
        log: list[tuple[str, str, bytes]] = []
        for k, payout in enumerate(batch.payouts):
            if ledger_log is not None:
                log.append(ledger_log[k])
            # The statements after the payout, so the log alone tells their state.
            items = [
                {
                    "id": sid,
                    "amount": amount,
                    "paid": settled[sid][0],
                    "paid_micro": settled[sid][1],
                    "status": settled[sid][2],
                }
                for sid, amount in payout.items
            ]
            record = _record(payout, batch.ledger, "done", items)
            log.append(("payout", payout.tx_id, canonical_json(record)))
        await audit_log.append(conn, self.db, self.grid_id, log, now)
        await add_events(
            conn, await self._paid_events(conn, batch), now, postgres=self.db.is_postgres
        )
        report.paid.extend(
            {"recipient": p.recipient, "amount": p.amount, "tx_id": p.tx_id} for p in batch.payouts
        )

    async def _paid_events(self, conn: AsyncConnection, batch: _Batch) -> list[Event]:
        """Each producer's ``payment`` event and the statements it paid, on its stream."""
        views = await stored_statements.statement_views(
            conn, [sid for p in batch.payouts for sid, _ in p.items]
        )
        unit = self.payments.unit_of(batch.ledger)
        rows: list[Event] = []
        for payout in batch.payouts:
            event = {
                "direction": "out",
                "tx_id": payout.tx_id,
                "amount": payout.amount,
                "unit": unit,
                "ledger": batch.ledger,
                "statements": [{"id": sid, "amount": amount} for sid, amount in payout.items],
            }
            rows.append((payout.participant_id, "payment", event))
            rows.extend(
                (payout.participant_id, "statement", views[sid].to_wire())
                for sid, _ in payout.items
            )
        return rows

    async def _record_failed(self, batch: _Batch, error: str, report: PayoutReport) -> None:
        now = self.clock.now()
        _LOGGER.warning("payout batch %s failed: %s", batch.tx_id, error)
        async with self.db.write() as conn:
            if not await oq.finish_batch(
                conn, batch.id, state="failed", completed_at=now, error=error[:2000]
            ):
                return
            await self._log(
                conn,
                [
                    (
                        p.tx_id,
                        {"payout": p.id, "state": "failed", "tx_id": p.tx_id, "error": error[:500]},
                    )
                    for p in batch.payouts
                ],
                now,
            )
        report.failed.extend(
            {"recipient": p.recipient, "amount": p.amount, "error": error} for p in batch.payouts
        )

    # --- recovery -------------------------------------------------------------------

    async def _recover(self, report: PayoutReport) -> None:
        for batch in await self._prepared():
            report.recovered += len(batch.payouts)
            if batch.ledger == LedgerKind.IOTA:
                await self._recover_iota(batch, report)
            else:
                # Applied and recorded in one transaction: a prepared batch was never applied.
                await self._send_local(batch, report)

    async def _recover_iota(self, batch: _Batch, report: PayoutReport) -> None:
        """Look a prepared IOTA batch up on the node and finish it (see the module doc)."""
        try:
            found = await self.payments.iota().lookup(batch.tx_id)
        except LedgerError as exc:
            _LOGGER.warning("cannot look payout batch %s up: %s", batch.tx_id, exc)
            report.in_doubt += 1
            return
        if found is None:
            await self._send_iota(batch, report)  # the same bytes again
        elif found.status is TxStatus.FAILURE:
            await self._record_failed(batch, "failed on chain", report)
        elif found.status is TxStatus.PENDING:
            report.in_doubt += 1
        elif _pays(found) == tuple(Payment(p.recipient, p.amount) for p in batch.payouts):
            await self._complete(batch, report)
        else:
            _LOGGER.error("payout batch %s on chain differs from its record", batch.tx_id)
            report.in_doubt += 1

    async def _prepared(self) -> list[_Batch]:
        async with self.db.read() as conn:
            found = await oq.prepared_batches(conn, str(self.payments.kind))
        return [
            _Batch(
                int(b.id),
                b.tx_id,
                b.ledger,
                None if b.signed is None else orjson.loads(b.signed),
                [
                    _Payout(
                        int(r.id),
                        r.tx_id,
                        int(r.participant_id),
                        r.recipient,
                        int(r.amount),
                        orjson.loads(r.signed) if r.signed else None,
                        sorted(items.get(int(r.id), [])),
                    )
                    for r in members
                ],
            )
            for b, members, items in found
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


def _memo(plan: PayoutPlan) -> str:
    """A distinct memo per payout: a transfer that failed is never the same record again."""
    memo = f"payout {secrets.token_hex(4)}: " + " ".join(sid for sid, _ in plan.items)
    return memo if len(memo) <= 128 else memo[:125] + "..."


def _record(payout: _Payout, ledger: str, state: str, statements: list[Any]) -> dict[str, Any]:
    """A payout's audit record (``statements``: ``(id, amount)`` pairs or settled dicts)."""
    return {
        "payout": payout.id,
        "state": state,
        "tx_id": payout.tx_id,
        "ledger": ledger,
        "recipient": payout.recipient,
        "amount": payout.amount,
        "statements": [
            s if isinstance(s, dict) else {"id": s[0], "amount": s[1]} for s in statements
        ],
    }


def _pays(found: TransferRecord) -> tuple[Payment, ...]:
    """What a transaction found on the ledger pays, in order (one recipient when not itemised)."""
    if found.payments:
        return found.payments
    return (Payment(found.recipient, found.amount),)
