"""The overdue rule, whose one implementation is SQL (``storage.statements.overdue_at``).

Checked on a real database (SQLite and PostgreSQL) through every query that
uses it: the operator's list, the buy-order policy, the dashboard's counts
and its per-statement flag.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from grid_server.storage import statements as stored
from grid_server.storage.db import Database
from grid_server.storage.migrate import upgrade
from grid_server.storage.schema import participants, statement_terms, statements, zones

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
DUE = NOW - timedelta(hours=1)


async def _database(url: str, cases: dict[str, tuple[int, int, datetime] | None]) -> Database:
    """One participant with a statement per case: ``(ledger due, ledger paid, due_at)``."""
    db = Database(url)
    await upgrade(db)
    async with db.write() as conn:
        await conn.execute(insert(zones).values(id="root", fee="0", fee_ticks=0, updated_at=NOW))
        await conn.execute(
            insert(participants).values(
                id=1,
                address="0x01",
                public_key=bytes(32),
                name="Ada",
                zone="root",
                role="consumer",
                status="active",
                last_seq=0,
                joined_at=NOW,
            )
        )
        for sid, terms in cases.items():
            due = 10 if terms is None else terms[0]
            await conn.execute(
                insert(statements).values(
                    id=sid,
                    participant_id=1,
                    period_start=NOW - timedelta(days=2),
                    period_end=NOW - timedelta(days=1),
                    currency="EUR",
                    amount_due_micro=due,
                    paid_micro=0,
                    status="issued",
                    issued_at=NOW - timedelta(days=1),
                    intervals=96,
                )
            )
            if terms is not None:
                await conn.execute(
                    insert(statement_terms).values(
                        statement_id=sid,
                        ledger="local",
                        unit="micro-EUR",
                        rate="1",
                        amount_due=terms[0],
                        paid=terms[1],
                        due_at=terms[2],
                    )
                )
    return db


@pytest.mark.parametrize(
    ("terms", "overdue"),
    [
        pytest.param((10, 0, DUE), True, id="owed-unpaid-past-due"),
        pytest.param((10, 4, DUE), True, id="partly-paid-past-due"),
        pytest.param((10, 10, DUE), False, id="paid"),
        pytest.param((-10, 0, DUE), False, id="owed-by-the-grid"),
        pytest.param((0, 0, DUE), False, id="nothing-due"),
        pytest.param((10, 0, NOW), False, id="due-now"),
        pytest.param((10, 0, NOW + timedelta(hours=1)), False, id="not-due-yet"),
        pytest.param(None, False, id="no-terms"),
    ],
)
async def test_overdue_rule(
    database_url: str, terms: tuple[int, int, datetime] | None, overdue: bool
) -> None:
    db = await _database(database_url, {"s1": terms})
    try:
        async with db.read() as conn:
            listed = await stored.overdue(conn, NOW)
            assert [o.statement for o in listed] == (["s1"] if overdue else [])
            assert await stored.has_overdue(conn, 1, NOW) is overdue
            counts = await stored.counts_by_participant(conn, [1], NOW)
            assert counts[1].overdue == int(overdue)
            (row,) = await stored.with_due_dates(conn, 1, NOW, limit=10)
            assert bool(row.overdue) is overdue
    finally:
        await db.dispose()
