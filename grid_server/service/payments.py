"""Paying statements, the grid's ledger account, and the local ledger's service side.

Statements are issued in the grid's currency; each gets *ledger terms* at
issue (:meth:`PaymentService.terms_factory`): the rate and the amount in the
ledger's unit, and a due time. Then:

* **local ledger** — the household posts a ``payment`` envelope holding a
  transfer it signed to the grid's address. Inside the writer's transaction
  (:meth:`PaymentService.apply_payment`) the grid checks the statement (own,
  owed to the grid, not paid yet), the transfer (signature by the envelope's
  key, this grid, recipient = the grid's address, memo = the statement or
  none, amount ≤ outstanding, ledger sequence number, funds), applies it to
  the ledger and records the payment against the statement — one
  transaction, with the audit log entries and the live event.
* **IOTA** — the household pays on chain itself and posts the digest. The
  route verifies it on the grid's node first (:meth:`PaymentService.preverify`:
  succeeded, checkpointed, sent by the participant, paying the grid's
  address), then the writer checks that the digest never settled anything
  before (``payments.tx_id`` is unique) and records it. Less than
  outstanding is a partial payment; more is recorded as received (and the
  statement as paid).

Refusals: ``payment_invalid`` (wrong ledger, recipient, sender, amount,
memo, signature, sequence number; a statement already paid or owed by the
grid), ``payment_reused`` (the transaction settled something before),
``insufficient_funds``, ``payment_pending`` (IOTA: not final on the node yet,
or the node is unreachable), ``not_found`` (no such statement of the sender).
The identical envelope sent again is answered with the original result.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.config import LedgerConfig
from grid_server.domain.ledger import FixedRate, RateSource, statement_status
from grid_server.storage import audit_log
from grid_server.storage import statements as stored_statements
from grid_server.storage.db import advisory_key
from grid_server.storage.schema import (
    envelopes,
    participants,
    payments,
    statement_terms,
    statements,
)
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.ledger.base import TransferRecord
from p2p_energy_client.ledger.iota import IotaConfig, IotaLedger, PaymentNotVerified
from p2p_energy_client.models import LedgerEntry, LedgerTerms, PaymentRecord, Statement
from p2p_energy_client.protocol import (
    Envelope,
    ErrorCode,
    LedgerKind,
    Payment,
    ProtocolError,
    Transfer,
    canonical_json,
)
from p2p_energy_client.units import (
    format_rate,
    ledger_amount,
    paid_micro,
    parse_rate,
    rate_from_price,
)

from . import payment_batch
from .ledger_key import load_grid_key
from .local_ledger import LocalLedgerStore

if TYPE_CHECKING:
    from .grid import GridService
    from .ingest import ParticipantRow, Submission, TxContext
    from .payouts import PayoutWorker

_LOGGER = logging.getLogger(__name__)

NANOS = "nanos"


def _refused(code: ErrorCode, field: str, message: str) -> ProtocolError:
    return ProtocolError(code, f"{field}: {message}", field)


def make_rate_source(config: LedgerConfig) -> RateSource:
    """The configured rate source: a custom factory, a fixed rate, or 1 on the local ledger."""
    if config.rate_source is not None:
        module_name, _, attr = config.rate_source.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        source: RateSource = factory(config)
        return source
    if config.rate is not None:
        return FixedRate(parse_rate(config.rate))
    if config.iota_price is not None:
        return FixedRate(rate_from_price(config.iota_price))
    return FixedRate(Fraction(1))


@dataclass(frozen=True, slots=True)
class TermsFactory:
    """Ledger terms for statements issued now (one rate for a whole period)."""

    kind: str
    unit: str
    rate: Fraction
    terms_seconds: int

    def for_amount(self, amount_due_micro: int, issued_at: datetime) -> LedgerTerms:
        return LedgerTerms(
            kind=self.kind,
            unit=self.unit,
            rate=format_rate(self.rate),
            amount_due=ledger_amount(amount_due_micro, self.rate),
            paid=0,
            due_at=issued_at + timedelta(seconds=self.terms_seconds),
        )


@dataclass(slots=True)
class _StatementRow:
    id: str
    participant_id: int
    address: str
    period_start: datetime
    period_end: datetime
    currency: str
    amount_due_micro: int
    paid_micro: int
    status: str
    issued_at: datetime
    intervals: int
    terms: LedgerTerms


class PaymentService:
    """The grid's ledger side: its key and account, statement terms, payments, payouts."""

    def __init__(self, grid: GridService) -> None:
        from .payouts import PayoutWorker  # noqa: PLC0415 - payouts imports this module

        self.grid = grid
        self.config: LedgerConfig = grid.config.ledger
        self.kind = LedgerKind(self.config.kind)
        self.store = LocalLedgerStore(grid.grid_id, grid.db)
        self.rates: RateSource = make_rate_source(self.config)
        self.keys: KeyPair | None = None
        self.key_source: str | None = None
        self._iota: IotaLedger | None = None
        # IOTA payments the route verified on the node, by envelope signature.
        self.verified: dict[bytes, TransferRecord] = {}
        self.payouts: PayoutWorker = PayoutWorker(grid, self)

    # --- lifecycle ----------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.grid_keys.address

    @property
    def grid_keys(self) -> KeyPair:
        if self.keys is None:
            raise RuntimeError("the payment service is not open yet")
        return self.keys

    @property
    def unit(self) -> str:
        return NANOS if self.kind is LedgerKind.IOTA else f"micro-{self.grid.config.currency}"

    def unit_of(self, kind: str) -> str:
        return NANOS if kind == LedgerKind.IOTA else f"micro-{self.grid.config.currency}"

    async def open(self) -> None:
        """Load (or create) the grid's key and bind it to the database's ledger head."""
        self.keys, self.key_source = load_grid_key(self.grid.settings)
        if self.config.address is not None and self.config.address != self.keys.address:
            raise RuntimeError(
                f"ledger.address is {self.config.address}, but the grid's key is "
                f"{self.keys.address}"
            )
        db = self.grid.db
        async with db.write() as conn:
            await db.advisory_xact_lock(
                conn, advisory_key(self.grid.grid_id, "ledger-head"), wait=True
            )
            await self.store.ensure_head(
                conn, str(self.kind), self.keys.address, self.grid.clock.now()
            )

    def start(self) -> None:
        if self.grid.settings.run_cycle:
            self.payouts.start()

    async def stop(self) -> None:
        await self.payouts.stop()
        if self._iota is not None:
            await self._iota.close()
            self._iota = None

    def iota(self) -> IotaLedger:
        """The grid's IOTA ledger client (created on first use)."""
        if self._iota is None:
            node = self.config.iota
            options: dict[str, Any] = {
                "request_timeout": node.request_timeout,
                "execute_timeout": node.execute_timeout,
                "submit_deadline": node.submit_deadline,
                "checkpoint_timeout": node.checkpoint_timeout,
                "poll_interval": node.poll_interval,
            }
            if node.url is not None:
                config = IotaConfig(url=node.url, network=None, **options)
            else:
                assert node.network is not None
                config = IotaConfig.for_network(node.network, **options)
            self._iota = IotaLedger(config)
        return self._iota

    def wake_payouts(self) -> None:
        self.payouts.wake()

    # --- statement terms ----------------------------------------------------------

    async def terms_factory(self, now: datetime) -> TermsFactory:
        rate = await self.rates.rate(self.grid.config.currency, now)
        if rate <= 0:
            raise ValueError("the rate source returned a rate that is not positive")
        return TermsFactory(str(self.kind), self.unit, rate, self.config.payment_terms_seconds)

    async def record_terms(self, conn: AsyncConnection, issued: Iterable[Statement]) -> None:
        """Store the terms of statements just issued (the cycle's transaction)."""
        rows = [
            {
                "statement_id": s.id,
                "ledger": s.ledger.kind,
                "unit": s.ledger.unit,
                "rate": s.ledger.rate,
                "amount_due": s.ledger.amount_due,
                "paid": s.ledger.paid,
                "due_at": s.ledger.due_at,
            }
            for s in issued
            if s.ledger is not None
        ]
        if rows:
            await conn.execute(insert(statement_terms), rows)

    async def statement_for_update(
        self, conn: AsyncConnection, statement_id: str
    ) -> _StatementRow | None:
        query = (
            select(
                statements,
                participants.c.address,
                statement_terms.c.ledger,
                statement_terms.c.unit,
                statement_terms.c.rate,
                statement_terms.c.amount_due.label("terms_due"),
                statement_terms.c.paid.label("terms_paid"),
                statement_terms.c.due_at,
            )
            .join(participants, participants.c.id == statements.c.participant_id)
            .outerjoin(statement_terms, statement_terms.c.statement_id == statements.c.id)
            .where(statements.c.id == statement_id)
        )
        if self.grid.db.is_postgres:
            query = query.with_for_update(of=statements)
        row = (await conn.execute(query)).one_or_none()
        if row is None:
            return None
        if row.ledger is None:
            # Issued before payments existed: terms at today's rate, recorded now.
            factory = await self.terms_factory(row.issued_at)
            terms = factory.for_amount(row.amount_due_micro, row.issued_at)
            await self.record_terms(
                conn,
                [
                    Statement(
                        row.id,
                        row.address,
                        row.period_start,
                        row.period_end,
                        row.currency,
                        row.amount_due_micro,
                        row.paid_micro,
                        row.status,
                        row.issued_at,
                        row.intervals,
                        ledger=terms,
                    )
                ],
            )
        else:
            terms = LedgerTerms(
                row.ledger, row.unit, row.rate, row.terms_due, row.terms_paid, row.due_at
            )
        return _StatementRow(
            row.id,
            row.participant_id,
            row.address,
            row.period_start,
            row.period_end,
            row.currency,
            row.amount_due_micro,
            row.paid_micro,
            row.status,
            row.issued_at,
            row.intervals,
            terms,
        )

    async def settle(
        self, conn: AsyncConnection, row: _StatementRow, delta: int
    ) -> tuple[int, int, str]:
        """Add ``delta`` ledger units (signed like the amount due) to a statement.

        Returns ``(ledger paid, paid_micro, status)`` after it.
        """
        terms = row.terms
        new_paid = terms.paid + delta
        status = statement_status(terms.amount_due, new_paid)
        micro = paid_micro(row.amount_due_micro, terms.amount_due, new_paid, parse_rate(terms.rate))
        await conn.execute(
            update(statement_terms)
            .where(statement_terms.c.statement_id == row.id)
            .values(paid=new_paid)
        )
        await conn.execute(
            update(statements)
            .where(statements.c.id == row.id)
            .values(paid_micro=micro, status=status)
        )
        return new_paid, micro, status

    # --- payment envelopes (inside the writer's transaction) ------------------------

    async def preverify(self, envelope: Envelope) -> None:
        """IOTA: check the digest on the node before the writer records it (route side)."""
        body = envelope.payload.body
        if not isinstance(body, Payment) or body.ledger is not LedgerKind.IOTA:
            return
        if self.kind is not LedgerKind.IOTA or body.tx is None:
            return  # the writer refuses it with the right error
        async with self.grid.db.read() as conn:
            if await conn.scalar(
                select(envelopes.c.log_seq).where(envelopes.c.signature == envelope.signature)
            ):
                return  # a retry of an accepted envelope: the writer answers it as before
            if await conn.scalar(select(payments.c.id).where(payments.c.tx_id == body.tx)):
                return  # the writer refuses it as reused
        try:
            record = await self.iota().verify_incoming(
                body.tx,
                expected_sender=envelope.sender,
                recipient=self.address,
                min_amount=1,
            )
        except PaymentNotVerified as exc:
            if exc.retryable:
                raise _refused(
                    ErrorCode.PAYMENT_PENDING, "payload.tx", f"{exc.code}: {exc}"
                ) from exc
            raise _refused(ErrorCode.PAYMENT_INVALID, "payload.tx", f"{exc.code}: {exc}") from exc
        self.verified[envelope.signature] = record

    async def prefetch(self, ctx: TxContext, batch: list[Submission]) -> None:
        """Load (and lock) what a writer batch's payments and transfers look at."""
        await payment_batch.prefetch(self, ctx, batch)

    async def apply_payment(
        self, ctx: TxContext, sub: Submission, body: Payment, participant: ParticipantRow
    ) -> dict[str, Any]:
        """A ``payment`` envelope, inside the writer's transaction (see :mod:`.payment_batch`)."""
        return await payment_batch.apply_payment(self, ctx, sub, body, participant)

    async def apply_transfer(
        self, ctx: TxContext, sub: Submission, body: Transfer, participant: ParticipantRow
    ) -> dict[str, Any]:
        """A plain local-ledger transfer (not paying a statement)."""
        return await payment_batch.apply_transfer(self, ctx, sub, body, participant)

    # --- views --------------------------------------------------------------------

    async def statement_view(self, conn: AsyncConnection, statement_id: str) -> Statement | None:
        """A statement with its terms and payments (the query lives in storage)."""
        return await stored_statements.statement_view(conn, statement_id)

    # --- operator -----------------------------------------------------------------

    async def mint(self, address: str, amount: int, memo: str | None = None) -> LedgerEntry:
        """New local-ledger money for ``address`` (operator API and CLI only)."""
        db = self.grid.db
        now = self.grid.clock.now()
        async with db.write() as conn:
            await audit_log.lock_head(conn, db, self.grid.grid_id)
            entry = await self.store.mint(conn, address, amount, memo, now)
            await audit_log.append(
                conn,
                db,
                self.grid.grid_id,
                [("ledger", entry.tx_id, canonical_json(entry.to_wire()))],
                now,
            )
        return entry

    async def overdue(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Statements owed to the grid, not fully paid, past their due time (oldest first)."""
        moment = now or self.grid.clock.now()
        async with self.grid.db.read() as conn:
            found = await stored_statements.overdue(conn, moment)
        return [o.to_json(moment) for o in found]

    async def has_overdue(self, conn: AsyncConnection, participant_id: int, now: datetime) -> bool:
        return await stored_statements.has_overdue(conn, participant_id, now)

    async def check_buy_allowed(
        self, conn: AsyncConnection, participant_id: int, now: datetime, field: str
    ) -> None:
        """The overdue policy: refuse buy orders of a participant with overdue statements."""
        if self.config.overdue_policy != "retail_only":
            return
        if await self.has_overdue(conn, participant_id, now):
            raise _refused(
                ErrorCode.OVERDUE,
                field,
                "you have overdue statements: buy orders are refused until they are paid "
                "(you buy at the retail price meanwhile)",
            )

    async def ledger_summary(self) -> dict[str, Any]:
        """The grid's ledger at a glance (operator API and CLI)."""
        async with self.grid.db.read() as conn:
            head = await self.store.head(conn)
            total, minted = await self.store.totals(conn)
            balance, seq = await self.store.account(conn, self.address)
        summary: dict[str, Any] = {
            "kind": str(self.kind),
            "address": self.address,
            "key": self.key_source,
            "unit": self.unit,
            "local": {
                "entries": 0 if head is None else head.entries,
                "minted": minted,
                "balances_total": total,
                "grid_balance": balance,
                "grid_seq": seq,
            },
        }
        if self.kind is LedgerKind.IOTA:
            try:
                summary["grid_balance"] = await self.iota().balance(self.address)
            except Exception as exc:  # shown to the operator, not fatal
                summary["grid_balance_error"] = str(exc)
        else:
            summary["grid_balance"] = balance
        return summary


async def statement_extras(
    conn: AsyncConnection, ids: list[str]
) -> dict[str, tuple[LedgerTerms | None, tuple[PaymentRecord, ...]]]:
    """Ledger terms and recorded payments of the given statements (see storage)."""
    return await stored_statements.statement_extras(conn, ids)
