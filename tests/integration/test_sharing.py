"""Sharing after delivery in Home Assistant: the sensors, the bus event, the event entity.

A grid that shares; two households that trade nothing: one's roof makes
2 kW, the other's house draws 1 kW. After delivery the grid shares the
surplus with the shortfall instead of sending both to the utility, and each
household's sensors show the energy and what it was worth against the
utility's prices.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import pytest
from freezegun.api import TickingDateTimeFactory
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, HomeAssistant
from sqlalchemy import select

from custom_components.p2p_energy.const import EVENT_SHARED, SUBENTRY_METER, SUBENTRY_SOURCE
from grid_server.config import SharingConfig
from grid_server.storage.schema import line_items, participants
from p2p_energy_client.units import parse_price
from tests.support.grid_server import RunningGrid
from tests.support.home_assistant import (
    MINUTE,
    START,
    Member,
    Meters,
    add_asset,
    entity_of,
    meter,
    recorded_attributes,
    serve_grid,
    setup_member,
    source,
    wait_for,
    walk,
)

RETAIL, FEED_IN = parse_price("0.3000"), parse_price("0.0800")


@pytest.fixture
async def grid(tmp_path: Path, clock: TickingDateTimeFactory) -> AsyncIterator[RunningGrid]:
    """The test grid with sharing after delivery on (the default rule)."""
    async with serve_grid(tmp_path, sharing=SharingConfig(enabled=True)) as running:
        yield running


async def _shared_value(grid: RunningGrid, address: str) -> tuple[int, int]:
    """``(Wh, value in 10^-9)`` of the household's shared lines as the grid stored them:
    what a received Wh cost below retail, what a given Wh earned above feed-in."""
    query = (
        select(line_items.c.kind, line_items.c.energy_wh, line_items.c.price_ticks)
        .join(participants, participants.c.id == line_items.c.participant_id)
        .where(participants.c.address == address, line_items.c.kind.like("shared_%"))
    )
    async with grid.grid.db.read() as conn:
        rows = (await conn.execute(query)).all()
    value = sum(
        (RETAIL - r.price_ticks if r.kind == "shared_in" else r.price_ticks - FEED_IN) * r.energy_wh
        for r in rows
    )
    return sum(r.energy_wh for r in rows), value


async def test_neighbours_share_after_delivery(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    producer_member, consumer_member = await join("Sunny"), await join("Neighbour")
    producer = producer_member.entry(grid, trading_enabled=False)
    consumer = consumer_member.entry(grid, trading_enabled=False)
    meters = Meters(hass, {"sensor.pv": 2000.0, "sensor.load": 1000.0})
    await setup_member(hass, producer)
    await add_asset(hass, producer.entry_id, SUBENTRY_SOURCE, source("Roof PV", "sensor.pv"))
    await setup_member(hass, consumer)
    await add_asset(
        hass, consumer.entry_id, SUBENTRY_METER, meter("House", "sensor.load", rated_power_w=9000)
    )
    events: list[Event] = []
    hass.bus.async_listen(EVENT_SHARED, events.append)
    changes: list[Event] = []
    hass.bus.async_listen(EVENT_STATE_CHANGED, changes.append)

    await walk(hass, grid, clock, meters, START.replace(hour=11, minute=25), step=5 * MINUTE)
    households = {e.entry_id: e.runtime_data.household for e in (producer, consumer)}
    await wait_for(
        hass, lambda: all(h.snapshot(START).totals.shared_wh for h in households.values())
    )

    # Every Wh the neighbour received, the roof gave: the same energy on both sides.
    received: Counter[str] = Counter()
    given: Counter[str] = Counter()
    for event in events:
        received[event.data["config_entry_id"]] += event.data["received_wh"]
        given[event.data["config_entry_id"]] += event.data["given_wh"]
    assert received.total() == given.total() > 0
    assert +received == {consumer.entry_id: received.total()}
    assert +given == {producer.entry_id: given.total()}
    for entry in (producer, consumer):
        household = households[entry.entry_id]
        totals = household.snapshot(START).totals
        mine = [e.data for e in events if e.data["config_entry_id"] == entry.entry_id]
        assert totals.shared_wh == sum(d["received_wh"] + d["given_wh"] for d in mine)
        assert totals.shared_value_nano == sum(d["value_nano"] for d in mine) > 0
        # The sensors show the totals, in kWh and in the grid's currency.
        energy = hass.states.get(entity_of(hass, entry, "sensor", "energy_shared"))
        value = hass.states.get(entity_of(hass, entry, "sensor", "sharing_value"))
        assert energy is not None and value is not None
        assert Decimal(energy.state) == Decimal(totals.shared_wh) / 1000
        assert Decimal(value.state) == totals.shared_value_nano * Decimal("1e-9")
        assert value.attributes["unit_of_measurement"] == "EUR"
        # The event entity showed each one too (a statement may have followed since).
        market = entity_of(hass, entry, "event", "market")
        states = [c.data["new_state"] for c in changes if c.data["entity_id"] == market]
        shown = [state.attributes for state in states]
        # The recorder keeps only which event it was; the details are for automations.
        assert {
            json.dumps(recorded_attributes(state), sort_keys=True)
            for state in states
            if state.attributes.get("event_type") == "shared"
        } == {json.dumps({"event_type": "shared", "friendly_name": states[0].name})}
        assert sorted(
            (a["interval"], a["received_wh"], a["given_wh"], a["value_nano"])
            for a in shown
            if a.get("event_type") == "shared"
        ) == sorted((d["interval"], d["received_wh"], d["given_wh"], d["value_nano"]) for d in mine)
    # Exactly what the grid settled, at the prices it put on the lines.
    for member, entry in ((producer_member, producer), (consumer_member, consumer)):
        totals = households[entry.entry_id].snapshot(START).totals
        assert (totals.shared_wh, totals.shared_value_nano) == await _shared_value(
            grid, member.keys.address
        )
