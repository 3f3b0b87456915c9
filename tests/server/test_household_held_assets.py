"""The household's routine with an asset that waits for the operator, against a real grid.

SQLite and PostgreSQL: readings and sell orders refused with
``asset_not_approved`` are held (one refused request each, not one per
call), the consumer meter's readings go on, and the operator's approval
(the ``asset_approval`` event) lets the held readings and the sells go.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.household import Asset, Household, TradingOptions
from p2p_energy_client.meter_trust import WAITING
from p2p_energy_client.protocol import Side, SourceDecl, SourceKind
from tests.support.factories import MAIN
from tests.support.grid_server import RunningGrid
from tests.support.meters import first_event

BIG_PV = SourceDecl("pv", "Field", SourceKind.SOLAR, 50_000)  # above 30 kW: waits


def count_requests(client: GridClient) -> Counter[str]:
    """How often the household sends readings and orders (each a signed request to the grid)."""
    sent: Counter[str] = Counter()

    def counted(name: str) -> Callable[..., Awaitable[Any]]:
        call = getattr(client, name)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            sent[name] += 1
            return await call(*args, **kwargs)

        return wrapper

    for name in ("send_readings", "submit_orders"):
        setattr(client, name, counted(name))
    return sent


async def test_held_readings_and_sells_go_out_on_approval(grid: RunningGrid) -> None:
    client = await grid.member("Big")
    await client.set_assets([BIG_PV], [MAIN])
    sent = count_requests(client)
    household = Household(
        client,
        await client.grid_info(),
        zone="root",
        assets=[Asset("pv", "source", 50_000), Asset("main", "meter", 8_000)],
        options=TradingOptions(enabled=True),
    )
    t = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(minutes=15)
    grid.clock.set(t)
    household.observe("pv", 0.0, t)
    household.observe("main", 0.0, t)
    now = t + timedelta(minutes=15)
    grid.clock.set(now)
    household.observe("pv", 2_000.0, now)  # a surplus: the strategy sells
    household.observe("main", 300.0, now)
    now = t + timedelta(minutes=18)  # after the meters' grace
    grid.clock.set(now)
    household.collect(now)

    # Sells are refused once for the waiting source; the side waits, no more tries.
    await household.trade(now)
    assert sent["submit_orders"] == 1
    assert set(household.snapshot(now).asset_holds) == set()
    assert household.to_state()["meter_trust"]["sides"]["sell"]["status"] == WAITING

    # The source's reading is held; the meter's goes to the grid.
    assert await household.report(now) == 1
    assert sent["send_readings"] == 2  # the refused batch, then the meter alone
    (hold,) = household.snapshot(now).asset_holds.values()
    assert hold.status == WAITING and "waiting for the operator" in hold.message
    assert [r["asset"] for r in household.to_state()["outbox"]["pending"]] == ["pv"]
    assert household.refusals() == {}
    assert await household.report(now + timedelta(minutes=1)) == 0
    await household.trade(now + timedelta(minutes=1))
    assert sent == {"send_readings": 2, "submit_orders": 1}  # held: nothing sent

    # The operator approves; the event releases the reading and the sells.
    await grid.grid.meters.decide_asset(client.address, "pv", approve=True)
    household.handle_event(await first_event(client, "asset_approval"))
    assert household.snapshot(now).asset_holds == {}
    assert await household.report(now + timedelta(minutes=1)) == 1
    stored = await client.readings(t, t + timedelta(minutes=15))
    assert {(r.asset, r.energy_wh) for r in stored} == {("pv", 2_000), ("main", 300)}
    assert await household.trade(now + timedelta(minutes=1)) > 0
    placed = household.to_state()["placed"]
    assert any(o["side"] == Side.SELL for orders in placed.values() for o in orders)
    assert household.to_state()["meter_trust"]["sides"] == {}
