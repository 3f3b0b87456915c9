"""One simulated household: the integration's own client code, fed by the simulation.

What Home Assistant's coordinator does for a real household
(``custom_components/p2p_energy/coordinator.py``), this does for a simulated
one, with the same :class:`~p2p_energy_client.household.Household`:

* meter totals go in through :meth:`Household.observe` at every simulation
  step (the coordinator does it on every sensor state change);
* once per interval, at the household's own offset (so thousands of them do
  not all knock at once): ``report``, ``trade``, ``refresh`` when its live
  stream is silent, and ``pay_due`` (the coordinator ticks every minute; only
  the first tick after a boundary has anything new to send);
* the live stream feeds :meth:`Household.handle_event`; a statement event
  triggers a payment right away.

Nothing here goes around the client: joining, declaring assets, readings,
orders, sessions and payments are the signed envelopes a real household sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.grid_client import GridClient, GridUnavailable
from p2p_energy_client.household import (
    Asset,
    Household,
    HouseholdEvent,
    PaymentPort,
    TradingOptions,
)
from p2p_energy_client.models import GridInfo
from p2p_energy_client.protocol import MeterDecl, ProtocolError, SourceDecl, SourceKind
from p2p_energy_client.strategy import StrategyKind

from .neighbourhood import BATTERY, BATTERY_CHARGE, HOUSE, SOLAR, HouseholdSpec

_LOGGER = logging.getLogger(__name__)

# Home Assistant's coordinator ticks every minute: unsent readings go again then.
RETRY_AFTER = timedelta(minutes=1)


def household_keys(seed: int, index: int) -> KeyPair:
    """A household's key pair, derived from the demo's seed (same seed, same addresses)."""
    return KeyPair(hashlib.sha256(f"p2p-demo|{seed}|{index}".encode()).digest())


def declarations(spec: HouseholdSpec) -> tuple[tuple[SourceDecl, ...], tuple[MeterDecl, ...]]:
    """What the household declares to the grid (see :mod:`.neighbourhood` for the mapping)."""
    sources: list[SourceDecl] = []
    meters = [MeterDecl(HOUSE, "Household consumption")]
    if spec.pv is not None:
        sources.append(SourceDecl(SOLAR, "Rooftop PV", SourceKind.SOLAR, spec.pv.inverter_w))
    if spec.battery is not None:
        power = spec.battery.power_w
        sources.append(SourceDecl(BATTERY, "Home battery", SourceKind.BATTERY, power))
        meters.append(MeterDecl(BATTERY_CHARGE, "Home battery charging", power))
    return tuple(sources), tuple(meters)


def assets_of(spec: HouseholdSpec) -> list[Asset]:
    sources, meters = declarations(spec)
    return [Asset(s.id, "source", s.rated_power_w) for s in sources] + [
        Asset(m.id, "meter", m.rated_power_w) for m in meters
    ]


@dataclass(frozen=True, slots=True)
class Preferences:
    """The owner's settings, as a household would set them in the integration."""

    strategy: StrategyKind
    min_sell_price: str
    max_buy_price: str
    offset_s: float  # when in each interval the household does its routine
    trade_ahead: int = 4


@dataclass(slots=True)
class Counters:
    """What happened to this household, for the demo's status line."""

    trades: int = 0
    payments: int = 0
    paid_micro: int = 0
    statements: int = 0
    errors: int = 0
    longest_routine_s: float = 0.0  # grid time from start to end of report and trade


@dataclass
class DemoHousehold:
    spec: HouseholdSpec
    client: GridClient
    preferences: Preferences
    household: Household | None = None
    counters: Counters = field(default_factory=Counters)
    last_event_at: datetime | None = None
    _paying: asyncio.Lock = field(default_factory=asyncio.Lock)
    _busy: bool = False

    @property
    def address(self) -> str:
        return self.client.address

    async def join(self, invitation: str, grid: GridInfo, payer: PaymentPort | None) -> None:
        """Join with the invitation, declare the devices, and set up the household routine."""
        me = await self.client.join(invitation, self.spec.name)
        sources, meters = declarations(self.spec)
        await self.client.set_assets(sources, meters)
        prefs = self.preferences
        options = TradingOptions(
            strategy=prefs.strategy,
            min_sell_price=prefs.min_sell_price,
            max_buy_price=prefs.max_buy_price,
            trade_ahead=prefs.trade_ahead,
        )
        self.household = Household(
            self.client,
            grid,
            zone=me.zone,
            assets=assets_of(self.spec),
            options=options,
            payer=payer,
            on_event=self._on_event,
        )

    def _on_event(self, event: HouseholdEvent) -> None:
        if event.kind == "trade":
            self.counters.trades += 1
        elif event.kind == "statement":
            self.counters.statements += 1
        elif event.kind == "payment":
            self.counters.payments += 1
            self.counters.paid_micro += int(event.data.get("amount_micro", 0))

    def observe(self, totals: dict[str, float], at: datetime) -> None:
        assert self.household is not None
        for asset_id, total_wh in totals.items():
            self.household.observe(asset_id, total_wh, at)

    def stream_alive(self, now: datetime) -> bool:
        """As the coordinator: a stream silent for two intervals is presumed dead."""
        assert self.household is not None
        silence = 2 * self.household.interval
        return self.last_event_at is not None and now - self.last_event_at < silence

    async def tick(
        self,
        meters_at: Callable[[], datetime],
        clock: Callable[[], datetime],
        sleep_until: Callable[[datetime], Awaitable[None]],
    ) -> None:
        """The routine of one interval; never runs twice at once for one household.

        ``meters_at`` gives the time of the newest meter totals (the
        simulation's time); orders and payments use the grid clock, as at
        home. Readings the grid did not take (it was busy, or a timestamp
        went stale under load) are sent again a simulated minute later, as
        the coordinator's one-minute tick would, while the settlement window
        is still open.
        """
        household = self.household
        assert household is not None
        if self._busy:
            return
        self._busy = True
        began = clock()
        try:
            await household.report(meters_at())
            now = clock()
            await household.trade(now)
            took = (clock() - began).total_seconds()
            self.counters.longest_routine_s = max(self.counters.longest_routine_s, took)
            if not self.stream_alive(now):
                await household.refresh(now)
            await self.pay(now)
            # Until the next interval's routine, like the coordinator's minute tick.
            until = began + household.interval - RETRY_AFTER
            while household.snapshot(clock()).readings_pending and clock() < until:
                await sleep_until(clock() + RETRY_AFTER)
                await household.report(meters_at())
        except (GridUnavailable, ProtocolError) as exc:
            self.counters.errors += 1
            _LOGGER.debug("%s: %s", self.spec.name, exc)
        finally:
            self._busy = False

    async def pay(self, now: datetime) -> None:
        household = self.household
        assert household is not None
        if household.payer is None or not household.unpaid:
            return
        async with self._paying:
            await household.pay_due(now.date())

    async def run_stream(self, clock: Callable[[], datetime], reconnect_delay: float) -> None:
        """Feed the live stream into the household; pay as soon as a statement arrives."""
        household = self.household
        assert household is not None
        with contextlib.suppress(GridUnavailable, ProtocolError):
            async for event in self.client.events(
                since=household.last_event_id, reconnect_delay=reconnect_delay
            ):
                self.last_event_at = clock()
                household.handle_event(event)
                if event.kind == "statement":
                    await self.pay(self.last_event_at)


def offset_for(index: int, count: int, spread: timedelta) -> float:
    """Spread households evenly over ``spread`` (seconds into each interval)."""
    return spread.total_seconds() * index / max(count, 1)
