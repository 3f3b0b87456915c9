"""Paying statements from Home Assistant: on the local ledger and on IOTA.

A failed payment is reported and retried once money arrives, never paid
twice; on an IOTA grid the household pays on chain (through the stand-in
node), and a grid that names no node for households leaves its statements
to be paid elsewhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from freezegun.api import TickingDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util

from custom_components.p2p_energy.client.payments import IotaPayer
from custom_components.p2p_energy.const import DOMAIN
from grid_server.config import IotaNodeConfig, LedgerConfig
from tests.support.grid_server import RunningGrid
from tests.support.home_assistant import (
    MINUTE,
    START,
    Member,
    Meters,
    call_action,
    consumer_with_statement,
    entity_of,
    join_grid,
    serve_grid,
    walk,
)
from tests.support.iota_node import StandInIotaNode

IOTA = 10**9
# Short waits so that the grid's own IOTA calls take milliseconds.
FAST: dict[str, Any] = {
    "request_timeout": 2.0,
    "execute_timeout": 0.3,
    "submit_deadline": 1.0,
    "checkpoint_timeout": 1.0,
    "poll_interval": 0.01,
}


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
    response = await call_action(
        hass, "pay_statement", config_entry_id=entry.entry_id, statement_id=statement_id
    )
    assert response["tx_id"] == statement.payments[0].tx_id  # paid already: not again


async def test_failed_payment_is_retried_with_growing_waits(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    member = await join("Still broke")  # no money on the ledger, for the whole test
    entry = await consumer_with_statement(hass, grid, clock, member)
    household = entry.runtime_data.household
    assert household.payer is not None
    tries: list[datetime] = []
    pay = household.payer.pay
    (statement_id,) = household.failed_payments

    async def counted(statement: Any) -> str:
        if statement.id == statement_id:  # not the next hour's statement
            tries.append(dt_util.utcnow())
        return await pay(statement)

    household.payer.pay = counted  # type: ignore[method-assign]
    # Minute by minute for an hour: tries come after growing waits, not every minute.
    await walk(hass, grid, clock, Meters(hass, {}), START.replace(hour=12, minute=25), MINUTE)
    waits = [round((b - a).total_seconds() / 60) for a, b in itertools.pairwise(tries)]
    assert 3 <= len(tries) <= 6, tries
    assert waits == sorted(waits) and waits[-1] >= 8, waits
    # The repair says what to do: top up this address; when the next try comes.
    issue = ir.async_get(hass).async_get_issue(
        DOMAIN, f"payment_failed_{entry.entry_id}_{statement_id}"
    )
    assert issue is not None
    placeholders = issue.translation_placeholders or {}
    assert placeholders["address"] == member.keys.address
    next_try = household.payment_retry[statement_id][1]
    assert placeholders["retry_at"] == dt_util.as_local(next_try).strftime("%Y-%m-%d %H:%M")
    assert "balance is 0" in placeholders["message"]


def iota_ledger(node: StandInIotaNode, *, public: bool) -> LedgerConfig:
    """The test grid's ledger on IOTA (1 IOTA = 0.25 EUR); ``public``: households get the node."""
    iota = IotaNodeConfig(url=node.url, public_url=node.url if public else None, **FAST)
    return LedgerConfig(kind="iota", iota_price="0.25", payout_threshold_micro=0, iota=iota)


async def test_household_pays_on_iota(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    tmp_path: Path,
    clock: TickingDateTimeFactory,
) -> None:
    async with (
        StandInIotaNode(hang_seconds=3.0) as node,
        serve_grid(tmp_path, ledger=iota_ledger(node, public=True)) as grid,
    ):
        member = await join_grid(grid, "On chain")
        node.mint(member.keys.address, 20 * IOTA)
        payments: list[Any] = []
        hass.bus.async_listen(f"{DOMAIN}_payment", payments.append)
        entry = await consumer_with_statement(hass, grid, clock, member)
        household = entry.runtime_data.household
        wallet = entity_of(hass, entry, "sensor", "wallet_balance")
        assert hass.states.get(wallet).attributes["unit_of_measurement"] == "IOTA"

        # Paid automatically (within the cap), on chain, and proven to the grid.
        (statement_id, tx_id) = next(iter(household._s.paid.items()))
        paid = await grid.client(member.keys).statement(statement_id)
        assert paid.status == "paid"
        assert [p.tx_id for p in paid.payments] == [tx_id]
        assert tx_id in node.transactions
        assert paid.ledger is not None
        spent = -sum(
            int(c["amount"])
            for c in node.transactions[tx_id].balance_changes
            if c["owner"]["AddressOwner"] == member.keys.address
        )
        assert spent >= paid.ledger.amount_due  # what was due, plus gas
        assert [e.data["statement_id"] for e in payments] == [statement_id]
        # The payer's state is saved with the household's: nothing pending once proven.
        await hass.async_block_till_done()
        stored = hass_storage[f"{DOMAIN}.{entry.entry_id}"]["data"]
        assert stored["payer"] == {"pending": {}}
        assert stored["paid"] == {statement_id: tx_id}
        assert float(hass.states.get(wallet).state) == pytest.approx((20 * IOTA - spent) / IOTA)
        assert isinstance(household.payer, IotaPayer)
        # It pays through Home Assistant's shared HTTP session, so unloading
        # leaves no session of its own to close.
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_iota_grid_without_a_node_for_households(
    hass: HomeAssistant,
    tmp_path: Path,
    clock: TickingDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        StandInIotaNode(hang_seconds=3.0) as node,
        serve_grid(tmp_path, ledger=iota_ledger(node, public=False)) as grid,
    ):
        member = await join_grid(grid, "No node")
        entry = await consumer_with_statement(hass, grid, clock, member)
        assert "Statements cannot be paid from here" in caplog.text
        household = entry.runtime_data.household
        (statement,) = household.unpaid.values()
        # Nothing tried automatically, so no failure and no repair to confirm.
        assert household.failed_payments == {}
        assert household.over_cap == {}
        with pytest.raises(HomeAssistantError) as err:
            await call_action(
                hass,
                "pay_statement",
                config_entry_id=entry.entry_id,
                statement_id=statement.id,
                allow_over_cap=True,
            )
        assert err.value.translation_key == "payment_failed"
        message = (err.value.translation_placeholders or {})["message"]
        assert "cannot be paid from here" in message
        assert (await grid.client(member.keys).statement(statement.id)).status == "issued"
        assert node.transactions == {}
        assert await hass.config_entries.async_unload(entry.entry_id)
