"""The binary sensor platform: whether the household is in contact with its grid."""

from __future__ import annotations

from pathlib import Path

from freezegun.api import TickingDateTimeFactory
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from syrupy.assertion import SnapshotAssertion

from custom_components.p2p_energy.const import SUBENTRY_METER
from tests.support.home_assistant import (
    MINUTE,
    TEN,
    add_asset,
    advance,
    energy_sensor,
    entity_of,
    join_grid,
    meter,
    port_of,
    serve_grid,
    setup_member,
    snapshot_platform_entities,
    wait_for,
)


async def test_binary_sensors(
    hass: HomeAssistant, membership: MockConfigEntry, snapshot: SnapshotAssertion
) -> None:
    await snapshot_platform_entities(hass, snapshot, membership, "binary_sensor")


async def test_connected_follows_the_grid(
    hass: HomeAssistant, tmp_path: Path, clock: TickingDateTimeFactory
) -> None:
    """Off while the grid is away (never unavailable: connectivity is what it shows)."""
    async with serve_grid(tmp_path) as first:
        member = await join_grid(first, "Watcher")
        entry = member.entry(first, trading_enabled=False)
        await setup_member(hass, entry)
        energy_sensor(hass, "sensor.house", 50.0)
        await add_asset(hass, entry.entry_id, SUBENTRY_METER, meter("House", "sensor.house"))
        connected = entity_of(hass, entry, "binary_sensor", "connected")
        assert hass.states.get(connected).state == "on"

    # The grid is gone: the next tick cannot reach it, nor the poll five minutes later.
    await advance(hass, None, clock, MINUTE)
    assert hass.states.get(connected).state == "off"
    await advance(hass, None, clock, 5 * MINUTE)
    assert hass.states.get(connected).state == "off"

    # Back at 10:09: at 10:17 the meter's 10:00 interval is closed and sent.
    async with serve_grid(tmp_path, port=port_of(first)) as second:
        for _ in range(9):
            await advance(hass, second, clock, MINUTE)
        assert hass.states.get(connected).state == "on"
        stored = await second.client(member.keys).readings(TEN, TEN + 15 * MINUTE)
        assert [r.interval for r in stored] == [TEN]
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_connected_again_with_nothing_to_report(
    hass: HomeAssistant, tmp_path: Path, clock: TickingDateTimeFactory
) -> None:
    """Nothing to send: the live stream, accepted again, says the grid is back."""
    async with serve_grid(tmp_path) as first:
        entry = (await join_grid(first, "Observer")).entry(first, trading_enabled=False)
        await setup_member(hass, entry)
        connected = entity_of(hass, entry, "binary_sensor", "connected")
    await advance(hass, None, clock, 6 * MINUTE)
    assert hass.states.get(connected).state == "off"
    async with serve_grid(tmp_path, port=port_of(first)):
        try:
            # No tick runs: the stream's reconnect alone turns it on, within seconds.
            await wait_for(hass, lambda: hass.states.get(connected).state == "on", seconds=40)
        finally:
            assert await hass.config_entries.async_unload(entry.entry_id)
