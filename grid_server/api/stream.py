"""Live events over WebSocket, with resume from the last event id seen."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from grid_server.service import queries
from grid_server.service.wiring import Grid
from p2p_energy_client.protocol import ErrorCode, ProtocolError

from .deps import authenticate, grid_of

router = APIRouter(prefix="/api/v1")
# Fallback when no notification arrives (another worker without LISTEN).
POLL_SECONDS = 2.0


def _token(ws: WebSocket) -> str | None:
    header = ws.headers.get("authorization")
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return ws.query_params.get("token")


def _since(ws: WebSocket) -> int:
    value = ws.query_params.get("since", "0")
    if not value.isdigit():
        raise ProtocolError(ErrorCode.INVALID_FIELD, "since: must be an event id", "since")
    return int(value)


@router.websocket("/stream")
async def participant_stream(ws: WebSocket) -> None:
    """Events for one participant (its fills, settlements, statements) and public results.

    Authenticate with ``Authorization: Bearer <token>`` or ``?token=``; pass
    ``?since=<last event id>`` to resume. Each message is one event JSON.
    """
    grid = grid_of(ws)
    await ws.accept()
    try:
        pid, _ = await authenticate(grid, _token(ws))
        since = _since(ws)
    except ProtocolError as exc:
        await ws.send_text(orjson.dumps(exc.to_wire()).decode())
        await ws.close(code=4401 if exc.code is ErrorCode.UNAUTHENTICATED else 4400)
        return
    await _pump(ws, grid, pid, since)


@router.websocket("/operator/stream")
async def operator_stream(ws: WebSocket) -> None:
    """All public market events, for the operator's dashboard (operator token)."""
    grid = grid_of(ws)
    await ws.accept()
    token = _token(ws)
    expected = grid.settings.operator_token
    if not expected or token != expected:
        error = ProtocolError(ErrorCode.UNAUTHENTICATED, "operator token needed", "authorization")
        await ws.send_text(orjson.dumps(error.to_wire()).decode())
        await ws.close(code=4401)
        return
    try:
        since = _since(ws)
    except ProtocolError as exc:
        await ws.send_text(orjson.dumps(exc.to_wire()).decode())
        await ws.close(code=4400)
        return
    await _pump(ws, grid, None, since)


async def _pump(ws: WebSocket, grid: Grid, pid: int | None, since: int) -> None:
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
            async with grid.db.read() as conn:
                batch = await queries.events_since(conn, pid, last)
            for event in batch:
                await ws.send_text(orjson.dumps(event.to_wire()).decode())
                last = event.id
            if len(batch) < 500:
                wait = asyncio.create_task(grid.hub.wait(POLL_SECONDS))
                done_closed = asyncio.create_task(closed.wait())
                await asyncio.wait({wait, done_closed}, return_when=asyncio.FIRST_COMPLETED)
                for task in (wait, done_closed):
                    task.cancel()
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        pass
    finally:
        watcher.cancel()
        grid.metrics.stream_clients.dec()
        with contextlib.suppress(Exception):
            await ws.close()
