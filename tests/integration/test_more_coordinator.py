"""The routine under pressure: a grid slower than a tick, a top-up, a suspension.

A tick that is still waiting for a slow grid is not run a second time
beside it; money arriving on the ledger shows in the wallet within an
interval without rewriting the stored state; a household suspended while
connected loses its live stream at the next reconnect and its entities go
unavailable at the next poll, while the owner is asked for an invitation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun.api import TickingDateTimeFactory
from homeassistant.config_entries import SOURCE_REAUTH
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.p2p_energy.const import (
    CONF_ENERGY_ENTITY,
    CONF_KIND,
    CONF_NAME,
    CONF_RATED_POWER,
    DOMAIN,
    SUBENTRY_SOURCE,
)
from grid_server.domain.clock import SystemClock
from tests.support.fault_proxy import fault_proxy
from tests.support.grid_server import RunningGrid, run_grid_server, sqlite_url

from .conftest import (
    START,
    Member,
    add_asset,
    advance,
    entity_of,
    grid_config,
    setup_member,
    wait_for,
)
from .test_trading import Meters, walk

MINUTE = timedelta(minutes=1)
TEN = START.replace(minute=0)


async def test_a_slow_grid_gets_one_tick_at_a_time(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Patient")
    async with fault_proxy(grid.url) as proxy:
        entry = member.entry(grid, url=proxy.url)
        meters = Meters(hass, {"sensor.pv": 2000.0})
        await setup_member(hass, entry)
        await add_asset(
            hass,
            entry.entry_id,
            SUBENTRY_SOURCE,
            {
                CONF_NAME: "PV",
                CONF_KIND: "solar",
                CONF_ENERGY_ENTITY: "sensor.pv",
                CONF_RATED_POWER: 8000,
            },
        )
        await walk(hass, grid, clock, meters, START.replace(minute=16))
        # 10:15: the 10:00 interval is measured; the next tick reports it and
        # places the first orders. The grid now takes 0.2 s to answer.
        proxy.delay = 0.2
        proxy.seen.clear()
        meters.run(2)
        await hass.async_block_till_done()  # the meter's new state is observed
        clock.move_to(clock() + MINUTE)
        async_fire_time_changed(hass)
        await asyncio.sleep(0.1)  # the tick is waiting for the grid
        # Another minute passes before it is done: that tick must not start too.
        clock.move_to(clock() + MINUTE)
        async_fire_time_changed(hass)
        await hass.async_block_till_done()

        # One order envelope per interval traded ahead, each sent once: the
        # second tick did not trade beside the first.
        household = entry.runtime_data.household
        orders = proxy.seen["pass POST /api/v1/orders"]
        assert orders == household.options.trade_ahead == len(household._s.placed)
        # The reading is at the grid once, never corrected (a request that
        # outlived the client's timeout is retried with the same bytes).
        stored = await grid.client(member.keys).readings(TEN, TEN + timedelta(minutes=15))
        assert [(r.interval, r.corrections) for r in stored] == [(TEN, 0)]
        assert household.snapshot(dt_util.utcnow()).readings_pending == 0
        proxy.delay = 0
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_top_up_shows_in_the_wallet_within_an_interval(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Prepaid")
    entry = member.entry(grid, trading_enabled=False)
    # Only the minute tick runs: the five-minute poll (a background task) would
    # still be talking to the grid when the test ends.
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, pref_disable_polling=True)
    await setup_member(hass, entry)
    wallet = entity_of(hass, entry, "sensor", "wallet_balance")
    # The grid's cycle stays still, so no market event changes the stored state.
    await advance(hass, grid, clock, MINUTE, cycle=False)
    assert float(hass.states.get(wallet).state) == 0
    await advance(hass, grid, clock, MINUTE, cycle=False)  # any delayed write is done
    key = f"{DOMAIN}.{entry.entry_id}"
    stored = hass_storage[key]

    await grid.grid.payments.mint(member.keys.address, 12_500_000, "prepaid")
    await advance(hass, grid, clock, MINUTE, cycle=False)
    assert float(hass.states.get(wallet).state) == 0  # read once an interval
    await advance(hass, grid, clock, 11 * MINUTE, cycle=False)  # 10:17, a new interval
    assert float(hass.states.get(wallet).state) == 12.5
    # The balance is not part of the stored state: nothing was rewritten for it.
    assert hass_storage[key] is stored
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_suspended_while_connected(
    hass: HomeAssistant,
    tmp_path: Path,
    clock: TickingDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = sqlite_url(tmp_path)
    async with run_grid_server(database, clock=SystemClock(), grid=grid_config()) as first:
        port = int(first.url.rsplit(":", 1)[1])
        client = first.client()
        await client.join(await first.invite(), "Suspended")
        member = Member(client.keys, "Suspended")
        entry = member.entry(first)
        await setup_member(hass, entry)
        sold = entity_of(hass, entry, "sensor", "energy_sold")
        assert hass.states.get(sold).state == "0"
        await first.grid.operator.set_participant_status(member.keys.address, "suspended")

    # The grid restarts; the live stream reconnects and is refused for good.
    async with run_grid_server(
        database, clock=SystemClock(), grid=grid_config(), port=port
    ) as second:
        await wait_for(hass, lambda: "Live stream from the grid stopped" in caplog.text)
        assert "suspended" in caplog.text

        # The next tick finds the key refused: a repair issue and a reauth flow.
        await advance(hass, second, clock, MINUTE)
        issue = ir.async_get(hass).async_get_issue(DOMAIN, f"key_rejected_{entry.entry_id}")
        assert issue is not None
        assert [
            f["context"]["entry_id"]
            for f in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
            if f["context"]["source"] == SOURCE_REAUTH
        ] == [entry.entry_id]
        assert hass.states.get(sold).state == "0"
        # The poll after five minutes gives up: the entities go unavailable.
        await advance(hass, second, clock, 5 * MINUTE)
        assert hass.states.get(sold).state == "unavailable"
        assert await hass.config_entries.async_unload(entry.entry_id)
