"""Actions called with local times, bad ids, refused by the grid, or while the grid is down."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from freezegun.api import TickingDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from custom_components.p2p_energy.const import DOMAIN
from grid_server.domain.clock import SystemClock
from tests.support.grid_server import RunningGrid, run_grid_server, sqlite_url

from .conftest import START, Member, grid_config, setup_member


async def call(hass: HomeAssistant, service: str, **data: Any) -> Any:
    return await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=True
    )


async def test_intervals_in_local_time_and_refused_orders(
    hass: HomeAssistant, grid: RunningGrid, join: Callable[..., Awaitable[Member]]
) -> None:
    await hass.config.async_set_time_zone("Europe/Berlin")
    member = await join("Automations")
    entry = member.entry(grid, trading_enabled=False)
    await setup_member(hass, entry)

    # An automation writes the interval as a wall-clock time: 11:15 in Berlin.
    placed = await call(
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
    market = await call(
        hass, "get_market", config_entry_id=entry.entry_id, interval="2026-11-27 11:15:00"
    )
    assert (market["interval"], market["state"]) == ("2026-11-27T10:15:00Z", "open")

    # An order id the protocol does not allow is refused before anything is sent.
    with pytest.raises(ServiceValidationError) as err:
        await call(
            hass,
            "place_order",
            config_entry_id=entry.entry_id,
            side="buy",
            energy=1,
            price="0.2",
            order_id="my boiler!",
        )
    assert err.value.translation_key == "grid_rejected"
    assert "order_id" in err.value.translation_placeholders["message"]

    # Cancelling in the interval that is being delivered: its gate has closed.
    with pytest.raises(ServiceValidationError) as err:
        await call(
            hass,
            "cancel_order",
            config_entry_id=entry.entry_id,
            order_id="boiler",
            interval="2026-11-27 11:00:00",
        )
    assert err.value.translation_key == "grid_rejected"
    assert "gate" in err.value.translation_placeholders["message"]
    book = await grid.client(member.keys).orders(START.replace(minute=15))
    assert [o.id for o in book.orders] == ["boiler"]
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_actions_while_the_grid_is_down(
    hass: HomeAssistant, tmp_path: Path, clock: TickingDateTimeFactory
) -> None:
    async with run_grid_server(sqlite_url(tmp_path), clock=SystemClock(), grid=grid_config()) as g:
        client = g.client()
        await client.join(await g.invite(), "Stranded")
        entry = Member(client.keys, "Stranded").entry(g, trading_enabled=False)
        await setup_member(hass, entry)
    entry_id = entry.entry_id
    calls: list[tuple[str, dict[str, Any]]] = [
        ("place_order", {"side": "sell", "energy": 1, "price": "0.1"}),
        ("cancel_order", {"order_id": "x"}),
        ("get_market", {}),
        ("get_statement", {}),
        ("get_statement", {"statement_id": "st-1"}),
        ("pay_statement", {"statement_id": "st-1"}),
    ]
    for service, data in calls:
        with pytest.raises(HomeAssistantError) as err:
            await call(hass, service, config_entry_id=entry_id, **data)
        # Not the caller's mistake: a plain error, naming the grid that is unreachable.
        assert not isinstance(err.value, ServiceValidationError), service
        assert err.value.translation_key == "cannot_connect", service
        assert err.value.translation_placeholders == {"grid_url": g.url}, service
    assert await hass.config_entries.async_unload(entry.entry_id)
