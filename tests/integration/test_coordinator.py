"""The household's routine in Home Assistant: scheduling, the live stream, outages, recovery.

A tick still waiting for a slow grid is not run a second time beside it;
the wallet shows from set-up on, and money arriving on the ledger shows
within an interval without rewriting the stored state; a household
suspended while connected loses its live stream and its entities go
unavailable while the owner is asked for an invitation; a stream whose
handshake failed (HTTP 500) comes back by itself, the grid's data
unavailable meanwhile and the outage logged once each way; through an
outage (with Home Assistant restarted meanwhile) and through a grid that
answers 5xx, is slow or loses answers, no reading is lost or counted twice.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun.api import TickingDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.p2p_energy.const import DOMAIN, SUBENTRY_SOURCE
from tests.support.fault_proxy import fault_proxy
from tests.support.grid_server import RunningGrid
from tests.support.home_assistant import (
    MINUTE,
    START,
    TEN,
    Member,
    Meters,
    add_asset,
    advance,
    entity_of,
    join_grid,
    port_of,
    reauth_flows,
    serve_grid,
    setup_member,
    source,
    wait_for,
    walk,
)

# Readings stay acceptable for longer than the outages last.
LONG_WINDOW = 4 * 3600
STEP = 3 * MINUTE


def assert_nothing_lost_or_doubled(
    entry: MockConfigEntry, meters: Meters, stored: list[Any], entity_id: str = "sensor.pv"
) -> None:
    """One reading per interval, no gaps, none corrected; every Wh counted is at the grid.

    Except what is still in the open interval or below one Wh.
    """
    intervals = [r.interval for r in stored]
    assert len(intervals) == len(set(intervals))
    assert intervals == sorted(intervals)
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(intervals))
    assert all(r.corrections == 0 for r in stored)
    household = entry.runtime_data.household
    tracker = household._s.trackers[next(iter(household.assets))]
    unreported = sum(tracker.open_wh.values()) + tracker.carry_wh
    counted_wh = (meters.kwh[entity_id] - 10.0) * 1000
    assert abs(sum(r.energy_wh for r in stored) + unreported - counted_wh) < 1e-6


# --- scheduling ---------------------------------------------------------------------------


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
        await add_asset(hass, entry.entry_id, SUBENTRY_SOURCE, source())
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
    await setup_member(hass, entry)
    wallet = entity_of(hass, entry, "sensor", "wallet_balance")
    # Shown from set-up on (and after every reload), not a minute later.
    assert float(hass.states.get(wallet).state) == 0
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert float(hass.states.get(wallet).state) == 0
    # The grid's cycle stays still, so no market event changes the stored state.
    await advance(hass, grid, clock, MINUTE, cycle=False)
    await entry.runtime_data.coordinator.async_save()
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


# --- the live stream ----------------------------------------------------------------------


async def test_suspended_while_connected(
    hass: HomeAssistant,
    tmp_path: Path,
    clock: TickingDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serve_grid(tmp_path) as first:
        member = await join_grid(first, "Suspended")
        entry = member.entry(first)
        await setup_member(hass, entry)
        sold = entity_of(hass, entry, "sensor", "energy_sold")
        assert hass.states.get(sold).state == "0"
        await first.grid.operator.set_participant_status(member.keys.address, "suspended")

    # The grid restarts; the live stream reconnects and is refused for good.
    async with serve_grid(tmp_path, port=port_of(first)) as second:
        await wait_for(hass, lambda: "Live stream from the grid stopped" in caplog.text)
        assert "suspended" in caplog.text

        # At once: a repair issue, a reauth flow, and the grid's data unavailable.
        await hass.async_block_till_done()
        issue = ir.async_get(hass).async_get_issue(DOMAIN, f"key_rejected_{entry.entry_id}")
        assert issue is not None
        assert [f["context"]["entry_id"] for f in reauth_flows(hass)] == [entry.entry_id]
        assert hass.states.get(sold).state == "unavailable"
        # Ticks do not bring it back while the key is refused.
        await advance(hass, second, clock, 5 * MINUTE)
        assert hass.states.get(sold).state == "unavailable"
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_stream_comes_back_after_a_failed_handshake(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    member = await join("Streaming")
    async with fault_proxy(grid.url) as proxy:
        entry = member.entry(grid, url=proxy.url, trading_enabled=False)
        await setup_member(hass, entry)
        connected = entity_of(hass, entry, "binary_sensor", "connected")
        sold = entity_of(hass, entry, "sensor", "energy_sold")
        trading = entity_of(hass, entry, "switch", "trading")
        assert hass.states.get(sold).state == "0"

        # The grid crashes: HTTP 500 for every call and for the stream's
        # handshake. The proxy cuts the open stream with the next event (the
        # 10:15 market result at gate closure, 10:10).
        proxy.mode = "error"
        await advance(hass, grid, clock, 8 * MINUTE)
        await wait_for(hass, lambda: proxy.seen["error GET /api/v1/stream"] > 0, seconds=20)
        await advance(hass, grid, clock, MINUTE)
        assert hass.states.get(connected).state == "off"
        assert hass.states.get(sold).state == "unavailable"
        assert hass.states.get(trading).state == "off"  # a local setting: still usable
        await advance(hass, grid, clock, MINUTE)  # still away: nothing logged again

        # Back: the restarted stream says so without waiting for a tick.
        proxy.mode = "pass"
        await wait_for(hass, lambda: hass.states.get(connected).state == "on", seconds=40)
        assert hass.states.get(sold).state == "0"
        assert caplog.text.count("Cannot reach the grid at") == 1
        assert caplog.text.count("is reachable again") == 1
        assert await hass.config_entries.async_unload(entry.entry_id)


# --- outages and recovery -----------------------------------------------------------------


async def test_grid_down_and_home_assistant_restarted(
    hass: HomeAssistant, tmp_path: Path, clock: TickingDateTimeFactory
) -> None:
    meters = Meters(hass, {"sensor.pv": 3000.0})

    async def run(grid: RunningGrid | None, until_minutes: int) -> None:
        await walk(hass, grid, clock, meters, START + timedelta(minutes=until_minutes), STEP)

    async with serve_grid(tmp_path, settlement_window_seconds=LONG_WINDOW) as first:
        member = await join_grid(first, "Resilient")
        entry = member.entry(first)
        await setup_member(hass, entry)
        await add_asset(hass, entry.entry_id, SUBENTRY_SOURCE, source(rated_power_w=6000))
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

    async with serve_grid(
        tmp_path, port=port_of(first), settlement_window_seconds=LONG_WINDOW
    ) as second:
        await hass.config_entries.async_reload(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        await run(second, 160)
        household = entry.runtime_data.household
        assert household.snapshot(START).readings_pending == 0
        assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None

        stored = await second.client(member.keys).readings(
            START - timedelta(hours=1), START + timedelta(hours=4)
        )
        assert_nothing_lost_or_doubled(entry, meters, stored)
        assert first_kwh < meters.kwh["sensor.pv"]


async def test_faulty_grid_loses_and_doubles_nothing(
    hass: HomeAssistant, tmp_path: Path, clock: TickingDateTimeFactory
) -> None:
    async with (
        serve_grid(tmp_path, settlement_window_seconds=LONG_WINDOW) as grid,
        fault_proxy(grid.url) as proxy,
    ):
        member = await join_grid(grid, "Patient")
        meters = Meters(hass, {"sensor.pv": 2500.0})
        entry = member.entry(grid, url=proxy.url)
        await setup_member(hass, entry)
        await add_asset(hass, entry.entry_id, SUBENTRY_SOURCE, source(rated_power_w=5000))
        household = entry.runtime_data.household
        await walk(hass, grid, clock, meters, START + timedelta(minutes=30), STEP)

        # The grid answers 503, then 500, then applies requests but loses the answers.
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
        assert_nothing_lost_or_doubled(entry, meters, stored)
        assert await hass.config_entries.async_unload(entry.entry_id)
