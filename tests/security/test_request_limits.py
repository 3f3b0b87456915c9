"""Bodies are capped and timed before any parsing or authentication (issue 13, finding 3).

Each request below declares or sends more than the grid should read, or
sends it too slowly, over a raw loopback socket. The server must answer
*without waiting for the rest of the body*: these tests send only part of it,
so a server that read the whole body first (as FastAPI does before a route's
dependencies run) would never answer and the test would time out.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

import orjson
import pytest

from tests.security.conftest import stored
from tests.support.grid_server import OPERATOR_TOKEN, RunningGrid, run_grid_server

ANSWER_WITHIN = 3.0  # seconds; the body below would take forever


async def _exchange(grid: RunningGrid, head: str, body: bytes) -> tuple[int, dict[str, str]]:
    """Send a request head and part of its body; the status and error the server answers."""
    port = urlsplit(grid.url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode("latin-1") + b"\r\n" + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(65536), ANSWER_WITHIN * 4)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    status_line, _, rest = raw.partition(b"\r\n")
    payload = rest.partition(b"\r\n\r\n")[2]
    error = orjson.loads(payload)["error"] if payload else {}
    return int(status_line.split()[1]), error


def _head(method: str, path: str, length: int, *headers: str) -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += ["Content-Type: application/json", *headers]
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        # An operator route: no token, a wrong one; refused before the 20 MB are read.
        ("/api/v1/operator/invitations", (), 401, "unauthenticated"),
        ("/api/v1/operator/prices", ("Authorization: Bearer guess",), 401, "unauthenticated"),
        # The right token, but more than any operator request needs.
        (
            "/api/v1/operator/invitations",
            (f"Authorization: Bearer {OPERATOR_TOKEN}",),
            413,
            "too_large",
        ),
        # Signed writes: more than the protocol's 1 MiB.
        ("/api/v1/readings", (), 413, "too_large"),
        # The dashboard's login takes a token, not megabytes.
        ("/dashboard/api/session", (), 413, "too_large"),
    ],
)
async def test_a_huge_body_is_refused_before_it_is_read(
    hardened: RunningGrid, path: str, headers: tuple[str, ...], status: int, code: str
) -> None:
    before = await stored(hardened)
    started = asyncio.get_running_loop().time()
    answer = await _exchange(hardened, _head("POST", path, 20_000_000, *headers), b"{" * 1024)
    assert answer[0] == status
    assert answer[1]["code"] == code
    assert asyncio.get_running_loop().time() - started < ANSWER_WITHIN
    assert await stored(hardened) == before


async def test_a_chunked_body_is_cut_off_at_the_cap(hardened: RunningGrid) -> None:
    """No Content-Length to refuse by: the server stops reading at the cap."""
    before = await stored(hardened)
    port = urlsplit(hardened.url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /api/v1/readings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    )
    writer.write(head.encode())
    chunk = b"x" * 65_536
    raw = b""
    with contextlib.suppress(ConnectionError):
        for _ in range(64):  # up to 4 MiB, far past the 1 MiB cap
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                raw = await asyncio.wait_for(reader.read(65536), 0.05)
            if raw:
                break
    writer.close()
    assert raw.startswith(b"HTTP/1.1 413"), raw[:100]
    assert await stored(hardened) == before


async def test_a_slow_body_times_out(database_url: str) -> None:
    async with run_grid_server(database_url, default_limits=True, body_timeout_seconds=1.0) as grid:
        before = await stored(grid)
        started = asyncio.get_running_loop().time()
        status, error = await _exchange(grid, _head("POST", "/api/v1/readings", 1000), b'{"pay')
        assert (status, error["code"], error["field"]) == (408, "body_timeout", "body")
        assert asyncio.get_running_loop().time() - started < ANSWER_WITHIN
        assert await stored(grid) == before
