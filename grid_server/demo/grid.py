"""The demo grid: a substation with three feeders, fees, capacities and utility prices.

Sizes follow the neighbourhood: each feeder's link to the substation carries
at most ``LINK_WH_PER_HOUSEHOLD`` Wh per household and interval (1.6 kW on
average) in each direction. On a sunny day the PV-rich north feeder exports
more than that around noon, so the link congests: the north price drops
towards the feed-in price while the other feeders pay more. Trades inside a
feeder are free; crossing to the substation costs ``LINK_FEE`` per kWh.

Money moves on the grid's local ledger: consumers pay their statements, the
grid pays producers from its balance (see :mod:`.runner` for who funds what).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Final

from grid_server.config import GridConfig, LedgerConfig, PriceConfig, SharingConfig, ZoneConfig
from p2p_energy_client.protocol import LedgerKind

from .neighbourhood import FEEDERS, ROOT_ZONE, HouseholdSpec

DEMO_GRID_ID: Final = "demo"
RETAIL: Final = "0.3000"
FEED_IN: Final = "0.0800"
LINK_FEE: Final = "0.0100"
LINK_WH_PER_HOUSEHOLD: Final = 400
MIN_LINK_WH: Final = 1_000
INTERVAL_MINUTES: Final = 15
GATE_CLOSURE_SECONDS: Final = 300
SETTLEMENT_WINDOW_SECONDS: Final = 900
SETTLEMENT_PERIOD_SECONDS: Final = 3 * 3600
ORDER_HORIZON_SECONDS: Final = 6 * 3600
# Producers are paid from the grid's balance as soon as their statement is
# issued ("float"), once 0.10 EUR is payable; the worker looks every real
# second (the demo's clock is fast) and whenever a payment arrives.
PAYOUT_THRESHOLD_MICRO: Final = 100_000
PAYOUT_INTERVAL_SECONDS: Final = 1.0

FEEDER_NAMES: Final = {
    "north": "North feeder (big roofs)",
    "centre": "Centre feeder",
    "south": "South feeder (flats)",
}


def demo_grid(
    specs: Sequence[HouseholdSpec],
    *,
    settlement_period_seconds: int = SETTLEMENT_PERIOD_SECONDS,
    settlement_window_seconds: int = SETTLEMENT_WINDOW_SECONDS,
    sharing: bool = False,
) -> GridConfig:
    per_feeder = Counter(spec.zone for spec in specs)
    zones = [ZoneConfig(id=ROOT_ZONE, name="Substation")]
    for feeder in FEEDERS:
        capacity = max(MIN_LINK_WH, LINK_WH_PER_HOUSEHOLD * per_feeder[feeder])
        zones.append(
            ZoneConfig(
                id=feeder,
                name=FEEDER_NAMES[feeder],
                parent=ROOT_ZONE,
                fee=LINK_FEE,
                capacity_up_wh=capacity,
                capacity_down_wh=capacity,
            )
        )
    return GridConfig(
        id=DEMO_GRID_ID,
        name="Demo neighbourhood",
        currency="EUR",
        interval_minutes=INTERVAL_MINUTES,
        gate_closure_seconds=GATE_CLOSURE_SECONDS,
        settlement_window_seconds=settlement_window_seconds,
        settlement_period_seconds=settlement_period_seconds,
        order_horizon_seconds=ORDER_HORIZON_SECONDS,
        default_zone=ROOT_ZONE,
        prices=(PriceConfig(retail=RETAIL, feed_in=FEED_IN),),
        zones=tuple(zones),
        ledger=LedgerConfig(
            kind=LedgerKind.LOCAL,
            payout_policy="float",
            payout_threshold_micro=PAYOUT_THRESHOLD_MICRO,
            payout_interval_seconds=PAYOUT_INTERVAL_SECONDS,
        ),
        sharing=SharingConfig(enabled=sharing),
    )
