"""Envelopes of keys that are no members cost the grid no signature work (finding 3).

An outsider signs envelopes with keys it makes up by the thousand. The grid
looks the key up first and refuses (``not_member``) before it canonicalises
or verifies anything; an address that keeps at it is refused (429) before
even the lookup, and its made-up keys get no rate-limit buckets, so they
cannot push a member's limit out. A member keeps being served meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from p2p_energy_client import protocol
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.protocol import (
    MAX_READINGS_PER_ENVELOPE,
    MeterDecl,
    Reading,
    Readings,
)
from tests.security.conftest import MEMBER_ADDRESS, http_from, stored
from tests.support.envelopes import envelope, error_of
from tests.support.grid_server import RunningGrid

MAIN = MeterDecl("main", "Main meter", 10_000)


def _readings(grid: RunningGrid, keys: KeyPair, seq: int, wh: int = 1) -> dict[str, Any]:
    now = grid.clock.now()
    body = Readings((Reading(grid.grid.schedule.start_of(now), "main", wh),))
    return envelope(keys, body, seq, now)


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The public keys of every signature the grid (in this process) verifies."""
    seen: list[bytes] = []
    real = protocol.verify

    def counting(public_key: bytes, message: bytes, signature: bytes) -> bool:
        seen.append(public_key)
        return real(public_key, message, signature)

    monkeypatch.setattr(protocol, "verify", counting)
    return seen


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda wire: wire, id="well-signed"),
        pytest.param(
            lambda wire: {**wire, "signature": base64.b64encode(bytes(64)).decode()},
            id="bad-signature",
        ),
        pytest.param(
            lambda wire: {**wire, "payload": {**wire["payload"], "seq": 2}}, id="tampered-payload"
        ),
    ],
)
async def test_an_outsider_is_refused_before_any_signature_work(
    hardened: RunningGrid, verifications: list[bytes], spoil: Any
) -> None:
    outsider = KeyPair.generate()
    before = await stored(hardened)
    async with http_from(hardened) as http:
        answer = await http.post("/api/v1/readings", json=spoil(_readings(hardened, outsider, 1)))
    assert error_of(answer) == (403, "not_member", "public_key")
    assert verifications == []
    assert await stored(hardened) == before


async def test_a_members_envelope_is_verified(
    hardened: RunningGrid, verifications: list[bytes]
) -> None:
    """The counterpart of the test above: the counting sees a member's signature."""
    alice = await hardened.member("Alice")
    await alice.set_assets(meters=[MAIN])
    verifications.clear()
    async with http_from(hardened, MEMBER_ADDRESS) as http:
        answer = await http.post(
            "/api/v1/readings", json=_readings(hardened, alice.keys, alice.last_seq + 1)
        )
    assert answer.status_code == 200, answer.text
    assert verifications == [alice.keys.public_key]


async def test_a_flood_of_fresh_keys_is_cut_off_and_a_member_is_still_served(
    hardened: RunningGrid, verifications: list[bytes]
) -> None:
    alice = await hardened.member("Alice")
    await alice.set_assets(meters=[MAIN])
    settings = hardened.grid.settings
    buckets = len(hardened.grid.limiter.per_key)
    before = await stored(hardened)
    verifications.clear()
    flood = settings.refusal_burst_per_address + 40
    codes: list[str] = []
    started = time.monotonic()
    async with http_from(hardened) as http:
        for _ in range(flood):
            answer = await http.post(
                "/api/v1/readings", json=_readings(hardened, KeyPair.generate(), 1)
            )
            codes.append(error_of(answer)[1])
    # A burst of lookups, then refusals that cost nothing (the bucket refills meanwhile).
    refills = math.ceil((time.monotonic() - started) * settings.refusals_per_address)
    assert codes[: settings.refusal_burst_per_address] == ["not_member"] * (
        settings.refusal_burst_per_address
    )
    assert codes.count("rate_limited") >= flood - settings.refusal_burst_per_address - refills
    assert verifications == []
    assert len(hardened.grid.limiter.per_key) == buckets  # made-up keys got no buckets
    assert await stored(hardened) == before
    # The member, from its own address, is served as before.
    async with http_from(hardened, MEMBER_ADDRESS) as http:
        answer = await http.post(
            "/api/v1/readings", json=_readings(hardened, alice.keys, alice.last_seq + 1, 5)
        )
    assert answer.status_code == 200, answer.text


async def test_a_members_limit_holds_through_a_flood_of_fresh_keys(
    hardened: RunningGrid,
) -> None:
    alice = await hardened.member("Alice")
    await alice.set_assets(meters=[MAIN])
    burst = hardened.grid.settings.burst_per_key
    seqs = iter(range(alice.last_seq + 1, alice.last_seq + 10 * burst))

    async def volley(http: httpx.AsyncClient, count: int) -> list[int]:
        """``count`` envelopes at once (so the bucket barely refills meanwhile)."""
        wires = [_readings(hardened, alice.keys, next(seqs)) for _ in range(count)]
        answers = await asyncio.gather(*(http.post("/api/v1/readings", json=w) for w in wires))
        return [a.status_code for a in answers]

    async with http_from(hardened, MEMBER_ADDRESS) as http:
        first = await volley(http, 2 * burst)
        assert first.count(429) >= burst // 2, first
        async with http_from(hardened) as outsider:
            for _ in range(30):
                await outsider.post(
                    "/api/v1/readings", json=_readings(hardened, KeyPair.generate(), 1)
                )
        # The bucket refilled a little meanwhile (real time), but was not reset to full.
        after = await volley(http, burst)
    assert after.count(429) > burst // 2, after


async def test_more_readings_than_a_day_of_minutes_are_refused(hardened: RunningGrid) -> None:
    alice = await hardened.member("Alice")
    await alice.set_assets(meters=[MAIN])
    before = await stored(hardened)
    now = hardened.clock.now()
    start = hardened.grid.schedule.start_of(now)
    readings = tuple(
        Reading(start - timedelta(minutes=15 * i), "main", 1)
        for i in range(MAX_READINGS_PER_ENVELOPE + 1)
    )
    wire = envelope(alice.keys, Readings(readings), alice.last_seq + 1, now)
    async with http_from(hardened, MEMBER_ADDRESS) as http:
        answer = await http.post("/api/v1/readings", json=wire)
    status, code, field = error_of(answer)
    assert (status, code, field) == (422, "invalid_field", "payload.readings")
    assert str(MAX_READINGS_PER_ENVELOPE) in answer.json()["error"]["message"]
    assert MAX_READINGS_PER_ENVELOPE == 24 * 60
    assert await stored(hardened) == before
