"""Payments and the local ledger: pay statements, transfer, read accounts; operator tools."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from grid_server.domain.ledger import verify_chain
from p2p_energy_client import models as shapes
from p2p_energy_client.crypto import is_address
from p2p_energy_client.ledger.local import check_memo, is_tx_id
from p2p_energy_client.protocol import MAX_SEQ, ErrorCode, ProtocolError, open_envelope

from .common import (
    ENVELOPE_ERRORS,
    JSON,
    READ_ERRORS,
    check_operator,
    client_address,
    error_responses,
    grid_of,
    json_response,
    participant,
)
from .envelopes import ENVELOPE_BODY, read_body

router = APIRouter(prefix="/api/v1")

_PAYMENT_ERRORS = (
    ErrorCode.NOT_FOUND,
    ErrorCode.PAYMENT_INVALID,
    ErrorCode.PAYMENT_REUSED,
    ErrorCode.PAYMENT_PENDING,
    ErrorCode.INSUFFICIENT_FUNDS,
)


def _doc(model: type, *extra: ErrorCode) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {200: {"model": model}}
    responses.update(error_responses(*ENVELOPE_ERRORS, *extra))
    return responses


async def _intake(request: Request, expected: str) -> Response:
    grid = grid_of(request)
    if not grid.ready:
        raise ProtocolError(ErrorCode.UNAVAILABLE, "the grid is starting or stopping")
    grid.limiter.check_address(client_address(request))
    raw = await read_body(request)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"the body is not JSON: {exc}", "body") from exc
    envelope = open_envelope(value)
    if envelope.payload.type != expected:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"payload.type: this route takes {expected!r} envelopes",
            "payload.type",
        )
    grid.limiter.check_key(envelope.sender)
    # IOTA: the digest is checked on the node here, outside the writer's transaction.
    await grid.payments.preverify(envelope)
    try:
        outcome = await grid.writer.submit(raw, envelope, client_address(request))
    finally:
        grid.payments.verified.pop(envelope.signature, None)
    return Response(outcome.body, status_code=outcome.status, media_type=JSON)


@router.post(
    "/payments",
    tags=["signed writes"],
    summary="Pay a statement (signed `payment`: a local-ledger transfer or an IOTA digest)",
    responses=_doc(shapes.PaymentResult, *_PAYMENT_ERRORS),
    openapi_extra=ENVELOPE_BODY,
)
async def pay(request: Request) -> Response:
    return await _intake(request, "payment")


@router.post(
    "/ledger/transfers",
    tags=["signed writes"],
    summary="Transfer on the local ledger (signed `transfer` holding a signed transfer)",
    responses=_doc(
        shapes.LedgerEntry,
        ErrorCode.PAYMENT_INVALID,
        ErrorCode.PAYMENT_REUSED,
        ErrorCode.INSUFFICIENT_FUNDS,
    ),
    openapi_extra=ENVELOPE_BODY,
)
async def transfer(request: Request) -> Response:
    return await _intake(request, "transfer")


@router.get(
    "/ledger/accounts/{address}",
    tags=["participant"],
    summary="A local-ledger account (own, or the grid's): balance and last sequence number",
    responses={
        200: {"model": shapes.LedgerAccount},
        **error_responses(*READ_ERRORS, ErrorCode.FORBIDDEN),
    },
)
async def account(request: Request, address: str) -> Response:
    _, own = await participant(request)
    grid = grid_of(request)
    payments = grid.payments
    if not is_address(address):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "address: not an address", "address")
    if address not in (own, payments.address):
        raise ProtocolError(
            ErrorCode.FORBIDDEN, "only your own account and the grid's can be read", "address"
        )
    async with grid.db.read() as conn:
        balance, seq = await payments.store.account(conn, address)
    view = shapes.LedgerAccount(address, balance, seq, f"micro-{grid.config.currency}")
    return json_response(view.to_wire())


@router.get(
    "/ledger/transactions/{tx_id}",
    tags=["participant"],
    summary="A local-ledger transaction this participant sent or received",
    responses={
        200: {"model": shapes.LedgerEntry},
        **error_responses(*READ_ERRORS, ErrorCode.NOT_FOUND),
    },
)
async def transaction(request: Request, tx_id: str) -> Response:
    _, own = await participant(request)
    grid = grid_of(request)
    if not is_tx_id(tx_id):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "tx_id: not a transaction id", "tx_id")
    async with grid.db.read() as conn:
        entry = await grid.payments.store.entry(conn, tx_id)
    if entry is None or own not in (entry.sender, entry.recipient):
        raise ProtocolError(ErrorCode.NOT_FOUND, "no such transaction of yours", "tx_id")
    return json_response(entry.to_wire())


# --- operator -----------------------------------------------------------------------

operator_router = APIRouter(
    prefix="/api/v1/operator",
    tags=["operator"],
    dependencies=[Depends(check_operator)],
    responses=error_responses(ErrorCode.UNAUTHENTICATED, ErrorCode.INVALID_FIELD),
)


class MintRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str
    amount: int = Field(gt=0, le=MAX_SEQ, description="micro-units of the grid's currency")
    memo: str | None = None


@operator_router.post(
    "/ledger/mint", status_code=201, summary="Mint local-ledger money for an address"
)
async def mint(request: Request, body: MintRequest) -> Response:
    grid = grid_of(request)
    if not is_address(body.address):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "address: not an address", "address")
    if body.memo is not None:
        check_memo(body.memo, "memo")
    entry = await grid.payments.mint(body.address, body.amount, body.memo)
    return json_response(entry.to_wire(), 201)


@operator_router.get("/ledger", summary="The grid's ledger: kind, address, balance, totals")
async def ledger_summary(request: Request) -> Response:
    return json_response(await grid_of(request).payments.ledger_summary())


@operator_router.get("/ledger/accounts", summary="Local-ledger balances (non-zero)")
async def balances(request: Request) -> Response:
    grid = grid_of(request)
    async with grid.db.read() as conn:
        rows = await grid.payments.store.balances(conn)
        total, minted = await grid.payments.store.totals(conn)
    return json_response(
        {
            "accounts": [{"address": a, "balance": b, "seq": s} for a, b, s in rows],
            "total": total,
            "minted": minted,
        }
    )


@operator_router.get("/ledger/entries", summary="Local-ledger entries after an index")
async def entries(request: Request) -> Response:
    grid = grid_of(request)
    after = _int_param(request, "after", 0)
    limit = min(_int_param(request, "limit", 1000), 10_000)
    address = request.query_params.get("address")
    async with grid.db.read() as conn:
        rows = await grid.payments.store.entries(conn, after=after, limit=limit, address=address)
    return json_response({"entries": [e.to_wire() for e in rows]})


@operator_router.get("/ledger/verify", summary="Check the local ledger's hash chain and totals")
async def verify(request: Request) -> Response:
    grid = grid_of(request)
    async with grid.db.read() as conn:
        result = await verify_local_ledger(grid, conn)
    return json_response(result)


async def verify_local_ledger(grid: Any, conn: Any) -> dict[str, Any]:
    """Replay the whole chain; compare balances with the entries and the minted total."""
    store = grid.payments.store
    after = 0
    chain: list[shapes.LedgerEntry] = []
    while batch := await store.entries(conn, after=after, limit=10_000):
        chain.extend(batch)
        after = batch[-1].index
    broken = verify_chain(chain, grid.grid_id)
    expected: dict[str, int] = {}
    minted = 0
    for entry in chain:
        expected[entry.recipient] = expected.get(entry.recipient, 0) + entry.amount
        if entry.sender is not None:
            expected[entry.sender] = expected.get(entry.sender, 0) - entry.amount
        else:
            minted += entry.amount
    stored = {a: b for a, b, _ in await store.balances(conn)}
    mismatched = sorted(
        a for a in set(expected) | set(stored) if expected.get(a, 0) != stored.get(a, 0)
    )
    total, head_minted = await store.totals(conn)
    head = await store.head(conn)
    ok = (
        broken is None
        and not mismatched
        and total == minted == head_minted
        and (head is None or head.entries == len(chain))
    )
    return {
        "ok": ok,
        "entries": len(chain),
        "first_bad_entry": None if broken is None else {"index": broken[0], "reason": broken[1]},
        "balances_total": total,
        "minted": minted,
        "mismatched_accounts": mismatched[:100],
    }


@operator_router.get("/statements/overdue", summary="Statements owed to the grid, past due")
async def overdue(request: Request) -> Response:
    return json_response({"overdue": await grid_of(request).payments.overdue()})


@operator_router.get("/payouts", summary="Payouts to producers, newest first")
async def list_payouts(request: Request) -> Response:
    return json_response({"payouts": await grid_of(request).payments.payouts.list()})


@operator_router.post("/payouts/run", summary="Pay producers now (one payout pass)")
async def run_payouts(request: Request) -> Response:
    report = await grid_of(request).payments.payouts.run_once()
    return json_response(report.to_wire())


def _int_param(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not value.isdigit():
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name}: must be a whole number", name)
    return int(value)
