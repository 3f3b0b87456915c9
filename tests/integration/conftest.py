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
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_socket
from freezegun import freeze_time
from freezegun.api import TickingDateTimeFactory
from homeassistant.config_entries import SOURCE_RECONFIGURE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResult, FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import frame
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
from p2p_energy_client.api import GridClient
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


# How Home Assistant words a report of deprecated or unsafe use by an
# integration (helpers/frame.py report_usage, report_non_thread_safe_operation;
# helpers/deprecation.py for deprecated constants, functions, classes and
# arguments), on 2025.4 as on 2026.2, narrowed to reports that name us.
_REPORTS_NAMING_US = (
    # report_usage, found by the calling frame or given the domain.
    re.compile(rf"^Detected that custom integration '{DOMAIN}' "),
    # report_usage when no integration is on the stack but the text names
    # ours (a device_info with our identifiers, for instance).
    re.compile(rf"^Detected code that .*\b{DOMAIN}\b", re.DOTALL),
    # Deprecated constants, functions, classes and hass arguments, worded
    # "The deprecated function f was called from p2p_energy. ..." since 2025.5
    # and "f was called from p2p_energy, this is a deprecated function ..." before.
    re.compile(rf"^The deprecated .+ was .+ from {DOMAIN}\.(?: |$)", re.DOTALL),
    re.compile(rf"^\S+ was .+ from {DOMAIN}, this is a deprecated ", re.DOTALL),
)
_OUR_LOGGERS = f"custom_components.{DOMAIN}"


class DeprecationReports(logging.Handler):
    """Collects Home Assistant's reports of deprecated use that name our integration.

    Home Assistant reports a custom integration's deprecated or thread-unsafe
    use by logging a warning (an error from the release named in it). Collected
    here, each becomes a test failure, so a deprecation shows up in the release
    that announces it, not in the one that breaks.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(pattern.search(message) for pattern in _REPORTS_NAMING_US) or (
            # helpers.deprecation's deprecated_substitute and get_deprecated
            # log under the name of the module that uses the old name.
            record.name.startswith(_OUR_LOGGERS) and " is deprecated" in message
        ):
            self.found.append(f"{record.name}: {message}")

    def check(self) -> None:
        if self.found:
            reports = "\n".join(f"- {report}" for report in self.found)
            pytest.fail(
                f"Home Assistant reported deprecated use by {DOMAIN}:\n{reports}", pytrace=False
            )


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


async def start_subentry_reconfigure(
    hass: HomeAssistant, entry: MockConfigEntry, subentry_id: str
) -> FlowResult:
    """Start reconfiguring an asset, as the UI does.

    MockConfigEntry.start_subentry_reconfigure_flow took the subentry type
    before the id until Home Assistant 2025.7 and derives it since; this
    works with both.
    """
    return await hass.config_entries.subentries.async_init(
        (entry.entry_id, entry.subentries[subentry_id].subentry_type),
        context={"source": SOURCE_RECONFIGURE, "subentry_id": subentry_id},
    )


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
