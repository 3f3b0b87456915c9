"""Signed writes: every route takes one envelope and hands it to the writer.

The routes below describe the API (OpenAPI) and serve it through FastAPI.
Their requests are the grid's hot path, so :func:`asgi_intake` also serves
them as a plain ASGI handler that :class:`grid_server.api.app.GridApp` calls
before FastAPI's middleware and routing: the same :func:`accept` runs either
way and answers the same bytes, statuses and errors.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from grid_server.service.grid import GridService
from p2p_energy_client import models as shapes
from p2p_energy_client.protocol import (
    ERRORS,
    MAX_BODY_BYTES,
    ErrorCode,
    ProtocolError,
    parse_envelope,
)

from .common import ENVELOPE_ERRORS, JSON, client_address, error_responses, grid_of

_LOGGER = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["signed writes"])

# Path → the payload type its route takes (the routes are declared below).
ENVELOPE_ROUTES: dict[str, str] = {
    "/api/v1/participants": "join",
    "/api/v1/sessions": "session",
    "/api/v1/assets": "assets",
    "/api/v1/readings": "readings",
    "/api/v1/orders": "orders",
}

_INVITATION_ERRORS = {
    str(ErrorCode.INVITATION_UNKNOWN),
    str(ErrorCode.INVITATION_USED),
    str(ErrorCode.INVITATION_EXPIRED),
    str(ErrorCode.INVITATION_REVOKED),
}


def _too_large() -> ProtocolError:
    return ProtocolError(
        ErrorCode.TOO_LARGE, f"the body may have at most {MAX_BODY_BYTES} bytes", "body"
    )


async def collect_body(length: str | None, chunks: AsyncIterator[bytes]) -> bytes:
    """The request body, refused as soon as it is known to exceed the limit."""
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise _too_large()
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        parts.append(chunk)
    return b"".join(parts)


async def read_body(request: Request) -> bytes:
    return await collect_body(request.headers.get("content-length"), request.stream())


async def accept(
    grid: GridService,
    expected: str,
    address: str,
    length: str | None,
    chunks: AsyncIterator[bytes],
) -> tuple[int, bytes]:
    """Read, check and hand to the writer one envelope of type ``expected``: (status, body)."""
    if not grid.ready:
        raise ProtocolError(ErrorCode.UNAVAILABLE, "the grid is starting or stopping")
    grid.limiter.check_address(address)
    raw = await collect_body(length, chunks)
    envelope = parse_envelope(raw)
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
    return outcome.status, outcome.body


async def intake(request: Request, expected: str) -> Response:
    status, body = await accept(
        grid_of(request),
        expected,
        client_address(request),
        request.headers.get("content-length"),
        request.stream(),
    )
    return Response(body, status_code=status, media_type=JSON)


async def asgi_intake(
    grid: GridService, expected: str, scope: Scope, receive: Receive, send: Send
) -> None:
    """:func:`intake` as a bare ASGI handler (see the module documentation)."""
    try:
        length: str | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value.decode("latin-1")
                break
        client = scope.get("client")
        address = client[0] if client else "?"
        status, body = await accept(grid, expected, address, length, _chunks(receive))
    except ProtocolError as exc:
        grid.metrics.rejections.labels(str(exc.code)).inc()
        status, body = exc.status, orjson.dumps(exc.to_wire())
    except _Disconnected:
        return
    except Exception:
        _LOGGER.exception("unexpected error on %s", scope.get("path"))
        error = ProtocolError(ErrorCode.UNAVAILABLE, "internal error; retry later")
        status, body = ERRORS[ErrorCode.UNAVAILABLE][0], orjson.dumps(error.to_wire())
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Disconnected(Exception):
    pass


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


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
