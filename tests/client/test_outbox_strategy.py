"""The reading outbox and the trading strategy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from p2p_energy_client.household import _close_enough
from p2p_energy_client.outbox import Outbox
from p2p_energy_client.protocol import OrderSpec, Reading, Side
from p2p_energy_client.strategy import (
    Expectation,
    Forecaster,
    Limits,
    StrategyKind,
    plan_orders,
)
from p2p_energy_client.units import parse_price

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
Q = timedelta(minutes=15)


def test_outbox_orders_acks_and_survives_restart() -> None:
    outbox = Outbox()
    outbox.add([Reading(T0 + Q, "pv", 5), Reading(T0, "pv", 7), Reading(T0, "grid", 1)])
    assert [(r.interval, r.asset) for r in outbox.batch(2)] == [(T0, "grid"), (T0, "pv")]
    restored = Outbox.from_state(outbox.to_state())
    assert restored.batch(10) == outbox.batch(10)
    restored.acknowledge([Reading(T0, "grid", 1), Reading(T0, "pv", 999)])  # stale value kept
    assert len(restored) == 2
    restored.set_aside(Reading(T0, "pv", 7), "window_closed", "too late")
    assert [r.asset for r in restored.batch(10)] == ["pv"]
    assert Outbox.from_state(restored.to_state()).rejected[0].code == "window_closed"


def test_outbox_newer_value_replaces_unsent() -> None:
    outbox = Outbox()
    outbox.add([Reading(T0, "pv", 5)])
    outbox.add([Reading(T0, "pv", 6)])
    assert outbox.batch(5) == [Reading(T0, "pv", 6)]


LIMITS = Limits(min_sell_ticks=parse_price("0.10"), max_buy_ticks=parse_price("0.28"))


def test_reserve_strategy_bids_true_reserve_prices() -> None:
    sell = plan_orders(StrategyKind.RESERVE, Expectation(T0, 900, 300), LIMITS)
    assert [(o.side, o.energy_wh, o.price) for o in sell] == [(Side.SELL, 600, "0.1000")]
    buy = plan_orders(StrategyKind.RESERVE, Expectation(T0, 0, 400), LIMITS)
    assert [(o.side, o.energy_wh, o.price) for o in buy] == [(Side.BUY, 400, "0.2800")]
    assert plan_orders(StrategyKind.RESERVE, Expectation(T0, 5, 5), LIMITS) == ()


def test_caps_and_cautious_steps() -> None:
    capped = Limits(LIMITS.min_sell_ticks, LIMITS.max_buy_ticks, max_sell_wh=250)
    (order,) = plan_orders(StrategyKind.RESERVE, Expectation(T0, 900, 0), capped)
    assert order.energy_wh == 250
    steps = plan_orders(StrategyKind.CAUTIOUS, Expectation(T0, 0, 1000), LIMITS)
    assert [(o.id, o.energy_wh, o.price) for o in steps] == [
        ("auto-buy-1", 500, "0.2800"),
        ("auto-buy-2", 250, "0.2350"),
    ]


def test_forecaster_learns_profile_and_persistence() -> None:
    forecaster = Forecaster(15)
    assert forecaster.expect(T0) is None
    forecaster.learn(T0, 800, 200)
    # The next interval has no profile yet: persistence of the last one.
    assert forecaster.expect(T0 + Q) == Expectation(T0 + Q, 800, 200)
    forecaster.learn(T0 + timedelta(days=1), 400, 200)
    smoothed = forecaster.expect(T0 + timedelta(days=2))
    assert smoothed == Expectation(T0 + timedelta(days=2), round(0.3 * 400 + 0.7 * 800), 200)
    with_forecast = forecaster.expect(T0 + timedelta(days=2), solar_forecast_wh=50)
    assert with_forecast is not None and with_forecast.production_wh == 50
    restored = Forecaster.from_state(forecaster.to_state())
    assert restored.expect(T0 + Q) == forecaster.expect(T0 + Q)


def test_small_forecast_changes_do_not_replace_orders() -> None:
    placed = (OrderSpec("auto-sell-1", Side.SELL, 1000, "0.1000"),)
    assert _close_enough((OrderSpec("auto-sell-1", Side.SELL, 1040, "0.1000"),), placed)
    assert not _close_enough((OrderSpec("auto-sell-1", Side.SELL, 1060, "0.1000"),), placed)
    assert not _close_enough((OrderSpec("auto-sell-1", Side.SELL, 1000, "0.1100"),), placed)
    assert not _close_enough((OrderSpec("auto-buy-1", Side.BUY, 1000, "0.3000"),), placed)
    assert not _close_enough((), placed)
    assert _close_enough((), ())
    small = (OrderSpec("auto-sell-1", Side.SELL, 100, "0.1000"),)
    assert _close_enough((OrderSpec("auto-sell-1", Side.SELL, 120, "0.1000"),), small)
