"""One invitation, joined with at once by several keys: exactly one becomes a member."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from grid_server.storage.schema import envelopes, invitations, log_entries, participants
from p2p_energy_client.protocol import ErrorCode, ProtocolError
from tests.support.grid_server import RunningGrid


async def _count(grid: RunningGrid, table: object, *where: object) -> int:
    async with grid.grid.db.read() as conn:
        query = select(func.count()).select_from(table).where(*where)  # type: ignore[arg-type]
        return int(await conn.scalar(query) or 0)


@pytest.mark.parametrize("joiners", [2, 8])
async def test_one_invitation_makes_one_member(grid: RunningGrid, joiners: int) -> None:
    code = await grid.invite()
    clients = [grid.client() for _ in range(joiners)]
    outcomes = await asyncio.gather(
        *(c.join(code, f"House {i}") for i, c in enumerate(clients)), return_exceptions=True
    )
    joined = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(joined) == 1, outcomes
    assert all(isinstance(e, ProtocolError) for e in refused), refused
    assert {e.code for e in refused if isinstance(e, ProtocolError)} <= {ErrorCode.INVITATION_USED}
    # Stored: one participant, one accepted join envelope, one participant log entry.
    assert await _count(grid, participants) == 1
    assert await _count(grid, envelopes, envelopes.c.type == "join") == 1
    assert await _count(grid, log_entries, log_entries.c.kind == "participant") == 1
    assert await _count(grid, invitations, invitations.c.used_at.is_not(None)) == 1
    # The losers' keys are not members: they can join later with codes of their own.
    winner = joined[0]
    loser = next(c for c in clients if c.address != winner.address)  # type: ignore[union-attr]
    assert (await loser.join(await grid.invite(), "Later")).status == "active"
