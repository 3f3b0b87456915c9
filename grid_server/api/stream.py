"""Live events over WebSocket, with resume from the last event id seen.

Streams are bounded: at most ``max_streams_per_participant`` per participant
and ``max_streams`` in all (the dashboard's included) per process; one more is
refused (``rate_limited``, close code 4429). A participant's stream looks at
its session and status whenever it wakes (each event, at least every
``POLL_SECONDS``) and closes once the participant is suspended or removed
(4403) or the session has expired (4401). Tokens travel only in the
``Authorization`` header: a URL ends up in logs and browser history.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from grid_server.service import queries
from grid_server.service.wiring import Grid
from p2p_energy_client.protocol import ErrorCode, ProtocolError

from .deps import authenticate, grid_of, is_operator_token

router = APIRouter(prefix="/api/v1")
# Fallback when no notification arrives (another worker without LISTEN).
POLL_SECONDS = 2.0
_CLOSE_CODES = {
    ErrorCode.UNAUTHENTICATED: 4401,
    ErrorCode.SUSPENDED: 4403,
    ErrorCode.RATE_LIMITED: 4429,
}
OPERATOR = "operator"


@dataclass
class StreamSlots:
    """The streams open in this process, per holder (a participant id or ``operator``)."""

    per_holder: Counter[object] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.per_holder.values())


def _slots(ws: WebSocket) -> StreamSlots:
    slots: StreamSlots | None = getattr(ws.app.state, "streams", None)
    if slots is None:
        slots = ws.app.state.streams = StreamSlots()
    return slots


@contextlib.asynccontextmanager
async def stream_slot(ws: WebSocket, grid: Grid, holder: object) -> AsyncIterator[None]:
    """Hold one of the stream slots while the stream runs; refuse when none is left."""
    slots = _slots(ws)
    settings = grid.settings
    if slots.total >= settings.max_streams:
        raise ProtocolError(
            ErrorCode.RATE_LIMITED, "the grid serves as many live streams as it can", "stream"
        )
    if holder != OPERATOR and slots.per_holder[holder] >= settings.max_streams_per_participant:
        raise ProtocolError(
            ErrorCode.RATE_LIMITED,
            f"at most {settings.max_streams_per_participant} live streams per participant",
            "stream",
        )
    slots.per_holder[holder] += 1
    try:
        yield
    finally:
        slots.per_holder[holder] -= 1
        if slots.per_holder[holder] <= 0:
            del slots.per_holder[holder]


def header_token(ws: WebSocket) -> str | None:
    """The bearer token of ``Authorization``; a token in the URL is refused, never read."""
    if "token" in ws.query_params:
        raise ProtocolError(
            ErrorCode.UNAUTHENTICATED,
            "send the token as 'Authorization: Bearer <token>', never in the URL",
            "token",
        )
    header = ws.headers.get("authorization")
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def _since(ws: WebSocket) -> int:
    value = ws.query_params.get("since", "0")
    if not value.isdigit():
        raise ProtocolError(ErrorCode.INVALID_FIELD, "since: must be an event id", "since")
    return int(value)


async def close_with(ws: WebSocket, exc: ProtocolError) -> None:
    """Send the refusal as the stream's last message and close with its code."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, ConnectionError):
        await ws.send_text(orjson.dumps(exc.to_wire()).decode())
        await ws.close(code=_CLOSE_CODES.get(exc.code, 4400))


@router.websocket("/stream")
async def participant_stream(ws: WebSocket) -> None:
    """Events for one participant (its fills, settlements, statements) and public results.

    Authenticate with ``Authorization: Bearer <token>``; pass ``?since=<last
    event id>`` to resume. Each message is one event JSON.
    """
    grid = grid_of(ws)
    await ws.accept()
    try:
        token = header_token(ws)
        pid, _ = await authenticate(grid, token)
        since = _since(ws)
        async with stream_slot(ws, grid, pid):
            await _pump(ws, grid, pid, since, token)
    except ProtocolError as exc:
        await close_with(ws, exc)


@router.websocket("/operator/stream")
async def operator_stream(ws: WebSocket) -> None:
    """All public market events, for the operator's dashboard (operator token)."""
    grid = grid_of(ws)
    await ws.accept()
    address = ws.client.host if ws.client is not None else "?"
    try:
        grid.limiter.check_auth_allowed(address)
        token = header_token(ws)
        if not is_operator_token(grid, token):
            if token is not None:
                grid.limiter.record_auth_failure(address)
            raise ProtocolError(ErrorCode.UNAUTHENTICATED, "operator token needed", "authorization")
        since = _since(ws)
        async with stream_slot(ws, grid, OPERATOR):
            await _pump(ws, grid, None, since, None)
    except ProtocolError as exc:
        await close_with(ws, exc)


async def _pump(ws: WebSocket, grid: Grid, pid: int | None, since: int, token: str | None) -> None:
    grid.metrics.stream_clients.inc()
    closed = asyncio.Event()

    async def watch() -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
        closed.set()

    watcher = asyncio.create_task(watch())
    last = since
    try:
        while not closed.is_set():
            if pid is not None:
                await authenticate(grid, token)  # suspended, removed or expired: closes
            async with grid.db.read() as conn:
                batch = await queries.events_since(conn, pid, last)
            for event in batch:
                await ws.send_text(orjson.dumps(event.to_wire()).decode())
                last = event.id
            if len(batch) < 500:
                await _wait(grid, closed)
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        pass
    finally:
        watcher.cancel()
        grid.metrics.stream_clients.dec()
    with contextlib.suppress(Exception):
        await ws.close()


async def _wait(grid: Grid, closed: asyncio.Event) -> None:
    """Until news (this process's hub), the client leaves, or ``POLL_SECONDS``."""
    tasks: set[asyncio.Task[Any]] = {
        asyncio.create_task(grid.hub.wait(POLL_SECONDS)),
        asyncio.create_task(closed.wait()),
    }
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
