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
3. :func:`flush` writes it all with one ``executemany`` per table, appends the
   ledger and payment audit entries after the batch's envelope entries, and
   adds the live events — all in the writer's transaction; the ``payments``
   rows, which name their envelopes' log entries, are handed to the writer,
   which inserts them once it holds the chain head and knows those entries.

Balances never go negative: the in-memory check, the row locks (the ledger
head every ledger writer locks before the accounts, see
:mod:`grid_server.storage.audit_log` for the whole order), and the
database's ``CHECK (balance >= 0)`` behind them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from grid_server.domain.ledger import TransferRefused, check_transfer, statement_status
from grid_server.storage import payment_queries as pq
from grid_server.storage import statements as stored_statements
from p2p_energy_client.ledger.local import SignedTransfer
from p2p_energy_client.models import (
    LedgerEntry,
    LedgerTerms,
    PaymentRecord,
    PaymentResult,
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

from ..events import add_events
from ..local_ledger import log_item, next_entry, row_view
from ..payments import PaymentService
from ..transaction import (
    BatchStatement,
    ParticipantRow,
    PaymentBatch,
    Submission,
    TxContext,
)


def refused(code: ErrorCode, field: str, message: str) -> ProtocolError:
    return ProtocolError(code, f"{field}: {message}", field)


# --- prefetch ---------------------------------------------------------------------


@dataclass(slots=True)
class _Wanted:
    """What a batch's payment and transfer envelopes name."""

    transfers: list[SignedTransfer] = field(default_factory=list)
    statement_ids: set[str] = field(default_factory=set)
    digests: set[str] = field(default_factory=set)


def _parse_transfer(raw: object) -> SignedTransfer | None:
    try:
        return SignedTransfer.from_wire(raw)
    except ProtocolError:
        return None


def _wanted(batch: list[Submission]) -> _Wanted:
    wanted = _Wanted()
    for sub in batch:
        body = sub.envelope.payload.body
        if isinstance(body, Payment):
            wanted.statement_ids.add(body.statement)
            if body.transfer is not None and (t := _parse_transfer(body.transfer)) is not None:
                wanted.transfers.append(t)
            if body.tx is not None:
                wanted.digests.add(body.tx)
        elif isinstance(body, Transfer) and (t := _parse_transfer(body.transfer)) is not None:
            wanted.transfers.append(t)
    return wanted


async def prefetch(ctx: TxContext, batch: list[Submission]) -> None:
    """Load (and lock) what a writer batch's payments and transfers look at."""
    wanted = _wanted(batch)
    if not wanted.transfers and not wanted.statement_ids:
        return
    service = ctx.rules.payments
    state = ctx.payments = PaymentBatch()
    if wanted.transfers:
        state.head = await service.store.lock_head(ctx.conn)
        addresses = {t.sender for t in wanted.transfers}
        addresses |= {t.record.recipient for t in wanted.transfers}
        await _load_accounts(service, ctx, state, addresses)
        ids = [t.tx_id for t in wanted.transfers]
        state.checked.update(ids)
        state.tx_ids.update(await pq.ledger_tx_ids(ctx.conn, ids))
    if wanted.digests:
        state.used.update(await pq.used_tx_ids(ctx.conn, wanted.digests))
    if wanted.statement_ids:
        await _load_statements(service, ctx, state, wanted.statement_ids)


async def _load_statements(
    service: PaymentService, ctx: TxContext, state: PaymentBatch, ids: set[str]
) -> None:
    if ctx.postgres:
        # Every statement named, also one without terms that a payment gives terms
        # (statement_for_update, later): locked now, in the order every writer uses.
        await pq.lock_statements(ctx.conn, ids)
    rows = await pq.statements_with_terms(ctx.conn, ids, lock=service.db.is_postgres)
    extras = await stored_statements.statement_extras(ctx.conn, [r.id for r in rows])
    for r in rows:
        terms = LedgerTerms(r.ledger, r.unit, r.rate, r.terms_due, r.terms_paid, r.due_at)
        payments = extras.get(r.id, (None, ()))[1]
        view = stored_statements.statement_from_row(r, r.address, extras=(terms, payments))
        state.statements[r.id] = BatchStatement(r.id, r.participant_id, r.address, view, terms)


async def _load_accounts(
    service: PaymentService, ctx: TxContext, state: PaymentBatch, addresses: set[str]
) -> None:
    missing = addresses - set(state.accounts)
    if not missing:
        return
    found = await pq.accounts(ctx.conn, missing, lock=service.db.is_postgres)
    for address, (balance, seq) in found.items():
        state.accounts[address] = [balance, seq]
        state.known.add(address)
    for address in missing - state.known:
        state.accounts[address] = [0, 0]


async def _check_applied(
    service: PaymentService, ctx: TxContext, state: PaymentBatch, tx_id: str
) -> None:
    """Make ``state.tx_ids`` tell whether ``tx_id`` is on the ledger (prefetched, or ask)."""
    if tx_id not in state.checked:
        state.checked.add(tx_id)
        if await service.store.has_tx(ctx.conn, tx_id):
            state.tx_ids.add(tx_id)


def _state(ctx: TxContext) -> PaymentBatch:
    if ctx.payments is None:  # not prefetched (a handler called directly): start empty
        ctx.payments = PaymentBatch()
    return ctx.payments


# --- transfers --------------------------------------------------------------------


async def _apply_local(
    service: PaymentService,
    ctx: TxContext,
    state: PaymentBatch,
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
            grid=ctx.rules.grid_id,
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
    state.log.append(log_item(entry))
    return entry


async def apply_transfer(
    ctx: TxContext, sub: Submission, body: Transfer, participant: ParticipantRow
) -> dict[str, Any]:
    """A plain local-ledger transfer (not paying a statement)."""
    service = ctx.rules.payments
    if service.kind is not LedgerKind.LOCAL:
        raise refused(
            ErrorCode.PAYMENT_INVALID,
            "payload.transfer",
            "this grid's ledger is IOTA: transfer on chain",
        )
    signed = SignedTransfer.from_wire(body.transfer, "payload.transfer")
    entry = await _apply_local(
        service, ctx, _state(ctx), signed, signer=sub.envelope.public_key, path="payload.transfer"
    )
    return entry.to_wire()


# --- payments ---------------------------------------------------------------------


async def apply_payment(
    ctx: TxContext, sub: Submission, body: Payment, participant: ParticipantRow
) -> dict[str, Any]:
    """A ``payment`` envelope: check the statement and the payment, then record it."""
    service = ctx.rules.payments
    state = _state(ctx)
    st = await _own_statement(service, ctx, state, body.statement, participant)
    terms = st.terms
    _check_payable(service, terms, body)
    outstanding = terms.amount_due - terms.paid
    if body.ledger is LedgerKind.LOCAL:
        tx_id, received = await _pay_local(
            service, ctx, state, st=st, sub=sub, body=body, outstanding=outstanding
        )
    else:
        tx_id, received = await _pay_iota(
            service, ctx, state, sub=sub, body=body, outstanding=outstanding
        )
    # Everything is checked (and a local transfer applied): record it.
    payment = _record_payment(
        ctx, state, st, body=body, participant=participant, tx_id=tx_id, received=received
    )
    state.signatures.append(sub.envelope.signature)
    return PaymentResult(st.view, payment).to_wire()


async def _own_statement(
    service: PaymentService,
    ctx: TxContext,
    state: PaymentBatch,
    statement_id: str,
    participant: ParticipantRow,
) -> BatchStatement:
    st = state.statements.get(statement_id)
    if st is None:
        # Not prefetched: gone, another's, or issued before payments had terms.
        row = await service.statement_for_update(ctx.conn, statement_id)
        if row is not None:
            view = await stored_statements.statement_view(ctx.conn, row.id)
            assert view is not None
            st = BatchStatement(row.id, row.participant_id, row.address, view, row.terms)
            state.statements[row.id] = st
    if st is None or st.participant_id != participant.id:
        raise refused(ErrorCode.NOT_FOUND, "payload.statement", "no such statement of yours")
    return st


def _check_payable(service: PaymentService, terms: LedgerTerms, body: Payment) -> None:
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


async def _pay_local(
    service: PaymentService,
    ctx: TxContext,
    state: PaymentBatch,
    *,
    st: BatchStatement,
    sub: Submission,
    body: Payment,
    outstanding: int,
) -> tuple[str, int]:
    """Check the transfer paying ``st`` and apply it; ``(tx id, amount received)``."""
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
        raise refused(ErrorCode.PAYMENT_INVALID, f"{path}.memo", "the memo names another statement")
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
            f"{record.amount} is more than the {outstanding} {st.terms.unit} outstanding",
        )
    await _apply_local(
        service, ctx, state, signed, signer=sub.envelope.public_key, path="payload.transfer"
    )
    return record.tx_id, record.amount


async def _pay_iota(
    service: PaymentService,
    ctx: TxContext,
    state: PaymentBatch,
    *,
    sub: Submission,
    body: Payment,
    outstanding: int,
) -> tuple[str, int]:
    """Check an IOTA digest the route verified on the node; ``(tx id, amount received)``."""
    assert body.tx is not None
    tx_id = body.tx
    if tx_id in state.used or await pq.tx_used(ctx.conn, tx_id):
        raise refused(
            ErrorCode.PAYMENT_REUSED, "payload.tx", f"{tx_id} already settled a statement"
        )
    if outstanding <= 0:
        raise refused(
            ErrorCode.PAYMENT_INVALID,
            "payload.statement",
            "the statement is already paid; this transaction was not recorded",
        )
    verified = service.verified.get(sub.envelope.signature)
    if verified is None or verified.tx_id != tx_id:
        raise refused(ErrorCode.PAYMENT_PENDING, "payload.tx", "not verified yet; send it again")
    return tx_id, verified.amount


def _record_payment(
    ctx: TxContext,
    state: PaymentBatch,
    st: BatchStatement,
    *,
    body: Payment,
    participant: ParticipantRow,
    tx_id: str,
    received: int,
) -> PaymentRecord:
    """Credit what is outstanding of ``received`` to the statement, in the batch's view."""
    terms = st.terms
    credited = min(received, terms.amount_due - terms.paid)
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
            "envelope": ctx.next_log_pos(),
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
    return payment


# --- flush ------------------------------------------------------------------------


async def flush(ctx: TxContext) -> None:
    """Write what the batch's payments and transfers changed (see the module documentation)."""
    state = ctx.payments
    if state is None:
        return
    ctx.payments = None
    service = ctx.rules.payments
    conn = ctx.conn
    if state.dirty:
        rows = [(a, state.accounts[a][0], state.accounts[a][1]) for a in sorted(state.dirty)]
        await pq.save_accounts(
            conn,
            [r for r in rows if r[0] in state.known],
            [r for r in rows if r[0] not in state.known],
            ctx.now,
        )
    if state.entries:
        await pq.insert_ledger_entries(conn, state.entries)
        if state.head is not None:
            await service.store.save_head(conn, state.head)
    changed = [s for s in state.statements.values() if s.changed]
    if changed:
        await pq.set_paid_many(
            conn, [(s.id, s.terms.paid, s.view.paid_micro, s.view.status) for s in changed]
        )
    # The payments name their envelopes' log entries: written once those are placed.
    ctx.payment_rows.extend(state.payment_rows)
    # After the batch's envelope entries, in the writer's transaction.
    ctx.log_items.extend(state.log)
    if state.events:
        await add_events(conn, state.events, ctx.now, postgres=service.db.is_postgres)
    if state.payment_rows or state.entries:
        ctx.after_commit.append(_after_commit(ctx, state.signatures))


def _after_commit(ctx: TxContext, signatures: list[bytes]) -> Callable[[], None]:
    """Forget the IOTA verifications used, wake the live streams and the payout worker."""
    verified = ctx.rules.payments.verified
    after_payments = ctx.rules.after_payments

    def done() -> None:
        for signature in signatures:
            verified.pop(signature, None)
        after_payments()

    return done
