"""Starting a membership the grid does not accept, and removing one.

A household suspended while Home Assistant was off must get a reauth flow
(not endless retries); another grid answering at the address is a retry,
not an authentication problem; removing the membership forgets its stored
state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from freezegun.api import TickingDateTimeFactory
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType

from custom_components.p2p_energy.const import CONF_ADDRESS, CONF_GRID_URL, CONF_INVITATION, DOMAIN
from grid_server.domain.clock import SystemClock
from tests.support.grid_server import RunningGrid, run_grid_server, sqlite_url

from .conftest import Member, advance, grid_config, setup_member


def reauth_flows(hass: HomeAssistant) -> list[dict[str, Any]]:
    return [
        dict(f)
        for f in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        if f["context"]["source"] == SOURCE_REAUTH
    ]


async def test_suspended_while_home_assistant_was_off(
    hass: HomeAssistant, tmp_path: Path, clock: TickingDateTimeFactory
) -> None:
    database = sqlite_url(tmp_path)
    async with run_grid_server(database, clock=SystemClock(), grid=grid_config()) as first:
        port = int(first.url.rsplit(":", 1)[1])
        client = first.client()
        await client.join(await first.invite(), "Paused")
        member = Member(client.keys, "Paused")
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

    async with run_grid_server(database, clock=SystemClock(), grid=grid_config(), port=port) as up:
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


async def test_another_grid_at_the_address_is_retried(
    hass: HomeAssistant,
    grid: RunningGrid,
    tmp_path: Path,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Misdirected")
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other_config = grid_config().model_copy(update={"id": "other-grid"})
    async with run_grid_server(sqlite_url(other_dir), clock=SystemClock(), grid=other_config) as o:
        entry = member.entry(grid, url=o.url)
        entry.add_to_hass(hass)
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.SETUP_RETRY
        assert entry.error_reason_translation_key == "setup_failed"
        placeholders = entry.error_reason_translation_placeholders
        assert placeholders["grid_url"] == o.url
        assert "other-grid" in placeholders["error"]
        # Not a problem with the key: the owner is not asked for an invitation.
        assert reauth_flows(hass) == []
        assert await hass.config_entries.async_unload(entry.entry_id)


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
