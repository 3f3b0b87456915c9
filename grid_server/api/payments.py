"""Payments and the local ledger: pay statements, transfer, read accounts; operator tools."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from grid_server.service.local_ledger import verify_ledger
from grid_server.service.onboarding import MAX_HOUSEHOLDS
from grid_server.service.wiring import Grid
from p2p_energy_client import models as shapes
from p2p_energy_client.crypto import is_address
from p2p_energy_client.ledger.local import check_memo, is_tx_id
from p2p_energy_client.protocol import MAX_SEQ, ErrorCode, ProtocolError, parse_envelope

from .common import (
    ENVELOPE_ERRORS,
    JSON,
    client_address,
    error_responses,
    json_response,
    read_responses,
)
from .deps import DbDep, GridDep, OperatorAuth, ParticipantDep, PaymentsDep
from .envelopes import ENVELOPE_BODY, envelope_responses, open_intake

router = APIRouter(prefix="/api/v1")

_PAYMENT_ERRORS = (
    ErrorCode.NOT_FOUND,
    ErrorCode.PAYMENT_INVALID,
    ErrorCode.PAYMENT_REUSED,
    ErrorCode.PAYMENT_PENDING,
    ErrorCode.INSUFFICIENT_FUNDS,
)


async def _intake(request: Request, grid: Grid, expected: str) -> Response:
    address = client_address(request)
    raw, envelope = await open_intake(
        grid,
        expected,
        address,
        request.headers.get("content-length"),
        request.stream(),
    )
    # IOTA: the digest is checked on the node here, outside the writer's transaction.
    await grid.payments.preverify(envelope)
    try:
        outcome = await grid.writer.submit(raw, envelope, address)
    finally:
        grid.payments.verified.pop(envelope.signature, None)
    return Response(outcome.body, status_code=outcome.status, media_type=JSON)


@router.post(
    "/payments",
    tags=["signed writes"],
    summary="Pay a statement (signed `payment`: a local-ledger transfer or an IOTA digest)",
    responses=envelope_responses(shapes.PaymentResult, *_PAYMENT_ERRORS),
    openapi_extra=ENVELOPE_BODY,
)
async def pay(request: Request, grid: GridDep) -> Response:
    return await _intake(request, grid, "payment")


@router.post(
    "/ledger/transfers",
    tags=["signed writes"],
    summary="Transfer on the local ledger (signed `transfer` holding a signed transfer)",
    responses=envelope_responses(
        shapes.LedgerEntry,
        ErrorCode.PAYMENT_INVALID,
        ErrorCode.PAYMENT_REUSED,
        ErrorCode.INSUFFICIENT_FUNDS,
    ),
    openapi_extra=ENVELOPE_BODY,
)
async def transfer(request: Request, grid: GridDep) -> Response:
    return await _intake(request, grid, "transfer")


@router.get(
    "/ledger/accounts/{address}",
    tags=["participant"],
    summary="A local-ledger account (own, or the grid's): balance and last sequence number",
    responses=read_responses(shapes.LedgerAccount, ErrorCode.FORBIDDEN),
)
async def account(
    address: str, member: ParticipantDep, payments: PaymentsDep, db: DbDep
) -> Response:
    own = member.address
    if not is_address(address):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "address: not an address", "address")
    if address not in (own, payments.address):
        raise ProtocolError(
            ErrorCode.FORBIDDEN, "only your own account and the grid's can be read", "address"
        )
    async with db.read() as conn:
        balance, seq = await payments.store.account(conn, address)
    view = shapes.LedgerAccount(address, balance, seq, f"micro-{payments.currency}")
    return json_response(view.to_wire())


@router.get(
    "/ledger/transactions/{tx_id}",
    tags=["participant"],
    summary="A local-ledger transaction this participant sent or received",
    responses=read_responses(shapes.LedgerEntry, ErrorCode.NOT_FOUND),
)
async def transaction(
    tx_id: str, member: ParticipantDep, payments: PaymentsDep, db: DbDep
) -> Response:
    if not is_tx_id(tx_id):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "tx_id: not a transaction id", "tx_id")
    async with db.read() as conn:
        entry = await payments.store.entry(conn, tx_id)
    if entry is None or member.address not in (entry.sender, entry.recipient):
        raise ProtocolError(ErrorCode.NOT_FOUND, "no such transaction of yours", "tx_id")
    return json_response(entry.to_wire())


# --- operator -----------------------------------------------------------------------

operator_router = APIRouter(
    prefix="/api/v1/operator",
    tags=["operator"],
    dependencies=[OperatorAuth],
    responses=error_responses(
        ErrorCode.UNAUTHENTICATED, ErrorCode.INVALID_FIELD, ErrorCode.RATE_LIMITED
    ),
)


class MintRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str
    amount: int = Field(gt=0, le=MAX_SEQ, description="micro-units of the grid's currency")
    memo: str | None = None


@operator_router.post(
    "/ledger/mint", status_code=201, summary="Mint local-ledger money for an address"
)
async def mint(body: MintRequest, payments: PaymentsDep) -> Response:
    if not is_address(body.address):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "address: not an address", "address")
    if body.memo is not None:
        check_memo(body.memo, "memo")
    entry = await payments.mint(body.address, body.amount, body.memo)
    return json_response(entry.to_wire(), 201)


class OnboardRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    joins: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_HOUSEHOLDS,
        description="the households' own signed `join` envelopes (as they would POST them)",
    )
    funds_micro: int = Field(
        default=0, ge=0, le=MAX_SEQ, description="local-ledger money minted for each that joins"
    )
    memo: str | None = None


@operator_router.post(
    "/onboard",
    summary="Onboard a street: many households' signed joins, and money for each that joined",
    responses=error_responses(*ENVELOPE_ERRORS),
)
async def onboard(body: OnboardRequest, grid: GridDep) -> Response:
    if body.memo is not None:
        check_memo(body.memo, "memo")
    if not grid.ready:
        raise ProtocolError(ErrorCode.UNAVAILABLE, "the grid is starting or stopping")
    joins = []
    for index, wire in enumerate(body.joins):
        raw = orjson.dumps(wire)
        try:
            envelope = parse_envelope(raw)
        except ProtocolError as exc:
            raise ProtocolError(
                exc.code, f"joins[{index}]: {exc}", f"joins[{index}].{exc.field or ''}".rstrip(".")
            ) from exc
        if envelope.payload.type != "join":
            raise ProtocolError(
                ErrorCode.INVALID_FIELD,
                f"joins[{index}].payload.type: must be 'join'",
                f"joins[{index}].payload.type",
            )
        joins.append((raw, envelope))
    result = await grid.onboarding.onboard(joins, body.funds_micro, body.memo)
    return json_response(result)


@operator_router.get("/ledger", summary="The grid's ledger: kind, address, balance, totals")
async def ledger_summary(payments: PaymentsDep) -> Response:
    return json_response(await payments.ledger_summary())


@operator_router.get("/ledger/accounts", summary="Local-ledger balances (non-zero)")
async def balances(payments: PaymentsDep) -> Response:
    return json_response(await payments.balances())


@operator_router.get("/ledger/entries", summary="Local-ledger entries after an index")
async def entries(request: Request, payments: PaymentsDep, db: DbDep) -> Response:
    after = _int_param(request, "after", 0)
    limit = min(_int_param(request, "limit", 1000), 10_000)
    address = request.query_params.get("address")
    async with db.read() as conn:
        rows = await payments.store.entries(conn, after=after, limit=limit, address=address)
    return json_response({"entries": [e.to_wire() for e in rows]})


@operator_router.get("/ledger/verify", summary="Check the local ledger's hash chain and totals")
async def verify(payments: PaymentsDep, db: DbDep) -> Response:
    async with db.read() as conn:
        result = await verify_ledger(payments.store, conn)
    return json_response(result)


@operator_router.get("/statements/overdue", summary="Statements owed to the grid, past due")
async def overdue(payments: PaymentsDep) -> Response:
    return json_response({"overdue": await payments.overdue()})


@operator_router.get("/payouts", summary="Payouts to producers, newest first")
async def list_payouts(grid: GridDep) -> Response:
    return json_response({"payouts": await grid.payouts.list()})


@operator_router.post("/payouts/run", summary="Pay producers now (one payout pass)")
async def run_payouts(grid: GridDep) -> Response:
    report = await grid.payouts.run_once()
    return json_response(report.to_wire())


def _int_param(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not value.isdigit():
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name}: must be a whole number", name)
    return int(value)
