"""Factories and helpers for the Home Assistant integration's tests (tests/integration).

The fixtures live in ``tests/integration/conftest.py``; what a test calls
directly lives here, so that no test module imports from another:

* the test grid (:func:`grid_config`, :data:`GRID_ID`) and the shared clock's
  start (:data:`START`);
* households with **fixed keys** (:func:`household_keys`, :func:`join_grid`,
  :class:`Member`), so unique ids, entity registry entries and diagnostics are
  the same on every run and snapshots can hold them;
* asset subentry data (:func:`source`, :func:`meter`) and meter sensors that
  grow like real ones (:func:`energy_sensor`, :class:`Meters`);
* moving time (:func:`advance`, :func:`walk`), waiting for network I/O
  (:func:`wait_for`), setting up and reaching into a membership
  (:func:`setup_member`, :func:`add_asset`, :func:`entity_of`), calling the
  integration's actions (:func:`call_action`), the repairs flow manager
  (:func:`repairs_manager`), open reauth flows (:func:`reauth_flows`) and a
  form's suggested values (:func:`suggested`);
* a consumer with its first statement (:func:`consumer_with_statement`);
* version-stable snapshots of a platform's entities
  (:func:`snapshot_platform_entities`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol
from aiohttp import web
from freezegun.api import TickingDateTimeFactory
from homeassistant.components.recorder.db_schema import StateAttributes
from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.components.repairs.issue_handler import async_process_repairs_platforms
from homeassistant.components.sensor import DATA_COMPONENT as SENSOR_COMPONENT
from homeassistant.components.sensor import DOMAIN as SENSOR_DOMAIN
from homeassistant.config_entries import SOURCE_REAUTH, SOURCE_RECONFIGURE
from homeassistant.const import EVENT_STATE_CHANGED, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import Event, HomeAssistant, State
from homeassistant.data_entry_flow import FlowManager, FlowResult, FlowResultType
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from syrupy.assertion import SnapshotAssertion

from custom_components.p2p_energy.client.crypto import KeyPair
from custom_components.p2p_energy.config_flow import unique_id_for
from custom_components.p2p_energy.const import (
    CONF_ADDRESS,
    CONF_ENERGY_ENTITY,
    CONF_GRID_ID,
    CONF_GRID_URL,
    CONF_KIND,
    CONF_NAME,
    CONF_RATED_POWER,
    CONF_SECRET_KEY,
    DOMAIN,
    SUBENTRY_METER,
    SUBENTRY_SOURCE,
)
from grid_server.config import GridConfig, LedgerConfig, ZoneConfig
from grid_server.domain.clock import SystemClock
from tests.support.grid_server import RunningGrid, run_grid_server, sqlite_url

# 10:03 UTC on a weekday: the 10:00 interval is running, 10:15 still open.
START = datetime(2026, 11, 27, 10, 3, tzinfo=UTC)
TEN = START.replace(minute=0)
MINUTE = timedelta(minutes=1)
GRID_ID = "test-grid"
# The grid's ledger key: fixed, so its address is the same on every run (and on
# every server that restarts on a test's database).
LEDGER_KEY = KeyPair(hashlib.sha256(b"p2p-test-grid-ledger").digest())
UNREACHABLE_URL = "http://127.0.0.1:9"  # the discard port: nothing answers there


def grid_config() -> GridConfig:
    """The test grid: a root zone and one feeder with a fee and a capacity."""
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


@asynccontextmanager
async def serve_grid(
    directory: Path, *, port: int = 0, **config: Any
) -> AsyncIterator[RunningGrid]:
    """A grid server on the database in ``directory``, reading the shared clock.

    ``config``: changes to :func:`grid_config` (another ``id`` makes another
    grid); ``port``: the port of a grid that restarts where it was.
    """
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    async with run_grid_server(
        sqlite_url(directory),
        clock=SystemClock(),  # type: ignore[arg-type]
        grid=grid_config().model_copy(update=config),
        port=port,
        ledger_key=LEDGER_KEY.seed_hex,
    ) as running:
        yield running


@asynccontextmanager
async def not_a_grid() -> AsyncIterator[str]:
    """A web server on 127.0.0.1 that is not a grid: every path answers 200 with a page.

    What a household reaches with a mistyped address (a router's page, a
    blog): nothing the grid client can read as a grid's answer.
    """

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text="<html><body>Welcome to nginx!</body></html>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def port_of(grid: RunningGrid) -> int:
    """The port a grid listens on, to restart it at the same address."""
    return int(grid.url.rsplit(":", 1)[1])


# --- households -------------------------------------------------------------------


def household_keys(name: str) -> KeyPair:
    """The household's key, derived from its name: the same address on every run."""
    return KeyPair(hashlib.sha256(b"p2p-test-household|" + name.encode()).digest())


@dataclass
class Member:
    """A household that joined a test grid, ready to become a config entry."""

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


async def join_grid(
    grid: RunningGrid, name: str, *, keys: KeyPair | None = None, **invite: Any
) -> Member:
    """Join ``grid`` with an invitation (``invite``: zone, role, expiry) as ``name``."""
    keys = keys or household_keys(name)
    await grid.client(keys).join(await grid.invite(**invite), name)
    return Member(keys, name)


# --- assets and meters ------------------------------------------------------------


def source(
    name: str = "PV",
    entity_id: str = "sensor.pv",
    rated_power_w: int = 8000,
    kind: str = "solar",
) -> dict[str, object]:
    """What the owner enters in the source subentry form."""
    return {
        CONF_NAME: name,
        CONF_KIND: kind,
        CONF_ENERGY_ENTITY: entity_id,
        CONF_RATED_POWER: rated_power_w,
    }


def meter(
    name: str = "House", entity_id: str = "sensor.house", rated_power_w: int | None = None
) -> dict[str, object]:
    """What the owner enters in the consumer meter subentry form."""
    data: dict[str, object] = {CONF_NAME: name, CONF_ENERGY_ENTITY: entity_id}
    if rated_power_w is not None:
        data[CONF_RATED_POWER] = rated_power_w
    return data


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


class Meters:
    """Cumulative energy sensors that grow at a steady power, like real meters."""

    def __init__(self, hass: HomeAssistant, powers_w: dict[str, float]) -> None:
        self.hass = hass
        self.powers_w = powers_w
        self.kwh = dict.fromkeys(powers_w, 10.0)
        for entity_id in powers_w:
            energy_sensor(hass, entity_id, self.kwh[entity_id])

    def run(self, minutes: float) -> None:
        for entity_id, watts in self.powers_w.items():
            self.kwh[entity_id] = round(self.kwh[entity_id] + watts * minutes / 60_000, 6)
            energy_sensor(self.hass, entity_id, self.kwh[entity_id])


# --- time -------------------------------------------------------------------------


async def advance(
    hass: HomeAssistant,
    grid: RunningGrid | None,
    clock: TickingDateTimeFactory,
    delta: timedelta,
    *,
    cycle: bool = True,
) -> None:
    """Move the shared clock forward; Home Assistant's timers fire, the grid runs its cycle.

    ``grid`` None (or ``cycle`` False): time passes while no grid runs its cycle.
    """
    clock.move_to(clock() + delta)
    if cycle and grid is not None:
        await grid.run_cycle()
    # Let loopback I/O in flight arrive first: firing the timers also fires
    # the live stream's heartbeat timeout, which must find the pong that the
    # last heartbeat's ping (sent a fake minute ago, a real millisecond ago) got.
    await asyncio.sleep(0.01)
    async_fire_time_changed(hass)
    await hass.async_block_till_done()


async def walk(
    hass: HomeAssistant,
    grid: RunningGrid | None,
    clock: TickingDateTimeFactory,
    meters: Meters,
    until: datetime,
    step: timedelta = 2 * MINUTE,
) -> None:
    """Let time pass in steps: meters grow, timers fire, the grid (if any) runs its cycle."""
    while clock().replace(tzinfo=UTC) + step <= until:
        meters.run(step.total_seconds() / 60)
        await advance(hass, grid, clock, step)


async def wait_for(hass: HomeAssistant, condition: Callable[[], bool], seconds: float = 5) -> None:
    """Let network I/O (the live stream) happen until ``condition`` holds."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)
            await hass.async_block_till_done()


# --- a membership in Home Assistant ------------------------------------------------


async def setup_member(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Add the membership to Home Assistant and set it up; it must load."""
    if entry.entry_id not in {e.entry_id for e in hass.config_entries.async_entries(DOMAIN)}:
        entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


async def add_asset(
    hass: HomeAssistant, entry_id: str, kind: str, data: dict[str, object]
) -> dict[str, Any]:
    """Fill in the source or meter subentry form with ``data``; the flow's last result."""
    result = await hass.config_entries.subentries.async_init(
        (entry_id, kind), context={"source": "user"}
    )
    assert result["type"] is FlowResultType.FORM, result
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], data)
    await hass.async_block_till_done()  # the membership reloads with the new asset
    return dict(result)


def recorded_attributes(state: State) -> dict[str, Any]:
    """The attributes of ``state`` the recorder would store (unrecorded ones left out)."""
    event = Event(EVENT_STATE_CHANGED, {"entity_id": state.entity_id, "new_state": state})
    recorded: dict[str, Any] = json.loads(
        StateAttributes.shared_attrs_bytes_from_event(event, None)
    )
    return recorded


def entity_of(hass: HomeAssistant, entry: MockConfigEntry, platform: str, key: str) -> str:
    """The entity id of a membership entity, by its description key."""
    entity_id = er.async_get(hass).async_get_entity_id(platform, DOMAIN, f"{entry.unique_id}_{key}")
    assert entity_id is not None, key
    return entity_id


async def call_action(hass: HomeAssistant, service: str, **data: Any) -> Any:
    """Call one of the integration's actions and return its response."""
    return await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=True
    )


async def repairs_manager(hass: HomeAssistant) -> FlowManager[Any]:
    """The repairs integration's flow manager, with this integration's repairs platform."""
    assert await async_setup_component(hass, "repairs", {})
    await async_process_repairs_platforms(hass)
    manager = repairs_flow_manager(hass)
    assert manager is not None
    return manager


def reauth_flows(hass: HomeAssistant) -> list[dict[str, Any]]:
    """The reauthentication flows in progress for this integration."""
    return [
        dict(f)
        for f in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        if f["context"]["source"] == SOURCE_REAUTH
    ]


def suggested(result: Any) -> dict[str, Any]:
    """The values a form shows filled in."""
    schema: vol.Schema = result["data_schema"]
    return {
        str(key): (key.description or {}).get("suggested_value")
        for key in schema.schema
        if (key.description or {}).get("suggested_value") is not None
    }


async def consumer_with_statement(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    member: Member,
    **options: Any,
) -> MockConfigEntry:
    """A household that only consumes: its first statement asks for retail money.

    It trades nothing, so the statement (10:00-11:00) is for the 3 kW it drew
    from 10:03, at the retail price; the clock ends at 11:25.
    """
    entry = member.entry(grid, trading_enabled=False, **options)
    meters = Meters(hass, {"sensor.load": 3000.0})
    await setup_member(hass, entry)
    await add_asset(
        hass, entry.entry_id, SUBENTRY_METER, meter("House", "sensor.load", rated_power_w=9000)
    )
    await walk(hass, grid, clock, meters, START.replace(hour=11, minute=25), step=5 * MINUTE)
    household = entry.runtime_data.household
    await wait_for(hass, lambda: bool(household.unpaid) or bool(household._s.paid))
    return entry


async def producer_with_statement(
    hass: HomeAssistant, grid: RunningGrid, clock: TickingDateTimeFactory, member: Member
) -> tuple[MockConfigEntry, str]:
    """A household that only produces (3 kW of solar, nothing sold): the grid owes it.

    Its first statement (10:00-11:00) pays the feed-in price for what it
    delivered; returns the entry and that statement's id. The clock ends at 11:25.
    """
    entry = member.entry(grid, trading_enabled=False)
    meters = Meters(hass, {"sensor.roof": 3000.0})
    await setup_member(hass, entry)
    await add_asset(
        hass, entry.entry_id, SUBENTRY_SOURCE, source("Roof", "sensor.roof", rated_power_w=8000)
    )
    await walk(hass, grid, clock, meters, START.replace(hour=11, minute=25), step=5 * MINUTE)
    client = grid.client(member.keys)
    statements: list[Any] = []

    async def issued() -> None:
        statements[:] = await client.statements()

    for _ in range(50):
        await issued()
        if statements:
            break
        await asyncio.sleep(0.1)
    (statement,) = statements
    return entry, str(statement.id)


async def trade_between(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    seller: MockConfigEntry,
    buyer: MockConfigEntry,
) -> None:
    """One trade the owners place by hand: 1.2 kWh offered at 0.12, 0.5 kWh bid at 0.25.

    The orders are for 10:15, whose gate closes at 10:10; at 10:11 the grid
    has cleared it at the seller's price (supply is left over) and both
    households have their fills from the live stream.
    """
    await call_action(
        hass,
        "place_order",
        config_entry_id=seller.entry_id,
        side="sell",
        energy=1.2,
        price="0.12",
        order_id="evening-surplus",
    )
    await call_action(
        hass,
        "place_order",
        config_entry_id=buyer.entry_id,
        side="buy",
        energy=0.5,
        price="0.25",
        order_id="boiler",
    )
    await advance(hass, grid, clock, START.replace(minute=11) - clock().replace(tzinfo=UTC))
    seen = (seller.runtime_data.household, buyer.runtime_data.household)
    await wait_for(
        hass,
        lambda: (
            seen[0].snapshot(START).totals.sold_wh == 500
            and seen[1].snapshot(START).totals.bought_wh == 500
            and all(h.snapshot(START).price_next == "0.1200" for h in seen)
        ),
    )


# --- snapshots ----------------------------------------------------------------------

# The entity registry fields a snapshot holds. Not the whole entry: newer Home
# Assistant versions add fields, and one snapshot file serves them all. Nor
# its ``options``: newer versions (2026.2 does) store a default display
# precision there for an energy sensor that suggests none, so a sensor's
# snapshot holds the precision the integration itself suggests instead.
REGISTRY_FIELDS = (
    "entity_id",
    "platform",
    "translation_key",
    "has_entity_name",
    "original_device_class",
    "entity_category",
    "disabled_by",
    "hidden_by",
    "unit_of_measurement",
    "capabilities",
    "supported_features",
)


def _plain(value: Any) -> Any:
    """Read-only mappings and tuples as plain dicts and lists, for a stable repr."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _registry_entry(
    hass: HomeAssistant,
    entity: er.RegistryEntry,
    entry: MockConfigEntry,
    devices: dr.DeviceRegistry,
) -> dict[str, Any]:
    fields = {name: _plain(getattr(entity, name)) for name in REGISTRY_FIELDS}
    if entity.domain == SENSOR_DOMAIN:
        sensor = hass.data[SENSOR_COMPONENT].get_entity(entity.entity_id)
        fields["suggested_display_precision"] = (
            sensor.suggested_display_precision if sensor is not None else None
        )
    unique_id = entity.unique_id
    subentry = entry.subentries.get(entity.config_subentry_id or "")
    if subentry is not None:
        # Subentry ids are random; the subentry's title names it instead.
        unique_id = unique_id.replace(subentry.subentry_id, "{subentry}")
    device = devices.async_get(entity.device_id) if entity.device_id else None
    return {
        **fields,
        "unique_id": unique_id,
        "subentry": subentry.title if subentry else None,
        "device": device.name if device else None,
    }


async def snapshot_platform_entities(
    hass: HomeAssistant,
    snapshot: SnapshotAssertion,
    entry: MockConfigEntry,
    platform: str,
) -> None:
    """Snapshot each of the membership's ``platform`` entities: registry entry and state.

    Like Home Assistant's ``snapshot_platform``, one ``<entity_id>-entry`` and
    one ``<entity_id>-state`` snapshot per entity, in entity id order, but
    holding only chosen registry fields (:data:`REGISTRY_FIELDS`) and the
    state's value and attributes, so that the file is the same on every
    supported Home Assistant version. Entities disabled by default have no
    state (None). An event entity's state is the moment of its last event:
    it must be a time, and is written as ``<timestamp>``.
    """
    registry = er.async_get(hass)
    devices = dr.async_get(hass)
    entities = sorted(
        (e for e in er.async_entries_for_config_entry(registry, entry.entry_id)),
        key=lambda e: e.entity_id,
    )
    entities = [e for e in entities if e.domain == platform]
    assert entities, f"no {platform} entities"
    for entity in entities:
        shown_entry = _registry_entry(hass, entity, entry, devices)
        assert shown_entry == snapshot(name=f"{entity.entity_id}-entry")
        state = hass.states.get(entity.entity_id)
        if entity.disabled_by is not None:
            assert state is None, entity.entity_id
            shown: dict[str, Any] | None = None
        else:
            assert state is not None, entity.entity_id
            value = state.state
            if platform == "event" and value not in (STATE_UNKNOWN, STATE_UNAVAILABLE):
                assert datetime.fromisoformat(value).tzinfo is not None, value
                value = "<timestamp>"
            shown = {"state": value, "attributes": _plain(dict(state.attributes))}
        assert shown == snapshot(name=f"{entity.entity_id}-state")


# --- Home Assistant's deprecation reports --------------------------------------

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
