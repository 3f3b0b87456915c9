"""A household's own buy and sell orders in one interval and zone never fill against each other."""

from __future__ import annotations

from datetime import timedelta

from p2p_energy_client.protocol import OrderSpec, Side
from tests.support.factories import MAIN, PV
from tests.support.grid_server import RunningGrid


async def test_own_buy_never_fills_against_own_sell(grid: RunningGrid) -> None:
    """The issue's case: Alice's own bid at 0.25 filled against her own ask at 0.20."""
    alice = await grid.member("Alice")
    bob = await grid.member("Bob")
    await alice.set_assets([PV], [MAIN])
    await bob.set_assets([PV], [])
    t = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(minutes=30)
    await alice.submit_orders(
        t,
        [
            OrderSpec("own-buy", Side.BUY, 1000, "0.2500"),
            OrderSpec("own-sell", Side.SELL, 1000, "0.2000"),
        ],
    )
    await bob.submit_orders(t, [OrderSpec("bob-sell", Side.SELL, 400, "0.1500")])
    grid.clock.set(t - timedelta(minutes=5))
    await grid.run_cycle()

    mine = await alice.market(t)
    assert mine.state == "cleared"
    filled = {f.order_id: f.filled_wh for f in mine.fills}
    # Alice buys only what Bob sells; nothing of her own ask fills.
    assert filled == {"own-buy": 400, "own-sell": 0}
    theirs = await bob.market(t)
    assert {f.order_id: f.filled_wh for f in theirs.fills} == {"bob-sell": 400}
    (zone,) = mine.zones
    # The market's volume is the real trade only, no wash volume.
    assert (zone.bought_wh, zone.sold_wh) == (400, 400)
