"""A small but complete grid history, and the database surgery an attacker could do."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from grid_server.config import GridConfig, LedgerConfig, PriceConfig, ZoneConfig
from grid_server.domain.audit_merkle import chunk_roots, pack, tree_root
from grid_server.domain.audit_roots import RootFields, make_batch, root_body
from grid_server.storage.db import Database
from p2p_energy_client.payments import LocalPayer
from p2p_energy_client.protocol import (
    OrderSpec,
    Reading,
    Side,
    canonical_json,
)
from p2p_energy_client.receipts import body_hash, entry_hash
from tests.support.factories import MAIN, PV
from tests.support.grid_server import DEFAULT_START, TickingClock, run_grid_server

# Short windows and hourly statements, so a test walks through settlement in a few steps.
CONFIG = GridConfig(
    id="test-grid",
    name="Test grid",
    settlement_window_seconds=900,
    settlement_period_seconds=3600,
    prices=(PriceConfig(retail="0.3000", feed_in="0.0800"),),
    zones=(ZoneConfig(id="root"), ZoneConfig(id="north", parent="root", fee="0.0100")),
    ledger=LedgerConfig(payout_threshold_micro=1_000),
)
APPEND_ONLY = (
    "log_entries",
    "audit_roots",
    "audit_anchors",
    "audit_anchor_attempts",
    "payments",
    "ledger_entries",
)


async def populate(url: str, *, hours: int = 2) -> None:
    """Households join, declare assets, trade, report (and correct) readings; the grid
    clears, settles, issues statements; the operator changes a price, a zone, a status.

    The clock moves on at every reading, as a real one does (an honest grid's
    times are never round), so the verifier is tried on the times it meets in use;
    at the end the server restarts, and a household joins and is funded after it.
    """
    async with run_grid_server(url, grid=CONFIG, clock=TickingClock(DEFAULT_START)) as grid:
        alice = await grid.member("Alice")
        bob = await grid.member("Bob", zone="north")
        carol = await grid.member("Carol", role="consumer")
        await alice.set_assets([PV], [MAIN])
        await bob.set_assets([PV], [MAIN])
        await carol.set_assets([], [MAIN])
        schedule = grid.grid.schedule
        await grid.grid.operator.upsert_zone("south", parent="root", fee="0.0200")
        await grid.grid.operator.set_price(
            schedule.start_of(grid.clock.now()) + timedelta(hours=1), "0.3200", "0.0700"
        )
        for step in range(hours * 4):
            now = grid.clock.now()
            t = schedule.start_of(now)
            ahead = t + timedelta(minutes=30)
            await alice.submit_orders(ahead, place=[OrderSpec("s", Side.SELL, 600, "0.1200")])
            await bob.submit_orders(
                ahead,
                place=[
                    OrderSpec("b", Side.BUY, 400, "0.2500"),
                    OrderSpec("s", Side.SELL, 100, "0.2000"),
                ],
            )
            suspended = step == 4  # the operator suspends Carol for one interval
            if not suspended:
                await carol.submit_orders(ahead, place=[OrderSpec("b", Side.BUY, 300, "0.2800")])
            if step % 3 == 1:
                await bob.submit_orders(ahead, cancel=["s"])
            grid.clock.advance(minutes=15)
            await alice.send_readings([Reading(t, "pv", 500 + step), Reading(t, "main", 120)])
            await bob.send_readings([Reading(t, "pv", 80), Reading(t, "main", 390)])
            if not suspended:
                await carol.send_readings([Reading(t, "main", 310)])
            if step == 2:
                await alice.send_readings([Reading(t, "pv", 777)], correction=True)
            if step == 3:
                await grid.grid.operator.set_participant_status(carol.address, "suspended")
            if step == 4:
                await grid.grid.operator.set_participant_status(carol.address, "active")
            await grid.run_cycle()
        grid.clock.advance(hours=1)
        await grid.run_cycle()
        # Money moves on the local ledger: funds minted, statements paid, producers paid out.
        payments = grid.grid.payments
        for client in (alice, bob, carol):
            await payments.mint(client.address, 5_000_000)
        await payments.mint(payments.address, 1_000_000)
        for client in (bob, carol):
            payer = LocalPayer(client)
            for statement in await client.statements():
                if statement.amount_due_micro > 0:
                    await payer.pay(await client.statement(statement.id))
        await grid.grid.payouts.run_once()
        grid.clock.advance(minutes=15)
        await grid.run_cycle()
        clock = grid.clock
    # A restart: the grid opens the same database again (seeding, ledger head) and goes on.
    async with run_grid_server(url, grid=CONFIG, clock=clock) as grid:
        dave = await grid.member("Dave")
        await grid.grid.payments.mint(dave.address, 1_000_000)
        grid.clock.advance(minutes=15)
        await grid.run_cycle()


def sqlite_clone(url: str, directory: Path) -> str:
    source = Path(url.removeprefix("sqlite:///"))
    target = directory / "clone.db"
    shutil.copyfile(source, target)
    return f"sqlite:///{target}"


class Surgeon:
    """Edits the database the way someone with direct access could."""

    def __init__(self, url: str) -> None:
        self.db = Database(url)

    async def close(self) -> None:
        await self.db.dispose()

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.db.write() as conn:
            return list((await conn.execute(text(sql), params)).all())

    async def run(self, *statements: str, **params: Any) -> None:
        async with self.db.write() as conn:
            for statement in statements:
                await conn.execute(text(statement), params)

    async def drop_triggers(self, *tables: str) -> None:
        async with self.db.write() as conn:
            for table in tables or APPEND_ONLY:
                if self.db.is_postgres:
                    await conn.execute(
                        text(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
                    )
                else:
                    await conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
                    await conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))

    async def rewrite_chain(self, from_seq: int) -> None:
        """Recompute every hash and root from ``from_seq`` on: a consistent forgery."""
        await self.drop_triggers()
        async with self.db.write() as conn:
            entries = (
                await conn.execute(
                    text(
                        "SELECT seq, kind, ref, body, hash, prev_hash FROM log_entries ORDER BY seq"
                    )
                )
            ).all()
            hashes: list[bytes] = []
            roots: list[RootFields] = []
            prev = bytes(32)
            for seq, kind, ref, stored_body, stored_hash, _prev in entries:
                body = bytes(stored_body)
                digest = bytes(stored_hash)
                if seq >= from_seq:
                    if kind == "root":
                        root_row = (
                            await conn.execute(
                                text(
                                    "SELECT interval_from, interval_to, first_seq, last_seq "
                                    "FROM audit_roots WHERE seq = :s"
                                ),
                                {"s": seq},
                            )
                        ).one()
                        a, b = int(root_row.first_seq), int(root_row.last_seq)
                        chunks = chunk_roots(hashes[a - 1 : b])
                        root = tree_root(chunks)
                        frm, to = _aware(root_row.interval_from), _aware(root_row.interval_to)
                        body = root_body(frm, to, a, b, root)
                    if kind == "anchor":
                        # Even the anchored batch is recomputed (what the chain holds is not).
                        record = json.loads(body)
                        batch = make_batch(
                            [
                                r
                                for r in roots
                                if record["first_root_seq"] <= r.seq <= record["last_root_seq"]
                            ]
                        )
                        record.update(
                            batch_root=batch.batch_root.hex(), payload=batch.payload.hex()
                        )
                        body = canonical_json(record)
                        await conn.execute(
                            text(
                                "UPDATE audit_anchors SET batch_root = :r, payload = :p "
                                "WHERE log_seq = :s"
                            ),
                            {"r": batch.batch_root, "p": batch.payload, "s": seq},
                        )
                    new = entry_hash(prev, seq, kind, ref, body_hash(body))
                    await conn.execute(
                        text(
                            "UPDATE log_entries SET body = :b, hash = :h, prev_hash = :p "
                            "WHERE seq = :s"
                        ),
                        {"b": body, "h": new, "p": prev, "s": seq},
                    )
                    if kind == "root":
                        await conn.execute(
                            text(
                                "UPDATE audit_roots SET root = :r, chunks = :c, prev_hash = :p, "
                                "entry_hash = :h WHERE seq = :s"
                            ),
                            {"r": root, "c": pack(chunks), "p": prev, "h": new, "s": seq},
                        )
                    digest = new
                if kind == "root":
                    record = json.loads(body)
                    roots.append(
                        RootFields(
                            seq,
                            record["first_seq"],
                            record["last_seq"],
                            bytes.fromhex(record["root"]),
                            bytes(digest),
                        )
                    )
                hashes.append(bytes(digest))
                prev = bytes(digest)
            await conn.execute(text("UPDATE chain_heads SET hash = :h"), {"h": prev})


def _aware(value: Any) -> Any:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


__all__ = ["CONFIG", "Surgeon", "populate", "sqlite_clone"]
