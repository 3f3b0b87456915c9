"""What the cycle hands to the settlement arithmetic, and what it gets back.

The arithmetic itself (``grid_server.domain.settlement``) belongs to the
market engine; this module only adapts the stored interval (fills, zone
results, metered energy, prices) to it and its line items back to rows. A
participant with no readings for an interval is settled as metered zero:
everything it bought is counted as not consumed and everything it sold as not
delivered.

Sign: the settlement arithmetic books what an account *receives*; the grid's
``line_items.amount_micro`` is what the account *pays* (positive: owed to the
grid), so every amount is negated on the way in. Utility and grid lines are
stored too (``participant_id`` NULL, kind prefixed ``utility:``/``grid:``),
so the rows of each interval sum to exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from grid_server.domain import market
from grid_server.domain import settlement as arithmetic
from grid_server.domain.sharing import SharingRule


@dataclass(frozen=True, slots=True)
class FillInput:
    participant_id: int
    order_id: str
    side: str
    zone: str
    filled_wh: int
    price_ticks: int


@dataclass(frozen=True, slots=True)
class Metered:
    produced_wh: int
    consumed_wh: int


@dataclass(frozen=True, slots=True)
class IntervalInputs:
    interval: datetime
    interval_minutes: int
    retail_ticks: int
    feed_in_ticks: int
    zone_prices: dict[str, int]
    # zone -> (utility_buy_wh, utility_sell_wh, flow_to_parent_wh) as cleared
    zone_flows: dict[str, tuple[int, int, int]]
    zones: tuple[market.Zone, ...]
    fills: tuple[FillInput, ...]
    metered: dict[int, Metered]
    zone_of: dict[int, str]
    addresses: dict[int, str]
    # Sharing after delivery (None: off). It shares within the link room the
    # market's flows (``zone_flows``) left; static shares name addresses.
    sharing: SharingRule | None = None


@dataclass(frozen=True, slots=True)
class LineOut:
    participant_id: int | None  # None: the grid's own account
    kind: str
    energy_wh: int
    price_ticks: int
    amount_micro: int  # > 0: owed to the grid


def settle(inputs: IntervalInputs) -> list[LineOut]:
    tree = market.ZoneTree.build(inputs.zones)
    index = tree.index()
    pids = sorted(inputs.metered)
    position = {pid: i for i, pid in enumerate(pids)}
    n = len(pids)
    bought = np.zeros(n, dtype=np.int64)
    sold = np.zeros(n, dtype=np.int64)
    zone_of = {pid: index[inputs.zone_of[pid]] for pid in pids}
    for f in inputs.fills:
        (bought if f.side == "buy" else sold)[position[f.participant_id]] += f.filled_wh
        zone_of[f.participant_id] = index[f.zone]  # where the order traded
    flows = [inputs.zone_flows.get(z, (0, 0, 0)) for z in tree.ids]
    cleared = market.MarketResult(
        zone_ids=tree.ids,
        price_ticks=np.array([inputs.zone_prices[z] for z in tree.ids], dtype=np.int64),
        utility_buy_wh=np.array([f[0] for f in flows], dtype=np.int64),
        utility_sell_wh=np.array([f[1] for f in flows], dtype=np.int64),
        flow_to_parent_wh=np.array([f[2] for f in flows], dtype=np.int64),
        fills_wh=np.array([f.filled_wh for f in inputs.fills], dtype=np.int64),
        welfare_nano=0,
    )
    people = arithmetic.Participants(
        zone=np.array([zone_of[pid] for pid in pids], dtype=np.int32),
        bought_wh=bought,
        sold_wh=sold,
        consumed_wh=np.array([inputs.metered[p].consumed_wh for p in pids], dtype=np.int64),
        produced_wh=np.array([inputs.metered[p].produced_wh for p in pids], dtype=np.int64),
        ids=[inputs.addresses[p] for p in pids],
    )
    result = arithmetic.settle(
        tree,
        market.Utility(inputs.retail_ticks, inputs.feed_in_ticks),
        cleared,
        people,
        sharing=inputs.sharing,
    )
    out: list[LineOut] = []
    for line in result.lines():
        if line.account == "participant":
            assert line.participant is not None
            pid: int | None = pids[line.participant]
            kind = line.kind
        else:
            pid = None
            zone = "" if line.zone is None else f":{tree.ids[line.zone]}"
            kind = f"{line.account}:{line.kind}{zone}"
        out.append(LineOut(pid, kind, line.energy_wh, line.price_ticks, -line.amount_micro))
    return out
