"""Fixtures for the Home Assistant integration: a real grid server and real sensors.

Home Assistant and the grid server run in the test's event loop, the server
on 127.0.0.1. Both read the same clock: freezegun's *ticking* clock, which
starts at ``START`` and runs on in real time, so the event loop's timers keep
working. ``advance`` jumps that clock forward, fires Home Assistant's timers
and lets the grid run its interval cycle, so a test walks through delivery
intervals in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_socket
from freezegun import freeze_time
from freezegun.api import TickingDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.p2p_energy.client.crypto import KeyPair
from custom_components.p2p_energy.config_flow import unique_id_for
from custom_components.p2p_energy.const import (
    CONF_ADDRESS,
    CONF_GRID_ID,
    CONF_GRID_URL,
    CONF_NAME,
    CONF_SECRET_KEY,
    DOMAIN,
)
from grid_server.config import GridConfig, LedgerConfig, ZoneConfig
from grid_server.domain.clock import SystemClock
from p2p_energy_client.grid_client import GridClient
from tests.support.grid_server import RunningGrid, run_grid_server, sqlite_url

logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)

# 10:03 UTC on a weekday: the 10:00 interval is running, 10:15 still open.
START = datetime(2026, 11, 27, 10, 3, tzinfo=UTC)
GRID_ID = "test-grid"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load custom_components/p2p_energy in every test."""


@pytest.fixture(autouse=True)
def _loopback(socket_enabled: None) -> None:
    pytest_socket.socket_allow_hosts(["127.0.0.1"])


def grid_config() -> GridConfig:
    # Short settlement window and hourly statements so a test sees a whole
    # cycle (trade, deliver, settle, statement) within a couple of hours.
    return GridConfig(
        id=GRID_ID,
        name="Test grid",
        settlement_window_seconds=900,
        settlement_period_seconds=3600,
        ledger=LedgerConfig(payout_threshold_micro=0),
        zones=[
            ZoneConfig(id="root"),
            ZoneConfig(
                id="feeder-1",
                parent="root",
                fee="0.0100",
                capacity_up_wh=50_000,
                capacity_down_wh=50_000,
            ),
        ],
    )


@pytest.fixture
def clock() -> Iterator[TickingDateTimeFactory]:
    """The shared clock of Home Assistant and the grid, ticking from START."""
    with freeze_time(START, tick=True) as frozen:
        yield frozen


@pytest.fixture
async def grid(tmp_path: Path, clock: TickingDateTimeFactory) -> AsyncIterator[RunningGrid]:
    """A real grid server on SQLite that reads the shared clock."""
    async with run_grid_server(
        sqlite_url(tmp_path),
        clock=SystemClock(),  # type: ignore[arg-type]
        grid=grid_config(),
    ) as running:
        yield running


@dataclass
class Member:
    """A household that joined the test grid, ready to become a config entry."""

    keys: KeyPair
    name: str

    def entry(
        self, grid: RunningGrid, *, url: str | None = None, **options: Any
    ) -> MockConfigEntry:
        return MockConfigEntry(
            domain=DOMAIN,
            title=f"Test grid: {self.name}",
            unique_id=unique_id_for(GRID_ID, self.keys.address),
            data={
                CONF_GRID_URL: url or grid.url,
                CONF_GRID_ID: GRID_ID,
                CONF_ADDRESS: self.keys.address,
                CONF_NAME: self.name,
                CONF_SECRET_KEY: self.keys.seed_hex,
            },
            options=options,
        )


@pytest.fixture
def join(grid: RunningGrid) -> Callable[..., Awaitable[Member]]:
    async def _join(name: str = "Household", **invite: Any) -> Member:
        keys = KeyPair.generate()
        client = GridClient(grid.url, keys)
        try:
            await client.join(await grid.invite(**invite), name)
        finally:
            await client.close()
        return Member(keys, name)

    return _join


def energy_sensor(hass: HomeAssistant, entity_id: str, kwh: float | str) -> None:
    """A cumulative energy sensor as Home Assistant's energy integrations report it."""
    hass.states.async_set(
        entity_id,
        str(kwh),
        {
            "unit_of_measurement": "kWh",
            "device_class": "energy",
            "state_class": "total_increasing",
        },
    )


async def advance(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    delta: timedelta,
    *,
    cycle: bool = True,
) -> None:
    """Move the shared clock forward; Home Assistant's timers fire, the grid runs its cycle."""
    clock.move_to(clock() + delta)
    if cycle:
        await grid.run_cycle()
    async_fire_time_changed(hass)
    await hass.async_block_till_done()


def entity_of(hass: HomeAssistant, entry: MockConfigEntry, platform: str, key: str) -> str:
    """The entity id of a membership entity, by its description key."""
    entity_id = er.async_get(hass).async_get_entity_id(platform, DOMAIN, f"{entry.unique_id}_{key}")
    assert entity_id is not None, key
    return entity_id


async def wait_for(hass: HomeAssistant, condition: Callable[[], bool], seconds: float = 5) -> None:
    """Let network I/O (the live stream) happen until ``condition`` holds."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)
            await hass.async_block_till_done()


async def setup_member(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def add_asset(
    hass: HomeAssistant, entry_id: str, kind: str, data: dict[str, object]
) -> dict[str, object]:
    result = await hass.config_entries.subentries.async_init(
        (entry_id, kind), context={"source": "user"}
    )
    assert result["type"] is FlowResultType.FORM, result
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], data)
    await hass.async_block_till_done()  # the membership reloads with the new asset
    return result
