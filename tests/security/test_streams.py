"""Live streams are bounded and end with their participant's standing (finding 4).

One token used to open 3,000 streams, and a suspended or removed participant
kept receiving events on a stream opened before. Now each participant has at
most ``max_streams_per_participant`` streams and the process ``max_streams``
(``rate_limited``, close code 4429); a participant's stream closes when it is
suspended or removed (``suspended``, 4403); the operator's stream compares
its token in constant time and never takes one from the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.security.conftest import stored
from tests.support.grid_server import OPERATOR_TOKEN, RunningGrid, run_grid_server

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def _ws_url(grid: RunningGrid, path: str) -> str:
    return grid.url.replace("http", "ws", 1) + path


async def _refusal(ws: aiohttp.ClientWebSocketResponse) -> tuple[str, str | None, int | None]:
    """The error a refused stream sends, its field, and the close code."""
    message = await ws.receive(timeout=10)
    error = orjson.loads(message.data)["error"]
    closing = await ws.receive(timeout=10)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    return error["code"], error["field"], ws.close_code


@contextlib.asynccontextmanager
async def _streams(
    session: aiohttp.ClientSession, url: str, count: int, headers: dict[str, str]
) -> AsyncIterator[list[aiohttp.ClientWebSocketResponse]]:
    async with contextlib.AsyncExitStack() as stack:
        opened = [
            await stack.enter_async_context(session.ws_connect(url, headers=headers))
            for _ in range(count)
        ]
        await asyncio.sleep(0.3)  # each has taken its slot
        yield opened


async def _bearer(grid: RunningGrid, name: str) -> tuple[Any, dict[str, str]]:
    member = await grid.member(name)
    token = (await member.open_session()).token
    return member, {"Authorization": f"Bearer {token}"}


async def test_a_participant_has_a_few_streams_not_thousands(hardened: RunningGrid) -> None:
    _, auth = await _bearer(hardened, "Alice")
    allowed = hardened.grid.settings.max_streams_per_participant
    url = _ws_url(hardened, "/api/v1/stream")
    async with aiohttp.ClientSession() as session:
        async with _streams(session, url, allowed, auth) as opened:
            async with session.ws_connect(url, headers=auth) as extra:
                assert await _refusal(extra) == ("rate_limited", "stream", 4429)
            await opened[0].close()
            await asyncio.sleep(0.3)
            async with session.ws_connect(url, headers=auth) as again:  # a slot came free
                with pytest.raises(TimeoutError):
                    await again.receive(timeout=0.5)  # open, waiting for events


async def test_the_grid_serves_a_bounded_number_of_streams(database_url: str) -> None:
    async with run_grid_server(database_url, default_limits=True, max_streams=2) as grid:
        _, alice = await _bearer(grid, "Alice")
        _, bob = await _bearer(grid, "Bob")
        url = _ws_url(grid, "/api/v1/stream")
        async with aiohttp.ClientSession() as session:
            async with _streams(session, url, 2, alice):
                async with session.ws_connect(url, headers=bob) as extra:
                    assert await _refusal(extra) == ("rate_limited", "stream", 4429)
                operator = _ws_url(grid, "/api/v1/operator/stream")
                async with session.ws_connect(operator, headers=OPERATOR) as extra:
                    assert await _refusal(extra) == ("rate_limited", "stream", 4429)


@pytest.mark.parametrize("status", ["suspended", "removed"])
async def test_a_stream_ends_when_its_participant_is_suspended_or_removed(
    hardened: RunningGrid, status: str
) -> None:
    alice, auth = await _bearer(hardened, "Alice")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(_ws_url(hardened, "/api/v1/stream"), headers=auth) as ws:
            await asyncio.sleep(0.3)
            answer = await session.post(
                f"{hardened.url}/api/v1/operator/participants/{alice.address}/status",
                json={"status": status},
                headers=OPERATOR,
            )
            assert answer.status == 200
            started = asyncio.get_running_loop().time()
            assert await _refusal(ws) == ("suspended", "authorization", 4403)
            assert asyncio.get_running_loop().time() - started < 3


@pytest.mark.parametrize(
    ("path", "headers", "field"),
    [
        # The right token in the URL: refused, so that it never lands in a log.
        (f"/api/v1/operator/stream?token={OPERATOR_TOKEN}", {}, "token"),
        ("/api/v1/operator/stream", {"Authorization": "Bearer guess"}, "authorization"),
        ("/api/v1/operator/stream", {"Authorization": "Bearer gu\u00e9ss"}, "authorization"),
        ("/api/v1/stream?token=anything", {}, "token"),
        ("/api/v1/stream", {"Authorization": "Bearer \u00e9t\u00e9"}, "authorization"),
    ],
)
async def test_stream_tokens_only_in_the_header(
    hardened: RunningGrid, path: str, headers: dict[str, str], field: str
) -> None:
    before = await stored(hardened)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(_ws_url(hardened, path), headers=headers) as ws:
            assert await _refusal(ws) == ("unauthenticated", field, 4401)
        # The operator's stream with the token in the header is served.
        operator = _ws_url(hardened, "/api/v1/operator/stream")
        async with session.ws_connect(operator, headers=OPERATOR) as ws:
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=0.5)
    assert await stored(hardened) == before
