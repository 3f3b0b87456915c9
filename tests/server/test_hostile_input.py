"""Hostile input the signed-envelope checks alone do not cover.

Deeply nested JSON, floats and booleans where integers belong, names with
invisible or direction-changing characters, and a flood from one key or one
address. Every refusal names its field, and nothing of a refused request is
stored.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from sqlalchemy import func, select

from grid_server.storage.schema import assets
from p2p_energy_client.protocol import Assets, MeterDecl, Reading, Readings, canonical_json
from tests.support.envelopes import envelope, error_of, post
from tests.support.grid_server import RunningGrid, run_grid_server

MAIN = MeterDecl("main", "Main meter", 10_000)


async def _stored_readings(grid: RunningGrid, member: Any) -> list[tuple[str, int]]:
    interval = grid.grid.schedule.start_of(grid.clock.now())
    stored = await member.readings(interval, interval + grid.grid.schedule.length)
    return [(r.asset, r.energy_wh) for r in stored]


async def test_deeply_nested_json_is_refused_without_a_crash(grid: RunningGrid) -> None:
    depth = 100_000
    nested = b'{"payload": ' + b"[" * depth + b"]" * depth + b"}"
    status, code, field = error_of(await post(grid.url, "/readings", nested))
    assert (status, code) == (400, "malformed")
    assert field == "body"
    # A moderately nested value in the right place is refused by shape, not by parsing.
    alice = await grid.member("Alice")
    await alice.set_assets(meters=[MAIN])
    now = grid.clock.now()
    wire = envelope(alice.keys, Readings((Reading(now, "main", 1),)), alice.last_seq + 1, now)
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    wire["payload"]["readings"][0]["energy_wh"] = deep
    status, code, _ = error_of(await post(grid.url, "/readings", wire))
    assert status in (401, 422)
    assert await _stored_readings(grid, alice) == []
    assert (await grid.client().grid_info()).grid == "test-grid"  # still serving


@pytest.mark.parametrize("value", [100.0, 0.5, True, "100", -1, 2**63])
async def test_non_integers_where_integers_belong(grid: RunningGrid, value: object) -> None:
    alice = await grid.member("Alice")
    await alice.set_assets(meters=[MAIN])
    now = grid.clock.now()
    interval = grid.grid.schedule.start_of(now)
    body = Readings((Reading(interval, "main", 100),))
    # Signed as sent: the value is wrong, not the signature.
    wire = envelope(alice.keys, body, alice.last_seq + 1, now)
    wire["payload"]["readings"][0]["energy_wh"] = value
    try:
        signed = canonical_json(wire["payload"])
    except Exception:  # not representable in canonical JSON: refused before the signature
        signed = None
    if signed is not None:
        wire["signature"] = base64.b64encode(alice.keys.sign(signed)).decode()
    status, code, field = error_of(await post(grid.url, "/readings", wire))
    assert status in (400, 401, 422), (status, code)
    if status == 422:
        assert field == "payload.readings[0].energy_wh", (code, field)
    assert await _stored_readings(grid, alice) == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Alice\u202egnp.exe", "U+202E"),  # right-to-left override
        ("Ali\u200bce", "U+200B"),  # zero-width space
        ("Alice\x00", "U+0000"),
        ("Ame\u0301lie", "NFC"),  # decomposed é: two spellings of one name
        ("", ""),
    ],
)
async def test_names_with_invisible_characters_are_refused(
    grid: RunningGrid, name: str, reason: str
) -> None:
    alice = await grid.member("Alice")
    now = grid.clock.now()
    body = Assets((), (MeterDecl("main", name, 10_000),))
    response = await post(grid.url, "/assets", envelope(alice.keys, body, alice.last_seq + 1, now))
    status, code, field = error_of(response)
    assert (status, code, field) == (422, "invalid_field", "payload.meters[0].name")
    assert reason in response.json()["error"]["message"]
    async with grid.grid.db.read() as conn:
        stored = await conn.scalar(select(func.count()).select_from(assets))
    assert stored == 0


async def test_a_flood_from_one_key_is_limited_and_loses_nothing(database_url: str) -> None:
    # The buckets run on real time (a token a second here), not on the grid's clock.
    async with run_grid_server(database_url, rate_per_key=1.0, burst_per_key=8) as grid:
        alice = await grid.member("Alice")
        await alice.set_assets(meters=[MAIN])
        now = grid.clock.now()
        interval = grid.grid.schedule.start_of(now)
        first = alice.last_seq + 1
        wires = [
            envelope(alice.keys, Readings((Reading(interval, "main", 7),)), first + n, now)
            for n in range(20)
        ]
        answers = [await post(grid.url, "/readings", w) for w in wires]
        statuses = [a.status_code for a in answers]
        limited = [a for a in answers if a.status_code == 429]
        assert limited, statuses
        assert {error_of(a)[1:] for a in limited} == {("rate_limited", "public_key")}
        assert 200 in statuses
        # The one accepted reading is stored once; the refused ones left nothing.
        await asyncio.sleep(3)  # (reading it back opens a session: a signed request)
        assert await _stored_readings(grid, alice) == [("main", 7)]


async def test_a_flood_from_one_address_is_limited(database_url: str) -> None:
    async with run_grid_server(database_url, rate_per_address=1.0, burst_per_address=3) as grid:
        statuses = []
        for _ in range(10):
            response = await post(grid.url, "/readings", b"{}")
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert error_of(response)[1:] == ("rate_limited", "client")
        assert statuses[:3] != [429] * 3
        assert 429 in statuses
