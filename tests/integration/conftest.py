"""Fixtures for the Home Assistant integration: a real grid server and real sensors.

Home Assistant and the grid server run in the test's event loop, the server
on 127.0.0.1. Both read the same clock: freezegun's *ticking* clock, which
starts at ``START`` and runs on in real time, so the event loop's timers keep
working. ``advance`` jumps that clock forward, fires Home Assistant's timers
and lets the grid run its interval cycle, so a test walks through delivery
intervals in milliseconds.

The helpers tests call directly (factories, ``advance``, ``setup_member``…)
live in :mod:`tests.support.home_assistant`; this module re-exports them for
code that still imports them from here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import homeassistant.components.hassio  # noqa: F401 - see below
import pytest
import pytest_socket
from freezegun import freeze_time
from freezegun.api import TickingDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.helpers import frame
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from syrupy.assertion import SnapshotAssertion

from custom_components.p2p_energy.const import SUBENTRY_METER, SUBENTRY_SOURCE
from tests.support.grid_server import RunningGrid
from tests.support.home_assistant import (
    GRID_ID,
    START,
    DeprecationReports,
    Member,
    add_asset,
    advance,
    energy_sensor,
    entity_of,
    grid_config,
    household_keys,
    join_grid,
    meter,
    serve_grid,
    setup_member,
    source,
    wait_for,
)

__all__ = [
    "GRID_ID",
    "START",
    "Member",
    "add_asset",
    "advance",
    "energy_sensor",
    "entity_of",
    "grid_config",
    "setup_member",
    "wait_for",
]

logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
# The diagnostics download imports the Supervisor integration on first use; its
# data classes (mashumaro) cannot be built while freezegun's clock is active, as
# it is in every test here. Imported above, before any clock is frozen.


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load custom_components/p2p_energy in every test."""


@pytest.fixture(autouse=True)
def _loopback(socket_enabled: None) -> None:
    pytest_socket.socket_allow_hosts(["127.0.0.1"])


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Syrupy with Home Assistant's extension: snapshots in ``snapshots/``, as core keeps them."""
    return snapshot.use_extension(HomeAssistantSnapshotExtension)


@pytest.fixture
def clock() -> Iterator[TickingDateTimeFactory]:
    """The shared clock of Home Assistant and the grid, ticking from START."""
    with freeze_time(START, tick=True) as frozen:
        yield frozen


@pytest.fixture
async def grid(tmp_path: Path, clock: TickingDateTimeFactory) -> AsyncIterator[RunningGrid]:
    """A real grid server on SQLite (in ``tmp_path``) that reads the shared clock."""
    async with serve_grid(tmp_path) as running:
        yield running


@pytest.fixture
def join(grid: RunningGrid) -> Callable[..., Awaitable[Member]]:
    """Join the test grid as a household with a fixed key (one per name and test)."""
    joined: dict[str, int] = {}

    async def _join(name: str = "Household", **invite: Any) -> Member:
        # The same name twice in one test is two households: the key differs.
        joined[name] = joined.get(name, 0) + 1
        seed = name if joined[name] == 1 else f"{name} #{joined[name]}"
        return await join_grid(grid, name, keys=household_keys(seed), **invite)

    return _join


@pytest.fixture
async def membership(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> MockConfigEntry:
    """A loaded membership ("Sunny") with a solar source and a consumer meter.

    Trading is off, so nothing the strategy does moves its entities: they
    show the membership as it is right after setup, the same on every run.
    """
    entry = (await join("Sunny")).entry(grid, trading_enabled=False)
    await setup_member(hass, entry)
    energy_sensor(hass, "sensor.pv_energy", 100.0)
    energy_sensor(hass, "sensor.import_energy", 50.0)
    await add_asset(hass, entry.entry_id, SUBENTRY_SOURCE, source("Roof PV", "sensor.pv_energy"))
    await add_asset(
        hass, entry.entry_id, SUBENTRY_METER, meter("Grid import", "sensor.import_energy")
    )
    return entry


@pytest.fixture
async def neighbour(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> MockConfigEntry:
    """A second loaded membership ("Neighbour") without assets, trading off: a buyer."""
    entry = (await join("Neighbour")).entry(grid, trading_enabled=False)
    await setup_member(hass, entry)
    return entry


@pytest.fixture(autouse=True)
def deprecation_reports(monkeypatch: pytest.MonkeyPatch) -> Iterator[DeprecationReports]:
    """Fail the test when Home Assistant reports deprecated use by our integration."""
    # Home Assistant reports each call site once per process; every test
    # starts with none reported, so each test sees its own reports.
    monkeypatch.setattr(frame, "_REPORTED_INTEGRATIONS", set())
    reports = DeprecationReports()
    root = logging.getLogger()
    root.addHandler(reports)
    try:
        yield reports
    finally:
        root.removeHandler(reports)
    reports.check()
