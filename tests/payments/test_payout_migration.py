"""Migration 0007: payouts made before batches become batches of one, and back."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import text

from grid_server.storage.db import Database
from grid_server.storage.migrate import alembic_config, upgrade

T = "2026-01-05 10:00:00.000000"


async def _rows(db: Database, sql: str) -> list[tuple[object, ...]]:
    async with db.read() as conn:
        return [tuple(r) for r in await conn.execute(text(sql))]


async def test_payouts_become_batches_of_one_and_back(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/grid.db")
    try:
        await upgrade(db, "0004")
        async with db.write() as conn:
            await conn.execute(
                text(
                    "INSERT INTO zones (id, name, fee, fee_ticks, updated_at) "
                    "VALUES ('z', 'Zone', '0', 0, :t)"
                ),
                {"t": T},
            )
            for pid in (1, 2):
                await conn.execute(
                    text(
                        "INSERT INTO participants (id, address, public_key, name, zone, role, "
                        "status, last_seq, joined_at) VALUES (:id, :a, :k, 'P', 'z', 'prosumer', "
                        "'active', 1, :t)"
                    ),
                    {"id": pid, "a": f"0x{pid:064x}", "k": bytes(32), "t": T},
                )
            await conn.execute(
                text(
                    "INSERT INTO payouts (id, tx_id, participant_id, recipient, ledger, amount, "
                    "state, signed, created_at, completed_at) VALUES "
                    "(1, 'local-tx', 1, '0x1', 'local', 5, 'done', :s1, :t, :t), "
                    "(2, 'iota-tx', 2, '0x2', 'iota', 7, 'prepared', :s2, :t, NULL)"
                ),
                {"s1": b'{"record": 1}', "s2": b'{"tx_bytes": "..."}', "t": T},
            )
        await upgrade(db)
        batches = await _rows(
            db, "SELECT tx_id, ledger, amount, size, state, signed FROM payout_batches ORDER BY id"
        )
        assert batches == [
            ("local-tx", "local", 5, 1, "done", None),
            ("iota-tx", "iota", 7, 1, "prepared", b'{"tx_bytes": "..."}'),
        ]
        members = await _rows(
            db, "SELECT p.id, b.tx_id FROM payouts p JOIN payout_batches b ON b.id = p.batch_id"
        )
        assert sorted(members) == [(1, "local-tx"), (2, "iota-tx")]

        async with db.write_engine.begin() as conn:
            await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), "0004"))
        assert await _rows(db, "SELECT id, tx_id, state, signed FROM payouts ORDER BY id") == [
            (1, "local-tx", "done", b'{"record": 1}'),
            (2, "iota-tx", "prepared", b'{"tx_bytes": "..."}'),
        ]
        tables = await _rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'")
        assert ("payout_batches",) not in tables
    finally:
        await db.dispose()
