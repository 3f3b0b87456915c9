"""Read-side views: what the routes show to participants, the public and the operator.

The rows come from :mod:`grid_server.storage`; these functions turn them
into the client's wire shapes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.assets import current_assets
from grid_server.domain.schedule import Schedule
from grid_server.storage import events as stored_events
from grid_server.storage import grid_setup, orders, participants, readings
from grid_server.storage import intervals as stored_intervals
from grid_server.storage import statements as stored_statements
from grid_server.storage.ingest_queries import asset_row
from p2p_energy_client.models import (
    Event,
    Fill,
    GridInfo,
    LineItem,
    MarketResult,
    OrderBook,
    OrderView,
    Participant,
    PriceStep,
    Statement,
    StoredReading,
    ZoneInfo,
    ZoneResult,
)
from p2p_energy_client.protocol import MAX_CLOCK_SKEW_SECONDS, PROTOCOL_VERSION
from p2p_energy_client.units import format_price, format_utc

from .handlers.assets import assets_view
from .handlers.session import token_hash

MAX_ROWS = 10_000
MAX_INTERVALS = 2000


async def grid_info(conn: AsyncConnection, grid: Any) -> GridInfo:
    config = grid.config
    now = grid.clock.now()
    schedule = grid.schedule
    steps = [
        PriceStep(r.effective_from, r.retail, r.feed_in) for r in await grid_setup.price_rows(conn)
    ]
    current_start = schedule.start_of(now)
    in_force = [s for s in steps if s.effective_from <= current_start]
    current = in_force[-1] if in_force else steps[0]
    zone_rows = [
        ZoneInfo(z.id, z.parent, z.fee, z.capacity_up_wh, z.capacity_down_wh, z.name)
        for z in await grid_setup.zone_rows(conn)
    ]
    return GridInfo(
        grid=grid.grid_id,
        name=config.name,
        currency=config.currency,
        interval_minutes=config.interval_minutes,
        gate_closure_seconds=config.gate_closure_seconds,
        settlement_window_seconds=config.settlement_window_seconds,
        settlement_period_seconds=config.settlement_period_seconds,
        order_horizon_seconds=config.order_horizon_seconds,
        max_clock_skew_seconds=MAX_CLOCK_SKEW_SECONDS,
        prices=current,
        price_schedule=tuple(s for s in steps if s.effective_from >= current.effective_from),
        zones=tuple(zone_rows),
        ledger_kind=str(config.ledger.kind),
        ledger_address=grid.payments.address,
        now=now,
        protocol_version=PROTOCOL_VERSION,
        ledger_network=config.ledger.iota.network if config.ledger.kind == "iota" else None,
        ledger_node_url=config.ledger.iota.public_url if config.ledger.kind == "iota" else None,
        approval_limits=config.meters.approval.model_dump(),
        sharing=config.sharing.info(),
    )


async def session_participant(
    conn: AsyncConnection, token: str, now: datetime
) -> tuple[int, str, str] | None:
    """``(participant id, address, status)`` of a valid session token, else None."""
    return await participants.session_participant(conn, token_hash(token), now)


async def participant_view(conn: AsyncConnection, pid: int) -> Participant:
    row = await participants.by_id(conn, pid)
    asset_rows = [asset_row(r, None) for r in await participants.current_assets(conn, pid)]
    return Participant(
        row.address,
        row.name,
        row.zone,
        row.role,
        row.status,
        row.joined_at,
        row.last_seq,
        assets_view(current_assets(asset_rows).values()),
    )


async def order_book(
    conn: AsyncConnection, schedule: Schedule, pid: int, interval: datetime
) -> OrderBook:
    rows = await orders.participant_orders(conn, pid, interval)
    return OrderBook(
        interval,
        schedule.gate_closure(interval),
        tuple(OrderView(r.order_id, r.side, r.energy_wh, r.price, r.zone) for r in rows),
    )


async def stored_readings(
    conn: AsyncConnection, pid: int, since: datetime, until: datetime
) -> list[StoredReading]:
    rows = await readings.participant_readings(conn, pid, since, until, MAX_ROWS)
    return [
        StoredReading(r.interval_start, r.asset_id, r.energy_wh, r.recorded_at, r.corrections)
        for r in rows
    ]


def _fill(r: Any) -> Fill:
    return Fill(
        r.interval_start,
        r.order_id,
        r.side,
        r.zone,
        r.energy_wh,
        r.filled_wh,
        format_price(r.price_ticks),
        format_price(r.limit_ticks),
    )


async def participant_fills(
    conn: AsyncConnection, pid: int, since: datetime, until: datetime
) -> list[Fill]:
    rows = await stored_intervals.participant_fills(conn, pid, since, until, MAX_ROWS)
    return [_fill(r) for r in rows]


async def participant_lines(
    conn: AsyncConnection, pid: int, since: datetime, until: datetime
) -> list[LineItem]:
    rows = await stored_intervals.participant_lines(conn, pid, since, until, MAX_ROWS)
    return [_line(r) for r in rows]


def _line(r: Any) -> LineItem:
    return LineItem(
        r.interval_start, r.kind, r.energy_wh, format_price(r.price_ticks), r.amount_micro
    )


async def participant_statements(
    conn: AsyncConnection, pid: int, address: str, since: datetime | None
) -> list[Statement]:
    return await stored_statements.participant_statements(conn, pid, address, since, MAX_ROWS)


async def statement_detail(
    conn: AsyncConnection, statement_id: str, pid: int | None
) -> Statement | None:
    """A statement with its lines; ``pid`` restricts to that participant's own."""
    row = await stored_statements.statement_row(conn, statement_id, pid)
    if row is None:
        return None
    lines = await participant_lines(conn, row.participant_id, row.period_start, row.period_end)
    extras = await stored_statements.statement_extras(conn, [row.id])
    return stored_statements.statement_from_row(
        row, row.address, tuple(lines), extras.get(row.id, stored_statements.NO_EXTRAS)
    )


def _zone_result(z: Any) -> ZoneResult:
    return ZoneResult(
        z.zone,
        format_price(z.price_ticks),
        z.bought_wh,
        z.sold_wh,
        z.utility_buy_wh,
        z.utility_sell_wh,
        z.flow_to_parent_wh,
    )


async def market_result(conn: AsyncConnection, interval: datetime, pid: int | None) -> MarketResult:
    row = await stored_intervals.interval(conn, interval)
    state = "open" if row is None else row.state
    zone_views = tuple(
        _zone_result(z) for z in await stored_intervals.zone_results_at(conn, interval)
    )
    own: tuple[Fill, ...] = ()
    if pid is not None:
        own = tuple(
            _fill(r) for r in await stored_intervals.participant_fills_at(conn, pid, interval)
        )
    return MarketResult(interval, state, zone_views, own, None if row is None else row.welfare)


async def market_range(
    conn: AsyncConnection, since: datetime, until: datetime
) -> list[MarketResult]:
    interval_rows = await stored_intervals.between(conn, since, until, MAX_INTERVALS)
    by_interval: dict[datetime, list[ZoneResult]] = {}
    for z in await stored_intervals.zone_results_between(conn, since, until):
        by_interval.setdefault(z.interval_start, []).append(_zone_result(z))
    return [
        MarketResult(r.start, r.state, tuple(by_interval.get(r.start, ())), (), r.welfare)
        for r in interval_rows
    ]


async def events_since(
    conn: AsyncConnection, pid: int | None, since: int, limit: int = 500
) -> list[Event]:
    """Events after ``since``: the participant's own and the public ones (for None, the
    operator's: the public ones and those for the operator only)."""
    rows = await stored_events.visible_after(conn, pid, since, limit)
    return [Event(r.id, r.kind, r.created_at, orjson.loads(r.body)) for r in rows]


def member_summary(r: Any) -> dict[str, Any]:
    """Who a participant is, as the operator's lists (CLI, API, dashboard) show it."""
    return {
        "address": r.address,
        "name": r.name,
        "zone": r.zone,
        "role": r.role,
        "status": r.status,
        "joined_at": format_utc(r.joined_at),
    }
