"""Outages: the grid goes away, Home Assistant restarts meanwhile, nothing is lost or doubled."""

from __future__ import annotations

import itertools
from datetime import UTC, timedelta
from pathlib import Path

from freezegun.api import TickingDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir

from custom_components.p2p_energy.client.crypto import KeyPair
from custom_components.p2p_energy.const import (
    CONF_ENERGY_ENTITY,
    CONF_KIND,
    CONF_NAME,
    CONF_RATED_POWER,
    DOMAIN,
    SUBENTRY_SOURCE,
)
from grid_server.domain.clock import SystemClock
from p2p_energy_client.grid_client import GridClient
from tests.support.grid_server import run_grid_server, sqlite_url

from .conftest import START, Member, add_asset, advance, grid_config, setup_member
from .test_trading import Meters

STEP = timedelta(minutes=3)


async def test_grid_down_and_home_assistant_restarted(
    hass: HomeAssistant, tmp_path: Path, clock: TickingDateTimeFactory
) -> None:
    database = sqlite_url(tmp_path)
    config = grid_config().model_copy(update={"settlement_window_seconds": 4 * 3600})
    meters = Meters(hass, {"sensor.pv": 3000.0})
    keys = KeyPair.generate()

    async def run(grid, until_minutes: int) -> None:
        while clock().replace(tzinfo=UTC) + STEP <= START + timedelta(minutes=until_minutes):
            meters.run(STEP.total_seconds() / 60)
            await advance(hass, grid, clock, STEP, cycle=grid is not None)

    async with run_grid_server(database, clock=SystemClock(), grid=config) as first:
        port = int(first.url.rsplit(":", 1)[1])
        client = GridClient(first.url, keys)
        await client.join(await first.invite(), "Resilient")
        await client.close()
        entry = Member(keys, "Resilient").entry(first)
        await setup_member(hass, entry)
        await add_asset(
            hass,
            entry.entry_id,
            SUBENTRY_SOURCE,
            {
                CONF_NAME: "PV",
                CONF_KIND: "solar",
                CONF_ENERGY_ENTITY: "sensor.pv",
                CONF_RATED_POWER: 6000,
            },
        )
        await run(first, 40)
        assert entry.runtime_data.household.snapshot(START).readings_pending == 0
        first_kwh = meters.kwh["sensor.pv"]

    # The grid is gone for 1 h 45 min; readings pile up in Home Assistant's storage.
    await run(None, 100)
    assert entry.runtime_data.household.connected is False
    pending = entry.runtime_data.household.snapshot(START).readings_pending
    assert pending >= 3
    issue_id = f"grid_unreachable_{entry.entry_id}"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None

    # Home Assistant restarts while the grid is still down: the membership
    # cannot load, but the readings survive in storage.
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    await run(None, 145)

    async with run_grid_server(database, clock=SystemClock(), grid=config, port=port) as second:
        await hass.config_entries.async_reload(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        await run(second, 160)
        household = entry.runtime_data.household
        assert household.snapshot(START).readings_pending == 0
        assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None

        stored = await second.client(keys).readings(
            START - timedelta(hours=1), START + timedelta(hours=4)
        )
        intervals = [r.interval for r in stored]
        # One reading per interval, no gaps, none twice, nothing corrected.
        assert len(intervals) == len(set(intervals))
        assert intervals == sorted(intervals)
        assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(intervals))
        assert all(r.corrections == 0 for r in stored)
        # Every Wh the meter counted is in the grid, except what is still in
        # the open interval or below one Wh.
        counted_wh = (meters.kwh["sensor.pv"] - 10.0) * 1000
        tracker = household._s.trackers[next(iter(household.assets))]
        unreported = sum(tracker.open_wh.values()) + tracker.carry_wh
        assert abs(sum(r.energy_wh for r in stored) + unreported - counted_wh) < 1e-6
        assert first_kwh < meters.kwh["sensor.pv"]
