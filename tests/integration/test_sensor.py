"""The sensor platform: prices, traded energy, money, and each asset's last reading."""

from __future__ import annotations

from freezegun.api import TickingDateTimeFactory
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from syrupy.assertion import SnapshotAssertion

from tests.support.grid_server import RunningGrid
from tests.support.home_assistant import snapshot_platform_entities, trade_between


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
