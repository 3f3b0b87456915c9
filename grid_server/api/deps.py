"""What the routes take from the running grid and from the request, wired in one place.

Routes declare what they use as ``Annotated`` dependencies (as FastAPI's
full-stack template does in its ``api/deps.py``): the grid's parts
(``GridDep``, ``DbDep``, ``ClockDep``, ``PaymentsDep``, ``OperatorsDep``,
``AuditDep``), the participant a session token belongs to
(``ParticipantDep``), or the operator's token (``OperatorAuth``, a router
dependency). None of them adds a parameter to the OpenAPI document: they
read the request itself. Every dependency is ``async`` so it runs on the
event loop, not in a worker thread.

Dependencies run before FastAPI validates a route's own parameters; a route
whose answer to a request that is both unauthenticated and invalid must stay
"invalid" calls :func:`current_participant` itself after validation.
"""

from __future__ import annotations

import hmac
from typing import Annotated, NamedTuple

from fastapi import Depends
from starlette.requests import HTTPConnection

from grid_server.domain.clock import Clock
from grid_server.service import queries
from grid_server.service.audit import AuditTrail
from grid_server.service.operator import Operator
from grid_server.service.payments import PaymentService
from grid_server.service.wiring import Grid
from grid_server.storage.db import Database
from p2p_energy_client.protocol import ErrorCode, ProtocolError


def grid_of(connection: HTTPConnection) -> Grid:
    """The grid the app serves (built by ``create_app``)."""
    grid: Grid = connection.app.state.grid
    return grid


async def _grid(connection: HTTPConnection) -> Grid:
    return grid_of(connection)


GridDep = Annotated[Grid, Depends(_grid)]


async def _db(grid: GridDep) -> Database:
    return grid.db


async def _clock(grid: GridDep) -> Clock:
    return grid.clock


async def _payments(grid: GridDep) -> PaymentService:
    return grid.payments


async def _operators(grid: GridDep) -> Operator:
    return grid.operator


async def _audit(grid: GridDep) -> AuditTrail:
    return grid.audit


DbDep = Annotated[Database, Depends(_db)]
ClockDep = Annotated[Clock, Depends(_clock)]
PaymentsDep = Annotated[PaymentService, Depends(_payments)]
OperatorsDep = Annotated[Operator, Depends(_operators)]
AuditDep = Annotated[AuditTrail, Depends(_audit)]


# --- participants: a session token ------------------------------------------------------


class Member(NamedTuple):
    """The participant a session token belongs to."""

    id: int
    address: str


def bearer(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ProtocolError(
            ErrorCode.UNAUTHENTICATED, "use 'Authorization: Bearer <token>'", "authorization"
        )
    return token.strip()


async def authenticate(grid: Grid, token: str | None) -> Member:
    """The participant a session token belongs to (active, else refused)."""
    if token is None:
        raise ProtocolError(
            ErrorCode.UNAUTHENTICATED,
            "this needs a session token: POST a signed session envelope to /api/v1/sessions",
            "authorization",
        )
    async with grid.db.read() as conn:
        found = await queries.session_participant(conn, token, grid.clock.now())
    if found is None:
        raise ProtocolError(
            ErrorCode.UNAUTHENTICATED, "the session token is unknown or expired", "authorization"
        )
    pid, address, status = found
    if status != "active":
        raise ProtocolError(ErrorCode.SUSPENDED, f"the participant is {status}", "authorization")
    return Member(pid, address)


async def current_participant(connection: HTTPConnection) -> Member:
    """The participant of the request's ``Authorization: Bearer`` session token."""
    return await authenticate(grid_of(connection), bearer(connection))


ParticipantDep = Annotated[Member, Depends(current_participant)]


# --- the operator ---------------------------------------------------------------------


def is_operator_token(grid: Grid, token: str | None) -> bool:
    """Whether ``token`` is the operator's, compared in constant time.

    Any string is handled: headers arrive as Latin-1 text and a token with
    characters outside ASCII is simply wrong (``compare_digest`` on ``str``
    would raise for it), so both sides are compared as UTF-8 bytes.
    """
    expected = grid.settings.operator_token
    if not expected or not token:
        return False
    return hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8"))


def check_operator(grid: Grid, token: str | None, address: str) -> None:
    """Refuse a request without the operator's token; wrong tokens are limited per address."""
    grid.limiter.check_auth_allowed(address)
    if not is_operator_token(grid, token):
        if token is not None:
            grid.limiter.record_auth_failure(address)
        raise ProtocolError(
            ErrorCode.UNAUTHENTICATED, "the operator API needs the operator token", "authorization"
        )


async def require_operator(connection: HTTPConnection) -> None:
    """The request carries the operator's token (``Authorization: Bearer``)."""
    address = connection.client.host if connection.client is not None else "?"
    check_operator(grid_of(connection), bearer(connection), address)


OperatorAuth = Depends(require_operator)
