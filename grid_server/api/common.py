"""Responses, errors, times and the OpenAPI error documentation shared by the routes.

What routes take from the grid and the request (the grid, its parts, the
session participant, the operator's token) is :mod:`.deps`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from p2p_energy_client.protocol import ERRORS, ErrorCode, ProtocolError
from p2p_energy_client.units import UnitError, parse_utc

# Re-exported for api/reads.py and api/dashboard.py (branch s12-storage reworks them),
# until they take these from .deps as the other routes do.

JSON = "application/json"


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON)


def error_response(exc: ProtocolError) -> Response:
    return Response(orjson.dumps(exc.to_wire()), status_code=exc.status, media_type=JSON)


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "?"


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


def read_responses(answer: type, *extra: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a participant's read: its answer, and the refusals."""
    return {200: {"model": answer}, **error_responses(*READ_ERRORS, *extra)}


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


__all__ = [
    "ENVELOPE_ERRORS",
    "JSON",
    "READ_ERRORS",
    "client_address",
    "error_response",
    "error_responses",
    "json_response",
    "path_time",
    "query_time",
    "read_responses",
]
