"""Keys a worker has not met are looked up together: one query for a burst, right answers each."""

from __future__ import annotations

import asyncio

import pytest

from grid_server.service.membership import Membership
from grid_server.storage import ingest_queries
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.protocol import ErrorCode, ProtocolError
from tests.support.grid_server import RunningGrid


async def test_a_burst_of_unknown_keys_is_one_lookup(
    grid: RunningGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = [await grid.member(f"H{n}") for n in range(6)]
    await grid.grid.operator.set_participant_status(members[0].address, "suspended")
    outsiders = [KeyPair.generate().address for _ in range(4)]
    queries: list[int] = []
    lookup = ingest_queries.participants_by_address

    async def counted(conn: object, addresses: list[str], **kw: object) -> object:
        queries.append(len(addresses))
        return await lookup(conn, addresses, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_queries, "participants_by_address", counted)
    fresh = Membership(grid.grid.db)  # a worker that met nobody yet
    keys = [m.address for m in members] + outsiders
    # Every key twice, all at once.
    outcomes = await asyncio.gather(*(fresh.check(a) for a in keys + keys), return_exceptions=True)
    codes = [o.code if isinstance(o, ProtocolError) else o for o in outcomes]
    expected = [ErrorCode.SUSPENDED] + [None] * 5 + [ErrorCode.NOT_MEMBER] * 4
    assert codes == expected + expected
    assert queries == [len(keys)]  # one query for the whole burst, each key once
    # The active members are remembered; the others are asked about again.
    assert all(fresh.remembers(m.address) for m in members[1:])
    assert not fresh.remembers(members[0].address)
    await asyncio.gather(*(fresh.check(m.address) for m in members[1:]))
    with pytest.raises(ProtocolError) as refused:
        await fresh.check(outsiders[0])
    assert refused.value.code is ErrorCode.NOT_MEMBER
    assert queries == [len(keys), 1]
