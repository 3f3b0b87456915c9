"""The switch platform: automatic trading on or off."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from syrupy.assertion import SnapshotAssertion

from custom_components.p2p_energy.const import CONF_TRADING
from tests.support.home_assistant import entity_of, snapshot_platform_entities


async def test_switches(
    hass: HomeAssistant, membership: MockConfigEntry, snapshot: SnapshotAssertion
) -> None:
    await snapshot_platform_entities(hass, snapshot, membership, "switch")


async def test_turn_trading_on_and_off(hass: HomeAssistant, membership: MockConfigEntry) -> None:
    """The switch is an option of the membership and applies at once, without a reload."""
    household = membership.runtime_data.household
    switch = entity_of(hass, membership, "switch", "trading")
    assert hass.states.get(switch).state == "off"  # the fixture's membership trades nothing

    await hass.services.async_call("switch", "turn_on", {"entity_id": switch}, blocking=True)
    await hass.async_block_till_done()
    assert hass.states.get(switch).state == "on"
    assert household.options.enabled is True
    assert membership.options[CONF_TRADING] is True

    await hass.services.async_call("switch", "turn_off", {"entity_id": switch}, blocking=True)
    await hass.async_block_till_done()
    assert hass.states.get(switch).state == "off"
    assert household.options.enabled is False
    assert membership.options[CONF_TRADING] is False
    assert membership.state is ConfigEntryState.LOADED
    assert membership.runtime_data.household is household
