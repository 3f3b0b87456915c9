"""Signed writes: every route takes one envelope and hands it to the writer.

The routes below describe the API (OpenAPI) and serve it through FastAPI.
Their requests are the grid's hot path, so :func:`asgi_intake` also serves
them as a plain ASGI handler that :class:`grid_server.api.app.GridApp` calls
before FastAPI's middleware and routing: the same :func:`accept` runs either
way and answers the same bytes, statuses and errors. :func:`open_intake`
(limits, body, signature, type) is shared with the payment routes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from grid_server.service.wiring import Grid
from p2p_energy_client import models as shapes
from p2p_energy_client.protocol import (
    ERRORS,
    MAX_BODY_BYTES,
    Envelope,
    ErrorCode,
    ProtocolError,
    check_grid,
    envelope_sender,
    open_envelope,
    parse_json,
)

from .common import ENVELOPE_ERRORS, JSON, client_address, error_responses
from .deps import GridDep

_LOGGER = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["signed writes"])

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


async def open_intake(
    grid: Grid,
    expected: str,
    address: str,
    length: str | None,
    chunks: AsyncIterator[bytes],
) -> tuple[bytes, Envelope]:
    """Read and check one envelope of type ``expected``: cheapest refusals first.

    The JSON, then the key's membership (one lookup, none for a member seen
    before) and its limit, and only then the signature and the payload: a key
    that is no member costs no signature work. (Limits per address come first,
    before the body is read: :func:`grid_server.api.limits.admit`.)
    """
    if not grid.ready:
        raise ProtocolError(ErrorCode.UNAVAILABLE, "the grid is starting or stopping")
    # (the address's limits were checked before its body was read: limits.admit)
    raw = await collect_body(length, chunks)
    wire = parse_json(raw)
    _check_route(wire, expected, grid.grid_id)
    sender = envelope_sender(wire)
    if expected == "join":
        # Joins are limited per address and per failed invitation code; a key
        # made up for the occasion gets no bucket of its own.
        grid.limiter.check_join_allowed(address)
    else:
        if not grid.membership.remembers(sender):
            # A lookup costs the address a refusal token, given back for a member.
            grid.limiter.take_lookup(address)
            await grid.membership.check(sender)
            grid.limiter.give_back_lookup(address)
        grid.limiter.check_key(sender)
    return raw, open_envelope(wire)


def _check_route(wire: object, expected: str, grid_id: str) -> None:
    """The route takes ``expected`` envelopes for this grid (read from the JSON: no
    signature work yet, and a client pointed at the wrong grid is told so).

    Anything but a payload whose ``type`` or ``grid`` is another string is left
    to :func:`open_envelope`, which names what is wrong with it.
    """
    payload = wire.get("payload") if isinstance(wire, dict) else None
    if not isinstance(payload, dict):
        return
    found = payload.get("type")
    if isinstance(found, str) and found != expected:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"payload.type: this route takes {expected!r} envelopes",
            "payload.type",
        )
    claimed = payload.get("grid")
    if isinstance(claimed, str):
        check_grid(claimed, grid_id)


async def accept(
    grid: Grid,
    expected: str,
    address: str,
    length: str | None,
    chunks: AsyncIterator[bytes],
) -> tuple[int, bytes]:
    """Read, check and hand to the writer one envelope of type ``expected``: (status, body)."""
    raw, envelope = await open_intake(grid, expected, address, length, chunks)
    outcome = await grid.writer.submit(raw, envelope, address)
    if expected == "join" and outcome.status in (404, 409):
        code = orjson.loads(outcome.body).get("error", {}).get("code")
        if code in _INVITATION_ERRORS:
            grid.limiter.record_join_failure(address)
    return outcome.status, outcome.body


async def intake(request: Request, grid: Grid, expected: str) -> Response:
    status, body = await accept(
        grid,
        expected,
        client_address(request),
        request.headers.get("content-length"),
        request.stream(),
    )
    return Response(body, status_code=status, media_type=JSON)


async def asgi_intake(
    grid: Grid, expected: str, scope: Scope, receive: Receive, send: Send
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


def envelope_responses(answer: type, *extra: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a signed write: its answer, and every refusal it can get."""
    responses: dict[int | str, dict[str, Any]] = {200: {"model": answer}}
    responses.update(error_responses(*ENVELOPE_ERRORS, *extra))
    return responses


ENVELOPE_BODY = {
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Envelope"}}},
    }
}


@dataclass(frozen=True, slots=True)
class EnvelopeRoute:
    """One signed-write route: ``POST /api/v1{path}`` takes ``payload_type`` envelopes."""

    path: str
    payload_type: str
    name: str  # the endpoint's name (the OpenAPI operation id is made of it)
    summary: str
    answer: type
    errors: tuple[ErrorCode, ...] = ()


ROUTES = (
    EnvelopeRoute(
        "/participants",
        "join",
        "join",
        "Join the grid with a one-time invitation (signed `join` envelope)",
        shapes.Participant,
        (
            ErrorCode.INVITATION_UNKNOWN,
            ErrorCode.INVITATION_USED,
            ErrorCode.INVITATION_EXPIRED,
            ErrorCode.INVITATION_REVOKED,
            ErrorCode.ALREADY_REGISTERED,
        ),
    ),
    EnvelopeRoute(
        "/sessions",
        "session",
        "open_session",
        "Open a session (signed `session` envelope); returns a bearer token for reads",
        shapes.SessionToken,
    ),
    EnvelopeRoute(
        "/assets",
        "assets",
        "set_assets",
        "Declare the complete set of sources and consumer meters (signed `assets`)",
        shapes.AssetsView,
        (ErrorCode.FORBIDDEN,),
    ),
    EnvelopeRoute(
        "/readings",
        "readings",
        "send_readings",
        "Report metered energy per interval and asset (signed `readings`, all-or-nothing)",
        shapes.ReadingsResult,
        (
            ErrorCode.UNKNOWN_ASSET,
            ErrorCode.OVER_CAPACITY,
            ErrorCode.READING_CONFLICT,
            ErrorCode.WINDOW_CLOSED,
        ),
    ),
    EnvelopeRoute(
        "/orders",
        "orders",
        "submit_orders",
        "Place, replace and cancel orders for one interval (signed `orders`)",
        shapes.OrderBook,
        (
            ErrorCode.GATE_CLOSED,
            ErrorCode.BEYOND_HORIZON,
            ErrorCode.NO_SOURCES,
            ErrorCode.OVER_CAPACITY,
        ),
    ),
)
# Full path → the payload type its route takes (the ASGI fast path's table).
ENVELOPE_ROUTES: dict[str, str] = {f"{router.prefix}{r.path}": r.payload_type for r in ROUTES}


def _add(route: EnvelopeRoute) -> None:
    async def endpoint(request: Request, grid: GridDep) -> Response:
        return await intake(request, grid, route.payload_type)

    endpoint.__name__ = endpoint.__qualname__ = route.name
    router.post(
        route.path,
        summary=route.summary,
        responses=envelope_responses(route.answer, *route.errors),
        openapi_extra=ENVELOPE_BODY,
    )(endpoint)


for _route in ROUTES:
    _add(_route)
