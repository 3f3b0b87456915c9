"""The sensor platform: prices, traded energy, money, and each asset's last reading."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal

from freezegun.api import TickingDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry
from syrupy.assertion import SnapshotAssertion

from custom_components.p2p_energy.const import DOMAIN
from tests.support.grid_server import RunningGrid
from tests.support.home_assistant import (
    START,
    Member,
    consumer_with_statement,
    entity_of,
    snapshot_platform_entities,
    trade_between,
    wait_for,
)


async def test_sensors(
    hass: HomeAssistant, membership: MockConfigEntry, snapshot: SnapshotAssertion
) -> None:
    """Right after setup: nothing traded, no price yet, the assets not yet read."""
    await snapshot_platform_entities(hass, snapshot, membership, "sensor")


async def test_sensors_after_a_trade(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    membership: MockConfigEntry,
    neighbour: MockConfigEntry,
    snapshot: SnapshotAssertion,
) -> None:
    """The seller sold 0.5 kWh at 0.12 (0.04 above feed-in); the buyer saved 0.18 a kWh."""
    await trade_between(hass, grid, clock, membership, neighbour)
    await snapshot_platform_entities(hass, snapshot, membership, "sensor")
    await snapshot_platform_entities(hass, snapshot, neighbour, "sensor")


async def test_grid_costs_include_retail_and_feed_in(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    """The Energy dashboard's cost entities: every settled line, retail included.

    The consumer bought nothing on the market, so its market cost stays 0
    while its grid import cost is what the settlement charged at retail.
    """
    member = await join("Heater")
    entry = await consumer_with_statement(hass, grid, clock, member, auto_pay=False)
    lines = await grid.client(member.keys).line_items(
        START.replace(minute=0), START.replace(hour=12)
    )
    imported = [line for line in lines if line.kind == "shortfall_retail"]
    assert imported  # settled while Home Assistant watched
    household = entry.runtime_data.household
    await wait_for(
        hass, lambda: household.snapshot(START).grid_costs.settled_intervals == len(lines)
    )
    await hass.async_block_till_done()
    cost_micro = sum(line.amount_micro for line in imported)
    energy_wh = sum(line.energy_wh for line in imported)

    def state(key: str) -> str:
        found = hass.states.get(entity_of(hass, entry, "sensor", key))
        assert found is not None
        return found.state

    assert Decimal(state("grid_import_cost")) == Decimal(cost_micro).scaleb(-6)
    assert state("grid_export_compensation") == "0"
    assert state("cost") == "0"  # the market's figure: nothing bought there
    assert Decimal(state("effective_import_price")) == Decimal("0.3")  # the retail price
    assert cost_micro == round(energy_wh * Decimal("0.3") * 1000)


async def test_wallet_address_on_the_device(
    hass: HomeAssistant, membership: MockConfigEntry
) -> None:
    """The address a household funds, where the owner finds it; no operator login to visit."""
    address = membership.data["address"]
    found = hass.states.get(entity_of(hass, membership, "sensor", "wallet_address"))
    assert found is not None
    assert found.state == address
    device = dr.async_get(hass).async_get_device({(DOMAIN, str(membership.unique_id))})
    assert device is not None
    assert device.serial_number == address
    assert device.configuration_url is None
