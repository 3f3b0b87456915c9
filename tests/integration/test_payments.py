"""Paying within the cap: a repair asks above it, a failed payment is reported and retried."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from freezegun.api import TickingDateTimeFactory
from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.components.repairs.issue_handler import async_process_repairs_platforms
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.p2p_energy.const import (
    CONF_ENERGY_ENTITY,
    CONF_NAME,
    CONF_RATED_POWER,
    DOMAIN,
    SUBENTRY_METER,
)
from tests.support.grid_server import RunningGrid

from .conftest import START, Member, add_asset, setup_member, wait_for
from .test_trading import Meters, walk


async def consumer_with_statement(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    member: Member,
    **options: object,
) -> MockConfigEntry:
    """A household that only consumes: its first statement asks for retail money."""
    entry = member.entry(grid, trading_enabled=False, **options)
    meters = Meters(hass, {"sensor.load": 3000.0})
    await setup_member(hass, entry)
    await add_asset(
        hass,
        entry.entry_id,
        SUBENTRY_METER,
        {CONF_NAME: "House", CONF_ENERGY_ENTITY: "sensor.load", CONF_RATED_POWER: 9000},
    )
    await walk(
        hass, grid, clock, meters, START.replace(hour=11, minute=25), step=5 * timedelta(minutes=1)
    )
    household = entry.runtime_data.household
    await wait_for(hass, lambda: bool(household.unpaid) or bool(household._s.paid))
    return entry


async def test_statement_above_cap_asks_first(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Careful")
    await grid.grid.payments.mint(member.keys.address, 10_000_000, "prepaid")
    entry = await consumer_with_statement(hass, grid, clock, member, daily_cap=0.01)
    household = entry.runtime_data.household
    (statement,) = household.unpaid.values()
    assert statement.amount_due_micro > 10_000  # more than the cap of 0.01
    issue_id = f"payment_over_cap_{entry.entry_id}_{statement.id}"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.is_fixable

    # The action refuses too, unless the owner says so.
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN,
            "pay_statement",
            {"config_entry_id": entry.entry_id, "statement_id": statement.id},
            blocking=True,
            return_response=True,
        )
    assert err.value.translation_key == "over_cap"

    # Confirming the repair pays it.
    assert await async_setup_component(hass, "repairs", {})
    await async_process_repairs_platforms(hass)
    manager = repairs_flow_manager(hass)
    assert manager is not None
    flow = await manager.async_init(DOMAIN, data={"issue_id": issue_id})
    assert flow["step_id"] == "confirm"
    result = await manager.async_configure(flow["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert statement.id not in household.unpaid
    paid = await grid.client(member.keys).statement(statement.id)
    assert paid.status == "paid"
    await walk(hass, grid, clock, Meters(hass, {}), START.replace(hour=11, minute=27))
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_failed_payment_is_reported_and_not_repeated(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Broke")  # no money on the ledger
    entry = await consumer_with_statement(hass, grid, clock, member)
    household = entry.runtime_data.household
    (statement_id,) = household.failed_payments
    issue_id = f"payment_failed_{entry.entry_id}_{statement_id}"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None

    # Money arrives; the next tick pays, once, and the issue goes.
    await grid.grid.payments.mint(member.keys.address, 10_000_000, "top-up")
    await walk(hass, grid, clock, Meters(hass, {}), START.replace(hour=11, minute=31))
    assert household.failed_payments == {}
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    statement = await grid.client(member.keys).statement(statement_id)
    assert statement.status == "paid"
    assert len(statement.payments) == 1
    response = await hass.services.async_call(
        DOMAIN,
        "pay_statement",
        {"config_entry_id": entry.entry_id, "statement_id": statement_id},
        blocking=True,
        return_response=True,
    )
    assert response["tx_id"] == statement.payments[0].tx_id  # paid already: not again
