"""Repairs: a statement above the daily cap is paid once the owner confirms.

Readings the grid refuses for good become an issue until the owner reads it.

A confirmation that cannot pay (no money, the membership unloaded or
removed meanwhile) says why and leaves the statement unpaid; removing the
membership removes its repairs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from freezegun.api import TickingDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import issue_registry as ir

from custom_components.p2p_energy.const import DOMAIN, SUBENTRY_SOURCE
from tests.support.fault_proxy import fault_proxy
from tests.support.grid_server import RunningGrid
from tests.support.home_assistant import (
    START,
    TEN,
    Member,
    Meters,
    add_asset,
    call_action,
    consumer_with_statement,
    join_grid,
    repairs_manager,
    serve_grid,
    setup_member,
    source,
    walk,
)


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
        await call_action(
            hass, "pay_statement", config_entry_id=entry.entry_id, statement_id=statement.id
        )
    assert err.value.translation_key == "over_cap"

    # Confirming the repair pays it.
    manager = await repairs_manager(hass)
    flow = await manager.async_init(DOMAIN, data={"issue_id": issue_id})
    assert flow["step_id"] == "confirm"
    result = await manager.async_configure(flow["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert statement.id not in household.unpaid
    paid = await grid.client(member.keys).statement(statement.id)
    assert paid.status == "paid"
    await walk(hass, grid, clock, Meters(hass, {}), START.replace(hour=11, minute=27))
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None


async def test_confirmed_repair_that_cannot_pay(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Empty wallet")  # nothing on the ledger
    entry = await consumer_with_statement(hass, grid, clock, member, daily_cap=0.01)
    household = entry.runtime_data.household
    (statement,) = household.unpaid.values()

    # The repair for the statement above the cap fails for want of money.
    issue_id = f"payment_over_cap_{entry.entry_id}_{statement.id}"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    manager = await repairs_manager(hass)
    flow = await manager.async_init(DOMAIN, data={"issue_id": issue_id})
    assert flow["step_id"] == "confirm"
    assert flow["description_placeholders"]["statement_id"] == statement.id
    result = await manager.async_configure(flow["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "payment_failed"
    assert "balance is 0" in result["description_placeholders"]["message"]
    assert statement.id in household.unpaid
    assert (await grid.client(member.keys).statement(statement.id)).status == "issued"

    # Confirmed while the membership is unloaded (disabled, reloading): nothing
    # can pay, and the flow says so instead of failing.
    flow = await manager.async_init(DOMAIN, data={"issue_id": issue_id})
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    result = await manager.async_configure(flow["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "entry_not_loaded"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None

    # The owner opens the repair again, but removes the membership before confirming.
    flow = await manager.async_init(DOMAIN, data={"issue_id": issue_id})
    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    result = await manager.async_configure(flow["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "entry_removed"
    assert (await grid.client(member.keys).statement(statement.id)).status == "issued"


async def test_readings_refused_for_good_become_an_issue(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    """Readings that reach the grid after its window: an issue saying so, until read."""
    member = await join("Late")
    async with fault_proxy(grid.url) as proxy:
        entry = member.entry(grid, url=proxy.url, trading_enabled=False)
        meters = Meters(hass, {"sensor.pv": 2000.0})
        await setup_member(hass, entry)
        await add_asset(hass, entry.entry_id, SUBENTRY_SOURCE, source())
        proxy.mode = "unavailable"
        # The 10:00 interval's window closes at 10:30 (15 minutes after it).
        await walk(hass, grid, clock, meters, START.replace(minute=41))
        proxy.mode = "pass"
        await walk(hass, grid, clock, meters, START.replace(minute=45))
        household = entry.runtime_data.household
        (asset_id,) = household.assets
        issue_id = f"reading_refused_{entry.entry_id}_{asset_id}"
        issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
        assert issue is not None
        assert issue.translation_key == "reading_refused_window_closed"
        assert issue.translation_placeholders is not None
        assert issue.translation_placeholders["asset"] == "PV"
        assert issue.translation_placeholders["code"] == "window_closed"
        # The last reported energy is what the grid accepted, not the refused value.
        refused = {r.reading.interval for r in household.refusals()[asset_id]}
        accepted = await grid.client(member.keys).readings(TEN, START.replace(minute=45))
        assert refused and not refused & {r.interval for r in accepted}
        last = household.snapshot(START).last_readings.get(asset_id)
        assert last == (accepted[-1].energy_wh if accepted else None)

        manager = await repairs_manager(hass)
        flow = await manager.async_init(DOMAIN, data={"issue_id": issue_id})
        result = await manager.async_configure(flow["flow_id"], {})
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
        assert household.refusals() == {}
        assert len(household.to_state()["outbox"]["rejected"]) == len(refused)  # still kept
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_removing_the_membership_removes_its_repairs(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Moving away")  # nothing on the ledger: the payment fails
    entry = await consumer_with_statement(hass, grid, clock, member, daily_cap=0.01)
    registry = ir.async_get(hass)
    ours = [i for (d, i) in registry.issues if d == DOMAIN and entry.entry_id in i]
    assert ours  # the statement above the cap
    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert [i for (d, i) in registry.issues if d == DOMAIN] == []


async def test_confirmed_repair_while_the_grid_is_down(
    hass: HomeAssistant, tmp_path: Path, clock: TickingDateTimeFactory
) -> None:
    async with serve_grid(tmp_path) as grid:
        member = await join_grid(grid, "Offline payer")
        await grid.grid.payments.mint(member.keys.address, 10_000_000, "prepaid")
        entry = await consumer_with_statement(hass, grid, clock, member, daily_cap=0.01)
        (statement,) = entry.runtime_data.household.unpaid.values()
        issue_id = f"payment_over_cap_{entry.entry_id}_{statement.id}"
        manager = await repairs_manager(hass)
        flow = await manager.async_init(DOMAIN, data={"issue_id": issue_id})

    # The grid went away before the owner confirmed: the flow says so, no traceback.
    result = await manager.async_configure(flow["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "payment_failed"
    message = result["description_placeholders"]["message"]
    assert message == "the grid or the ledger could not be reached"  # no connector dump
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    assert await hass.config_entries.async_unload(entry.entry_id)
