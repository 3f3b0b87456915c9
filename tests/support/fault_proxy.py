"""A reverse proxy on 127.0.0.1 that misbehaves on purpose, in front of a real grid.

Tests put it between a household and the grid server to see what the
household does when the network or the grid fails in the ways they do:

* ``mode = "pass"``: forward everything;
* ``"unavailable"``: answer 503 without forwarding (a grid restarting);
* ``"error"``: answer 500 without forwarding (a crashing grid);
* ``"lose_answer"``: forward the request, let the grid apply it, then cut
  the connection before the answer reaches the client — the case where a
  careless client pays or counts twice;
* ``delay``: seconds to wait before forwarding (a slow grid).

WebSocket upgrades are refused unless the mode is ``pass`` (500 in
``error`` mode, 503 otherwise; the household fetches meanwhile), which is
what a broken proxy in front of a real grid does.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host"}


@dataclass
class FaultProxy:
    target: str
    mode: str = "pass"
    delay: float = 0.0
    url: str = ""
    seen: Counter[str] = field(default_factory=Counter)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen[f"{self.mode} {request.method} {request.path}"] += 1
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if self.mode == "error":
                raise web.HTTPInternalServerError
            if self.mode != "pass":
                raise web.HTTPServiceUnavailable
            return await self._websocket(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "unavailable":
            raise web.HTTPServiceUnavailable
        if self.mode == "error":
            raise web.HTTPInternalServerError
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.target + request.path_qs, data=body, headers=headers
            ) as answer,
        ):
            payload = await answer.read()
            status = answer.status
            content_type = answer.headers.get("Content-Type")
        if self.mode == "lose_answer":
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError  # nothing goes back to the client
        response = web.Response(status=status, body=payload)
        if content_type:
            response.headers["Content-Type"] = content_type
        return response

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        client = web.WebSocketResponse()
        await client.prepare(request)
        target = self.target.replace("http", "ws", 1) + request.path_qs
        headers = {"Authorization": request.headers.get("Authorization", "")}
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(target, headers=headers) as upstream,
        ):

            async def pump_up() -> None:
                async for msg in client:
                    if msg.type is aiohttp.WSMsgType.TEXT:
                        await upstream.send_str(msg.data)

            up = asyncio.create_task(pump_up())
            try:
                async for msg in upstream:
                    if msg.type is not aiohttp.WSMsgType.TEXT or self.mode != "pass":
                        break
                    await client.send_str(msg.data)
            finally:
                up.cancel()
        await client.close()
        return client


@asynccontextmanager
async def fault_proxy(target: str) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(target.rstrip("/"))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    # Streams through the proxy are cut at once when the test ends.
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    proxy.url = f"http://127.0.0.1:{port}"
    try:
        yield proxy
    finally:
        await runner.cleanup()
