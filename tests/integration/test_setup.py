"""Setting up a membership: entities, asset subentries, options, unload and reload."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from freezegun.api import TickingDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er

from custom_components.p2p_energy.const import (
    CONF_ENERGY_ENTITY,
    CONF_KIND,
    CONF_NAME,
    CONF_RATED_POWER,
    DOMAIN,
    SUBENTRY_METER,
    SUBENTRY_SOURCE,
)
from tests.support.grid_server import RunningGrid

from .conftest import Member, add_asset, advance, energy_sensor, entity_of


async def test_setup_creates_entities_and_registers_assets(
    hass: HomeAssistant,
    grid: RunningGrid,
    join: Callable[..., Awaitable[Member]],
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
) -> None:
    member = await join("Sunny")
    entry = member.entry(grid)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED

    device = device_registry.async_get_device({(DOMAIN, str(entry.unique_id))})
    assert device is not None
    entities = er.async_entries_for_config_entry(entity_registry, entry.entry_id)
    keys = {e.unique_id.removeprefix(f"{entry.unique_id}_") for e in entities}
    assert {
        "price_now",
        "price_next",
        "energy_sold",
        "energy_bought",
        "revenue",
        "cost",
        "savings",
        "amount_due",
        "readings_pending",
        "connected",
        "trading",
        "min_sell_price",
        "max_buy_price",
        "daily_cap",
        "market",
    } <= keys
    assert hass.states.get(entity_of(hass, entry, "binary_sensor", "connected")).state == "on"
    assert hass.states.get(entity_of(hass, entry, "switch", "trading")).state == "on"

    energy_sensor(hass, "sensor.pv_energy", 100.0)
    energy_sensor(hass, "sensor.import_energy", 50.0)
    result = await add_asset(
        hass,
        entry.entry_id,
        SUBENTRY_SOURCE,
        {
            CONF_NAME: "Roof PV",
            CONF_KIND: "solar",
            CONF_ENERGY_ENTITY: "sensor.pv_energy",
            CONF_RATED_POWER: 8000,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    result = await add_asset(
        hass,
        entry.entry_id,
        SUBENTRY_METER,
        {CONF_NAME: "Grid import", CONF_ENERGY_ENTITY: "sensor.import_energy"},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED

    me = await grid.client(member.keys).me()
    assert [(s.name, s.kind, s.rated_power_w) for s in me.assets.sources] == [
        ("Roof PV", "solar", 8000)
    ]
    assert [m.name for m in me.assets.meters] == ["Grid import"]
    # One device per asset, linked to the membership.
    asset_devices = [
        d
        for d in dr.async_entries_for_config_entry(device_registry, entry.entry_id)
        if d.via_device_id == device.id
    ]
    assert sorted(d.name for d in asset_devices) == ["Grid import", "Roof PV"]


async def test_subentry_refuses_non_energy_sensor(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    entry = (await join()).entry(grid)
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    hass.states.async_set("sensor.power", "1200", {"unit_of_measurement": "W"})
    result = await add_asset(
        hass,
        entry.entry_id,
        SUBENTRY_SOURCE,
        {
            CONF_NAME: "PV",
            CONF_KIND: "solar",
            CONF_ENERGY_ENTITY: "sensor.power",
            CONF_RATED_POWER: 5000,
        },
    )
    assert result["errors"] == {CONF_ENERGY_ENTITY: "not_energy_sensor"}


async def test_removing_a_subentry_retires_the_asset(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    member = await join()
    entry = member.entry(grid)
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    energy_sensor(hass, "sensor.pv_energy", 1.0)
    await add_asset(
        hass,
        entry.entry_id,
        SUBENTRY_SOURCE,
        {
            CONF_NAME: "PV",
            CONF_KIND: "solar",
            CONF_ENERGY_ENTITY: "sensor.pv_energy",
            CONF_RATED_POWER: 4000,
        },
    )
    await hass.async_block_till_done()
    (subentry_id,) = entry.subentries
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    assert len(devices) == 2  # the membership and the source
    assert hass.config_entries.async_remove_subentry(entry, subentry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    me = await grid.client(member.keys).me()
    assert me.assets.sources == ()
    # The source's device goes with it.
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    assert [d.name for d in devices] == [entry.title]


async def test_unload_and_reload_keep_state(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    entry = (await join()).entry(grid)
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await advance(hass, grid, clock, timedelta(minutes=1))
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_grid_down_at_startup_retries(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    member = await join()
    entry = member.entry(grid)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        entry, data={**entry.data, "grid_url": "http://127.0.0.1:9"}
    )
    await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
