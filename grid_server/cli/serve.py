"""``p2p-grid serve`` (run the grid server) and ``p2p-grid migrate`` (upgrade the database)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from grid_server.config import ConfigError, Settings, load_settings
from grid_server.storage.db import Database, normalise_url
from grid_server.storage.files import PrivateFileError, create_private, read_private

from .locate import (
    DatabaseState,
    Located,
    add_common,
    database_state,
    describe_config,
    fail,
    locate,
)

TOKEN_FILE = "p2p-grid-operator-token"  # noqa: S105 - a file name, not a secret


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the grid server (HTTP API, cycle, stream)")
    add_common(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (PostgreSQL)")
    serve.add_argument("--log-format", choices=("text", "json"), help="log format")
    serve.set_defaults(func=run_serve)
    migrate = subparsers.add_parser("migrate", help="upgrade the database schema to the newest")
    add_common(migrate)
    migrate.set_defaults(func=run_migrate)


def start_notice(found: Located, state: DatabaseState) -> str | None:
    """What ``serve`` tells the operator before it starts: the grid it makes, and the
    config it runs without. None when it runs an existing grid from a config file."""
    grid_id = found.settings.grid.id
    lines = []
    if found.config.path is None:
        lines.append(f"{describe_config(found.config)}: serving the built-in example grid")
    if not state.grids:
        lines.append(
            f"a new grid {grid_id!r} in {state.where}; its ledger key and operator token "
            "are made next to it (back them up)"
        )
    return "\n".join(f"p2p-grid serve: {line}" for line in lines) or None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(settings: Settings) -> dict[str, Any]:
    """Root logging for the grid and a matching uvicorn log config."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    return {"version": 1, "disable_existing_loggers": False}


def ensure_operator_token(settings: Settings) -> Settings:
    """Use the configured operator token, or the one saved next to the database, or a new one.

    The token is a secret: it is never printed (stderr is the server's log), only the
    file that holds it, which must be private to its owner (mode 0600, no symlink).
    """
    if settings.operator_token:
        return settings
    db = Database(settings.database_url)
    folder = db.sqlite_path.parent if db.sqlite_path is not None else Path.cwd()
    path = folder / TOKEN_FILE
    if path.exists() or path.is_symlink():
        token = read_private(path).strip()
    else:
        token = secrets.token_urlsafe(32)
        create_private(path, token + "\n")
        print(
            f"made a new operator token, saved in {path} (mode 0600): "
            "read it there to log in to the dashboard",
            file=sys.stderr,
        )
    return settings.model_copy(update={"operator_token": token})


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415 - heavy; only `serve` needs the web server

    overrides: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_format": args.log_format,
    }
    try:
        found = locate(args, **overrides)
    except ConfigError as exc:
        return fail("serve", str(exc))
    state = asyncio.run(database_state(found.settings))
    if state.error is not None:
        return fail("serve", state.error)
    if state.grids and found.settings.grid.id not in state.grids:
        # Another grid's database: households' keys and history belong to that grid.
        return fail("serve", f"{state.problem(found.settings.grid.id)}; not starting")
    notice = start_notice(found, state)
    if notice is not None:
        print(notice, file=sys.stderr)
    try:
        settings = ensure_operator_token(found.settings)
    except PrivateFileError as exc:
        return fail("serve", str(exc))
    log_config = configure_logging(settings)
    if args.workers > 1:
        if Database(settings.database_url).is_sqlite:
            print("several workers need PostgreSQL", file=sys.stderr)
            return 2
        # Workers rebuild the app from the environment (see app_factory).
        os.environ["P2P_DATABASE_URL"] = normalise_url(settings.database_url)
        os.environ["P2P_OPERATOR_TOKEN"] = settings.operator_token or ""
        if settings.config is not None:
            os.environ["P2P_CONFIG"] = str(settings.config)
        uvicorn.run(
            "grid_server.cli.serve:app_factory",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=args.workers,
            loop="uvloop",
            http="httptools",
            log_config=log_config,
            timeout_graceful_shutdown=30,
        )
        return 0
    from grid_server.api import create_app  # noqa: PLC0415 - heavy (FastAPI); only `serve`

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=log_config,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return 0


def app_factory() -> Any:
    """The app of one worker process (``serve --workers N``)."""
    from grid_server.api import create_app  # noqa: PLC0415 - heavy (FastAPI); only `serve`

    settings = load_settings()
    configure_logging(settings)
    return create_app(settings)


def run_migrate(args: argparse.Namespace) -> int:
    from grid_server.storage.migrate import upgrade  # noqa: PLC0415 - heavy (Alembic)

    try:
        found = locate(args)
    except ConfigError as exc:
        return fail("migrate", str(exc))
    db = Database(found.settings.database_url)
    path = db.sqlite_path
    new = path is not None and not path.exists()

    async def go() -> None:
        try:
            await upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(go())
    made = " (a new, empty database: `p2p-grid serve` makes the grid in it)" if new else ""
    print(f"{found.database} is at the newest schema{made}")
    return 0
