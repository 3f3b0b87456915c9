"""Setting up a membership: devices and assets, unload and reload, retries, removal.

A grid that is down or another grid answering at the address is a retry,
not an authentication problem; a household suspended while Home Assistant
was off gets a reauth flow (not endless retries); removing an asset retires
it at the grid, removing the membership forgets its stored state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from freezegun.api import TickingDateTimeFactory
from homeassistant.components.sensor import DATA_COMPONENT as SENSOR_COMPONENT
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er

from custom_components.p2p_energy.const import (
    CONF_ADDRESS,
    CONF_GRID_URL,
    CONF_INVITATION,
    DOMAIN,
    SUBENTRY_METER,
    SUBENTRY_SOURCE,
)
from tests.support.grid_server import RunningGrid
from tests.support.home_assistant import (
    MINUTE,
    UNREACHABLE_URL,
    Member,
    add_asset,
    advance,
    energy_sensor,
    entity_of,
    join_grid,
    meter,
    port_of,
    reauth_flows,
    serve_grid,
    setup_member,
    source,
)


async def test_setup_creates_entities_and_registers_assets(
    hass: HomeAssistant,
    grid: RunningGrid,
    join: Callable[..., Awaitable[Member]],
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
) -> None:
    member = await join("Sunny")
    entry = member.entry(grid)
    await setup_member(hass, entry)
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
        hass, entry.entry_id, SUBENTRY_SOURCE, source("Roof PV", "sensor.pv_energy")
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    result = await add_asset(
        hass, entry.entry_id, SUBENTRY_METER, meter("Grid import", "sensor.import_energy")
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
    # Linked by via_device_id, not the via_device tuple (deprecated in 2026.8).
    sensors = hass.data[SENSOR_COMPONENT]
    for entity in er.async_entries_for_config_entry(entity_registry, entry.entry_id):
        if entity.domain == "sensor" and entity.config_subentry_id is not None:
            device_info = sensors.get_entity(entity.entity_id).device_info
            assert device_info is not None
            assert "via_device" not in device_info


async def test_unload_and_reload_keep_state(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    entry = (await join()).entry(grid)
    await setup_member(hass, entry)
    await advance(hass, grid, clock, MINUTE)
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_setup_is_retried_while_the_grid_is_unreachable(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    member = await join("Misdirected")
    entry = member.entry(grid, url=UNREACHABLE_URL)
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert entry.error_reason_translation_key == "setup_failed"
    # What to check, not a connector error's repr (that goes to the debug log).
    assert entry.error_reason_translation_placeholders == {"grid_url": UNREACHABLE_URL}
    # Not a problem with the key: the owner is not asked for an invitation.
    assert reauth_flows(hass) == []
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_another_grid_at_the_address_is_not_retried(
    hass: HomeAssistant,
    grid: RunningGrid,
    tmp_path: Path,
    join: Callable[..., Awaitable[Member]],
) -> None:
    """A refusal that stays until the owner acts is said once, not retried as 'unreachable'."""
    member = await join("Misdirected")
    async with serve_grid(tmp_path / "other", id="other-grid") as other:
        entry = member.entry(grid, url=other.url)
        entry.add_to_hass(hass)
        assert not await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.SETUP_ERROR
        assert entry.error_reason_translation_key == "setup_wrong_grid"
        placeholders = entry.error_reason_translation_placeholders
        assert placeholders["grid_url"] == other.url
        assert placeholders["code"] == "wrong_grid"
        assert "other-grid" in placeholders["message"]
        assert reauth_flows(hass) == []


async def test_suspended_while_home_assistant_was_off(
    hass: HomeAssistant, tmp_path: Path, clock: TickingDateTimeFactory
) -> None:
    async with serve_grid(tmp_path) as first:
        member = await join_grid(first, "Paused")
        await first.grid.operator.set_participant_status(member.keys.address, "suspended")
        invitation = await first.invite()

        # Home Assistant starts: the grid refuses the key, so no retries but a reauth.
        entry = member.entry(first)
        entry.add_to_hass(hass)
        assert not await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.SETUP_ERROR
        assert entry.error_reason_translation_key == "key_rejected"
        (flow,) = reauth_flows(hass)
        assert flow["context"]["entry_id"] == entry.entry_id
        assert flow["step_id"] == "reauth_confirm"

    # The owner enters the new code while the grid is down: the form says so.
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_INVITATION: f"  {invitation}  "}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    placeholders = result["description_placeholders"]
    assert (placeholders["grid_url"], placeholders["address"]) == (
        first.url,
        entry.data[CONF_ADDRESS],
    )

    async with serve_grid(tmp_path, port=port_of(first)) as up:
        result = await hass.config_entries.flow.async_configure(
            flow["flow_id"], {CONF_INVITATION: invitation}
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "reauth_successful"
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        assert (await up.client(member.keys).me()).status == "active"
        assert reauth_flows(hass) == []
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_removing_a_subentry_retires_the_asset(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    member = await join()
    entry = member.entry(grid)
    await setup_member(hass, entry)
    energy_sensor(hass, "sensor.pv_energy", 1.0)
    await add_asset(hass, entry.entry_id, SUBENTRY_SOURCE, source("PV", "sensor.pv_energy", 4000))
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


async def test_removing_the_membership_forgets_its_state(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    entry = (await join("Leaving")).entry(grid)
    await setup_member(hass, entry)
    await advance(hass, grid, clock, timedelta(minutes=1))
    key = f"{DOMAIN}.{entry.entry_id}"
    assert await hass.config_entries.async_unload(entry.entry_id)
    # Unloading keeps the household's state for the next start.
    assert hass_storage[key]["data"]["last_seq"] > 0
    assert entry.data[CONF_GRID_URL] == grid.url

    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert key not in hass_storage
    assert hass.config_entries.async_entries(DOMAIN) == []
