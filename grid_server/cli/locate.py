"""How a command finds its grid: the config file, the database, and that the grid is there.

The config file is ``--config FILE``, else the one ``P2P_CONFIG`` names, else
``$XDG_CONFIG_HOME/p2p-grid/grid.toml`` (``~/.config/p2p-grid/grid.toml``), else
``/etc/p2p-grid/grid.toml`` (:func:`grid_server.config.find_config`); relative
paths in it are relative to it. ``serve`` makes a new grid on its first start
(and says so), ``migrate`` may make a new database; every other command works
on a grid that exists and refuses otherwise, saying what to do: it never
creates a database, a grid or a ledger key. (Before this, ``p2p-grid invite``
run in the wrong folder made a new database there and printed a code only that
database knew.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from grid_server.config import ConfigChoice, ConfigError, Settings, find_config, load_settings
from grid_server.service.ledger_key import LedgerKeyError, load_grid_key
from grid_server.service.operator import OperatorError
from grid_server.service.wiring import Grid, build_grid
from grid_server.storage import grid_setup
from grid_server.storage.db import Database, normalise_url, sqlite_file

EXIT_NO_GRID = 2


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="the grid's config file (TOML; default: $P2P_CONFIG, "
        "~/.config/p2p-grid/grid.toml, /etc/p2p-grid/grid.toml)",
    )
    parser.add_argument("--database-url", help="sqlite:///path.db or postgresql://…")


@dataclass(frozen=True, slots=True)
class Located:
    """A command's settings and the config file they came from."""

    settings: Settings
    config: ConfigChoice

    @property
    def database(self) -> str:
        """The database, as the operator should read it: an absolute path or a URL."""
        return describe_database(self.settings.database_url)


def locate(args: argparse.Namespace, **extra: Any) -> Located:
    """The settings of the grid this command works on (:class:`ConfigError` if unusable)."""
    choice = find_config(getattr(args, "config", None), os.environ)
    settings = load_settings(choice.path, database_url=getattr(args, "database_url", None), **extra)
    return Located(settings, choice)


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    return locate(args, **extra).settings


def describe_database(url: str) -> str:
    """``the SQLite database /abs/grid.db`` or ``the database postgresql://user@host/db``."""
    path = sqlite_file(url)
    if path is not None:
        return f"the SQLite database {path.resolve()}"
    shown = make_url(normalise_url(url)).render_as_string(hide_password=True)
    return f"the database {shown.replace('+asyncpg', '')}"


def describe_config(choice: ConfigChoice) -> str:
    if choice.path is not None:
        return f"the config {choice.path} (from {choice.origin})"
    looked = ", ".join(str(p) for p in choice.searched)
    return f"no config file (none given with --config or P2P_CONFIG; none at {looked})"


@dataclass(frozen=True, slots=True)
class DatabaseState:
    """What a command finds where its settings point: the grids there, or why none."""

    where: str  # the database as :func:`describe_database` names it
    grids: tuple[str, ...] = ()  # the grids it holds
    missing: str | None = None  # there is no SQLite file
    error: str | None = None  # the database cannot be opened

    def problem(self, grid_id: str | None) -> str | None:
        """Why this is not grid ``grid_id`` (any grid when None); None when it is."""
        if self.missing is not None or self.error is not None:
            return self.missing or self.error
        if not self.grids:
            return f"{self.where} holds no grid (a grid is made by its first `p2p-grid serve`)"
        if grid_id is not None and grid_id not in self.grids:
            held = ", ".join(repr(i) for i in self.grids)
            return f"{self.where} holds the grid {held}, not {grid_id!r} (the config's [grid] id)"
        return None


async def database_state(settings: Settings) -> DatabaseState:
    """The grids the configured database holds. Never creates the database."""
    where = describe_database(settings.database_url)
    path = sqlite_file(settings.database_url)
    if path is not None and not path.is_file():
        return DatabaseState(where, missing=f"there is no grid database at {path.resolve()}")
    db = Database(settings.database_url)
    try:
        async with db.read() as conn:
            ids = await grid_setup.grid_ids(conn)
    except (OSError, SQLAlchemyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        return DatabaseState(where, error=f"cannot open {where}: {reason}")
    finally:
        await db.dispose()
    return DatabaseState(where, tuple(ids or ()))


async def grid_problem(settings: Settings, grid_id: str | None) -> str | None:
    """Why the configured database does not hold grid ``grid_id`` (any grid when None)."""
    return (await database_state(settings)).problem(grid_id)


def refusal(command: str, problem: str, found: Located) -> str:
    """The whole message of a refused command: what is wrong, what it read, what to do."""
    return "\n".join(
        [
            f"p2p-grid {command}: {problem}.",
            f"  It read {describe_config(found.config)}",
            f"  and {found.database}.",
            "This command works on an existing grid and never creates one. Give it the config",
            "your `p2p-grid serve` uses (relative paths in it are relative to the file):",
            f"  p2p-grid {command} --config /path/to/grid.toml",
            "  or: export P2P_CONFIG=/path/to/grid.toml (or put it at",
            "      ~/.config/p2p-grid/grid.toml or /etc/p2p-grid/grid.toml)",
            "and --database-url or P2P_DATABASE_URL if the server is given its database that way.",
            "A new grid is made by its first `p2p-grid serve` (docs/operators/quick-start.md).",
        ]
    )


def fail(command: str, message: str) -> int:
    print(f"p2p-grid {command}: {message}", file=sys.stderr)
    return EXIT_NO_GRID


def run_on_grid(
    args: argparse.Namespace,
    job: Callable[[Grid], Awaitable[int]],
    *,
    ledger: bool = False,
) -> int:
    """Run ``job`` on the existing grid the command's config names, or refuse.

    ``ledger``: the job uses the grid's ledger, so its key must be there (it is never made
    here: a missing key means the wrong folder or a missing ``P2P_LEDGER_KEY``).
    """
    command = command_name(args)
    try:
        found = locate(args)
    except ConfigError as exc:
        return fail(command, str(exc))
    return asyncio.run(_on_grid(command, found, job, ledger))


async def _on_grid(
    command: str, found: Located, job: Callable[[Grid], Awaitable[int]], ledger: bool
) -> int:
    settings = found.settings
    problem = await grid_problem(settings, settings.grid.id)
    if problem is not None:
        print(refusal(command, problem, found), file=sys.stderr)
        return EXIT_NO_GRID
    if ledger:
        try:
            load_grid_key(settings, create=False)
        except LedgerKeyError as exc:
            return fail(command, f"{exc} (the key `p2p-grid serve` uses for this grid)")
    grid = build_grid(settings)
    try:
        await grid.open(ledger=ledger)
        return await job(grid)
    except OperatorError as exc:
        return fail(command, f"{exc} ({exc.code}, {exc.field})")
    finally:
        await grid.payments.close()
        await grid.db.dispose()


def existing_settings(
    args: argparse.Namespace, *, grid_id: str | None = None, any_grid: bool = False
) -> Settings | None:
    """The settings of an existing grid (``grid_id``, else any grid when ``any_grid``, else
    the config's), for commands that read the database themselves; None after saying why
    not on stderr."""
    command = command_name(args)
    try:
        found = locate(args)
    except ConfigError as exc:
        fail(command, str(exc))
        return None
    wanted = grid_id if grid_id is not None or any_grid else found.settings.grid.id
    problem = asyncio.run(grid_problem(found.settings, wanted))
    if problem is not None:
        print(refusal(command, problem, found), file=sys.stderr)
        return None
    return found.settings


def command_name(args: argparse.Namespace) -> str:
    """``invite``, ``ledger mint``, ``audit verify``: the command as the operator typed it."""
    words = [args.command]
    for attribute in ("action", "audit_command"):
        value = getattr(args, attribute, None)
        if isinstance(value, str):
            words.append(value)
    return " ".join(words)


__all__ = [
    "EXIT_NO_GRID",
    "DatabaseState",
    "Located",
    "add_common",
    "database_state",
    "describe_config",
    "describe_database",
    "existing_settings",
    "fail",
    "grid_problem",
    "locate",
    "refusal",
    "run_on_grid",
    "settings_from",
]
