"""Declared ratings the grid believes: above ``[grid.meters.approval]`` an asset waits.

Against a real server (SQLite and PostgreSQL): each kind of excess refuses the
asset's readings and orders with ``asset_not_approved`` naming the field and
the reason; the operator approves (perhaps at a lower rating) or refuses
through the API; a decision covers later declarations that declare no more;
the grid's info shows the limits.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.protocol import (
    ErrorCode,
    MeterDecl,
    OrderSpec,
    ProtocolError,
    Reading,
    Side,
    SourceDecl,
    SourceKind,
)
from tests.support.factories import MAIN, PV
from tests.support.grid_server import RunningGrid, run_grid_server
from tests.support.market import grid_config, issue_statements, local_balances
from tests.support.meters import first_event, operator_api

BIG_PV = SourceDecl("pv", "Field", SourceKind.SOLAR, 50_000)  # above 30 kW
BIG_BATTERY = SourceDecl("bat", "Stack", SourceKind.BATTERY, 10_000, None, 40_000)  # > 30 kWh
BIG_METER = MeterDecl("main", "Workshop", 60_000)  # above 43 kW
GIGAWATT = SourceDecl("pv", "Power station", SourceKind.SOLAR, 10**9)  # above 1 MW


async def refusal(call: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as err:
        await call  # type: ignore[misc]
    return err.value


async def _declared(
    grid: RunningGrid, sources: list[SourceDecl], meters: list[MeterDecl]
) -> tuple[GridClient, object]:
    client = await grid.member("Big")
    await client.set_assets(sources, meters)
    t = grid.grid.schedule.start_of(grid.clock.now())
    return client, t


@pytest.mark.parametrize(
    ("sources", "meters", "asset", "message"),
    [
        pytest.param(
            [BIG_PV],
            [],
            "pv",
            "pv: rated_power_w 50000 W is above 30000 W, what the grid approves without the "
            "operator: waiting for the operator",
            id="solar-above-limit",
        ),
        pytest.param(
            [BIG_BATTERY],
            [],
            "bat",
            "bat: usable_capacity_wh 40000 Wh is above 30000 Wh",
            id="battery-capacity-above-limit",
        ),
        pytest.param(
            [],
            [BIG_METER],
            "main",
            "main: rated_power_w 60000 W is above 43000 W",
            id="meter-above-limit",
        ),
        pytest.param(
            [GIGAWATT],
            [],
            "pv",
            "pv: rated_power_w 1000000000 W is above 1000000 W, the most anyone may declare",
            id="above-absolute-maximum",
        ),
    ],
)
async def test_readings_refused_until_approved(
    grid: RunningGrid,
    sources: list[SourceDecl],
    meters: list[MeterDecl],
    asset: str,
    message: str,
) -> None:
    client, t = await _declared(grid, sources, meters)
    grid.clock.advance(minutes=15)
    err = await refusal(client.send_readings([Reading(t, asset, 1_000)]))  # type: ignore[arg-type]
    assert err.code is ErrorCode.ASSET_NOT_APPROVED
    assert err.field == "payload.readings[0].asset"
    assert message in str(err)
    assert await client.readings(t, t + timedelta(minutes=15)) == []  # type: ignore[operator]


@pytest.mark.parametrize(
    ("sources", "meters", "side"),
    [
        pytest.param([BIG_PV], [MAIN], Side.SELL, id="sell-with-pending-solar"),
        pytest.param([BIG_BATTERY], [MAIN], Side.SELL, id="sell-with-pending-battery"),
        pytest.param([PV], [BIG_METER], Side.BUY, id="buy-with-pending-meter"),
        pytest.param([GIGAWATT], [MAIN], Side.SELL, id="sell-with-gigawatt"),
    ],
)
async def test_orders_refused_until_approved(
    grid: RunningGrid, sources: list[SourceDecl], meters: list[MeterDecl], side: Side
) -> None:
    client, t = await _declared(grid, sources, meters)
    later = t + timedelta(minutes=30)  # type: ignore[operator]
    err = await refusal(client.submit_orders(later, [OrderSpec("o", side, 100, "0.1000")]))
    assert err.code is ErrorCode.ASSET_NOT_APPROVED
    assert err.field == "payload.place[0].side"
    assert (await client.orders(later)).orders == ()


async def test_operator_approves_at_a_lower_rating(grid: RunningGrid) -> None:
    client, t = await _declared(grid, [BIG_PV], [MAIN])
    waiting = (await operator_api(grid, "GET", "/assets?waiting=true")).json()["assets"]
    assert [(a["participant"], a["asset"], a["status"]) for a in waiting] == [
        (client.address, "pv", "pending")
    ]
    answer = await operator_api(
        grid,
        "POST",
        f"/assets/{client.address}/pv/decision",
        {"approve": True, "power_w": 20_000, "note": "inspected: 20 kW inverter"},
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["approved_power_w"]) == ("approved", 20_000)
    told = await first_event(client, "asset_approval")
    assert (told.data["asset"], told.data["status"]) == ("pv", "approved")
    assert (await operator_api(grid, "GET", "/assets?waiting=true")).json()["assets"] == []
    # Readings are accepted now; sell orders within the approved 20 kW (5,000 Wh per interval).
    grid.clock.advance(minutes=15)
    assert (await client.send_readings([Reading(t, "pv", 4_000)])).accepted == 1  # type: ignore[arg-type]
    later = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(minutes=30)
    err = await refusal(client.submit_orders(later, [OrderSpec("s", Side.SELL, 5_001, "0.1")]))
    assert (err.code, err.field) == (ErrorCode.OVER_CAPACITY, "payload.place[0].energy_wh")
    await client.submit_orders(later, [OrderSpec("s", Side.SELL, 5_000, "0.1000")])
    # The decision covers a re-declaration of no more; declaring more is a new request.
    await client.set_assets([SourceDecl("pv", "Field", SourceKind.SOLAR, 45_000)], [MAIN])
    assert (await client.send_readings([Reading(t, "pv", 4_000)])).duplicate == 1  # type: ignore[arg-type]
    await client.set_assets([SourceDecl("pv", "Field", SourceKind.SOLAR, 60_000)], [MAIN])
    err = await refusal(client.submit_orders(later, [OrderSpec("s", Side.SELL, 100, "0.1")]))
    assert err.code is ErrorCode.ASSET_NOT_APPROVED


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        pytest.param(
            {"approve": True, "power_w": 60_000},
            "invalid_field",
            "rated_power_w",
            id="approve-above-declared",
        ),
        pytest.param(
            {"approve": True, "capacity_wh": 5},
            "invalid_field",
            "usable_capacity_wh",
            id="capacity-never-declared",
        ),
        pytest.param({"approve": "maybe"}, "invalid_field", None, id="not-a-boolean"),
    ],
)
async def test_operator_decision_refusals(
    grid: RunningGrid, body: dict[str, object], code: str, field: str | None
) -> None:
    client, _ = await _declared(grid, [BIG_PV], [])
    answer = await operator_api(grid, "POST", f"/assets/{client.address}/pv/decision", body)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert error["field"] == field


async def test_unknown_asset_or_household(grid: RunningGrid) -> None:
    client, _ = await _declared(grid, [BIG_PV], [])
    for path in (f"/assets/{client.address}/nope/decision", "/assets/0xabc/pv/decision"):
        answer = await operator_api(grid, "POST", path, {"approve": True})
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


async def test_refused_asset_and_the_absolute_maximum(grid: RunningGrid) -> None:
    client, t = await _declared(grid, [BIG_PV], [])
    refused = await operator_api(
        grid, "POST", f"/assets/{client.address}/pv/decision", {"approve": False, "note": "no"}
    )
    assert refused.json()["status"] == "refused"
    # A little less is covered by the refusal.
    await client.set_assets([SourceDecl("pv", "Field", SourceKind.SOLAR, 40_000)], [])
    grid.clock.advance(minutes=15)
    err = await refusal(client.send_readings([Reading(t, "pv", 10)]))  # type: ignore[arg-type]
    assert err.code is ErrorCode.ASSET_NOT_APPROVED and "the operator refused it: no" in str(err)
    # Nobody may approve a gigawatt.
    await client.set_assets([GIGAWATT], [])
    answer = await operator_api(
        grid, "POST", f"/assets/{client.address}/pv/decision", {"approve": True}
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "rated_power_w"
    assert "the most anyone may declare" in answer.json()["error"]["message"]
    since = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(minutes=15)
    grid.clock.set(since + timedelta(minutes=15))
    err = await refusal(client.send_readings([Reading(since, "pv", 10)]))
    assert err.code is ErrorCode.ASSET_NOT_APPROVED and "the most anyone may declare" in str(err)


async def test_small_assets_need_no_approval_and_grid_info_shows_the_limits(
    grid: RunningGrid,
) -> None:
    client, t = await _declared(grid, [PV], [MAIN])
    assets = (await operator_api(grid, "GET", "/assets")).json()["assets"]
    assert {a["asset"]: a["status"] for a in assets} == {"pv": "automatic", "main": "automatic"}
    grid.clock.advance(minutes=15)
    assert (await client.send_readings([Reading(t, "pv", 900)])).accepted == 1  # type: ignore[arg-type]
    info = await client.grid_info()
    assert info.approval_limits is not None
    assert info.approval_limits["solar_w"] == 30_000
    assert info.approval_limits["absolute_power_w"] == 1_000_000


async def test_the_gigawatt_household_is_neither_approved_nor_paid(database_url: str) -> None:
    """Issue 13: a household declared 1 GW, reported 16.7 MWh and was paid 1,333 EUR."""
    config = grid_config(payout_policy="float")
    async with run_grid_server(database_url, grid=config) as grid:
        cheat = await grid.member("Power station")
        buyer = await grid.member("Buyer")
        await cheat.set_assets([GIGAWATT], [])
        await buyer.set_assets([], [MAIN])
        t = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(minutes=30)
        sell = cheat.submit_orders(t, [OrderSpec("s", Side.SELL, 16_700_000, "0.0800")])
        assert (await refusal(sell)).code is ErrorCode.ASSET_NOT_APPROVED
        await buyer.submit_orders(t, [OrderSpec("b", Side.BUY, 300, "0.2500")])
        answer = await operator_api(
            grid, "POST", f"/assets/{cheat.address}/pv/decision", {"approve": True}
        )
        assert answer.status_code == 422
        grid.clock.set(t + timedelta(minutes=15, seconds=1))
        await grid.run_cycle()
        err = await refusal(cheat.send_readings([Reading(t, "pv", 16_700_000)]))
        assert (err.code, err.field) == (ErrorCode.ASSET_NOT_APPROVED, "payload.readings[0].asset")
        await buyer.send_readings([Reading(t, "main", 300)])
        await issue_statements(grid, t)
        payments = grid.grid.payments
        await payments.mint(payments.address, 10_000_000_000)  # more than enough to pay anyone
        report = await grid.grid.payouts.run_once()
        assert report.paid == [] and report.unfunded == []
        assert await cheat.statements() == []
        assert cheat.address not in await local_balances(grid)
