"""Responses, errors and authentication shared by the routes."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from grid_server.service import queries
from grid_server.service.grid import GridService
from p2p_energy_client.protocol import ERRORS, ErrorCode, ProtocolError
from p2p_energy_client.units import UnitError, parse_utc

JSON = "application/json"


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON)


def error_response(exc: ProtocolError) -> Response:
    return Response(orjson.dumps(exc.to_wire()), status_code=exc.status, media_type=JSON)


def grid_of(request: Request) -> GridService:
    grid: GridService = request.app.state.grid
    return grid


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "?"


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ProtocolError(
            ErrorCode.UNAUTHENTICATED, "use 'Authorization: Bearer <token>'", "authorization"
        )
    return token.strip()


async def authenticate(grid: GridService, token: str | None) -> tuple[int, str]:
    """The participant a session token belongs to: ``(id, address)``."""
    if token is None:
        raise ProtocolError(
            ErrorCode.UNAUTHENTICATED,
            "this needs a session token: POST a signed session envelope to /api/v1/sessions",
            "authorization",
        )
    async with grid.db.read() as conn:
        found = await queries.session_participant(conn, token, grid.clock.now())
    if found is None:
        raise ProtocolError(
            ErrorCode.UNAUTHENTICATED, "the session token is unknown or expired", "authorization"
        )
    pid, address, status = found
    if status != "active":
        raise ProtocolError(ErrorCode.SUSPENDED, f"the participant is {status}", "authorization")
    return pid, address


async def participant(request: Request) -> tuple[int, str]:
    return await authenticate(grid_of(request), bearer(request))


def check_operator(request: Request) -> None:
    grid = grid_of(request)
    expected = grid.settings.operator_token
    token = bearer(request)
    if not expected or token is None or not secrets.compare_digest(token, expected):
        raise ProtocolError(
            ErrorCode.UNAUTHENTICATED, "the operator API needs the operator token", "authorization"
        )


def query_time(request: Request, name: str, default: datetime | None = None) -> datetime:
    value = request.query_params.get(name)
    if value is None:
        if default is None:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name}: is required", name)
        return default
    try:
        return parse_utc(value)
    except UnitError as exc:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name}: {exc}", name) from exc


def path_time(value: str, name: str) -> datetime:
    try:
        return parse_utc(value)
    except UnitError as exc:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name}: {exc}", name) from exc


def error_responses(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error codes, generated from ERRORS."""
    by_status: dict[int, list[ErrorCode]] = {}
    for code in codes:
        by_status.setdefault(ERRORS[code][0], []).append(code)
    return {
        status: {
            "description": "; ".join(f"`{c}`: {ERRORS[c][1]}" for c in group),
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status, group in sorted(by_status.items())
    }


ENVELOPE_ERRORS = (
    ErrorCode.MALFORMED,
    ErrorCode.INVALID_FIELD,
    ErrorCode.BAD_SIGNATURE,
    ErrorCode.KEY_MISMATCH,
    ErrorCode.WRONG_GRID,
    ErrorCode.STALE_TIMESTAMP,
    ErrorCode.REPLAY,
    ErrorCode.NOT_MEMBER,
    ErrorCode.SUSPENDED,
    ErrorCode.TOO_LARGE,
    ErrorCode.RATE_LIMITED,
    ErrorCode.UNAVAILABLE,
)
READ_ERRORS = (ErrorCode.UNAUTHENTICATED, ErrorCode.SUSPENDED, ErrorCode.INVALID_FIELD)
