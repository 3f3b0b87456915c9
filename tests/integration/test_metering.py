"""Meter sensors that misbehave, and a solar forecast entity in different units.

A meter that goes unavailable, disappears, shows garbage or a power unit is
held open (its energy is spread over the gap when it returns), never read
as energy; a meter in Wh is read as Wh. The forecast entity (energy per
hour, in kWh or Wh) steers the orders; one that is gone or not in an
energy unit is ignored in favour of what the household learned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from freezegun.api import TickingDateTimeFactory
from homeassistant.core import HomeAssistant

from custom_components.p2p_energy.const import (
    CONF_FORECAST_ENTITY,
    SUBENTRY_METER,
    SUBENTRY_SOURCE,
)
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
    meter,
    setup_member,
    source,
    walk,
)

ENERGY_WH = {"unit_of_measurement": "Wh", "device_class": "energy", "state_class": "total"}


async def test_meter_gaps_garbage_and_units(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    member = await join("Flaky meter")
    entry = member.entry(grid, trading_enabled=False)
    await setup_member(hass, entry)
    hass.states.async_set("sensor.house", "5000", ENERGY_WH)  # 10:03, in Wh
    await add_asset(hass, entry.entry_id, SUBENTRY_METER, meter("House", "sensor.house"))
    (subentry_id,) = entry.subentries
    last_reading = entity_of(hass, entry, "sensor", f"{subentry_id}_last_reading")
    await advance(hass, grid, clock, 2 * MINUTE)
    hass.states.async_set("sensor.house", "5100", ENERGY_WH)  # 10:05: 100 Wh so far
    at_5100 = hass.states.get("sensor.house").last_updated
    await advance(hass, grid, clock, 5 * MINUTE)

    # 10:10 the meter drops out in every way a sensor can.
    hass.states.async_set("sensor.house", "unavailable", ENERGY_WH)
    await advance(hass, grid, clock, 4 * MINUTE)
    hass.states.async_remove("sensor.house")  # 10:14: the integration behind it reloads
    await advance(hass, grid, clock, 6 * MINUTE)
    hass.states.async_set("sensor.house", "n/a", ENERGY_WH)  # 10:20
    await advance(hass, grid, clock, 3 * MINUTE)
    hass.states.async_set("sensor.house", "0.3", {**ENERGY_WH, "unit_of_measurement": "W"})
    await advance(hass, grid, clock, 5 * MINUTE)
    assert "sensor.house: unit 'W' is not an energy unit" in caplog.text

    # 10:28: the 10:00 interval ended 13 minutes ago, but it waits for the meter
    # (an available meter would have been closed two minutes after the end).
    stored = await grid.client(member.keys).readings(TEN, TEN + timedelta(hours=1))
    assert stored == []
    assert hass.states.get(last_reading).state == "unknown"

    # Back with 500 Wh more than at 10:05: spread over the 23 minutes since,
    # 10 of them in the 10:00 interval.
    hass.states.async_set("sensor.house", "5600", ENERGY_WH)
    at_5600 = hass.states.get("sensor.house").last_updated
    await advance(hass, grid, clock, MINUTE)
    stored = await grid.client(member.keys).readings(TEN, TEN + timedelta(hours=1))
    assert [r.interval for r in stored] == [TEN]
    share = (START.replace(minute=15) - at_5100) / (at_5600 - at_5100)  # about 10/23
    assert abs(stored[0].energy_wh - (100 + 500 * share)) <= 1
    assert hass.states.get(last_reading).state == str(stored[0].energy_wh)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def sell_orders(grid: RunningGrid, member: Member) -> list[tuple[str, int]]:
    """The household's sell orders for the 10:30 interval, at the grid."""
    book = await grid.client(member.keys).orders(START.replace(minute=30))
    return sorted((o.id, o.energy_wh) for o in book.orders if o.side == "sell")


async def test_solar_forecast_entity(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Forecaster")
    forecast = "sensor.pv_forecast_next_hour"
    hass.states.async_set(forecast, "6.0", {"unit_of_measurement": "kWh"})
    entry = member.entry(grid, **{CONF_FORECAST_ENTITY: forecast})
    meters = Meters(hass, {"sensor.pv": 2000.0})
    await setup_member(hass, entry)
    await add_asset(hass, entry.entry_id, SUBENTRY_SOURCE, source())
    # Nothing is offered before the household has learned one interval.
    await walk(hass, grid, clock, meters, START.replace(minute=13))
    assert await sell_orders(grid, member) == []
    # 10:17: the 10:00 interval (2 kW from 10:03) is learned; the forecast
    # of 6 kWh in the next hour says 1500 Wh an interval.
    await walk(hass, grid, clock, meters, START.replace(minute=18))
    assert await sell_orders(grid, member) == [("auto-sell-1", 1500)]
    (reading,) = await grid.client(member.keys).readings(TEN, TEN + timedelta(minutes=15))
    learned = reading.energy_wh
    assert 390 <= learned <= 480  # 2 kW from 10:03, give or take the clock's ticking

    # A forecast in W is not energy: ignored, what was learned counts.
    hass.states.async_set(forecast, "3200", {"unit_of_measurement": "W"})
    await advance(hass, grid, clock, MINUTE)
    assert await sell_orders(grid, member) == [("auto-sell-1", learned)]
    # In Wh it is read as Wh: 3200 Wh an hour, 800 an interval.
    hass.states.async_set(forecast, "3200", {"unit_of_measurement": "Wh"})
    await advance(hass, grid, clock, MINUTE)
    assert await sell_orders(grid, member) == [("auto-sell-1", 800)]
    # Gone: the learned value again; back: the forecast again.
    hass.states.async_remove(forecast)
    await advance(hass, grid, clock, MINUTE)
    assert await sell_orders(grid, member) == [("auto-sell-1", learned)]
    hass.states.async_set(forecast, "2.0", {"unit_of_measurement": "kWh"})
    await advance(hass, grid, clock, MINUTE)
    assert await sell_orders(grid, member) == [("auto-sell-1", 500)]
    assert await hass.config_entries.async_unload(entry.entry_id)
