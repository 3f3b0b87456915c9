"""The operator's dashboard: the page, the JSON it reads, its live stream, and its login.

Routes (``install`` mounts them; the page is static, every byte of data
needs the operator):

* ``GET /`` and ``GET /dashboard`` redirect to ``/dashboard/`` (the page);
  ``/dashboard/static/…`` are its scripts, style and icon (no CDN, no fonts),
  served from memory with an ETag.
* ``GET /dashboard/api/overview?hours=24``, ``/market?interval=…``,
  ``/participants?limit&offset&zone``, ``/participants/{address}``,
  ``/payments``, ``/audit``, ``/invitations``: the JSON of each view
  (:mod:`grid_server.service.dashboard`); ``POST /dashboard/api/invitations``
  issues invitations (each shown once: code, link, QR code as SVG) and
  ``POST /dashboard/api/invitations/revoke`` revokes one by its code or link.
* ``WS /dashboard/api/stream?since=<event id>``: the grid's clock every
  second and, as soon as they happen, what the events table gained after
  ``since`` (kinds and counts, the intervals cleared): the page reloads the
  view it shows. Reconnecting with the last id misses nothing.

**Authentication.** The operator token never travels in a URL. The page
asks for it once (``POST /dashboard/api/session``) and gets an HttpOnly,
``SameSite=Strict`` session cookie (``Secure`` over HTTPS) valid for
``SESSION_SECONDS``; the session lives in the database
(:mod:`grid_server.service.dashboard.sessions`), so every worker accepts it,
logging out ends it on the server, and changing the operator token ends
every session. Scripts may send ``Authorization: Bearer
<operator token>`` instead. A one-time login link (``/dashboard/login?ticket=…``)
can be issued by the operator (``POST /dashboard/api/tickets`` or
:func:`login_link` in process, which the demo uses); the ticket is signed
the same way, expires after ``TICKET_SECONDS`` and is accepted once per
server process. Wrong tokens are limited per client address.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import RedirectResponse, Response

from grid_server.service import dashboard as views
from grid_server.service.dashboard import sessions
from grid_server.service.operator import OperatorError
from grid_server.service.payout_outlook import payout_outlook
from grid_server.service.wiring import Grid as GridService
from p2p_energy_client.invitation import MAX_INVITATION_LENGTH, InvitationError, parse_invitation
from p2p_energy_client.protocol import ErrorCode, ProtocolError

from .common import client_address, error_responses, json_response, path_time
from .deps import grid_of, is_operator_token
from .stream import OPERATOR, close_with, stream_slot

STATIC: Final = Path(__file__).parent / "static" / "dashboard"
COOKIE: Final = "p2p_dashboard"
COOKIE_PATH: Final = "/dashboard"
SESSION_SECONDS: Final = 12 * 3600
TICKET_SECONDS: Final = 3600
CLOCK_SECONDS: Final = 1.0  # the stream sends the grid's clock this often (real time)
# The page's own rules: only this server's scripts, styles, images and sockets.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclass
class _State:
    """Per process: tickets already used (wrong tokens are the grid's limiter's)."""

    used_tickets: dict[str, float] = field(default_factory=dict)


def _state(app: Any) -> _State:
    state: _State | None = getattr(app.state, "dashboard", None)
    if state is None:
        state = app.state.dashboard = _State()
    return state


# --- tokens ----------------------------------------------------------------------------


def _key(grid: GridService) -> bytes | None:
    token = grid.settings.operator_token
    if not token:
        return None
    return hmac.new(token.encode(), b"p2p-dashboard-v1", hashlib.sha256).digest()


def _mac(key: bytes, purpose: str, payload: str) -> str:
    return hmac.new(key, f"{purpose}|{payload}".encode(), hashlib.sha256).hexdigest()


def issue_ticket(grid: GridService, now: float | None = None) -> str:
    """A one-time login ticket (for a link), valid for ``TICKET_SECONDS``."""
    key = _key(grid)
    if key is None:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "the grid has no operator token")
    expires = int(time.time() if now is None else now) + TICKET_SECONDS
    payload = f"{expires}.{secrets.token_urlsafe(12)}"
    return f"{payload}.{_mac(key, 'ticket', payload)}"


def _redeem_ticket(app: Any, grid: GridService, ticket: str, now: float) -> bool:
    key = _key(grid)
    payload, _, mac = ticket.rpartition(".")
    expires = payload.partition(".")[0]
    if key is None or not expires.isdigit() or int(expires) <= now:
        return False
    if not hmac.compare_digest(mac, _mac(key, "ticket", payload)):
        return False
    used = _state(app).used_tickets
    for old in [t for t, until in used.items() if until <= now]:
        del used[old]
    if payload in used:
        return False
    used[payload] = int(expires)
    return True


def login_link(app: FastAPI, base: str) -> str:
    """A one-time link that logs the operator into the dashboard (the demo prints it)."""
    return f"{base.rstrip('/')}/dashboard/login?ticket={issue_ticket(app.state.grid)}"


def _address(connection: Request | WebSocket) -> str:
    return connection.client.host if connection.client is not None else "?"


def _operator_bearer(connection: Request | WebSocket, grid: GridService) -> bool | None:
    """True/False for a bearer token that is/is not the operator's; None without one.

    A wrong one counts against the address like a wrong login; an address
    over its limit is refused before its token is compared at all.
    """
    header = connection.headers.get("authorization")
    if header is None:
        return None
    address = _address(connection)
    grid.limiter.check_auth_allowed(address)
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and is_operator_token(grid, token.strip()):
        return True
    grid.limiter.record_auth_failure(address)
    return False


async def _authenticated(connection: Request | WebSocket, grid: GridService) -> bool:
    bearer = _operator_bearer(connection, grid)
    if bearer is not None:
        return bearer
    key = _key(grid)
    cookie = connection.cookies.get(COOKIE)
    return key is not None and await sessions.is_open(grid.db, key, cookie)


async def operator_or_session(request: Request) -> None:
    """The operator's bearer token or session cookie (async: no worker thread per request)."""
    if not await _authenticated(request, grid_of(request)):
        raise ProtocolError(
            ErrorCode.UNAUTHENTICATED,
            "the dashboard needs the operator: log in on the page or send the operator token",
            "authorization",
        )


async def _set_session(request: Request, response: Response, key: bytes) -> None:
    token = await sessions.open_session(grid_of(request).db, key, SESSION_SECONDS)
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


# --- pages -----------------------------------------------------------------------------

pages = APIRouter(include_in_schema=False)


_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@functools.cache
def _files() -> dict[str, tuple[bytes, str, str]]:
    """The page's files, read once: ``name -> (bytes, media type, ETag)``.

    A few dozen kilobytes, served from memory: no file system access (and no
    worker thread) per request.
    """
    out: dict[str, tuple[bytes, str, str]] = {}
    for path in sorted(STATIC.iterdir()):
        if path.suffix in _TYPES and path.is_file():
            body = path.read_bytes()
            out[path.name] = (
                body,
                _TYPES[path.suffix],
                f'"{hashlib.sha256(body).hexdigest()[:20]}"',
            )
    return out


def _file(request: Request, name: str) -> Response:
    found = _files().get(name)
    if found is None:
        raise ProtocolError(ErrorCode.NOT_FOUND, "no such file", "path")
    body, media_type, etag = found
    headers = {
        "ETag": etag,
        "Cache-Control": "no-cache",  # revalidate: an upgraded server serves new files
        "X-Content-Type-Options": "nosniff",
    }
    if name == "index.html":
        headers["Content-Security-Policy"] = CSP
        headers["Referrer-Policy"] = "no-referrer"
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


@pages.get("/")
async def root() -> Response:
    return RedirectResponse("/dashboard/", status_code=307)


@pages.get("/dashboard")
async def dashboard_redirect() -> Response:
    return RedirectResponse("/dashboard/", status_code=307)


@pages.get("/dashboard/")
async def dashboard_page(request: Request) -> Response:
    return _file(request, "index.html")


@pages.get("/dashboard/static/{name}")
async def dashboard_file(request: Request, name: str) -> Response:
    return _file(request, name)


@pages.get("/dashboard/login")
async def login_with_ticket(request: Request) -> Response:
    """Redeem a one-time ticket: set the session cookie and drop the ticket from the URL."""
    grid = grid_of(request)
    ticket = request.query_params.get("ticket", "")
    key = _key(grid)
    if key is None or not _redeem_ticket(request.app, grid, ticket, time.time()):
        return RedirectResponse("/dashboard/?login=expired", status_code=303)
    response = RedirectResponse("/dashboard/", status_code=303)
    await _set_session(request, response, key)
    return response


# --- session ---------------------------------------------------------------------------

session_router = APIRouter(prefix="/dashboard/api", tags=["dashboard"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=1000)


@session_router.get("/session", summary="Whether this browser is logged in (never 401)")
async def session_state(request: Request) -> Response:
    grid = grid_of(request)
    return json_response(
        {
            "authenticated": await _authenticated(request, grid),
            "operator_token_configured": bool(grid.settings.operator_token),
        }
    )


@session_router.post(
    "/session",
    summary="Log in with the operator token: sets an HttpOnly session cookie",
    responses=error_responses(ErrorCode.UNAUTHENTICATED, ErrorCode.RATE_LIMITED),
)
async def log_in(request: Request, body: LoginRequest) -> Response:
    grid = grid_of(request)
    address = client_address(request)
    grid.limiter.check_auth_allowed(address, "token")
    key = _key(grid)
    if key is None or not is_operator_token(grid, body.token):
        grid.limiter.record_auth_failure(address)
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "that is not the operator token", "token")
    response = json_response({"authenticated": True})
    await _set_session(request, response, key)
    return response


@session_router.delete("/session", summary="Log out (ends the session on the server)")
async def log_out(request: Request) -> Response:
    grid = grid_of(request)
    key = _key(grid)
    if key is not None:
        await sessions.close_session(grid.db, key, request.cookies.get(COOKIE))
    response = json_response({"authenticated": False})
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


# --- data ------------------------------------------------------------------------------

router = APIRouter(
    prefix="/dashboard/api",
    tags=["dashboard"],
    dependencies=[Depends(operator_or_session)],
    responses=error_responses(
        ErrorCode.UNAUTHENTICATED, ErrorCode.INVALID_FIELD, ErrorCode.RATE_LIMITED
    ),
)


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"{name}: a whole number from {low} to {high}", name
        )
    return int(value)


@router.post("/tickets", status_code=201, summary="A one-time login link for the dashboard")
async def create_ticket(request: Request) -> Response:
    grid = grid_of(request)
    ticket = issue_ticket(grid)
    return json_response(
        {
            "ticket": ticket,
            "path": f"/dashboard/login?ticket={ticket}",
            "expires_in": TICKET_SECONDS,
        },
        201,
    )


def _source(request: Request) -> views.Source:
    """What the views read, from the running grid."""
    grid = grid_of(request)
    return views.Source(
        db=grid.db,
        clock=grid.clock,
        config=grid.config,
        schedule=grid.schedule,
        ledger_address=grid.payments.address,
        unit_of=grid.payments.unit_of,
    )


@router.get("/overview", summary="Now, gate closure, participants, prices, energy, savings")
async def overview(request: Request) -> Response:
    hours = _int(request, "hours", views.DEFAULT_HOURS, 1, views.MAX_HOURS)
    return json_response(await views.overview(_source(request), hours))


@router.get("/market", summary="One interval: curves, clearing points, fills, link flows")
async def market(request: Request) -> Response:
    grid = grid_of(request)
    value = request.query_params.get("interval")
    interval = None
    if value:
        interval = path_time(value, "interval")
        grid.schedule.check_interval(interval, "interval")
    return json_response(await views.market(_source(request), interval))


@router.get("/participants", summary="Households: energy, money, savings, statements")
async def participant_list(request: Request) -> Response:
    return json_response(
        await views.participants_view(
            _source(request),
            limit=_int(request, "limit", views.PAGE_LIMIT, 1, views.PAGE_LIMIT),
            offset=_int(request, "offset", 0, 0, 2**31),
            zone=request.query_params.get("zone") or None,
        )
    )


@router.get(
    "/participants/{address}",
    summary="One household: statements, their payments, balance",
    responses=error_responses(ErrorCode.NOT_FOUND),
)
async def participant(request: Request, address: str) -> Response:
    found = await views.participant_detail(_source(request), address)
    if found is None:
        raise ProtocolError(ErrorCode.NOT_FOUND, "no such participant", "address")
    return json_response(found)


@router.get("/payments", summary="Ledger, recent transfers, payments, payouts, overdue")
async def payment_view(request: Request) -> Response:
    grid = grid_of(request)
    outlook = await payout_outlook(grid.payments, grid.db, grid.clock)
    return json_response(
        {
            **await views.payments_view(_source(request)),
            # What payouts to producers need now and what the grid's account lacks for them.
            "payout_outlook": {**outlook.to_wire(), "funding": outlook.funding_hint()},
        }
    )


@router.get("/audit", summary="Chain head, recent entries, roots and anchoring")
async def audit_view(request: Request) -> Response:
    return json_response(await views.audit_view(_source(request)))


# --- invitations -------------------------------------------------------------------------


class IssueRequest(BaseModel):
    """Invitations to issue from the page (the operator API and the CLI issue more at once)."""

    model_config = ConfigDict(extra="forbid")
    zone: str | None = Field(default=None, max_length=64)
    role: Literal["consumer", "producer", "prosumer"] | None = None
    expires_in_seconds: int = Field(default=7 * 86_400, gt=0, le=366 * 86_400)
    count: int = Field(default=1, ge=1, le=views.MAX_ISSUE)


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=MAX_INVITATION_LENGTH)


def _operator_refusal(exc: OperatorError) -> ProtocolError:
    return ProtocolError(ErrorCode(exc.code), str(exc), exc.field)


@router.get("/invitations", summary="The latest invitations (hints, never codes), the zones")
async def invitation_list(request: Request) -> Response:
    return json_response(await views.invitations_view(_source(request)))


@router.post(
    "/invitations",
    status_code=201,
    summary="Issue invitations: each as its code, link and the link's QR code (SVG), once",
    responses=error_responses(ErrorCode.NOT_FOUND),
)
async def issue_invitations(request: Request, body: IssueRequest) -> Response:
    grid = grid_of(request)
    expires = grid.clock.now().replace(microsecond=0) + timedelta(seconds=body.expires_in_seconds)
    try:
        issued = await grid.operator.create_invitations(
            body.count, zone=body.zone, role=body.role, expires_at=expires
        )
    except OperatorError as exc:
        raise _operator_refusal(exc) from exc
    return json_response(views.issued_view(_source(request), issued), 201)


@router.post(
    "/invitations/revoke",
    summary="Revoke an unused invitation by its code or link (in the body, never the URL)",
    responses=error_responses(ErrorCode.NOT_FOUND),
)
async def revoke_invitation(request: Request, body: RevokeRequest) -> Response:
    try:
        code = parse_invitation(body.code).code
    except InvitationError as exc:
        raise ProtocolError(ErrorCode.INVALID_FIELD, str(exc), "code") from exc
    try:
        await grid_of(request).operator.revoke_invitation(code)
    except OperatorError as exc:
        raise _operator_refusal(exc) from exc
    return json_response({"revoked": code})


# --- live ------------------------------------------------------------------------------

stream_router = APIRouter(prefix="/dashboard/api")


def _same_origin(ws: WebSocket) -> bool:
    """Browsers send Origin on WebSockets; refuse other sites (no cookies cross-site anyway)."""
    origin = ws.headers.get("origin")
    if origin is None:
        return True  # not a browser (scripts authenticate with the bearer token)
    host = ws.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


@stream_router.websocket("/stream")
async def stream(ws: WebSocket) -> None:
    """The grid's clock every second and a summary of each batch of new events."""
    grid: GridService = ws.app.state.grid
    await ws.accept()
    try:
        await _check_stream(ws, grid)
        since_text = ws.query_params.get("since")
        async with stream_slot(ws, grid, OPERATOR):
            await _run_stream(ws, grid, None if since_text is None else int(since_text))
    except ProtocolError as exc:
        await close_with(ws, exc)


async def _run_stream(ws: WebSocket, grid: GridService, since: int | None) -> None:
    closed = asyncio.Event()
    watcher = asyncio.create_task(_watch(ws, closed))
    try:
        await _pump(ws, grid, since, closed)
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        pass
    finally:
        watcher.cancel()
        with contextlib.suppress(Exception):
            await ws.close()


async def _check_stream(ws: WebSocket, grid: GridService) -> None:
    """Refuse the stream to another site, without the operator, or with a bad ``since``."""
    if not _same_origin(ws) or not await _authenticated(ws, grid):
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "log in first", "authorization")
    since_text = ws.query_params.get("since")
    if since_text is not None and not since_text.isdigit():
        raise ProtocolError(ErrorCode.INVALID_FIELD, "since: an event id", "since")


async def _watch(ws: WebSocket, closed: asyncio.Event) -> None:
    """Set ``closed`` when the browser goes away (the page sends nothing else)."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            if (await ws.receive())["type"] == "websocket.disconnect":
                break
    closed.set()


async def _pump(ws: WebSocket, grid: GridService, since: int | None, closed: asyncio.Event) -> None:
    """Hello, then news or the clock at every event and at least every ``CLOCK_SECONDS``."""
    async with grid.db.read() as conn:
        last = since if since is not None else await views.last_event_id(conn)
    await _send(ws, {"type": "hello", "last": last, "clock": views.clock_view(grid.clock)})
    while not closed.is_set():
        async with grid.db.read() as conn:
            news = await views.events_after(conn, last)
        if news is not None:
            last = news["last"]
            await _send(ws, {"type": "events", **news, "clock": views.clock_view(grid.clock)})
        else:
            await _send(ws, {"type": "clock", "clock": views.clock_view(grid.clock)})
        woken = asyncio.create_task(grid.hub.wait(CLOCK_SECONDS))
        gone = asyncio.create_task(closed.wait())
        await asyncio.wait({woken, gone}, return_when=asyncio.FIRST_COMPLETED)
        for task in (woken, gone):
            task.cancel()


async def _send(ws: WebSocket, message: dict[str, Any]) -> None:
    await ws.send_text(orjson.dumps(message).decode())


# --- mounting --------------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """Add the dashboard to the grid server's app (called by ``create_app``)."""
    _state(app)
    # The pages are added to the app itself, so that they are listed in
    # ``app.routes`` (the demo looks for ``/dashboard/login`` there to print its link).
    for route in pages.routes:
        assert isinstance(route, APIRoute)
        app.add_api_route(
            route.path, route.endpoint, methods=sorted(route.methods or ()), include_in_schema=False
        )
    app.include_router(session_router)
    app.include_router(router)
    app.include_router(stream_router)


__all__ = ["COOKIE", "install", "issue_ticket", "login_link", "operator_or_session"]
