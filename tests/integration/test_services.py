"""Actions for automations against a real grid: trade, look at the market, read and pay.

Every refusal names its reason (a translation key, and the grid's own words
where the grid refused); a grid that is down is not the caller's mistake.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from freezegun.api import TickingDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.p2p_energy.client.units import format_money_micro
from tests.support.grid_server import RunningGrid
from tests.support.home_assistant import (
    START,
    Member,
    advance,
    call_action,
    consumer_with_statement,
    household_keys,
    join_grid,
    producer_with_statement,
    serve_grid,
    setup_member,
)


async def test_place_cancel_and_market(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    membership: MockConfigEntry,
    neighbour: MockConfigEntry,
) -> None:
    producer, consumer = membership, neighbour
    sell = await call_action(
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
    buy = await call_action(
        hass,
        "place_order",
        config_entry_id=consumer.entry_id,
        side="buy",
        energy=0.5,
        price="0.25",
    )
    assert buy["order_id"].startswith("manual-")
    cancel = await call_action(
        hass,
        "place_order",
        config_entry_id=consumer.entry_id,
        side="buy",
        energy=3,
        price="0.29",
        order_id="dishwasher",
    )
    assert len(cancel["orders"]) == 2
    left = await call_action(
        hass, "cancel_order", config_entry_id=consumer.entry_id, order_id="dishwasher"
    )
    assert [o["id"] for o in left["orders"]] == [buy["order_id"]]

    await advance(hass, grid, clock, START.replace(minute=11) - START)  # gate closed, cleared
    market = await call_action(
        hass, "get_market", config_entry_id=consumer.entry_id, interval=START.replace(minute=15)
    )
    assert market["state"] == "cleared"
    assert market["zone"] == "root"
    assert market["price"] == "0.1200"  # the seller's price: supply left over
    assert [(f["order_id"], f["filled_wh"]) for f in market["fills"]] == [(buy["order_id"], 500)]


ORDER = {"side": "sell", "energy": 1, "price": "0.1"}


@pytest.mark.parametrize(
    ("change", "translation_key", "said"),
    [
        ({"config_entry_id": "nope"}, "entry_not_found", "nope"),
        ({"interval": START.replace(minute=20)}, "invalid_interval", "10:20"),
        ({"price": "0.1234567"}, "invalid_price", "0.1234567"),
        ({"energy": 0.0001}, "invalid_energy", None),
        # The grid's own refusals are passed on with its reason.
        ({"energy": 50}, "grid_rejected", "energy"),  # beyond the source's rated power
        ({"interval": START.replace(minute=0)}, "grid_rejected", "gate"),  # its gate has closed
        ({"order_id": "my boiler!"}, "grid_rejected", "order_id"),  # not a protocol id
    ],
    ids=[
        "unknown-entry",
        "not-an-interval-start",
        "price-too-precise",
        "energy-below-one-wh",
        "beyond-rated-power",
        "gate-closed",
        "invalid-order-id",
    ],
)
async def test_place_order_refused(
    hass: HomeAssistant,
    grid: RunningGrid,
    membership: MockConfigEntry,
    change: dict[str, Any],
    translation_key: str,
    said: str | None,
) -> None:
    with pytest.raises(ServiceValidationError) as err:
        await call_action(
            hass, "place_order", **{"config_entry_id": membership.entry_id, **ORDER, **change}
        )
    assert err.value.translation_key == translation_key
    placeholders = err.value.translation_placeholders or {}
    if said is not None:
        assert any(said in text for text in placeholders.values()), placeholders
    # Nothing reached the grid.
    client = grid.client(membership.runtime_data.client.keys)
    for interval in (START.replace(minute=0), START.replace(minute=15)):
        assert (await client.orders(interval)).orders == ()


async def test_intervals_in_local_time(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    await hass.config.async_set_time_zone("Europe/Berlin")
    member = await join("Automations")
    entry = member.entry(grid, trading_enabled=False)
    await setup_member(hass, entry)

    # An automation writes the interval as a wall-clock time: 11:15 in Berlin.
    placed = await call_action(
        hass,
        "place_order",
        config_entry_id=entry.entry_id,
        side="buy",
        energy=0.8,
        price="0.2",
        order_id="boiler",
        interval="2026-11-27 11:15:00",
    )
    assert placed["interval"] == "2026-11-27T10:15:00Z"
    book = await grid.client(member.keys).orders(START.replace(minute=15))
    assert [(o.id, o.energy_wh) for o in book.orders] == [("boiler", 800)]
    market = await call_action(
        hass, "get_market", config_entry_id=entry.entry_id, interval="2026-11-27 11:15:00"
    )
    assert (market["interval"], market["state"]) == ("2026-11-27T10:15:00Z", "open")

    # Cancelling in the interval that is being delivered: its gate has closed.
    with pytest.raises(ServiceValidationError) as err:
        await call_action(
            hass,
            "cancel_order",
            config_entry_id=entry.entry_id,
            order_id="boiler",
            interval="2026-11-27 11:00:00",
        )
    assert err.value.translation_key == "grid_rejected"
    assert "gate" in (err.value.translation_placeholders or {})["message"]
    book = await grid.client(member.keys).orders(START.replace(minute=15))
    assert [o.id for o in book.orders] == ["boiler"]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_get_statement_without_any(hass: HomeAssistant, membership: MockConfigEntry) -> None:
    assert await call_action(hass, "get_statement", config_entry_id=membership.entry_id) == {
        "statement": None
    }


@pytest.mark.parametrize("service", ["get_statement", "pay_statement"])
async def test_unknown_statement_refused(
    hass: HomeAssistant, membership: MockConfigEntry, service: str
) -> None:
    """A statement id the grid does not know: the grid's refusal, as a validation error."""
    with pytest.raises(ServiceValidationError) as err:
        await call_action(
            hass, service, config_entry_id=membership.entry_id, statement_id="st-nope"
        )
    assert err.value.translation_key == "grid_rejected"
    assert (err.value.translation_placeholders or {})["message"] == "no such statement"


async def test_statement_without_money(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Empty wallet")  # nothing on the ledger
    entry = await consumer_with_statement(hass, grid, clock, member, daily_cap=0.01)
    (statement,) = entry.runtime_data.household.unpaid.values()

    # get_statement without an id: the latest statement, as the grid has it.
    latest = (await call_action(hass, "get_statement", config_entry_id=entry.entry_id))["statement"]
    assert latest["id"] == statement.id
    assert latest["amount_due_micro"] == statement.amount_due_micro
    assert latest["status"] == "issued"
    # Paying above the cap on purpose fails for want of money, and says why:
    # not the caller's mistake, so not a validation error.
    with pytest.raises(HomeAssistantError) as err:
        await call_action(
            hass,
            "pay_statement",
            config_entry_id=entry.entry_id,
            statement_id=statement.id,
            allow_over_cap=True,
        )
    assert not isinstance(err.value, ServiceValidationError)
    assert err.value.translation_key == "payment_failed"
    assert "balance is 0" in (err.value.translation_placeholders or {})["message"]
    assert statement.id in entry.runtime_data.household.unpaid
    assert (await grid.client(member.keys).statement(statement.id)).status == "issued"


async def test_paying_a_statement_the_grid_owes_is_refused(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    """A producer's statement is paid by the grid: a validation error, not a traceback."""
    entry, statement_id = await producer_with_statement(hass, grid, clock, await join("Roof"))
    statement = await grid.client(household_keys("Roof")).statement(statement_id)
    assert statement.amount_due_micro < 0
    with pytest.raises(ServiceValidationError) as err:
        await call_action(
            hass, "pay_statement", config_entry_id=entry.entry_id, statement_id=statement_id
        )
    assert err.value.translation_key == "statement_owed_to_you"
    assert err.value.translation_placeholders == {
        "statement_id": statement_id,
        "amount": f"{format_money_micro(-statement.amount_due_micro)} EUR",
    }
    assert entry.runtime_data.household.paid_tx(statement_id) is None


@pytest.mark.parametrize(
    ("service", "data"),
    [
        ("place_order", {"side": "sell", "energy": 1, "price": "0.1"}),
        ("cancel_order", {"order_id": "x"}),
        ("get_market", {}),
        ("get_statement", {}),
        ("get_statement", {"statement_id": "st-1"}),
        ("pay_statement", {"statement_id": "st-1"}),
    ],
    ids=[
        "place_order",
        "cancel_order",
        "get_market",
        "get_statement-latest",
        "get_statement-by-id",
        "pay_statement",
    ],
)
async def test_action_while_the_grid_is_down(
    hass: HomeAssistant,
    tmp_path: Path,
    clock: TickingDateTimeFactory,
    service: str,
    data: dict[str, Any],
) -> None:
    async with serve_grid(tmp_path) as gone:
        entry = (await join_grid(gone, "Stranded")).entry(gone, trading_enabled=False)
        await setup_member(hass, entry)
    with pytest.raises(HomeAssistantError) as err:
        await call_action(hass, service, config_entry_id=entry.entry_id, **data)
    # Not the caller's mistake: a plain error, naming the grid that is unreachable.
    assert not isinstance(err.value, ServiceValidationError)
    assert err.value.translation_key == "cannot_connect"
    assert err.value.translation_placeholders == {"grid_url": gone.url}
    assert await hass.config_entries.async_unload(entry.entry_id)
