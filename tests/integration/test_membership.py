"""Reauthentication, reconfiguration, options, settings entities, diagnostics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from freezegun.api import TickingDateTimeFactory
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir

from custom_components.p2p_energy.const import (
    CONF_AUTO_PAY,
    CONF_DAILY_CAP,
    CONF_GRID_URL,
    CONF_INVITATION,
    CONF_MAX_BUY_PRICE,
    CONF_MIN_SELL_PRICE,
    CONF_SECRET_KEY,
    CONF_STRATEGY,
    CONF_TRADE_AHEAD,
    CONF_TRADING,
    DOMAIN,
)
from custom_components.p2p_energy.diagnostics import async_get_config_entry_diagnostics
from grid_server.domain.clock import SystemClock
from tests.support.grid_server import RunningGrid, run_grid_server, sqlite_url

from .conftest import Member, advance, entity_of, grid_config, setup_member


async def test_reauth_after_removal(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Evicted")
    entry = member.entry(grid)
    await setup_member(hass, entry)
    await grid.grid.operator.set_participant_status(member.keys.address, "removed")
    await advance(hass, grid, clock, timedelta(minutes=1))

    assert ir.async_get(hass).async_get_issue(DOMAIN, f"key_rejected_{entry.entry_id}")
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    (flow,) = [f for f in flows if f["context"]["source"] == SOURCE_REAUTH]
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_INVITATION: "WRONG"}
    )
    assert result["errors"] == {CONF_INVITATION: "invalid_invitation"}
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_INVITATION: await grid.invite()}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert (await grid.client(member.keys).me()).status == "active"


async def test_reconfigure_to_a_new_address(
    hass: HomeAssistant,
    grid: RunningGrid,
    tmp_path: Path,
    join: Callable[..., Awaitable[Member]],
) -> None:
    entry = (await join("Mover")).entry(grid)
    await setup_member(hass, entry)
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"

    # Another grid answers at the new address: refused.
    other = tmp_path / "other"
    other.mkdir()
    other_config = grid_config().model_copy(update={"id": "other-grid"})
    async with run_grid_server(sqlite_url(other), clock=SystemClock(), grid=other_config) as o:
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_GRID_URL: o.url}
        )
    assert result["errors"] == {"base": "wrong_grid"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_GRID_URL: "http://127.0.0.1:9"}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    # The grid moved: the same database served at a new address.
    async with run_grid_server(
        sqlite_url(tmp_path), clock=SystemClock(), grid=grid_config()
    ) as moved:
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_GRID_URL: moved.url + "/"}
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "reconfigure_successful"
        assert entry.data[CONF_GRID_URL] == moved.url
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        assert entry.runtime_data.household.connected
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_options_flow_and_settings_entities(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    entry = (await join()).entry(grid)
    await setup_member(hass, entry)
    household = entry.runtime_data.household
    result = await hass.config_entries.options.async_init(entry.entry_id)
    options = {
        CONF_TRADING: True,
        CONF_STRATEGY: "cautious",
        CONF_MIN_SELL_PRICE: 0.2,
        CONF_MAX_BUY_PRICE: 0.1,
        CONF_DAILY_CAP: 3.5,
        CONF_TRADE_AHEAD: 8,
        CONF_AUTO_PAY: False,
    }
    result = await hass.config_entries.options.async_configure(result["flow_id"], options)
    assert result["errors"] == {CONF_MAX_BUY_PRICE: "price_order"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**options, CONF_MAX_BUY_PRICE: 0.29}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert household.options.strategy == "cautious"
    assert household.options.min_sell_price == "0.2"
    assert household.options.daily_cap_micro == 3_500_000
    assert household.options.trade_ahead == 8
    assert household.options.auto_pay is False

    switch = entity_of(hass, entry, "switch", "trading")
    await hass.services.async_call("switch", "turn_off", {"entity_id": switch}, blocking=True)
    await hass.async_block_till_done()
    assert hass.states.get(switch).state == "off"
    assert household.options.enabled is False
    await hass.services.async_call("switch", "turn_on", {"entity_id": switch}, blocking=True)
    assert household.options.enabled is True

    cap = entity_of(hass, entry, "number", "daily_cap")
    await hass.services.async_call(
        "number", "set_value", {"entity_id": cap, "value": 12.25}, blocking=True
    )
    await hass.async_block_till_done()
    assert hass.states.get(cap).state == "12.25"
    assert household.options.daily_cap_micro == 12_250_000
    sell = entity_of(hass, entry, "number", "min_sell_price")
    await hass.services.async_call(
        "number", "set_value", {"entity_id": sell, "value": 0.1234}, blocking=True
    )
    await hass.async_block_till_done()
    assert household.options.min_sell_price == "0.1234"
    assert entry.state is ConfigEntryState.LOADED  # options apply without a reload


async def test_diagnostics_redact_secrets(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    member = await join("Private")
    entry = member.entry(grid)
    await setup_member(hass, entry)
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["entry"]["data"][CONF_SECRET_KEY] == "**REDACTED**"
    assert member.keys.seed_hex not in repr(diagnostics)
    assert diagnostics["grid"]["grid"] == "test-grid"
    assert diagnostics["connected"] is True
    assert diagnostics["readings_pending"] == 0
