"""Paying statements, the grid's ledger account, and the local ledger's service side.

Statements are issued in the grid's currency; each gets *ledger terms* at
issue (:meth:`PaymentService.terms_factory`): the rate and the amount in the
ledger's unit, and a due time. Then:

* **local ledger** — the household posts a ``payment`` envelope holding a
  transfer it signed to the grid's address. Inside the writer's transaction
  (:func:`.handlers.payments.apply_payment`) the grid checks the statement (own,
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.config import LedgerConfig
from grid_server.domain.clock import Clock
from grid_server.domain.ledger import FixedRate, RateSource, statement_status
from grid_server.storage import audit_log
from grid_server.storage import payment_queries as pq
from grid_server.storage import statements as stored_statements
from grid_server.storage.db import Database, advisory_key
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.ledger.base import TransferRecord
from p2p_energy_client.ledger.iota import IotaConfig, IotaLedger, PaymentNotVerified
from p2p_energy_client.models import LedgerEntry, LedgerTerms, Statement
from p2p_energy_client.protocol import (
    Envelope,
    ErrorCode,
    LedgerKind,
    Payment,
    ProtocolError,
)
from p2p_energy_client.units import (
    format_rate,
    ledger_amount,
    paid_micro,
    parse_rate,
    rate_from_price,
)

from .local_ledger import LocalLedgerStore, log_item

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


def _terms_row(statement_id: str, terms: LedgerTerms) -> dict[str, Any]:
    """The ``statement_terms`` row of a statement's ledger terms."""
    return {
        "statement_id": statement_id,
        "ledger": terms.kind,
        "unit": terms.unit,
        "rate": terms.rate,
        "amount_due": terms.amount_due,
        "paid": terms.paid,
        "due_at": terms.due_at,
    }


def _settled(amount_due_micro: int, terms: LedgerTerms, delta: int) -> tuple[int, int, str]:
    """``(ledger paid, paid_micro, status)`` of a statement after ``delta`` more is paid."""
    new_paid = terms.paid + delta
    status = statement_status(terms.amount_due, new_paid)
    micro = paid_micro(amount_due_micro, terms.amount_due, new_paid, parse_rate(terms.rate))
    return new_paid, micro, status


@dataclass(slots=True)
class StatementRow:
    """A statement locked for a payment or payout, with its ledger terms."""

    id: str
    participant_id: int
    address: str
    amount_due_micro: int
    terms: LedgerTerms


@dataclass(kw_only=True, eq=False)
class PaymentService:
    """The grid's ledger side: its key and account, statement terms, payments.

    ``load_key`` gives the grid's ledger key and where it came from
    (:func:`.ledger_key.load_grid_key`).
    """

    grid_id: str
    currency: str
    config: LedgerConfig
    db: Database
    clock: Clock
    load_key: Callable[[], tuple[KeyPair, str]]
    keys: KeyPair | None = field(default=None, init=False)
    key_source: str | None = field(default=None, init=False)
    # IOTA payments the route verified on the node, by envelope signature.
    verified: dict[bytes, TransferRecord] = field(default_factory=dict, init=False)
    _iota: IotaLedger | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.kind = LedgerKind(self.config.kind)
        self.store = LocalLedgerStore(self.grid_id, self.db)
        self.rates: RateSource = make_rate_source(self.config)

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
        return self.unit_of(self.kind)

    def unit_of(self, kind: str) -> str:
        return NANOS if kind == LedgerKind.IOTA else f"micro-{self.currency}"

    async def open(self) -> None:
        """Load (or create) the grid's key and bind it to the database's ledger head."""
        self.keys, self.key_source = self.load_key()
        if self.config.address is not None and self.config.address != self.keys.address:
            raise RuntimeError(
                f"ledger.address is {self.config.address}, but the grid's key is "
                f"{self.keys.address}"
            )
        async with self.db.write() as conn:
            await self.db.advisory_xact_lock(
                conn, advisory_key(self.grid_id, "ledger-head"), wait=True
            )
            await self.store.ensure_head(conn, str(self.kind), self.keys.address, self.clock.now())

    async def close(self) -> None:
        """Close the IOTA node client (if one was opened)."""
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

    # --- statement terms ----------------------------------------------------------

    async def terms_factory(self, now: datetime) -> TermsFactory:
        rate = await self.rates.rate(self.currency, now)
        if rate <= 0:
            raise ValueError("the rate source returned a rate that is not positive")
        return TermsFactory(str(self.kind), self.unit, rate, self.config.payment_terms_seconds)

    async def record_terms(self, conn: AsyncConnection, issued: Iterable[Statement]) -> None:
        """Store the terms of statements just issued (the cycle's transaction)."""
        rows = [_terms_row(s.id, s.ledger) for s in issued if s.ledger is not None]
        if rows:
            await pq.insert_terms(conn, rows)

    async def statement_for_update(
        self, conn: AsyncConnection, statement_id: str
    ) -> StatementRow | None:
        """A statement and its terms, locked; terms are made now for one issued without."""
        row = await pq.statement_for_update(conn, statement_id, lock=self.db.is_postgres)
        if row is None:
            return None
        if row.ledger is not None:
            terms = LedgerTerms(
                row.ledger, row.unit, row.rate, row.terms_due, row.terms_paid, row.due_at
            )
        else:
            # Issued before payments existed: terms at today's rate, recorded now.
            terms = (await self.terms_factory(row.issued_at)).for_amount(
                row.amount_due_micro, row.issued_at
            )
            await pq.insert_terms(conn, [_terms_row(row.id, terms)])
        return StatementRow(row.id, row.participant_id, row.address, row.amount_due_micro, terms)

    async def settle(
        self, conn: AsyncConnection, row: StatementRow, delta: int
    ) -> tuple[int, int, str]:
        """Add ``delta`` ledger units (signed like the amount due) to a statement.

        Returns ``(ledger paid, paid_micro, status)`` after it.
        """
        new_paid, micro, status = _settled(row.amount_due_micro, row.terms, delta)
        await pq.set_paid(conn, row.id, paid=new_paid, paid_micro=micro, status=status)
        return new_paid, micro, status

    async def settle_many(
        self, conn: AsyncConnection, deltas: dict[str, int]
    ) -> dict[str, tuple[int, int, str]]:
        """:meth:`settle` for many statements with terms at once (rows locked on PostgreSQL).

        ``deltas``: statement id → ledger units to add; returns statement id →
        ``(ledger paid, paid_micro, status)`` after it. Raises ``LookupError``
        naming a statement that is gone or has no terms.
        """
        rows = await pq.statements_with_terms(conn, list(deltas), lock=self.db.is_postgres)
        found = {r.id: r for r in rows}
        missing = sorted(set(deltas) - set(found))
        if missing:
            raise LookupError(f"statement {missing[0]} is gone or has no ledger terms")
        settled = {}
        for statement_id, delta in deltas.items():
            r = found[statement_id]
            terms = LedgerTerms(r.ledger, r.unit, r.rate, r.terms_due, r.terms_paid, r.due_at)
            settled[statement_id] = _settled(r.amount_due_micro, terms, delta)
        await pq.set_paid_many(conn, [(sid, *values) for sid, values in settled.items()])
        return settled

    # --- payment envelopes (route side) ---------------------------------------------

    async def preverify(self, envelope: Envelope) -> None:
        """IOTA: check the digest on the node before the writer records it (route side)."""
        body = envelope.payload.body
        if not isinstance(body, Payment) or body.ledger is not LedgerKind.IOTA:
            return
        if self.kind is not LedgerKind.IOTA or body.tx is None:
            return  # the writer refuses it with the right error
        async with self.db.read() as conn:
            sender, seq = envelope.identity
            if await pq.envelope_accepted(conn, sender, seq, envelope.payload_hash):
                return  # a retry of an accepted envelope: the writer answers it as before
            if await pq.payment_recorded(conn, body.tx):
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

    # --- views --------------------------------------------------------------------

    # --- operator -----------------------------------------------------------------

    async def mint(self, address: str, amount: int, memo: str | None = None) -> LedgerEntry:
        """New local-ledger money for ``address`` (operator API and CLI only)."""
        db = self.db
        now = self.clock.now()
        async with db.write() as conn:
            entry = await self.store.mint(conn, address, amount, memo, now)
            await audit_log.append(conn, db, self.grid_id, [log_item(entry)], now)
        return entry

    async def mint_many(
        self, grants: list[tuple[str, int]], memo: str | None = None
    ) -> list[LedgerEntry]:
        """:meth:`mint` for many ``(address, amount)``: one transaction, all or none."""
        if not grants:
            return []
        db = self.db
        now = self.clock.now()
        async with db.write() as conn:
            entries = await self.store.mint_many(conn, grants, memo, now)
            await audit_log.append(conn, db, self.grid_id, [log_item(e) for e in entries], now)
        return entries

    async def overdue(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Statements owed to the grid, not fully paid, past their due time (oldest first)."""
        moment = now or self.clock.now()
        async with self.db.read() as conn:
            found = await stored_statements.overdue(conn, moment)
        return [o.to_json(moment) for o in found]

    async def check_buy_allowed(
        self, conn: AsyncConnection, participant_id: int, now: datetime, field: str
    ) -> None:
        """The overdue policy: refuse buy orders of a participant with overdue statements."""
        if self.config.overdue_policy != "retail_only":
            return
        if await stored_statements.has_overdue(conn, participant_id, now):
            raise _refused(
                ErrorCode.OVERDUE,
                field,
                "you have overdue statements: buy orders are refused until they are paid "
                "(you buy at the retail price meanwhile)",
            )

    async def balances(self) -> dict[str, Any]:
        """Local-ledger accounts with money, and the totals (operator API and CLI)."""
        async with self.db.read() as conn:
            rows = await self.store.balances(conn)
            total, minted = await self.store.totals(conn)
        return {
            "accounts": [{"address": a, "balance": b, "seq": s} for a, b, s in rows],
            "total": total,
            "minted": minted,
        }

    async def ledger_summary(self) -> dict[str, Any]:
        """The grid's ledger at a glance (operator API and CLI)."""
        async with self.db.read() as conn:
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
