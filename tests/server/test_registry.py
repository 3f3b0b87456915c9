"""Joining with invitations, sessions, and the signed-envelope checks."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import httpx
import pytest

from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.protocol import (
    ErrorCode,
    Join,
    MeterDecl,
    OpenSession,
    ProtocolError,
    Reading,
    Readings,
    canonical_json,
)
from tests.support.envelopes import envelope, error_of, post
from tests.support.grid_server import RunningGrid, run_grid_server


async def test_join_with_invitation_and_every_refusal(grid: RunningGrid) -> None:
    info = await grid.client().grid_info()
    assert info.grid == "test-grid"
    assert info.prices.retail == "0.3000"

    code = await grid.invite(zone="root", role="consumer")
    alice = grid.client()
    me = await alice.join(code, "Alice")
    assert me.address == alice.address
    assert me.role == "consumer"
    assert me.zone == "root"

    async def refused(client: GridClient, code: str) -> ErrorCode:
        with pytest.raises(ProtocolError) as err:
            await client.join(code, "Mallory")
        assert err.value.field in ("payload.invitation", "public_key")
        return err.value.code

    assert await refused(grid.client(), code) is ErrorCode.INVITATION_USED
    assert await refused(grid.client(), "AAAA-BBBB-CCCC") is ErrorCode.INVITATION_UNKNOWN
    revoked = await grid.invite()
    await grid.grid.operator.revoke_invitation(revoked)
    assert await refused(grid.client(), revoked) is ErrorCode.INVITATION_REVOKED
    expiring = await grid.invite(expires_at=grid.clock.now() + timedelta(minutes=5))
    grid.clock.advance(minutes=6)
    assert await refused(grid.client(), expiring) is ErrorCode.INVITATION_EXPIRED
    # The same key cannot join twice, even with a fresh code.
    assert await refused(alice, await grid.invite()) is ErrorCode.ALREADY_REGISTERED

    participants = await grid.grid.operator.list_participants()
    assert [p["address"] for p in participants] == [alice.address]


async def test_invitation_brute_force_is_rate_limited(database_url: str) -> None:
    async with run_grid_server(database_url, join_failures_per_hour=3) as grid:
        codes = []
        for _ in range(3):
            with pytest.raises(ProtocolError) as err:
                await grid.client().join("WRONG-CODE", "Guess")
            codes.append(err.value.code)
        assert codes == [ErrorCode.INVITATION_UNKNOWN] * 3
        # Even a valid code is refused from this address for a while.
        with pytest.raises(ProtocolError) as err:
            await grid.client().join(await grid.invite(), "Guess")
        assert err.value.code is ErrorCode.RATE_LIMITED


async def test_signed_envelope_attacks(grid: RunningGrid) -> None:
    alice = await grid.member("Alice")
    await alice.set_assets(meters=[MeterDecl("main", "Main meter", 10_000)])
    now = grid.clock.now()
    interval = grid.grid.schedule.start_of(now)
    body = Readings((Reading(interval, "main", 100),))
    keys = alice.keys
    seq = alice.last_seq + 1

    good = envelope(keys, body, seq, now)
    first = await post(grid.url, "/readings", good)
    assert first.status_code == 200, first.text
    # An exact duplicate is answered with the original result (idempotent retry) ...
    again = await post(grid.url, "/readings", good)
    assert again.status_code == 200
    assert again.json() == first.json()
    # ... but the same seq with another payload is a replay.
    other = envelope(keys, Readings((Reading(interval, "main", 101),)), seq, now)
    assert error_of(await post(grid.url, "/readings", other)) == (409, "replay", "payload.seq")
    older = envelope(keys, body, seq - 5, now)
    assert error_of(await post(grid.url, "/readings", older))[1] == "replay"

    # Forged signature: a valid signature of another payload.
    forged = envelope(keys, body, seq + 1, now)
    forged["signature"] = envelope(keys, body, seq + 2, now)["signature"]
    assert error_of(await post(grid.url, "/readings", forged)) == (
        401,
        "bad_signature",
        "signature",
    )
    # A payload changed after signing.
    tampered = envelope(keys, body, seq + 1, now)
    tampered["payload"]["readings"][0]["energy_wh"] = 5
    assert error_of(await post(grid.url, "/readings", tampered))[1] == "bad_signature"
    # Sender that is not the key's address (signed by the key, so the signature holds):
    # a member's key speaking for another member ...
    bob = await grid.member("Bob")
    mismatch = envelope(bob.keys, body, seq + 1, now)
    mismatch["payload"]["sender"] = alice.address
    mismatch["signature"] = base64.b64encode(
        bob.keys.sign(canonical_json(mismatch["payload"]))
    ).decode()
    assert error_of(await post(grid.url, "/readings", mismatch)) == (
        401,
        "key_mismatch",
        "payload.sender",
    )
    # ... and a key that is no member, refused for that before any signature work.
    mallory = KeyPair.generate()
    outsider = envelope(mallory, body, seq + 1, now)
    outsider["payload"]["sender"] = alice.address
    assert error_of(await post(grid.url, "/readings", outsider)) == (
        403,
        "not_member",
        "public_key",
    )
    # Another grid, a stale timestamp, a stranger.
    wrong_grid = envelope(keys, body, seq + 1, now, grid="other-grid")
    assert error_of(await post(grid.url, "/readings", wrong_grid)) == (
        403,
        "wrong_grid",
        "payload.grid",
    )
    stale = envelope(keys, body, seq + 1, now - timedelta(minutes=10))
    assert error_of(await post(grid.url, "/readings", stale)) == (
        422,
        "stale_timestamp",
        "payload.ts",
    )
    stranger = envelope(mallory, body, 1, now)
    assert error_of(await post(grid.url, "/readings", stranger))[:2] == (403, "not_member")
    # A route takes only its own payload type.
    session_here = envelope(keys, OpenSession(), seq + 1, now)
    assert error_of(await post(grid.url, "/readings", session_here)) == (
        422,
        "invalid_field",
        "payload.type",
    )
    # Malformed and oversized bodies.
    assert error_of(await post(grid.url, "/readings", b"{not json"))[:2] == (400, "malformed")
    big = b'{"payload": "' + b"x" * 1_100_000 + b'"}'
    assert error_of(await post(grid.url, "/readings", big))[:2] == (413, "too_large")

    # Only the first envelope left a trace: one reading, one log entry for it.
    stored = await alice.readings(interval, interval + timedelta(minutes=15))
    assert [(r.asset, r.energy_wh) for r in stored] == [("main", 100)]

    # Bob cannot report on Alice's meter: asset ids are per participant.
    bob = await grid.member("Bob")
    with pytest.raises(ProtocolError) as err:
        await bob.send_readings([Reading(interval, "main", 1)])
    assert (err.value.code, err.value.field) == (
        ErrorCode.UNKNOWN_ASSET,
        "payload.readings[0].asset",
    )


async def test_sessions_reads_and_suspension(grid: RunningGrid) -> None:
    alice = await grid.member("Alice")
    async with httpx.AsyncClient(base_url=grid.url) as http:
        response = await http.get("/api/v1/me")
        assert error_of(response)[:2] == (401, "unauthenticated")
        response = await http.get("/api/v1/me", headers={"Authorization": "Bearer nonsense"})
        assert error_of(response)[:2] == (401, "unauthenticated")
    me = await alice.me()
    assert me.last_seq == alice.last_seq
    # A session envelope cannot be replayed to mint another token.
    keys = alice.keys
    env = envelope(keys, OpenSession(), alice.last_seq + 1, grid.clock.now())
    first = await post(grid.url, "/sessions", env)
    assert first.status_code == 200 and first.json()["token"]
    assert error_of(await post(grid.url, "/sessions", env))[1] == "replay"
    # Suspended participants can neither write nor read.
    await grid.grid.operator.set_participant_status(alice.address, "suspended")
    with pytest.raises(ProtocolError) as err:
        await alice.set_assets(meters=[MeterDecl("m", "Meter")])
    assert err.value.code is ErrorCode.SUSPENDED
    with pytest.raises(ProtocolError) as err:
        await alice.me()
    assert err.value.code is ErrorCode.SUSPENDED
    await grid.grid.operator.set_participant_status(alice.address, "active")
    assert (await alice.me()).status == "active"


async def test_client_resyncs_after_replay(grid: RunningGrid) -> None:
    alice = await grid.member("Alice")
    # A second copy of the same key with a counter far ahead (another device).
    twin = grid.client(alice.keys, last_seq=alice.last_seq + 10_000_000)
    await twin.set_assets(meters=[MeterDecl("main", "Main")])
    restored = grid.client(alice.keys, last_seq=0)
    # Its wall-clock counter is below the twin's: REPLAY, resync from me(), sign again.
    view = await restored.set_assets(meters=[MeterDecl("main", "Main"), MeterDecl("ev", "EV")])
    assert [m.id for m in view.meters] == ["ev", "main"]
    assert restored.last_seq > twin.last_seq


async def test_operator_api_health_metrics_openapi(grid: RunningGrid) -> None:
    auth = {"Authorization": f"Bearer {grid.operator_token}"}
    async with httpx.AsyncClient(base_url=grid.url) as http:
        assert (await http.get("/api/v1/health")).json()["status"] == "ok"
        refused = await http.post("/api/v1/operator/invitations", json={})
        assert error_of(refused)[:2] == (401, "unauthenticated")
        issued = await http.post(
            "/api/v1/operator/invitations", json={"role": "producer"}, headers=auth
        )
        assert issued.status_code == 201
        code = issued.json()["code"]
        bob = grid.client()
        assert (await bob.join(code, "Bob")).role == "producer"
        listed = (await http.get("/api/v1/operator/participants", headers=auth)).json()
        assert [p["name"] for p in listed["participants"]] == ["Bob"]
        bad_zone = await http.put(
            "/api/v1/operator/zones/feeder-1", json={"parent": "nowhere"}, headers=auth
        )
        assert error_of(bad_zone) == (404, "not_found", "parent")
        ok_zone = await http.put(
            "/api/v1/operator/zones/feeder-1",
            json={"parent": "root", "fee": "0.0100", "capacity_up_wh": 5000},
            headers=auth,
        )
        assert ok_zone.status_code == 200
        start = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(hours=1)
        price = await http.post(
            "/api/v1/operator/prices",
            json={
                "effective_from": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "retail": "0.3500",
                "feed_in": "0.0700",
            },
            headers=auth,
        )
        assert price.status_code == 200, price.text
        info = (await http.get("/api/v1/grid")).json()
        assert [z["id"] for z in info["zones"]] == ["feeder-1", "root"]
        assert info["price_schedule"][-1]["retail"] == "0.3500"
        metrics = (await http.get("/metrics")).text
        assert "p2p_envelopes_accepted_total" in metrics
        assert 'p2p_rejections_total{code="unauthenticated"}' in metrics
        schema = (await http.get("/openapi.json")).json()
        assert "invitation_used" in json.dumps(schema["paths"]["/api/v1/participants"])
        assert "| `replay` | 409 |" in schema["info"]["description"]


async def test_join_requires_join_type(grid: RunningGrid) -> None:
    keys = KeyPair.generate()
    env = envelope(keys, Join("CODE", "X"), 1, grid.clock.now())
    assert error_of(await post(grid.url, "/sessions", env)) == (
        422,
        "invalid_field",
        "payload.type",
    )


async def test_removed_household_rejoins_with_a_new_invitation(grid: RunningGrid) -> None:
    """Re-admission is the operator's call: a fresh invitation, the same key and history."""

    alice = await grid.member("Alice")
    joined = (await alice.me()).joined_at
    await grid.grid.operator.set_participant_status(alice.address, "removed")
    with pytest.raises(ProtocolError) as err:
        await alice.me()
    assert err.value.code in (ErrorCode.SUSPENDED, ErrorCode.UNAUTHENTICATED, ErrorCode.NOT_MEMBER)
    back = await alice.join(await grid.invite(zone="root"), "Alice again")
    assert (back.status, back.name, back.joined_at) == ("active", "Alice again", joined)
    with pytest.raises(ProtocolError) as err:
        await alice.join(await grid.invite(), "Twice")
    assert err.value.code is ErrorCode.ALREADY_REGISTERED
