"""PostgreSQL plans a writer batch's lookups with their values, never with a generic plan.

asyncpg prepares every statement. By default PostgreSQL switches a prepared
statement to a generic plan after five executions when that looks no dearer,
and keeps it: planned while a table was small, a batch's
``participant_id IN (…) AND interval_start = …`` then scans the whole interval
through its index and filters, which grew to hundreds of milliseconds a batch
as an interval filled (the 100,000-household benchmark's readings phase). The
grid's connections plan every execution with its values instead.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from grid_server.storage.db import Database

pytestmark = pytest.mark.postgres

INTERVAL = datetime(2026, 1, 5, 0, 30, tzinfo=UTC)
IDS = 512


async def test_a_batch_lookup_keeps_custom_plans_as_its_table_grows(postgres_url: str) -> None:
    db = Database(postgres_url)
    try:
        async with db.write() as conn:
            await conn.execute(
                text(
                    "CREATE TABLE batch_lookup (participant_id bigint, interval_start timestamptz,"
                    " asset_id text, energy_wh bigint,"
                    " PRIMARY KEY (participant_id, interval_start, asset_id))"
                )
            )
            await conn.execute(
                text("CREATE INDEX ix_batch_lookup ON batch_lookup (interval_start)")
            )
            await conn.execute(text("ANALYZE batch_lookup"))  # statistics of an empty table
        async with db.write() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            ids = ", ".join(f"${i}::BIGINT" for i in range(1, IDS + 1))
            lookup = await raw.prepare(
                f"SELECT * FROM batch_lookup WHERE participant_id IN ({ids})"
                f" AND interval_start IN (${IDS + 1}::TIMESTAMPTZ)"
            )
            for batch in range(8):
                if batch == 6:  # the interval fills while the statement is in use
                    await raw.execute(
                        "INSERT INTO batch_lookup SELECT g, $1, 'main', 1"
                        " FROM generate_series(1, 20000) g",
                        INTERVAL,
                    )
                await lookup.fetch(*[(batch * IDS + i) % 20_000 for i in range(IDS)], INTERVAL)
            plans = await raw.fetchrow(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE 'SELECT * FROM batch_lookup%'"
            )
        assert plans is not None
        assert (plans["generic_plans"], plans["custom_plans"]) == (0, 8)
    finally:
        await db.write_engine.dispose()
