"""End to end: a producer's and a consumer's Home Assistant trade through a real grid.

Two config entries (two households) report their meters, the strategy places
orders, the grid clears and settles, the households see their fills, prices
and statements — the whole path a real neighbourhood takes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal

from freezegun.api import TickingDateTimeFactory
from homeassistant.core import Event, HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.p2p_energy.const import (
    EVENT_PAYMENT,
    EVENT_STATEMENT,
    EVENT_TRADE,
    SUBENTRY_METER,
    SUBENTRY_SOURCE,
)
from custom_components.p2p_energy.diagnostics import async_get_config_entry_diagnostics
from tests.support.grid_server import RunningGrid
from tests.support.home_assistant import (
    MINUTE,
    START,
    Member,
    Meters,
    add_asset,
    entity_of,
    meter,
    setup_member,
    source,
    wait_for,
    walk,
)


async def test_producer_and_consumer_trade_settle_and_get_statements(
    hass: HomeAssistant,
    grid: RunningGrid,
    clock: TickingDateTimeFactory,
    join: Callable[..., Awaitable[Member]],
) -> None:
    producer = (await join("Producer")).entry(grid)
    consumer = (await join("Consumer")).entry(grid)
    meters = Meters(hass, {"sensor.p_pv": 4000.0, "sensor.p_load": 400.0, "sensor.c_load": 2000.0})
    for entry in (producer, consumer):
        await setup_member(hass, entry)
    await add_asset(hass, producer.entry_id, SUBENTRY_SOURCE, source("Roof PV", "sensor.p_pv"))
    await add_asset(hass, producer.entry_id, SUBENTRY_METER, meter("House", "sensor.p_load"))
    await add_asset(hass, consumer.entry_id, SUBENTRY_METER, meter("House", "sensor.c_load", 5000))
    trades: list[Event] = []
    statements: list[Event] = []
    payments: list[Event] = []
    hass.bus.async_listen(EVENT_TRADE, trades.append)
    hass.bus.async_listen(EVENT_STATEMENT, statements.append)
    hass.bus.async_listen(EVENT_PAYMENT, payments.append)
    # The community runs a prepaid scheme: the operator funds the consumer.
    consumer_address = consumer.runtime_data.client.keys.address
    await grid.grid.payments.mint(consumer_address, 20_000_000, "prepaid")

    # Through 10:16 the 10:00 interval is measured and reported; the strategy
    # has a first forecast and places orders for 10:30 onwards; at 10:26 the
    # grid clears 10:30.
    await walk(hass, grid, clock, meters, START.replace(minute=27))
    await wait_for(hass, lambda: len(trades) >= 2)

    def state(entry: MockConfigEntry, platform: str, key: str) -> str:
        return hass.states.get(entity_of(hass, entry, platform, key)).state

    # 4 kW of sun against 0.4 kW at home: the producer offers its expected
    # surplus at its minimum price (the feed-in price); the consumer bids its
    # expected demand at the retail price. Supply exceeds demand, so the
    # price is the feed-in price, the consumer buys all it asked for and the
    # utility takes the producer's rest.
    sell = next(e.data for e in trades if e.data["side"] == "sell")
    buy = next(e.data for e in trades if e.data["side"] == "buy")
    assert (sell["config_entry_id"], buy["config_entry_id"]) == (
        producer.entry_id,
        consumer.entry_id,
    )
    assert sell["price"] == buy["price"] == "0.0800"
    assert sell["energy_wh"] > buy["energy_wh"] > 0
    consumer_orders = consumer.runtime_data.household._s.placed
    (order,) = consumer_orders[buy["interval"]]
    assert buy["energy_wh"] == order.energy_wh
    assert Decimal(state(consumer, "sensor", "energy_bought")) * 1000 == buy["energy_wh"]
    assert Decimal(state(producer, "sensor", "energy_sold")) * 1000 == sell["energy_wh"]
    assert Decimal(state(producer, "sensor", "price_next")) == Decimal("0.08")
    assert Decimal(state(consumer, "sensor", "cost")) == Decimal("0.08") * buy["energy_wh"] / 1000
    # Buying at 0.08 instead of the retail 0.30 saves 0.22 per kWh.
    assert Decimal(state(consumer, "sensor", "savings")) == (
        Decimal("0.22") * buy["energy_wh"] / 1000
    )
    assert consumer.runtime_data.household.snapshot(START).readings_pending == 0

    # Its readings and orders are in the grid's log: the receipts verify
    # offline against the bytes Home Assistant itself sent.
    await walk(hass, grid, clock, meters, START.replace(minute=47))
    keeper = consumer.runtime_data.household.receipts
    assert keeper.verified_count > 0
    assert keeper.failures == {}
    diagnostics = await async_get_config_entry_diagnostics(hass, consumer)
    assert diagnostics["receipts"]["last_verified"]["envelope_type"] in ("readings", "orders")

    # Two hours on: intervals are delivered, settled and grouped into the
    # 10:00-11:00 statement, which both households receive.
    await walk(hass, grid, clock, meters, START.replace(hour=12, minute=20), step=5 * MINUTE)
    await wait_for(
        hass,
        lambda: (
            {e.data["config_entry_id"] for e in statements}
            == {
                producer.entry_id,
                consumer.entry_id,
            }
        ),
    )
    by_entry = {e.data["config_entry_id"]: e.data for e in statements}
    assert by_entry[consumer.entry_id]["amount_due_micro"] > 0  # the consumer owes the grid
    assert by_entry[producer.entry_id]["amount_due_micro"] < 0  # the grid owes the producer
    # The grid's own record agrees with what Home Assistant was told.
    me = grid.client(producer.runtime_data.client.keys)
    wanted = by_entry[producer.entry_id]["statement_id"]
    (statement,) = [s for s in await me.statements() if s.id == wanted]
    assert statement.amount_due_micro == by_entry[producer.entry_id]["amount_due_micro"]

    # The consumer's Home Assistant pays its statement on the local ledger
    # (within the daily cap); the grid then pays the producer out.
    due = by_entry[consumer.entry_id]["amount_due_micro"]
    await walk(hass, grid, clock, meters, START.replace(hour=12, minute=30), step=5 * MINUTE)
    await wait_for(
        hass, lambda: any(e.data["config_entry_id"] == consumer.entry_id for e in payments)
    )
    paid = await grid.client(consumer.runtime_data.client.keys).statement(
        by_entry[consumer.entry_id]["statement_id"]
    )
    assert (paid.status, paid.paid_micro) == ("paid", due)
    # Every statement issued by now is paid, each once: the wallet shows it.
    spent = [
        e.data["amount_micro"] for e in payments if e.data["config_entry_id"] == consumer.entry_id
    ]
    assert due in spent
    assert len(spent) == len({e.data["statement_id"] for e in payments})
    wallet = Decimal(state(consumer, "sensor", "wallet_balance"))
    assert wallet * 10**6 == 20_000_000 - sum(spent)
    assert Decimal(state(consumer, "sensor", "amount_due")) == 0

    report = await grid.grid.payouts.run_once()
    assert report.paid
    await wait_for(
        hass, lambda: any(e.data["config_entry_id"] == producer.entry_id for e in payments)
    )
    await walk(hass, grid, clock, meters, START.replace(hour=12, minute=32))
    # The producer's wallet holds exactly what the grid says it paid out.
    received = -sum(s.paid_micro for s in await me.statements())  # paid to it: negative
    assert received >= -by_entry[producer.entry_id]["amount_due_micro"] > 0
    assert Decimal(state(producer, "sensor", "wallet_balance")) * 10**6 == received
