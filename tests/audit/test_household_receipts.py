"""The household routine keeps receipts of its readings and orders and verifies them."""

from __future__ import annotations

from sqlalchemy import text

from p2p_energy_client.household import Asset, Household, TradingOptions
from p2p_energy_client.strategy import StrategyKind
from tests.support.factories import MAIN, PV
from tests.support.grid_server import RunningGrid


async def test_receipts_of_readings_verify_and_a_lie_is_noticed(grid: RunningGrid) -> None:
    client = await grid.member("Alice")
    await client.set_assets([PV], [MAIN])
    info = await client.grid_info()
    household = Household(
        client,
        info,
        zone="root",
        assets=[Asset("pv", "source", 4_000), Asset("main", "meter", 8_000)],
        options=TradingOptions(enabled=False, strategy=StrategyKind.RESERVE),
    )
    now = grid.clock.now()
    for step in range(3):
        household.observe("pv", 1_000.0 * step, now)
        household.observe("main", 400.0 * step, now)
        now = grid.clock.advance(minutes=15)
        await household.report(now)
    assert household.snapshot(now).receipts_pending >= 2
    assert await household.check_receipts() == []  # the intervals are not closed yet
    grid.clock.advance(minutes=15)
    await grid.run_cycle()
    verified = await household.check_receipts()
    assert verified and all(v.envelope_type == "readings" for v in verified)
    snapshot = household.snapshot(grid.clock.now())
    assert snapshot.last_receipt == verified[-1]
    assert (snapshot.receipts_pending, snapshot.receipt_failures) == (0, 0)

    # Restarted from its stored state, it goes on; then the grid changes what it logged.
    again = Household(
        client,
        info,
        zone="root",
        assets=[Asset("pv", "source", 4_000), Asset("main", "meter", 8_000)],
        options=TradingOptions(enabled=False),
        state=household.to_state(),
    )
    assert again.snapshot(grid.clock.now()).last_receipt == verified[-1]
    now = grid.clock.now()
    again.observe("pv", 9_000.0, now)
    now = grid.clock.advance(minutes=15)
    await again.report(now)
    sent = client.recent_envelopes[-1]
    async with grid.grid.db.write() as conn:
        if grid.grid.db.is_postgres:
            await conn.execute(text("DROP TRIGGER log_entries_append_only ON log_entries"))
        else:
            await conn.execute(text("DROP TRIGGER log_entries_no_update"))
        await conn.execute(
            text("UPDATE log_entries SET body = :b WHERE kind = 'envelope' AND ref = :r"),
            {
                "b": sent.wire.replace(b'"energy_wh":', b'"energy_wh":1', 1),
                "r": f"{client.address}/{sent.seq}",
            },
        )
    grid.clock.advance(minutes=15)
    await grid.run_cycle()
    assert await again.check_receipts() == []
    failures = again.receipts.failures
    assert list(failures) == [sent.seq]
    assert "different bytes" in failures[sent.seq]
    assert again.snapshot(grid.clock.now()).receipt_failures == 1
