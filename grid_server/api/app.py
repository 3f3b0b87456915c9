"""The FastAPI application: ``create_app(settings, clock)``.

The app owns a :class:`~grid_server.service.wiring.Grid` (built by
:func:`~grid_server.service.wiring.build_grid`) started and stopped with it
(lifespan): migrations, the group-commit writer, the interval cycle. Shutdown
drains the writer, so every acknowledged envelope is committed. Routes reach
the grid through :mod:`.deps`.
Every refusal answers ``{"error": {"code", "field", "message"}}`` with the
status from ``p2p_energy_client.protocol.ERRORS``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from grid_server.config import Settings
from grid_server.domain.clock import Clock
from grid_server.service.wiring import Grid, build_grid
from p2p_energy_client.protocol import ERRORS, ErrorCode, ProtocolError

from . import audit, dashboard, envelopes, join, limits, operator, reads, stream
from . import docs as api_docs
from . import payments as payment_routes
from .common import error_response, error_responses

_LOGGER = logging.getLogger(__name__)

_STATUS_CODES = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.MALFORMED,
    401: ErrorCode.UNAUTHENTICATED,
    413: ErrorCode.TOO_LARGE,
    408: ErrorCode.BODY_TIMEOUT,
}


class GridApp(FastAPI):
    """FastAPI, with the signed-write routes served straight from ASGI (the hot path).

    ``POST`` to one of :data:`~grid_server.api.envelopes.ENVELOPE_ROUTES` goes
    to :func:`~grid_server.api.envelopes.asgi_intake` without FastAPI's
    middleware, routing and request objects; it answers exactly what the
    FastAPI route would (the route stays, for the OpenAPI document and for
    other methods). Everything else is FastAPI's.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            # Cheap refusals first: body cap, read timeout, operator token (see limits.py).
            admitted = await limits.admit(self.state.grid, scope, receive, send, path)
            if admitted is None:
                return
            receive = admitted
            expected = envelopes.ENVELOPE_ROUTES.get(path) if scope["method"] == "POST" else None
            if expected is not None:
                await envelopes.asgi_intake(self.state.grid, expected, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, clock: Clock | None = None, grid: Grid | None = None) -> GridApp:
    grid = grid or build_grid(settings, clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await grid.start()
        try:
            yield
        finally:
            await grid.stop()

    app = GridApp(
        title="p2p_energy grid server",
        version="1",
        summary="Peer-to-peer neighbourhood energy market: signed writes, reads, live events.",
        lifespan=lifespan,
        # FastAPI's pages load Swagger UI and ReDoc from a CDN: never (api/docs.py).
        docs_url=None,
        redoc_url=None,
        # A slash redirect is built from the Host header (an open redirect); none.
        redirect_slashes=False,
    )
    app.state.grid = grid
    app.include_router(envelopes.router)
    app.include_router(reads.router)
    app.include_router(stream.router)
    app.include_router(operator.router)
    app.include_router(reads.metrics_router)
    app.include_router(payment_routes.router)
    app.include_router(payment_routes.operator_router)
    app.include_router(audit.router)
    app.include_router(join.router)
    dashboard.install(app)
    if grid.settings.api_docs:
        api_docs.install(app)
    _install_error_handlers(app, grid)
    app.openapi = functools.partial(_openapi, app)  # type: ignore[method-assign]
    return app


def _install_error_handlers(app: FastAPI, grid: Grid) -> None:
    """Every refusal as ``{"error": {"code", "field", "message"}}`` (and counted)."""

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, exc: ProtocolError) -> Response:
        grid.metrics.rejections.labels(str(exc.code)).inc()
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        field = ".".join(loc) or "body"
        code = (
            ErrorCode.MALFORMED if first.get("type") == "json_invalid" else ErrorCode.INVALID_FIELD
        )
        grid.metrics.rejections.labels(str(code)).inc()
        return error_response(ProtocolError(code, f"{field}: {first.get('msg', 'invalid')}", field))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _STATUS_CODES.get(exc.status_code, ErrorCode.MALFORMED)
        error = ProtocolError(code, str(exc.detail), None)
        response = error_response(error)
        response.status_code = exc.status_code
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        _LOGGER.exception("unexpected error on %s", request.url.path)
        return error_response(ProtocolError(ErrorCode.UNAVAILABLE, "internal error; retry later"))


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with the error and envelope schemas and the error table."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Error"] = ERROR_SCHEMA
        components["Envelope"] = ENVELOPE_SCHEMA
        _document_unparsable_bodies(schema)
        schema["info"]["description"] = error_table_markdown()
        app.openapi_schema = schema
    return app.openapi_schema


def _document_unparsable_bodies(schema: dict[str, Any]) -> None:
    """Every operation that takes a body answers a body that is not JSON with 400 ``malformed``."""
    malformed = error_responses(ErrorCode.MALFORMED)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                for status, response in malformed.items():
                    operation.setdefault("responses", {}).setdefault(str(status), response)


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "field", "message"],
            "properties": {
                "code": {"type": "string", "enum": [str(c) for c in ErrorCode]},
                "field": {"type": ["string", "null"]},
                "message": {"type": "string"},
            },
        }
    },
}

ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["payload", "public_key", "signature"],
    "additionalProperties": False,
    "properties": {
        "payload": {
            "type": "object",
            "description": "type, grid, sender, seq, ts and the type's fields "
            "(see p2p_energy_client.protocol)",
        },
        "public_key": {"type": "string", "description": "base64 Ed25519 public key (32 bytes)"},
        "signature": {
            "type": "string",
            "description": "base64 Ed25519 signature (64 bytes) over RFC 8785 JSON of payload",
        },
    },
}


def error_table_markdown() -> str:
    """The error table (OpenAPI description, docs/developers/error-codes.md), from ERRORS."""
    lines = ["| code | HTTP | meaning |", "|---|---|---|"]
    lines += [f"| `{code}` | {status} | {meaning} |" for code, (status, meaning) in ERRORS.items()]
    return "\n".join(lines)
