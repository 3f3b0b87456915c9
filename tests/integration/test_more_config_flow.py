"""Config flow errors the first tests leave out: refusals by the grid, and the asset subentries.

Joining after too many wrong codes, a reauth the grid refuses, a new address
whose grid does not know the key; for sources and meters: a bad name, a
sensor that does not exist, a role that may not declare sources, the grid
down while an asset is added, a membership that is not loaded, and changing
an asset that exists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import voluptuous as vol
from freezegun.api import TickingDateTimeFactory
from homeassistant.config_entries import SOURCE_REAUTH, SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType

from custom_components.p2p_energy.const import (
    CONF_ASSET_ID,
    CONF_ENERGY_ENTITY,
    CONF_GRID_URL,
    CONF_INVITATION,
    CONF_KEY_SOURCE,
    CONF_KIND,
    CONF_NAME,
    CONF_RATED_POWER,
    DOMAIN,
    KEY_GENERATE,
    SUBENTRY_METER,
    SUBENTRY_SOURCE,
)
from grid_server.domain.clock import SystemClock
from tests.support.grid_server import RunningGrid, run_grid_server, sqlite_url

from .conftest import Member, add_asset, advance, energy_sensor, grid_config, setup_member


def suggested(result: Any) -> dict[str, Any]:
    """The values a form shows filled in."""
    schema: vol.Schema = result["data_schema"]
    return {
        str(key): (key.description or {}).get("suggested_value")
        for key in schema.schema
        if (key.description or {}).get("suggested_value") is not None
    }


async def test_join_refused_after_too_many_wrong_codes(
    hass: HomeAssistant, grid: RunningGrid
) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    flow_id = result["flow_id"]

    def form(code: str) -> dict[str, str]:
        return {
            CONF_GRID_URL: grid.url,
            CONF_INVITATION: code,
            CONF_NAME: "Guesser",
            CONF_KEY_SOURCE: KEY_GENERATE,
        }

    # Someone guesses codes: the grid allows 20 failures an hour per address.
    for attempt in range(20):
        result = await hass.config_entries.flow.async_configure(flow_id, form(f"GUESS-{attempt}"))
        assert result["errors"] == {CONF_INVITATION: "invalid_invitation"}
    # Now even a good code is refused, and the form says why.
    result = await hass.config_entries.flow.async_configure(flow_id, form(await grid.invite()))
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {"base": "grid_refused"}
    assert "too many failed invitation codes" in result["description_placeholders"]["reason"]
    assert hass.config_entries.async_entries(DOMAIN) == []


async def test_reauth_refused_while_the_key_is_still_a_member(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Paused")
    entry = member.entry(grid)
    await setup_member(hass, entry)
    await grid.grid.operator.set_participant_status(member.keys.address, "suspended")
    await advance(hass, grid, clock, timedelta(minutes=1))
    (flow,) = [
        f
        for f in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        if f["context"]["source"] == SOURCE_REAUTH
    ]
    # The operator reinstates the household before its owner enters a new code:
    # the grid refuses the join (the key is a member) and the form says so.
    await grid.grid.operator.set_participant_status(member.keys.address, "active")
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_INVITATION: await grid.invite()}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reauth_confirm"
    assert result["errors"] == {"base": "grid_refused"}
    assert "already a member" in result["description_placeholders"]["reason"]
    assert result["description_placeholders"]["grid_url"] == grid.url
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconfigure_to_a_grid_that_does_not_know_the_key(
    hass: HomeAssistant,
    grid: RunningGrid,
    tmp_path: Path,
    join: Callable[..., Awaitable[Member]],
) -> None:
    entry = (await join("Mover")).entry(grid)
    await setup_member(hass, entry)
    result = await entry.start_reconfigure_flow(hass)
    assert suggested(result) == {CONF_GRID_URL: grid.url}
    # Same grid id, but a fresh database: the household is not a member there.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    async with run_grid_server(sqlite_url(fresh), clock=SystemClock(), grid=grid_config()) as new:
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_GRID_URL: new.url}
        )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "key_refused"}
    assert "not a member" in result["description_placeholders"]["reason"]
    assert suggested(result) == {CONF_GRID_URL: new.url}  # what the owner typed stays
    assert entry.data[CONF_GRID_URL] == grid.url
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_asset_form_refuses_a_bad_name_and_a_missing_sensor(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    member = await join()
    entry = member.entry(grid)
    await setup_member(hass, entry)
    result = await add_asset(
        hass,
        entry.entry_id,
        SUBENTRY_METER,
        {CONF_NAME: "  \u202e  ", CONF_ENERGY_ENTITY: "sensor.removed_meter"},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {
        CONF_NAME: "invalid_name",
        CONF_ENERGY_ENTITY: "not_energy_sensor",
    }
    assert entry.subentries == {}
    assert (await grid.client(member.keys).me()).assets.meters == ()
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_consumer_cannot_declare_a_source(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    member = await join("Flat", role="consumer")
    entry = member.entry(grid)
    await setup_member(hass, entry)
    energy_sensor(hass, "sensor.balcony_pv", 1.0)
    energy_sensor(hass, "sensor.flat_import", 1.0)
    result = await add_asset(
        hass,
        entry.entry_id,
        SUBENTRY_SOURCE,
        {
            CONF_NAME: "Balcony PV",
            CONF_KIND: "solar",
            CONF_ENERGY_ENTITY: "sensor.balcony_pv",
            CONF_RATED_POWER: 600,
        },
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "grid_refused"}
    assert "consumer role" in result["description_placeholders"]["reason"]
    assert entry.subentries == {}
    # A consumer meter is fine.
    result = await add_asset(
        hass,
        entry.entry_id,
        SUBENTRY_METER,
        {CONF_NAME: "Flat", CONF_ENERGY_ENTITY: "sensor.flat_import"},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    me = await grid.client(member.keys).me()
    assert (me.assets.sources, [m.name for m in me.assets.meters]) == ((), ["Flat"])
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_asset_added_while_the_grid_is_down(
    hass: HomeAssistant, tmp_path: Path, clock: TickingDateTimeFactory
) -> None:
    # Its own grid (not the fixture's), to stop it while the membership is loaded.
    async with run_grid_server(
        sqlite_url(tmp_path), clock=SystemClock(), grid=grid_config()
    ) as own:
        client = own.client()
        await client.join(await own.invite(), "Offline")
        member = Member(client.keys, "Offline")
        entry = member.entry(own)
        await setup_member(hass, entry)
    energy_sensor(hass, "sensor.heat_pump", 12.0)
    result = await add_asset(
        hass,
        entry.entry_id,
        SUBENTRY_METER,
        {CONF_NAME: "Heat pump", CONF_ENERGY_ENTITY: "sensor.heat_pump"},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    assert entry.subentries == {}  # nothing saved that the grid does not know
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_asset_flow_needs_a_loaded_membership(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    entry = (await join()).entry(grid, url="http://127.0.0.1:9")
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_METER), context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "entry_not_loaded"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_change_a_source(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    member = await join("Upgrader")
    entry = member.entry(grid)
    await setup_member(hass, entry)
    energy_sensor(hass, "sensor.pv_old", 5.0)
    energy_sensor(hass, "sensor.pv_new", 0.0)
    await add_asset(
        hass,
        entry.entry_id,
        SUBENTRY_SOURCE,
        {
            CONF_NAME: "Roof PV",
            CONF_KIND: "solar",
            CONF_ENERGY_ENTITY: "sensor.pv_old",
            CONF_RATED_POWER: 4000,
        },
    )
    ((subentry_id, subentry),) = entry.subentries.items()
    asset_id = subentry.data[CONF_ASSET_ID]

    result = await entry.start_subentry_reconfigure_flow(hass, SUBENTRY_SOURCE, subentry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    # The form shows the source as it is.
    assert suggested(result) == {
        CONF_NAME: "Roof PV",
        CONF_KIND: "solar",
        CONF_ENERGY_ENTITY: "sensor.pv_old",
        CONF_RATED_POWER: 4000,
    }
    # A bad name keeps the form, with what was typed.
    changed = {
        CONF_NAME: "Roof PV (new inverter)",
        CONF_KIND: "solar",
        CONF_ENERGY_ENTITY: "sensor.pv_new",
        CONF_RATED_POWER: 9500.0,
    }
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {**changed, CONF_NAME: ""}
    )
    assert result["errors"] == {CONF_NAME: "invalid_name"}
    assert suggested(result)[CONF_ENERGY_ENTITY] == "sensor.pv_new"
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], changed)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()  # a new sensor: the membership reloads

    # The same asset (same id) with its new name and power, at the grid and here.
    me = await grid.client(member.keys).me()
    assert [(s.id, s.name, s.rated_power_w) for s in me.assets.sources] == [
        (asset_id, "Roof PV (new inverter)", 9500)
    ]
    subentry = entry.subentries[subentry_id]
    assert subentry.title == "Roof PV (new inverter)"
    assert subentry.data[CONF_RATED_POWER] == 9500
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.coordinator.meters == {asset_id: "sensor.pv_new"}
    assert await hass.config_entries.async_unload(entry.entry_id)
