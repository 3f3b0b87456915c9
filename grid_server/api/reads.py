"""Reads: public grid and market data, and a participant's own records (session token)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import PlainTextResponse, Response

from grid_server.service import queries
from grid_server.storage.db import Database
from p2p_energy_client import models as shapes
from p2p_energy_client.protocol import ErrorCode, ProtocolError

from .common import JSON, READ_ERRORS, error_responses, json_response, path_time, query_time
from .deps import DbDep, GridDep, Member, ParticipantDep, authenticate, bearer

router = APIRouter(prefix="/api/v1")
# A read of the participant's own records in [since, until): (conn, pid, since, until).
RangeRead = Callable[[AsyncConnection, int, datetime, datetime], Awaitable[Sequence[Any]]]
MAX_RANGE = timedelta(days=31)

_STRING = {"type": "string"}
_INT = {"type": "integer"}
_PRICE_STEP = {
    "type": "object",
    "required": ["effective_from", "retail", "feed_in"],
    "properties": {"effective_from": _STRING, "retail": _STRING, "feed_in": _STRING},
}
# The wire form of ``GridInfo.to_wire`` (its ledger fields are nested under "ledger").
GRID_INFO_SCHEMA = {
    "type": "object",
    "required": [
        *("grid", "name", "currency", "interval_minutes", "gate_closure_seconds"),
        *("settlement_window_seconds", "settlement_period_seconds", "order_horizon_seconds"),
        *("max_clock_skew_seconds", "prices", "price_schedule", "zones", "ledger", "now"),
        "protocol_version",
    ],
    "properties": {
        **dict.fromkeys(("grid", "name", "currency", "now"), _STRING),
        **dict.fromkeys(
            (
                "interval_minutes",
                "gate_closure_seconds",
                "settlement_window_seconds",
                "settlement_period_seconds",
                "order_horizon_seconds",
                "max_clock_skew_seconds",
                "protocol_version",
            ),
            _INT,
        ),
        "prices": _PRICE_STEP,
        "price_schedule": {"type": "array", "items": _PRICE_STEP},
        "zones": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "parent", "fee"],
                "properties": {
                    "id": _STRING,
                    "name": {"type": ["string", "null"]},
                    "parent": {"type": ["string", "null"]},
                    "fee": _STRING,
                    "capacity_up_wh": {"type": ["integer", "null"]},
                    "capacity_down_wh": {"type": ["integer", "null"]},
                },
            },
        },
        "sharing": {
            "type": "object",
            "description": "Sharing after delivery (docs/developers/sharing.md)",
            "required": ["enabled", "key", "shortfall_share", "surplus_share", "static_shares"],
            "properties": {
                "enabled": {"type": "boolean"},
                "key": {"type": "string", "enum": ["proportional", "dynamic", "static"]},
                "shortfall_share": _STRING,
                "surplus_share": _STRING,
                "static_shares": {"type": "object", "additionalProperties": _INT},
            },
        },
        "ledger": {
            "type": "object",
            "required": ["kind", "address"],
            "properties": {
                "kind": {"type": "string", "enum": ["local", "iota"]},
                "address": {"type": ["string", "null"]},
                "network": _STRING,
                "node_url": _STRING,
            },
        },
    },
}


def _range(request: Request) -> tuple[datetime, datetime]:
    since = query_time(request, "since")
    until = query_time(request, "until")
    if until <= since or until - since > MAX_RANGE:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, "until: must be after since and at most 31 days later", "until"
        )
    return since, until


@router.get("/health", tags=["operations"], summary="Liveness and readiness")
async def health(grid: GridDep) -> Response:
    """``ok``; ``degraded`` (still 200: it serves) with ``late`` naming each overdue
    cycle step and its interval; ``starting`` (503) until the grid is ready."""
    late = await grid.cycle.lateness() if grid.ready else {}
    status = "starting" if not grid.ready else "degraded" if late else "ok"
    body: dict[str, Any] = {
        "status": status,
        "grid": grid.grid_id,
        "database": grid.db.dialect,
        "now": grid.clock.now().isoformat(),
        "writer_queue": grid.writer.queued,
    }
    if late:
        body["late"] = late
    return json_response(body, 200 if grid.ready else 503)


@router.get(
    "/grid",
    tags=["public"],
    summary="The grid's parameters",
    responses={200: {"content": {JSON: {"schema": GRID_INFO_SCHEMA}}}},
)
async def grid_info(grid: GridDep) -> Response:
    async with grid.db.read() as conn:
        info = await queries.grid_info(conn, grid)
    return json_response(info.to_wire())


@router.get(
    "/market/{interval}",
    tags=["public"],
    summary="Zone prices and volumes of an interval (plus own fills with a session token)",
    responses={200: {"model": shapes.MarketResult}, **error_responses(*READ_ERRORS)},
)
async def market(request: Request, grid: GridDep, interval: str) -> Response:
    t = path_time(interval, "interval")
    grid.schedule.check_interval(t, "interval")
    token = bearer(request)
    pid = None if token is None else (await authenticate(grid, token))[0]
    async with grid.db.read() as conn:
        result = await queries.market_result(conn, t, pid)
    return json_response(result.to_wire())


@router.get(
    "/market",
    tags=["public"],
    summary="Public market results of the intervals in [since, until)",
    responses=error_responses(ErrorCode.INVALID_FIELD),
)
async def market_range(request: Request, grid: GridDep) -> Response:
    since, until = _range(request)
    async with grid.db.read() as conn:
        results = await queries.market_range(conn, since, until)
    return json_response({"intervals": [r.to_wire() for r in results]})


@router.get(
    "/me",
    tags=["participant"],
    summary="The participant's record: zone, role, status, last sequence number, assets",
    responses={200: {"model": shapes.Participant}, **error_responses(*READ_ERRORS)},
)
async def me(member: ParticipantDep, db: DbDep) -> Response:
    async with db.read() as conn:
        view = await queries.participant_view(conn, member.id)
    return json_response(view.to_wire())


@router.get(
    "/assets",
    tags=["participant"],
    summary="The participant's current sources and meters",
    responses={200: {"model": shapes.AssetsView}, **error_responses(*READ_ERRORS)},
)
async def get_assets(member: ParticipantDep, db: DbDep) -> Response:
    async with db.read() as conn:
        view = await queries.participant_view(conn, member.id)
    return json_response(view.assets.to_wire())


@router.get(
    "/orders",
    tags=["participant"],
    summary="The participant's orders for one interval",
    responses={200: {"model": shapes.OrderBook}, **error_responses(*READ_ERRORS)},
)
async def get_orders(request: Request, member: ParticipantDep, grid: GridDep) -> Response:
    t = query_time(request, "interval")
    grid.schedule.check_interval(t, "interval")
    async with grid.db.read() as conn:
        book = await queries.order_book(conn, grid.schedule, member.id, t)
    return json_response(book.to_wire())


async def _own_in_range(
    request: Request, member: Member, db: Database, read: RangeRead, key: str
) -> Response:
    """The participant's own records of ``[since, until)`` under ``key``."""
    since, until = _range(request)
    async with db.read() as conn:
        rows = await read(conn, member.id, since, until)
    return json_response({key: [r.to_wire() for r in rows]})


@router.get(
    "/readings",
    tags=["participant"],
    summary="The participant's stored readings in [since, until)",
    responses=error_responses(*READ_ERRORS),
)
async def get_readings(request: Request, member: ParticipantDep, db: DbDep) -> Response:
    return await _own_in_range(request, member, db, queries.stored_readings, "readings")


@router.get(
    "/fills",
    tags=["participant"],
    summary="The participant's fills in [since, until)",
    responses=error_responses(*READ_ERRORS),
)
async def get_fills(request: Request, member: ParticipantDep, db: DbDep) -> Response:
    return await _own_in_range(request, member, db, queries.participant_fills, "fills")


@router.get(
    "/line-items",
    tags=["participant"],
    summary="The participant's settlement lines in [since, until)",
    responses=error_responses(*READ_ERRORS),
)
async def get_line_items(request: Request, member: ParticipantDep, db: DbDep) -> Response:
    return await _own_in_range(request, member, db, queries.participant_lines, "lines")


@router.get(
    "/statements",
    tags=["participant"],
    summary="The participant's statements (periods starting at or after since)",
    responses=error_responses(*READ_ERRORS),
)
async def get_statements(request: Request, member: ParticipantDep, db: DbDep) -> Response:
    since = query_time(request, "since") if "since" in request.query_params else None
    async with db.read() as conn:
        rows = await queries.participant_statements(conn, member.id, member.address, since)
    return json_response({"statements": [s.to_wire() for s in rows]})


@router.get(
    "/statements/{statement_id}",
    tags=["participant"],
    summary="One statement with its line items",
    responses={
        200: {"model": shapes.Statement},
        **error_responses(*READ_ERRORS, ErrorCode.NOT_FOUND),
    },
)
async def get_statement(member: ParticipantDep, db: DbDep, statement_id: str) -> Response:
    async with db.read() as conn:
        found = await queries.statement_detail(conn, statement_id, member.id)
    if found is None:
        # Another participant's statement is "not found" too: no probing.
        raise ProtocolError(ErrorCode.NOT_FOUND, "no such statement", "statement_id")
    return json_response(found.to_wire())


metrics_router = APIRouter(tags=["operations"])


@metrics_router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(grid: GridDep) -> Response:
    if grid.ready:
        await grid.cycle.lateness()  # the gauge, as of this scrape
    return Response(generate_latest(grid.metrics.registry), media_type=CONTENT_TYPE_LATEST)
