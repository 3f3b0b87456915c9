"""Payment and transfer envelopes inside the group-commit writer, a whole batch at a time.

The writer applies hundreds of envelopes in one transaction. Doing a dozen
single-row queries per payment would make each one wait for the event loop
a dozen times, so the batch is handled like readings are:

1. :func:`prefetch` loads in a few queries everything the batch's payment
   and transfer envelopes will look at — the ledger head, the accounts of
   every sender and recipient, which transaction ids exist, the statements
   with their terms and recorded payments — and on PostgreSQL *locks* the
   head, account and statement rows (``FOR UPDATE``) until the commit.
2. Each envelope is then checked and applied **in memory**, in order, so a
   later envelope of the batch sees what an earlier one changed (a second
   transfer from the same account, a statement paid twice). Checks come
   first; a refused envelope changes nothing.
3. The flusher writes it all with one ``executemany`` per table, appends the
   ledger and payment audit entries after the batch's envelope entries, and
   adds the live events — all in the writer's transaction.

Balances never go negative: the in-memory check, the row locks (and the
audit chain head lock every ledger writer takes first), and the database's
``CHECK (balance >= 0)`` behind them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, select, update

from grid_server.domain.ledger import TransferRefused, check_transfer, statement_status
from grid_server.storage.schema import (
    ledger_accounts,
    ledger_entries,
    participants,
    payments,
    payouts,
    statement_terms,
    statements,
)
from p2p_energy_client.ledger.local import SignedTransfer
from p2p_energy_client.models import (
    LedgerEntry,
    LedgerTerms,
    PaymentRecord,
    PaymentResult,
    Statement,
)
from p2p_energy_client.protocol import (
    ErrorCode,
    LedgerKind,
    Payment,
    ProtocolError,
    Transfer,
    canonical_json,
)
from p2p_energy_client.units import paid_micro, parse_rate

from .events import add_events
from .local_ledger import Head, next_entry, row_view

if TYPE_CHECKING:
    from .ingest import ParticipantRow, Submission, TxContext
    from .payments import PaymentService

CACHE_KEY = "payment_batch"


def refused(code: ErrorCode, field: str, message: str) -> ProtocolError:
    return ProtocolError(code, f"{field}: {message}", field)


@dataclass(slots=True)
class _Statement:
    id: str
    participant_id: int
    address: str
    view: Statement  # as of now in this batch (without lines)
    terms: LedgerTerms
    changed: bool = False


@dataclass(slots=True)
class WriterBatch:
    """What one writer transaction knows and changes of the ledger and statements."""

    head: Head | None = None
    # address → [balance, last seq]; ``known`` are rows that exist in the database.
    accounts: dict[str, list[int]] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)
    dirty: set[str] = field(default_factory=set)
    tx_ids: set[str] = field(default_factory=set)  # ledger entries (database and batch)
    checked: set[str] = field(default_factory=set)  # tx ids looked up in the database
    used: set[str] = field(default_factory=set)  # payment and payout tx ids
    statements: dict[str, _Statement] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    payment_rows: list[dict[str, Any]] = field(default_factory=list)
    log: list[tuple[str, str, bytes]] = field(default_factory=list)
    events: list[tuple[int | None, str, dict[str, Any]]] = field(default_factory=list)
    signatures: list[bytes] = field(default_factory=list)


def _parse_transfer(raw: object) -> SignedTransfer | None:
    try:
        return SignedTransfer.from_wire(raw)
    except ProtocolError:
        return None


async def prefetch(service: PaymentService, ctx: TxContext, batch: list[Submission]) -> None:
    transfers: list[SignedTransfer] = []
    statement_ids: set[str] = set()
    digests: set[str] = set()
    for sub in batch:
        body = sub.envelope.payload.body
        if isinstance(body, Payment):
            statement_ids.add(body.statement)
            if body.transfer is not None and (t := _parse_transfer(body.transfer)) is not None:
                transfers.append(t)
            if body.tx is not None:
                digests.add(body.tx)
        elif isinstance(body, Transfer) and (t := _parse_transfer(body.transfer)) is not None:
            transfers.append(t)
    if not transfers and not statement_ids:
        return
    state = WriterBatch()
    ctx.cache[CACHE_KEY] = state
    ctx.flushers.append(_flush)
    conn = ctx.conn
    postgres = service.grid.db.is_postgres
    if transfers:
        state.head = await service.store.lock_head(conn)
        addresses = {t.sender for t in transfers} | {t.record.recipient for t in transfers}
        await _load_accounts(service, ctx, state, addresses)
        ids = [t.tx_id for t in transfers]
        state.checked.update(ids)
        state.tx_ids.update(
            (
                await conn.execute(
                    select(ledger_entries.c.tx_id).where(ledger_entries.c.tx_id.in_(ids))
                )
            )
            .scalars()
            .all()
        )
    if digests:
        for table in (payments, payouts):
            state.used.update(
                (await conn.execute(select(table.c.tx_id).where(table.c.tx_id.in_(digests))))
                .scalars()
                .all()
            )
    if statement_ids:
        from .payments import statement_extras  # noqa: PLC0415 - payments imports this module

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
            .join(statement_terms, statement_terms.c.statement_id == statements.c.id)
            .where(statements.c.id.in_(statement_ids))
        )
        if postgres:
            query = query.with_for_update(of=[statements.c.id, statement_terms.c.statement_id])
        rows = (await conn.execute(query)).all()
        extras = await statement_extras(conn, [r.id for r in rows])
        for r in rows:
            terms = LedgerTerms(r.ledger, r.unit, r.rate, r.terms_due, r.terms_paid, r.due_at)
            view = Statement(
                r.id,
                r.address,
                r.period_start,
                r.period_end,
                r.currency,
                r.amount_due_micro,
                r.paid_micro,
                r.status,
                r.issued_at,
                r.intervals,
                ledger=terms,
                payments=extras.get(r.id, (None, ()))[1],
            )
            state.statements[r.id] = _Statement(r.id, r.participant_id, r.address, view, terms)


async def _load_accounts(
    service: PaymentService, ctx: TxContext, state: WriterBatch, addresses: set[str]
) -> None:
    missing = addresses - set(state.accounts)
    if not missing:
        return
    query = select(
        ledger_accounts.c.address, ledger_accounts.c.balance, ledger_accounts.c.seq
    ).where(ledger_accounts.c.address.in_(missing))
    if service.grid.db.is_postgres:
        query = query.with_for_update()
    for r in await ctx.conn.execute(query):
        state.accounts[r.address] = [int(r.balance), int(r.seq)]
        state.known.add(r.address)
    for address in missing - state.known:
        state.accounts[address] = [0, 0]


async def _check_applied(
    service: PaymentService, ctx: TxContext, state: WriterBatch, tx_id: str
) -> None:
    """Make ``state.tx_ids`` tell whether ``tx_id`` is on the ledger (prefetched, or ask)."""
    if tx_id not in state.checked:
        state.checked.add(tx_id)
        if await service.store.has_tx(ctx.conn, tx_id):
            state.tx_ids.add(tx_id)


async def _state(service: PaymentService, ctx: TxContext) -> WriterBatch:
    state: WriterBatch | None = ctx.cache.get(CACHE_KEY)
    if state is None:  # not prefetched (a handler called directly): start empty
        state = WriterBatch()
        ctx.cache[CACHE_KEY] = state
        ctx.flushers.append(_flush)
    return state


async def _apply_local(
    service: PaymentService,
    ctx: TxContext,
    state: WriterBatch,
    signed: SignedTransfer,
    *,
    signer: bytes,
    path: str,
) -> LedgerEntry:
    """Check a transfer against the batch's view of the ledger, then apply it in memory."""
    record = signed.record
    if state.head is None:
        state.head = await service.store.lock_head(ctx.conn)
    await _load_accounts(service, ctx, state, {signed.sender, record.recipient})
    await _check_applied(service, ctx, state, record.tx_id)
    balance, last_seq = state.accounts[signed.sender]
    try:
        check_transfer(
            signed,
            grid=service.grid.grid_id,
            signer=signer,
            balance=balance,
            last_seq=last_seq,
            already_applied=record.tx_id in state.tx_ids,
            path=path,
        )
    except TransferRefused as exc:
        raise refused(exc.code, exc.field, exc.message) from exc
    # Valid: apply.
    state.accounts[signed.sender] = [balance - record.amount, record.seq]
    state.accounts[record.recipient][0] += record.amount
    state.dirty.update((signed.sender, record.recipient))
    state.tx_ids.add(record.tx_id)
    row = next_entry(
        state.head, record, public_key=signed.public_key, signature=signed.signature, now=ctx.now
    )
    state.entries.append(row)
    entry = row_view(row)
    state.log.append(("ledger", entry.tx_id, canonical_json(entry.to_wire())))
    return entry


async def apply_transfer(
    service: PaymentService,
    ctx: TxContext,
    sub: Submission,
    body: Transfer,
    participant: ParticipantRow,
) -> dict[str, Any]:
    if service.kind is not LedgerKind.LOCAL:
        raise refused(
            ErrorCode.PAYMENT_INVALID,
            "payload.transfer",
            "this grid's ledger is IOTA: transfer on chain",
        )
    signed = SignedTransfer.from_wire(body.transfer, "payload.transfer")
    state = await _state(service, ctx)
    entry = await _apply_local(
        service, ctx, state, signed, signer=sub.envelope.public_key, path="payload.transfer"
    )
    return entry.to_wire()


async def apply_payment(
    service: PaymentService,
    ctx: TxContext,
    sub: Submission,
    body: Payment,
    participant: ParticipantRow,
) -> dict[str, Any]:
    env = sub.envelope
    state = await _state(service, ctx)
    st = state.statements.get(body.statement)
    if st is None:
        # Not prefetched: gone, another's, or issued before payments had terms.
        row = await service.statement_for_update(ctx.conn, body.statement)
        if row is not None:
            view = await service.statement_view(ctx.conn, row.id)
            assert view is not None
            st = _Statement(row.id, row.participant_id, row.address, view, row.terms)
            state.statements[row.id] = st
    if st is None or st.participant_id != participant.id:
        raise refused(ErrorCode.NOT_FOUND, "payload.statement", "no such statement of yours")
    terms = st.terms
    # A statement is paid on the ledger it was issued for; local-ledger
    # statements stay payable after a switch to IOTA (the local ledger lives
    # in the database), IOTA ones need the grid's IOTA node.
    if body.ledger != terms.kind or (
        body.ledger is LedgerKind.IOTA and service.kind is not LedgerKind.IOTA
    ):
        raise refused(
            ErrorCode.PAYMENT_INVALID,
            "payload.ledger",
            f"this statement is paid on the {terms.kind} ledger",
        )
    if terms.amount_due <= 0:
        raise refused(
            ErrorCode.PAYMENT_INVALID,
            "payload.statement",
            "the grid owes this statement to you; there is nothing to pay",
        )
    outstanding = terms.amount_due - terms.paid
    if body.ledger is LedgerKind.LOCAL:
        assert body.transfer is not None
        signed = SignedTransfer.from_wire(body.transfer, "payload.transfer")
        record = signed.record
        path = "payload.transfer.record"
        if record.recipient != service.address:
            raise refused(
                ErrorCode.PAYMENT_INVALID,
                f"{path}.recipient",
                f"statements are paid to the grid's address {service.address}",
            )
        if record.memo is not None and record.memo != st.id:
            raise refused(
                ErrorCode.PAYMENT_INVALID, f"{path}.memo", "the memo names another statement"
            )
        await _check_applied(service, ctx, state, record.tx_id)
        if record.tx_id in state.tx_ids:
            raise refused(
                ErrorCode.PAYMENT_REUSED, path, f"transaction {record.tx_id} was applied before"
            )
        if outstanding <= 0:
            raise refused(
                ErrorCode.PAYMENT_INVALID, "payload.statement", "the statement is already paid"
            )
        if record.amount > outstanding:
            raise refused(
                ErrorCode.PAYMENT_INVALID,
                f"{path}.amount",
                f"{record.amount} is more than the {outstanding} {terms.unit} outstanding",
            )
        await _apply_local(
            service, ctx, state, signed, signer=env.public_key, path="payload.transfer"
        )
        tx_id, received = record.tx_id, record.amount
    else:
        assert body.tx is not None
        tx_id = body.tx
        if tx_id in state.used or await _tx_used(ctx, tx_id):
            raise refused(
                ErrorCode.PAYMENT_REUSED, "payload.tx", f"{tx_id} already settled a statement"
            )
        if outstanding <= 0:
            raise refused(
                ErrorCode.PAYMENT_INVALID,
                "payload.statement",
                "the statement is already paid; this transaction was not recorded",
            )
        verified = service.verified.get(env.signature)
        if verified is None or verified.tx_id != tx_id:
            raise refused(
                ErrorCode.PAYMENT_PENDING, "payload.tx", "not verified yet; send it again"
            )
        received = verified.amount
    credited = min(received, outstanding)
    # Everything is checked (and a local transfer applied): record it.
    new_paid = terms.paid + credited
    status = statement_status(terms.amount_due, new_paid)
    micro = paid_micro(st.view.amount_due_micro, terms.amount_due, new_paid, parse_rate(terms.rate))
    payment = PaymentRecord(tx_id, "in", credited, received, ctx.now)
    st.terms = replace(terms, paid=new_paid)
    st.view = replace(
        st.view,
        paid_micro=micro,
        status=status,
        ledger=st.terms,
        payments=(*st.view.payments, payment),
    )
    st.changed = True
    state.used.add(tx_id)
    state.payment_rows.append(
        {
            "tx_id": tx_id,
            "statement_id": st.id,
            "participant_id": participant.id,
            "ledger": str(body.ledger),
            "received": received,
            "credited": credited,
            "envelope": ctx.next_log_seq(),
            "recorded_at": ctx.now,
        }
    )
    record_body = {
        "statement": st.id,
        "participant": st.address,
        "ledger": str(body.ledger),
        "unit": terms.unit,
        "tx_id": tx_id,
        "received": received,
        "credited": credited,
        "paid": new_paid,
        "paid_micro": micro,
        "status": status,
    }
    state.log.append(("payment", tx_id, canonical_json(record_body)))
    state.events.append((participant.id, "statement", st.view.to_wire()))
    state.signatures.append(env.signature)
    return PaymentResult(st.view, payment).to_wire()


async def _tx_used(ctx: TxContext, tx_id: str) -> bool:
    for table in (payments, payouts):
        if await ctx.conn.scalar(select(table.c.id).where(table.c.tx_id == tx_id)):
            return True
    return False


async def _flush(ctx: TxContext) -> None:
    state: WriterBatch | None = ctx.cache.pop(CACHE_KEY, None)
    if state is None:
        return
    service = ctx.grid.payments
    conn = ctx.conn
    now = ctx.now
    if state.dirty:
        existing = [a for a in state.dirty if a in state.known]
        created = [a for a in state.dirty if a not in state.known]
        if existing:
            await conn.execute(
                update(ledger_accounts)
                .where(ledger_accounts.c.address == bindparam("k_address"))
                .values(
                    balance=bindparam("balance"),
                    seq=bindparam("seq"),
                    updated_at=bindparam("updated_at"),
                ),
                [
                    {
                        "k_address": a,
                        "balance": state.accounts[a][0],
                        "seq": state.accounts[a][1],
                        "updated_at": now,
                    }
                    for a in sorted(existing)
                ],
            )
        if created:
            await conn.execute(
                insert(ledger_accounts),
                [
                    {
                        "address": a,
                        "balance": state.accounts[a][0],
                        "seq": state.accounts[a][1],
                        "updated_at": now,
                    }
                    for a in sorted(created)
                ],
            )
    if state.entries:
        await conn.execute(insert(ledger_entries), state.entries)
    if state.head is not None and state.entries:
        await service.store.save_head(conn, state.head)
    changed = [s for s in state.statements.values() if s.changed]
    if changed:
        await conn.execute(
            update(statement_terms)
            .where(statement_terms.c.statement_id == bindparam("k_id"))
            .values(paid=bindparam("paid")),
            [{"k_id": s.id, "paid": s.terms.paid} for s in changed],
        )
        await conn.execute(
            update(statements)
            .where(statements.c.id == bindparam("k_id"))
            .values(paid_micro=bindparam("paid_micro"), status=bindparam("status")),
            [
                {"k_id": s.id, "paid_micro": s.view.paid_micro, "status": s.view.status}
                for s in changed
            ],
        )
    if state.payment_rows:
        await conn.execute(insert(payments), state.payment_rows)
    # After the batch's envelope entries, in the writer's transaction.
    ctx.log_items.extend(state.log)
    if state.events:
        await add_events(conn, state.events, now, postgres=service.grid.db.is_postgres)
    if state.payment_rows or state.entries:
        signatures = list(state.signatures)

        def done() -> None:
            for signature in signatures:
                service.verified.pop(signature, None)
            service.grid.hub.notify()
            service.wake_payouts()

        ctx.after_commit.append(done)
