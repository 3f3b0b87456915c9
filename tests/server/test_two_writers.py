"""Two writers on one database: what the chain head no longer serialises stays exclusive.

Each worker's writer takes the chain head only to append (see
``grid_server.storage.audit_log``); the senders' rows, the invitations, the
ledger and the statements are locked by the writers themselves. Here two
workers (one on SQLite, which has a single writer) get the same envelopes,
the same invitation and the same statement at once; and the cycle, payouts,
minting, the operator and the audit roots run while both accept envelopes.
Afterwards the log must verify and nothing may have been taken twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta

import orjson
import pytest
from sqlalchemy import func, select, text

from grid_server.service.audit_verify import verify_log
from grid_server.service.transaction import Outcome
from grid_server.storage.schema import envelopes, invitations, participants, payments
from grid_server.storage.schema import payouts as payout_rows
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.ledger.local import SignedTransfer
from p2p_energy_client.protocol import (
    Assets,
    ErrorCode,
    Join,
    LedgerKind,
    OrderSpec,
    Payment,
    Reading,
    Side,
    open_envelope,
    sign,
)
from tests.support.factories import MAIN, PV
from tests.support.grid_server import RunningGrid, run_grid_server
from tests.support.market import grid_config, issue_statements, only_statement, trade


@asynccontextmanager
async def two_writers(database_url: str) -> AsyncIterator[list[RunningGrid]]:
    """Two grid servers on PostgreSQL; on SQLite one (it has a single writer)."""
    config = grid_config(payout_policy="float")
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(run_grid_server(database_url, grid=config))
        grids = [first]
        if database_url.startswith("postgresql"):
            grids.append(
                await stack.enter_async_context(
                    run_grid_server(database_url, clock=first.clock, grid=config)
                )
            )
        yield grids


async def submit(grid: RunningGrid, wire: dict[str, object]) -> Outcome:
    raw = orjson.dumps(wire)
    return await grid.grid.writer.submit(raw, open_envelope(orjson.loads(raw)))


def error_code(outcome: Outcome) -> str | None:
    return None if outcome.status == 200 else orjson.loads(outcome.body)["error"]["code"]


async def count(grid: RunningGrid, table: object, *where: object) -> int:
    async with grid.grid.db.read() as conn:
        query = select(func.count()).select_from(table).where(*where)  # type: ignore[arg-type]
        return int(await conn.scalar(query) or 0)


async def deadlocks(grid: RunningGrid) -> int:
    """PostgreSQL's count of deadlocks detected in this database (0 on SQLite)."""
    if not grid.grid.db.is_postgres:
        return 0
    async with grid.grid.db.read() as conn:
        await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        found = await conn.scalar(
            text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        )
        return int(found or 0)


def batch_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The writer's batches that broke (a lock conflict the writers did not foresee ends
    in a constraint violation or a deadlock, and the writer retries one by one)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "grid_server.service.ingest" and r.levelno >= logging.WARNING
    ]


async def test_a_seq_an_invitation_and_a_statement_are_taken_once(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with two_writers(database_url) as grids:
        main, other = grids[0], grids[-1]
        clock = main.clock
        grid_id = main.grid.grid_id
        _, (buyer,), t = await trade(main)
        await issue_statements(main, t)
        statement = await only_statement(buyer)
        assert statement.ledger is not None
        due = statement.ledger.amount_due
        await main.grid.payments.mint(buyer.address, 2 * due)
        keys, seq = buyer.keys, buyer.last_seq

        # 1. One seq, sent to both workers at once: as two copies of one envelope
        # (one accepted, the other answered as its duplicate) and as another
        # payload under the same seq (a replay) — in every round.
        for _ in range(6):
            seq += 1
            first = sign(keys, grid_id, seq, Assets((), (MAIN,)), ts=clock.now())
            again = sign(
                keys, grid_id, seq, Assets((), (MAIN,)), ts=clock.now() - timedelta(seconds=1)
            )
            outcomes = await asyncio.gather(
                submit(main, first), submit(other, first), submit(other, again)
            )
            codes = sorted(str(error_code(o)) for o in outcomes)
            accepted = [o for o in outcomes if o.status == 200 and not o.duplicate]
            assert len(accepted) == 1, codes
            assert (
                await count(
                    main, envelopes, envelopes.c.sender == keys.address, envelopes.c.seq == seq
                )
                == 1
            )
            assert codes.count(ErrorCode.REPLAY) >= 1, codes

        # 2. One invitation, two new keys joining through the two workers at once,
        # and each join sent twice (to both workers).
        for round_ in range(4):
            code = await main.invite()
            joiners = [KeyPair.generate() for _ in range(2)]
            wires = [
                sign(k, grid_id, 1, Join(code, f"J{round_}.{i}"), ts=clock.now())
                for i, k in enumerate(joiners)
            ]
            joins = await asyncio.gather(*(submit(g, w) for w in wires for g in (main, other)))
            members = await count(
                main, participants, participants.c.address.in_([k.address for k in joiners])
            )
            assert members == 1, [error_code(o) for o in joins]
            # The winner's second copy is answered as its duplicate, whichever worker
            # had it; both of the other key's are refused.
            assert sorted(str((error_code(o), o.duplicate)) for o in joins) == sorted(
                map(
                    str,
                    [(None, False), (None, True), *[(str(ErrorCode.INVITATION_USED), False)] * 2],
                )
            )
        assert await count(main, invitations, invitations.c.used_at.is_not(None)) == 2 + 4

        # 3. The statement, paid in full by two payments through the two workers
        # at once (and the first sent to both): booked once, debited once.
        address = main.grid.payments.address
        paying = []
        for k in (1, 2):
            transfer = SignedTransfer.sign(
                keys, grid=grid_id, recipient=address, amount=due, seq=k, memo=statement.id
            )
            body = Payment(statement.id, LedgerKind.LOCAL, transfer=transfer.to_wire())
            paying.append(sign(keys, grid_id, seq + k, body, ts=clock.now()))
        paid_with = await asyncio.gather(
            submit(main, paying[0]), submit(other, paying[1]), submit(other, paying[0])
        )
        refusals = [error_code(o) for o in paid_with]
        assert sum(1 for o in paid_with if o.status == 200 and not o.duplicate) == 1, refusals
        assert await count(main, payments, payments.c.statement_id == statement.id) == 1
        paid = await buyer.statement(statement.id)
        assert paid.status == "paid" and paid.ledger is not None
        assert paid.ledger.paid == due
        balances = {a: b for a, b, _ in await _balances(main)}
        assert balances[buyer.address] == due  # 2 × due minted, due paid once
        assert await deadlocks(main) == 0
    # Every refusal above was a clean one: no batch broke on a constraint.
    assert not batch_failures(caplog)

    report = await verify_log(database_url, workers=0)
    assert report.ok, report.problem


async def _balances(grid: RunningGrid) -> Sequence[tuple[str, int, int]]:
    async with grid.grid.db.read() as conn:
        return await grid.grid.payments.store.balances(conn)


async def test_cycle_payouts_and_operator_alongside_two_writers(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with two_writers(database_url) as grids:
        main = grids[0]
        clock = main.clock
        households: list[GridClient] = []
        for n in range(16):
            member = await main.member(f"H{n}")
            await member.set_assets([PV] if n % 2 else [], [] if n % 2 else [MAIN])
            # Households talk to both workers.
            households.append(grids[n % len(grids)].client(member.keys, last_seq=member.last_seq))
        payments = main.grid.payments
        await payments.mint(payments.address, 10_000_000)
        before = await deadlocks(main)

        async def household(n: int, client: GridClient, t: datetime) -> None:
            side, price = (Side.SELL, "0.1000") if n % 2 else (Side.BUY, "0.2500")
            await client.submit_orders(
                t + timedelta(minutes=30), [OrderSpec("o", side, 300, price)]
            )
            await client.send_readings([Reading(t, "pv" if n % 2 else "main", 350 + n)])

        for step in range(6):
            t = main.grid.schedule.start_of(clock.now())
            clock.advance(minutes=15)
            # Everything that writes the log, at once, on both workers.
            work = [
                *(household(n, c, t) for n, c in enumerate(households)),
                *(g.grid.cycle.run_due() for g in grids),
                *(g.grid.payouts.run_once() for g in grids),
                *(g.grid.audit.close_due() for g in grids),
                payments.mint(households[step].address, 1_000),
                grids[-1].grid.operator.set_price(t + timedelta(hours=2), "0.3000", "0.0800"),
            ]
            await asyncio.wait_for(asyncio.gather(*work), timeout=60)
        clock.advance(hours=2)
        for _ in range(3):
            await asyncio.wait_for(
                asyncio.gather(
                    *(g.grid.cycle.run_due() for g in grids),
                    *(g.grid.payouts.run_once() for g in grids),
                ),
                timeout=60,
            )
        paid_out = await count(main, payout_rows, payout_rows.c.state == "done")
        assert await deadlocks(main) == before
    # No writer batch failed (a deadlock would have been retried one by one, and logged),
    # and no other pass either.
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert not failures and not batch_failures(caplog), failures
    report = await verify_log(database_url, workers=0)
    assert report.ok, report.problem
    assert paid_out > 0  # the payouts did run alongside
