"""Automatic trading: forecast a household's surplus or demand and turn it into orders.

The market clears at one price per zone (pay-as-clear) that always lies
between the utility's feed-in and retail prices. For a small household that
cannot move the price, the best bid is its true reserve price: sell the
expected surplus at the lowest price the owner accepts, buy the expected
demand at the highest price the owner accepts. The ``reserve`` strategy does
exactly that. ``cautious`` trades only part of the forecast, in two steps, so
that a wrong forecast costs less at the utility's prices after delivery.

Forecasts come from the household's own history: a profile of net energy by
time of day, learned by exponential smoothing, blended with the last
measured interval for the next few intervals (tomorrow's weather is
yesterday's, the next quarter hour is like the last). An optional external
solar forecast replaces the production part where the owner provides one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from .protocol import OrderSpec, Side
from .units import format_price

SLOTS_PER_DAY_MAX = 1440


class StrategyKind(StrEnum):
    RESERVE = "reserve"
    CAUTIOUS = "cautious"


@dataclass(frozen=True, slots=True)
class Limits:
    """The owner's limits, in price ticks (10^-6 currency per kWh)."""

    min_sell_ticks: int
    max_buy_ticks: int
    max_sell_wh: int | None = None  # what the declared sources can deliver per interval
    max_buy_wh: int | None = None


@dataclass(frozen=True, slots=True)
class Expectation:
    """Expected production and consumption of a household in one interval (Wh)."""

    interval: datetime
    production_wh: int
    consumption_wh: int

    @property
    def net_wh(self) -> int:
        return self.production_wh - self.consumption_wh


@dataclass(slots=True)
class Forecaster:
    """Learns the household's production and consumption by time of day."""

    interval_minutes: int
    alpha: float = 0.3  # weight of the newest day in the profile
    persistence_intervals: int = 4  # how far ahead the last interval still says something
    production: dict[int, float] = field(default_factory=dict)
    consumption: dict[int, float] = field(default_factory=dict)
    last: tuple[datetime, int, int] | None = None

    def _slot(self, interval: datetime) -> int:
        return (interval.hour * 60 + interval.minute) // self.interval_minutes

    def learn(self, interval: datetime, production_wh: int, consumption_wh: int) -> None:
        """Feed one measured interval."""
        slot = self._slot(interval)
        pairs = ((self.production, production_wh), (self.consumption, consumption_wh))
        for profile, value in pairs:
            old = profile.get(slot)
            profile[slot] = value if old is None else self.alpha * value + (1 - self.alpha) * old
        if self.last is None or interval >= self.last[0]:
            self.last = (interval, production_wh, consumption_wh)

    def expect(
        self, interval: datetime, solar_forecast_wh: int | None = None
    ) -> Expectation | None:
        """What the household will probably produce and use; None before it has learned."""
        slot = self._slot(interval)
        learned_p, learned_c = self.production.get(slot), self.consumption.get(slot)
        if learned_p is not None and learned_c is not None:
            production, consumption = learned_p, learned_c
        elif self.last is not None:
            production, consumption = float(self.last[1]), float(self.last[2])
        else:
            return None
        if self.last is not None:
            ahead = (interval - self.last[0]) / timedelta(minutes=self.interval_minutes)
            if 0 < ahead <= self.persistence_intervals:
                weight = 1 - ahead / (self.persistence_intervals + 1)
                production = weight * self.last[1] + (1 - weight) * production
                consumption = weight * self.last[2] + (1 - weight) * consumption
        if solar_forecast_wh is not None:
            production = float(solar_forecast_wh)
        return Expectation(interval, round(production), round(consumption))

    def to_state(self) -> dict[str, Any]:
        return {
            "interval_minutes": self.interval_minutes,
            "production": {str(k): v for k, v in self.production.items()},
            "consumption": {str(k): v for k, v in self.consumption.items()},
            "last": [self.last[0].isoformat(), self.last[1], self.last[2]] if self.last else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Forecaster:
        last = state.get("last")
        return cls(
            interval_minutes=int(state["interval_minutes"]),
            production={int(k): float(v) for k, v in state.get("production", {}).items()},
            consumption={int(k): float(v) for k, v in state.get("consumption", {}).items()},
            last=(datetime.fromisoformat(last[0]), int(last[1]), int(last[2])) if last else None,
        )


def plan_orders(
    kind: StrategyKind, expectation: Expectation, limits: Limits
) -> tuple[OrderSpec, ...]:
    """The orders one household places for one interval under a strategy.

    Order ids are stable per interval and strategy step (``auto-sell-1``…),
    so placing them again replaces rather than duplicates them.
    """
    net = expectation.net_wh
    if net > 0:
        side, energy, price = Side.SELL, net, limits.min_sell_ticks
        cap = limits.max_sell_wh
    elif net < 0:
        side, energy, price = Side.BUY, -net, limits.max_buy_ticks
        cap = limits.max_buy_wh
    else:
        return ()
    if cap is not None:
        energy = min(energy, cap)
    steps: list[tuple[int, int]]
    if kind is StrategyKind.RESERVE:
        steps = [(energy, price)]
    else:
        # Half of the forecast at the reserve price, a quarter only at a
        # price that makes the forecast risk worth it; the rest stays unsold.
        half, quarter = energy // 2, energy // 4
        margin = abs(limits.max_buy_ticks - limits.min_sell_ticks) // 4
        better = price + margin if side is Side.SELL else price - margin
        steps = [(half, price), (quarter, better)]
    return tuple(
        OrderSpec(f"auto-{side}-{i}", side, wh, format_price(p))
        for i, (wh, p) in enumerate(steps, start=1)
        if wh > 0
    )
