"""The event platform: trades, statements and payments as they happen."""

from __future__ import annotations

from freezegun.api import TickingDateTimeFactory
from homeassistant.core import Event, HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from syrupy.assertion import SnapshotAssertion

from custom_components.p2p_energy.const import EVENT_TRADE
from tests.support.grid_server import RunningGrid
from tests.support.home_assistant import entity_of, snapshot_platform_entities, trade_between


async def test_events(
    hass: HomeAssistant, membership: MockConfigEntry, snapshot: SnapshotAssertion
) -> None:
    """Nothing has happened yet."""
    await snapshot_platform_entities(hass, snapshot, membership, "event")


async def test_trade_event(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    membership: MockConfigEntry,
    neighbour: MockConfigEntry,
    snapshot: SnapshotAssertion,
) -> None:
    """Each side's market entity shows its own fill, as the bus event for automations does."""
    trades: list[Event] = []
    hass.bus.async_listen(EVENT_TRADE, trades.append)
    await trade_between(hass, grid, clock, membership, neighbour)
    await snapshot_platform_entities(hass, snapshot, membership, "event")
    await snapshot_platform_entities(hass, snapshot, neighbour, "event")
    for entry in (membership, neighbour):
        (bus,) = [e.data for e in trades if e.data["config_entry_id"] == entry.entry_id]
        shown = hass.states.get(entity_of(hass, entry, "event", "market")).attributes
        assert {**shown, "config_entry_id": entry.entry_id} == {
            **bus,
            "event_type": "trade",
            "event_types": [
                "trade",
                "statement",
                "payment",
                "shared",
                "asset_approval",
                "reading_flagged",
                "flag_decision",
            ],
            "friendly_name": shown["friendly_name"],
        }
