"""Actions for automations, against a real grid."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from freezegun.api import TickingDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.p2p_energy.const import (
    CONF_ENERGY_ENTITY,
    CONF_KIND,
    CONF_NAME,
    CONF_RATED_POWER,
    DOMAIN,
    SUBENTRY_SOURCE,
)
from tests.support.grid_server import RunningGrid

from .conftest import START, Member, add_asset, advance, energy_sensor, setup_member


async def call(hass: HomeAssistant, service: str, **data: object) -> dict:
    return await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=True
    )


@pytest.fixture
async def producer(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> MockConfigEntry:
    entry = (await join("Producer")).entry(grid, trading_enabled=False)
    await setup_member(hass, entry)
    energy_sensor(hass, "sensor.pv", 1.0)
    await add_asset(
        hass,
        entry.entry_id,
        SUBENTRY_SOURCE,
        {
            CONF_NAME: "PV",
            CONF_KIND: "solar",
            CONF_ENERGY_ENTITY: "sensor.pv",
            CONF_RATED_POWER: 8000,
        },
    )
    return entry


async def test_place_cancel_and_market(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    producer: MockConfigEntry,
    join: Callable[..., Awaitable[Member]],
) -> None:
    consumer = (await join("Consumer")).entry(grid, trading_enabled=False)
    await setup_member(hass, consumer)

    sell = await call(
        hass,
        "place_order",
        config_entry_id=producer.entry_id,
        side="sell",
        energy=1.2,
        price=0.12,
        order_id="evening-surplus",
    )
    # Default: the next interval still open (10:03 now, gate 5 min ahead).
    assert sell["interval"] == "2026-11-27T10:15:00Z"
    assert sell["orders"] == [
        {
            "id": "evening-surplus",
            "side": "sell",
            "energy_wh": 1200,
            "price": "0.12",
            "zone": "root",
        },
    ]
    buy = await call(
        hass,
        "place_order",
        config_entry_id=consumer.entry_id,
        side="buy",
        energy=0.5,
        price="0.25",
    )
    assert buy["order_id"].startswith("manual-")
    cancel = await call(
        hass,
        "place_order",
        config_entry_id=consumer.entry_id,
        side="buy",
        energy=3,
        price="0.29",
        order_id="dishwasher",
    )
    assert len(cancel["orders"]) == 2
    left = await call(
        hass, "cancel_order", config_entry_id=consumer.entry_id, order_id="dishwasher"
    )
    assert [o["id"] for o in left["orders"]] == [buy["order_id"]]

    await advance(hass, grid, clock, timedelta(minutes=8))  # 10:11: gate closed, cleared
    market = await call(
        hass, "get_market", config_entry_id=consumer.entry_id, interval=START.replace(minute=15)
    )
    assert market["state"] == "cleared"
    assert market["zone"] == "root"
    assert market["price"] == "0.1200"  # the seller's price: supply left over
    assert [(f["order_id"], f["filled_wh"]) for f in market["fills"]] == [(buy["order_id"], 500)]


async def test_validation_errors_name_the_problem(
    hass: HomeAssistant, producer: MockConfigEntry
) -> None:
    with pytest.raises(ServiceValidationError) as err:
        await call(hass, "place_order", config_entry_id="nope", side="buy", energy=1, price=0.1)
    assert err.value.translation_key == "entry_not_found"
    with pytest.raises(ServiceValidationError) as err:
        await call(
            hass,
            "place_order",
            config_entry_id=producer.entry_id,
            side="sell",
            energy=1,
            price=0.1,
            interval=START.replace(minute=20),
        )
    assert err.value.translation_key == "invalid_interval"
    with pytest.raises(ServiceValidationError) as err:
        await call(
            hass,
            "place_order",
            config_entry_id=producer.entry_id,
            side="sell",
            energy=1,
            price="0.1234567",
        )
    assert err.value.translation_key == "invalid_price"
    with pytest.raises(ServiceValidationError) as err:
        await call(
            hass,
            "place_order",
            config_entry_id=producer.entry_id,
            side="sell",
            energy=0.0001,
            price="0.1",
        )
    assert err.value.translation_key == "invalid_energy"
    # The grid's own refusal is passed on with its reason: beyond rated power.
    with pytest.raises(ServiceValidationError) as err:
        await call(
            hass,
            "place_order",
            config_entry_id=producer.entry_id,
            side="sell",
            energy=50,
            price="0.1",
        )
    assert err.value.translation_key == "grid_rejected"
    assert "energy" in err.value.translation_placeholders["message"]
    # Gate closure for the current interval has passed.
    with pytest.raises(ServiceValidationError) as err:
        await call(
            hass,
            "place_order",
            config_entry_id=producer.entry_id,
            side="sell",
            energy=1,
            price="0.1",
            interval=START.replace(minute=0),
        )
    assert err.value.translation_key == "grid_rejected"


async def test_get_statement_without_any(hass: HomeAssistant, producer: MockConfigEntry) -> None:
    assert await call(hass, "get_statement", config_entry_id=producer.entry_id) == {
        "statement": None
    }
