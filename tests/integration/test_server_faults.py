"""The grid answers 5xx, is slow, or loses answers: nothing is lost, nothing doubled."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

from freezegun.api import TickingDateTimeFactory
from homeassistant.core import HomeAssistant

from custom_components.p2p_energy.client.crypto import KeyPair
from custom_components.p2p_energy.const import (
    CONF_ENERGY_ENTITY,
    CONF_KIND,
    CONF_NAME,
    CONF_RATED_POWER,
    SUBENTRY_SOURCE,
)
from grid_server.domain.clock import SystemClock
from tests.support.fault_proxy import FaultProxy, fault_proxy
from tests.support.grid_server import RunningGrid, run_grid_server, sqlite_url

from .conftest import START, Member, add_asset, grid_config, setup_member
from .test_trading import Meters, walk

STEP = timedelta(minutes=3)


async def test_faulty_grid_loses_and_doubles_nothing(
    hass: HomeAssistant, tmp_path: Path, clock: TickingDateTimeFactory
) -> None:
    # Readings stay acceptable for longer than the faults last.
    config = grid_config().model_copy(update={"settlement_window_seconds": 4 * 3600})
    async with (
        run_grid_server(sqlite_url(tmp_path), clock=SystemClock(), grid=config) as grid,
        fault_proxy(grid.url) as proxy,
    ):
        await faulty_run(hass, grid, proxy, clock)


async def faulty_run(
    hass: HomeAssistant, grid: RunningGrid, proxy: FaultProxy, clock: TickingDateTimeFactory
) -> None:
    keys = KeyPair.generate()
    await grid.client(keys).join(await grid.invite(), "Patient")
    member = Member(keys, "Patient")
    meters = Meters(hass, {"sensor.pv": 2500.0})
    entry = member.entry(grid, url=proxy.url)
    await setup_member(hass, entry)
    await add_asset(
        hass,
        entry.entry_id,
        SUBENTRY_SOURCE,
        {
            CONF_NAME: "PV",
            CONF_KIND: "solar",
            CONF_ENERGY_ENTITY: "sensor.pv",
            CONF_RATED_POWER: 5000,
        },
    )
    household = entry.runtime_data.household
    await walk(hass, grid, clock, meters, START + timedelta(minutes=30), STEP)

    for mode, minutes in (("unavailable", 45), ("error", 60), ("lose_answer", 75)):
        proxy.mode = mode
        await walk(hass, grid, clock, meters, START + timedelta(minutes=minutes), STEP)
        assert household.connected is False
        assert household.snapshot(START).readings_pending > 0
    assert proxy.seen["lose_answer POST /api/v1/readings"] > 0  # the grid got them

    proxy.mode, proxy.delay = "pass", 0.2  # back, but slow
    await walk(hass, grid, clock, meters, START + timedelta(minutes=95), STEP)
    assert household.connected is True
    assert household.snapshot(START).readings_pending == 0

    stored = await grid.client(member.keys).readings(
        START - timedelta(hours=1), START + timedelta(hours=4)
    )
    intervals = [r.interval for r in stored]
    assert len(intervals) == len(set(intervals))
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(intervals))
    assert all(r.corrections == 0 for r in stored)
    tracker = household._s.trackers[next(iter(household.assets))]
    unreported = sum(tracker.open_wh.values()) + tracker.carry_wh
    counted = (meters.kwh["sensor.pv"] - 10.0) * 1000
    assert abs(sum(r.energy_wh for r in stored) + unreported - counted) < 1e-6
    assert await hass.config_entries.async_unload(entry.entry_id)
