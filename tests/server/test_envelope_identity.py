"""Duplicates are recognised by the envelope (signer, grid, sequence, payload), not its signature.

A retry of an accepted envelope gets the original answer and is stored once,
whatever valid signature bytes it carries (another signer may choose another
nonce); another payload under a used sequence number is a replay.
"""

from __future__ import annotations

import base64
from datetime import datetime

from sqlalchemy import func, select

from grid_server.storage.schema import envelopes, reading_history, readings
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.protocol import Reading, Readings, canonical_json
from tests.support.ed25519_nonce import sign_with_nonce
from tests.support.envelopes import envelope, error_of, post
from tests.support.factories import MAIN
from tests.support.grid_server import RunningGrid


async def _first_report(grid: RunningGrid) -> tuple[GridClient, dict[str, object], datetime]:
    alice = await grid.member("Alice")
    await alice.set_assets(meters=[MAIN])
    now = grid.clock.now()
    interval = grid.grid.schedule.start_of(now)
    wire = envelope(
        alice.keys, Readings((Reading(interval, "main", 100),)), alice.last_seq + 1, now
    )
    first = await post(grid.url, "/readings", wire)
    assert first.status_code == 200, first.text
    return alice, {"wire": wire, "answer": first.json()}, interval


async def _stored(grid: RunningGrid) -> tuple[int, int, int]:
    async with grid.grid.db.read() as conn:
        counts = [
            await conn.scalar(select(func.count()).select_from(table))
            for table in (envelopes, readings, reading_history)
        ]
    return counts[0] or 0, counts[1] or 0, counts[2] or 0


async def test_a_retry_with_other_signature_bytes_is_the_same_envelope(grid: RunningGrid) -> None:
    alice, sent, _ = await _first_report(grid)
    before = await _stored(grid)
    wire = dict(sent["wire"])  # type: ignore[arg-type]
    again = sign_with_nonce(alice.keys, canonical_json(wire["payload"]), nonce=2**200 + 7)
    assert base64.b64encode(again).decode() != wire["signature"]
    wire["signature"] = base64.b64encode(again).decode()
    retry = await post(grid.url, "/readings", wire)
    assert retry.status_code == 200, retry.text
    assert retry.json() == sent["answer"]
    assert await _stored(grid) == before  # nothing stored twice


async def test_the_same_bytes_again_are_the_same_envelope(grid: RunningGrid) -> None:
    _alice, sent, _ = await _first_report(grid)
    before = await _stored(grid)
    retry = await post(grid.url, "/readings", sent["wire"])  # type: ignore[arg-type]
    assert retry.status_code == 200 and retry.json() == sent["answer"]
    assert await _stored(grid) == before


async def test_another_payload_under_a_used_sequence_is_a_replay(grid: RunningGrid) -> None:
    alice, sent, interval = await _first_report(grid)
    before = await _stored(grid)
    used = sent["wire"]["payload"]["seq"]  # type: ignore[index]
    other = envelope(
        alice.keys, Readings((Reading(interval, "main", 999),)), used, grid.clock.now()
    )
    assert error_of(await post(grid.url, "/readings", other))[:2] == (409, "replay")
    assert await _stored(grid) == before
