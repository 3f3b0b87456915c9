"""The number platform: the owner's price limits and daily spending cap."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from syrupy.assertion import SnapshotAssertion

from custom_components.p2p_energy.const import CONF_DAILY_CAP, CONF_MIN_SELL_PRICE
from tests.support.home_assistant import entity_of, snapshot_platform_entities


async def test_numbers(
    hass: HomeAssistant, membership: MockConfigEntry, snapshot: SnapshotAssertion
) -> None:
    """The limits a new membership starts with: the grid's feed-in and retail prices."""
    await snapshot_platform_entities(hass, snapshot, membership, "number")


async def test_set_limits(hass: HomeAssistant, membership: MockConfigEntry) -> None:
    """A new value is an option of the membership and applies at once, without a reload."""
    household = membership.runtime_data.household
    cap = entity_of(hass, membership, "number", "daily_cap")
    await hass.services.async_call(
        "number", "set_value", {"entity_id": cap, "value": 12.25}, blocking=True
    )
    await hass.async_block_till_done()
    assert hass.states.get(cap).state == "12.25"
    assert household.options.daily_cap_micro == 12_250_000
    assert membership.options[CONF_DAILY_CAP] == 12.25

    sell = entity_of(hass, membership, "number", "min_sell_price")
    await hass.services.async_call(
        "number", "set_value", {"entity_id": sell, "value": 0.1234}, blocking=True
    )
    await hass.async_block_till_done()
    assert hass.states.get(sell).state == "0.1234"
    assert household.options.min_sell_price == "0.1234"
    assert membership.options[CONF_MIN_SELL_PRICE] == 0.1234
    assert membership.state is ConfigEntryState.LOADED
    assert membership.runtime_data.household is household
