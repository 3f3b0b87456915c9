"""``POST /api/v1/operator/onboard``: a street's signed joins and their money in one request."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from grid_server.service.local_ledger import verify_ledger
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.protocol import Join, MeterDecl, Reading, Readings
from tests.payments.test_iota_flow import iota_config
from tests.support.envelopes import envelope, error_of
from tests.support.grid_server import RunningGrid, run_grid_server
from tests.support.iota_node import StandInIotaNode, iota_node
from tests.support.market import local_balances

FUNDS = 2_500_000
__all__ = ["iota_node"]  # the stand-in IOTA node fixture


async def onboard(grid: RunningGrid, body: dict[str, Any], *, auth: bool = True) -> httpx.Response:
    headers = {"Authorization": f"Bearer {grid.operator_token}"} if auth else {}
    async with httpx.AsyncClient(base_url=grid.url, timeout=30) as http:
        return await http.post("/api/v1/operator/onboard", json=body, headers=headers)


async def signed_joins(grid: RunningGrid, count: int) -> tuple[list[KeyPair], list[dict[str, Any]]]:
    """``count`` households, each with its own key and invitation, sign a join at home."""
    keys = [KeyPair.generate() for _ in range(count)]
    joins = [
        envelope(k, Join(await grid.invite(), f"House {n}"), 1, grid.clock.now())
        for n, k in enumerate(keys)
    ]
    return keys, joins


async def test_a_street_joins_and_is_funded_once(grid: RunningGrid) -> None:
    keys, joins = await signed_joins(grid, 4)
    # The fifth household's invitation is made up: only it is refused.
    stray = KeyPair.generate()
    joins.append(envelope(stray, Join("not-an-invitation-code", "House 4"), 1, grid.clock.now()))
    response = await onboard(grid, {"joins": joins, "funds_micro": FUNDS, "memo": "street"})
    assert response.status_code == 200
    result = response.json()
    assert sorted(result["joined"]) == sorted(k.address for k in keys)
    assert [(r["index"], r["error"]["code"]) for r in result["refused"]] == [
        (4, "invitation_unknown")
    ]
    assert result["funded"] == 4
    members = {p["address"] for p in await grid.grid.operator.list_participants()}
    assert members == {k.address for k in keys}
    balances = await local_balances(grid)
    assert all(balances[k.address] == FUNDS for k in keys)
    assert stray.address not in balances

    # The same request again: the members are answered as before, nobody is funded twice.
    again = (await onboard(grid, {"joins": joins, "funds_micro": FUNDS})).json()
    assert (again["joined"], again["funded"]) == ([], 0)
    assert [r["index"] for r in again["refused"]] == [4]
    assert await local_balances(grid) == balances
    async with grid.grid.db.read() as conn:
        report = await verify_ledger(grid.grid.payments.store, conn)
    assert report["ok"] and report["minted"] == 4 * FUNDS


async def test_joined_households_use_the_grid(grid: RunningGrid) -> None:
    keys, joins = await signed_joins(grid, 2)
    assert len((await onboard(grid, {"joins": joins})).json()["joined"]) == 2
    member = grid.client(keys[0])
    assert (await member.me()).name == "House 0"
    await member.set_assets(meters=[MeterDecl("main", "Main")])  # signs after its join
    assert [m.id for m in (await member.me()).assets.meters] == ["main"]


async def test_a_street_larger_than_an_ordinary_request_joins(grid: RunningGrid) -> None:
    """300 joins (about 170 kB) pass the operator routes' 64 KiB cap: onboarding has its own."""
    keys, joins = await signed_joins(grid, 300)
    body = {"joins": joins, "funds_micro": FUNDS}
    size = len(httpx.Request("POST", "/", json=body).content)
    assert size > grid.grid.settings.max_small_body_bytes
    result = (await onboard(grid, body)).json()
    assert sorted(result["joined"]) == sorted(k.address for k in keys)
    assert result["funded"] == 300


def _not_a_join(grid: RunningGrid) -> dict[str, Any]:
    t = grid.grid.schedule.start_of(grid.clock.now())
    return envelope(KeyPair.generate(), Readings((Reading(t, "main", 1),)), 1, grid.clock.now())


def _bad_signature(grid: RunningGrid) -> dict[str, Any]:
    wire = envelope(KeyPair.generate(), Join("code", "House"), 1, grid.clock.now())
    wire["signature"] = envelope(KeyPair.generate(), Join("x", "y"), 1, grid.clock.now())[
        "signature"
    ]
    return wire


@pytest.mark.parametrize(
    ("make", "status", "field"),
    [
        (_not_a_join, 422, "joins[0].payload.type"),
        (_bad_signature, 401, "joins[0].signature"),
    ],
)
async def test_onboard_refusals_name_the_household(
    grid: RunningGrid, make: Any, status: int, field: str
) -> None:
    _, good = await signed_joins(grid, 1)
    response = await onboard(grid, {"joins": [*good, make(grid)], "funds_micro": FUNDS})
    assert error_of(response)[0::2] == (status, field.replace("[0]", "[1]"))
    assert await grid.grid.operator.list_participants() == []  # nothing half-done


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"joins": []}, "joins"),
        ({"joins": [{}], "funds_micro": -1}, "funds_micro"),
        ({"joins": [{}], "extra": 1}, "extra"),
    ],
)
async def test_onboard_request_refusals(
    grid: RunningGrid, body: dict[str, Any], field: str
) -> None:
    status, code, named = error_of(await onboard(grid, body))
    assert (status, code) == (422, "invalid_field")
    assert named is not None and field in named


async def test_onboard_needs_the_operator(grid: RunningGrid) -> None:
    _, joins = await signed_joins(grid, 1)
    assert error_of(await onboard(grid, {"joins": joins}, auth=False))[:2] == (
        401,
        "unauthenticated",
    )


async def test_onboard_funds_only_on_the_local_ledger(
    database_url: str, iota_node: StandInIotaNode
) -> None:
    async with run_grid_server(database_url, grid=iota_config(iota_node)) as grid:
        _, joins = await signed_joins(grid, 1)
        refused = await onboard(grid, {"joins": joins, "funds_micro": FUNDS})
        assert error_of(refused) == (422, "invalid_field", "funds_micro")
        assert await grid.grid.operator.list_participants() == []  # nobody joined
        assert len((await onboard(grid, {"joins": joins})).json()["joined"]) == 1
