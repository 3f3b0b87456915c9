"""Signed writes: every route takes one envelope and hands it to the writer."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from p2p_energy_client import api as shapes
from p2p_energy_client.protocol import (
    MAX_BODY_BYTES,
    ErrorCode,
    ProtocolError,
    open_envelope,
)

from .common import ENVELOPE_ERRORS, JSON, client_address, error_responses, grid_of

router = APIRouter(prefix="/api/v1", tags=["signed writes"])

_INVITATION_ERRORS = {
    str(ErrorCode.INVITATION_UNKNOWN),
    str(ErrorCode.INVITATION_USED),
    str(ErrorCode.INVITATION_EXPIRED),
    str(ErrorCode.INVITATION_REVOKED),
}


async def read_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"the body may have at most {MAX_BODY_BYTES} bytes", "body"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"the body may have at most {MAX_BODY_BYTES} bytes", "body"
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def intake(request: Request, expected: str) -> Response:
    grid = grid_of(request)
    if not grid.ready:
        raise ProtocolError(ErrorCode.UNAVAILABLE, "the grid is starting or stopping")
    address = client_address(request)
    grid.limiter.check_address(address)
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
    if expected == "join":
        grid.limiter.check_join_allowed(address)
    outcome = await grid.writer.submit(raw, envelope, address)
    if expected == "join" and outcome.status in (404, 409):
        code = orjson.loads(outcome.body).get("error", {}).get("code")
        if code in _INVITATION_ERRORS:
            grid.limiter.record_join_failure(address)
    return Response(outcome.body, status_code=outcome.status, media_type=JSON)


def _doc(model: type, *extra: ErrorCode) -> dict[int | str, dict[str, object]]:
    responses: dict[int | str, dict[str, object]] = {200: {"model": model}}
    responses.update(error_responses(*ENVELOPE_ERRORS, *extra))
    return responses


ENVELOPE_BODY = {
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Envelope"}}},
    }
}


@router.post(
    "/participants",
    summary="Join the grid with a one-time invitation (signed `join` envelope)",
    responses=_doc(
        shapes.Participant,
        ErrorCode.INVITATION_UNKNOWN,
        ErrorCode.INVITATION_USED,
        ErrorCode.INVITATION_EXPIRED,
        ErrorCode.INVITATION_REVOKED,
        ErrorCode.ALREADY_REGISTERED,
    ),
    openapi_extra=ENVELOPE_BODY,
)
async def join(request: Request) -> Response:
    return await intake(request, "join")


@router.post(
    "/sessions",
    summary="Open a session (signed `session` envelope); returns a bearer token for reads",
    responses=_doc(shapes.SessionToken),
    openapi_extra=ENVELOPE_BODY,
)
async def open_session(request: Request) -> Response:
    return await intake(request, "session")


@router.post(
    "/assets",
    summary="Declare the complete set of sources and consumer meters (signed `assets`)",
    responses=_doc(shapes.AssetsView, ErrorCode.FORBIDDEN),
    openapi_extra=ENVELOPE_BODY,
)
async def set_assets(request: Request) -> Response:
    return await intake(request, "assets")


@router.post(
    "/readings",
    summary="Report metered energy per interval and asset (signed `readings`, all-or-nothing)",
    responses=_doc(
        shapes.ReadingsResult,
        ErrorCode.UNKNOWN_ASSET,
        ErrorCode.OVER_CAPACITY,
        ErrorCode.READING_CONFLICT,
        ErrorCode.WINDOW_CLOSED,
    ),
    openapi_extra=ENVELOPE_BODY,
)
async def send_readings(request: Request) -> Response:
    return await intake(request, "readings")


@router.post(
    "/orders",
    summary="Place, replace and cancel orders for one interval (signed `orders`)",
    responses=_doc(
        shapes.OrderBook,
        ErrorCode.GATE_CLOSED,
        ErrorCode.BEYOND_HORIZON,
        ErrorCode.NO_SOURCES,
        ErrorCode.OVER_CAPACITY,
    ),
    openapi_extra=ENVELOPE_BODY,
)
async def submit_orders(request: Request) -> Response:
    return await intake(request, "orders")
