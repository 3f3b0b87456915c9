"""Cheap refusals first: every HTTP request's body is capped and timed before any route runs.

:func:`admit` runs for every HTTP request (``GridApp.__call__``), before
FastAPI, the signed-write fast path, parsing or authentication:

1. Operator routes need the operator token *before* their body is read (401;
   wrong tokens are limited per address like logins, 429), and the
   dashboard's login is refused while its address is limited, so an outsider
   cannot make the server read or parse anything there. Signed writes are
   refused (429) while their address is over its limit, or has sent too many
   envelopes of keys that are no members.
2. A declared ``Content-Length`` above the route's cap is refused at once (413).
3. The body is read up to the cap (413 past it) within ``body_timeout_seconds``
   (408 after): a client that sends slowly holds a connection, not a worker.

The route then gets the body already read. Caps: signed envelopes and payments
``max_body_bytes`` (the protocol's 1 MiB), a street's onboarding
``max_onboard_body_bytes`` (16 MiB: 20,000 joins), every other route
``max_small_body_bytes``.
"""

from __future__ import annotations

import asyncio
from typing import Final

import orjson
from starlette.types import Message, Receive, Scope, Send

from grid_server.service.wiring import Grid
from p2p_energy_client.protocol import ErrorCode, ProtocolError

from .deps import check_operator

OPERATOR_PREFIX: Final = "/api/v1/operator"
ONBOARD_PATH: Final = OPERATOR_PREFIX + "/onboard"
LOGIN_PATH: Final = "/dashboard/api/session"
_LARGE_PREFIX: Final = "/api/v1/"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "?"


def body_cap(grid: Grid, method: str, path: str) -> int:
    """The most bytes a request to ``path`` may send."""
    settings = grid.settings
    if method == "POST" and path == ONBOARD_PATH:
        # Thousands of signed joins; the operator's token is checked before any is read.
        return settings.max_onboard_body_bytes
    if method == "POST" and path.startswith(_LARGE_PREFIX) and not _is_operator(path):
        return settings.max_body_bytes
    return settings.max_small_body_bytes


def _is_operator(path: str) -> bool:
    return path == OPERATOR_PREFIX or path.startswith(OPERATOR_PREFIX + "/")


def _bearer(scope: Scope) -> str | None:
    header = _header(scope, b"authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _check_before_body(grid: Grid, scope: Scope, path: str, cap: int) -> None:
    """The refusals that need no body: size declared too large, no operator token."""
    if _is_operator(path):
        check_operator(grid, _bearer(scope), _client(scope))
    elif path == LOGIN_PATH and scope["method"] == "POST":
        grid.limiter.check_auth_allowed(_client(scope), "token")
    elif cap == grid.settings.max_body_bytes:  # a signed write or a payment
        # An address that keeps sending envelopes of non-members, or too many
        # envelopes, is refused before its (up to 1 MiB) body is read.
        grid.limiter.check_refusals(_client(scope))
        grid.limiter.check_address(_client(scope))
    length = _header(scope, b"content-length")
    if length is not None and (not length.isdigit() or int(length) > cap):
        raise ProtocolError(ErrorCode.TOO_LARGE, f"the body may have at most {cap} bytes", "body")


class _Gone(Exception):
    """The client went away before its body arrived."""


async def _read_body(receive: Receive, cap: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"the body may have at most {cap} bytes", "body"
            )
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the route the body already read, then the real one."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def refuse(grid: Grid, send: Send, exc: ProtocolError, *, close: bool = False) -> None:
    """Answer a refusal in the API's error shape (and count it)."""
    grid.metrics.rejections.labels(str(exc.code)).inc()
    body = orjson.dumps(exc.to_wire())
    headers = [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/json"),
    ]
    if close:  # the rest of the body may still be on its way: do not read it
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def admit(
    grid: Grid, scope: Scope, receive: Receive, send: Send, path: str
) -> Receive | None:
    """The request's ``receive`` with its body read, or None when it was refused (answered)."""
    cap = body_cap(grid, scope["method"], path)
    try:
        _check_before_body(grid, scope, path, cap)
    except ProtocolError as exc:
        await refuse(grid, send, exc, close=True)
        return None
    try:
        async with asyncio.timeout(grid.settings.body_timeout_seconds):
            body = await _read_body(receive, cap)
    except TimeoutError:
        timeout = grid.settings.body_timeout_seconds
        error = ProtocolError(
            ErrorCode.BODY_TIMEOUT, f"the body did not arrive within {timeout:g} s", "body"
        )
        await refuse(grid, send, error, close=True)
        return None
    except ProtocolError as exc:
        await refuse(grid, send, exc, close=True)
        return None
    except _Gone:
        return None
    return _replay(body, receive)
