"""Bring a database to the newest schema (``alembic upgrade head``) from async code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from .db import Database, advisory_key

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(db: Database, revision: str = "head") -> None:
    async with db.write_engine.begin() as conn:
        if db.is_postgres:
            # Several workers may start at once: one migrates, the others wait.
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key("migrate")}
            )
        await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))
