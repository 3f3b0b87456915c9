"""Read-side queries: what the routes show to participants, the public and the operator."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.storage.schema import (
    assets,
    events,
    fills,
    intervals,
    line_items,
    orders,
    participants,
    reading_history,
    readings,
    sessions,
    statements,
    utility_prices,
    zone_results,
    zones,
)
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
from p2p_energy_client.units import format_price

from .handlers import AssetRow, assets_view, current_assets, token_hash
from .payments import statement_extras

MAX_ROWS = 10_000


async def grid_info(conn: AsyncConnection, grid: Any) -> GridInfo:
    config = grid.config
    now = grid.clock.now()
    schedule = grid.schedule
    steps = [
        PriceStep(r.effective_from, r.retail, r.feed_in)
        for r in await conn.execute(
            select(utility_prices).order_by(utility_prices.c.effective_from)
        )
    ]
    current_start = schedule.start_of(now)
    in_force = [s for s in steps if s.effective_from <= current_start]
    current = in_force[-1] if in_force else steps[0]
    zone_rows = [
        ZoneInfo(z.id, z.parent, z.fee, z.capacity_up_wh, z.capacity_down_wh, z.name)
        for z in await conn.execute(select(zones).order_by(zones.c.id))
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
    )


async def session_participant(
    conn: AsyncConnection, token: str, now: datetime
) -> tuple[int, str, str] | None:
    """``(participant id, address, status)`` of a valid session token, else None."""
    row = (
        await conn.execute(
            select(participants.c.id, participants.c.address, participants.c.status)
            .join(sessions, sessions.c.participant_id == participants.c.id)
            .where(sessions.c.token_hash == token_hash(token), sessions.c.expires_at > now)
        )
    ).one_or_none()
    return None if row is None else (int(row.id), str(row.address), str(row.status))


async def participant_view(conn: AsyncConnection, pid: int) -> Participant:
    row = (await conn.execute(select(participants).where(participants.c.id == pid))).one()
    asset_rows = [
        AssetRow(
            r.asset_id, r.category, r.kind, r.name, r.rated_power_w, r.valid_from, r.valid_until
        )
        for r in await conn.execute(
            select(assets).where(assets.c.participant_id == pid, assets.c.valid_until.is_(None))
        )
    ]
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


async def order_book(conn: AsyncConnection, grid: Any, pid: int, interval: datetime) -> OrderBook:
    rows = await conn.execute(
        select(orders)
        .where(orders.c.interval_start == interval, orders.c.participant_id == pid)
        .order_by(orders.c.side, orders.c.order_id)
    )
    return OrderBook(
        interval,
        grid.schedule.gate_closure(interval),
        tuple(OrderView(r.order_id, r.side, r.energy_wh, r.price, r.zone) for r in rows),
    )


async def stored_readings(
    conn: AsyncConnection, pid: int, since: datetime, until: datetime
) -> list[StoredReading]:
    corrections = (
        select(func.count())
        .where(
            reading_history.c.participant_id == readings.c.participant_id,
            reading_history.c.interval_start == readings.c.interval_start,
            reading_history.c.asset_id == readings.c.asset_id,
        )
        .scalar_subquery()
    )
    rows = await conn.execute(
        select(readings, corrections.label("corrections"))
        .where(
            readings.c.participant_id == pid,
            readings.c.interval_start >= since,
            readings.c.interval_start < until,
        )
        .order_by(readings.c.interval_start, readings.c.asset_id)
        .limit(MAX_ROWS)
    )
    return [
        StoredReading(r.interval_start, r.asset_id, r.energy_wh, r.recorded_at, r.corrections)
        for r in rows
    ]


async def reading_corrections(
    conn: AsyncConnection, pid: int, interval: datetime, asset: str
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(reading_history)
        .where(
            reading_history.c.participant_id == pid,
            reading_history.c.interval_start == interval,
            reading_history.c.asset_id == asset,
        )
        .order_by(reading_history.c.revision)
    )
    return [
        {"energy_wh": r.energy_wh, "revision": r.revision, "replaced_by": r.replaced_by}
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
    rows = await conn.execute(
        select(fills)
        .where(
            fills.c.participant_id == pid,
            fills.c.interval_start >= since,
            fills.c.interval_start < until,
        )
        .order_by(fills.c.interval_start, fills.c.order_id)
        .limit(MAX_ROWS)
    )
    return [_fill(r) for r in rows]


async def participant_lines(
    conn: AsyncConnection, pid: int, since: datetime, until: datetime
) -> list[LineItem]:
    rows = await conn.execute(
        select(line_items)
        .where(
            line_items.c.participant_id == pid,
            line_items.c.interval_start >= since,
            line_items.c.interval_start < until,
        )
        .order_by(line_items.c.interval_start, line_items.c.id)
        .limit(MAX_ROWS)
    )
    return [_line(r) for r in rows]


def _line(r: Any) -> LineItem:
    return LineItem(
        r.interval_start, r.kind, r.energy_wh, format_price(r.price_ticks), r.amount_micro
    )


def _statement(
    r: Any, address: str, lines: tuple[LineItem, ...] = (), extras: Any = (None, ())
) -> Statement:
    terms, payments = extras
    return Statement(
        r.id,
        address,
        r.period_start,
        r.period_end,
        r.currency,
        r.amount_due_micro,
        r.paid_micro,
        r.status,
        r.issued_at,
        r.intervals,
        lines,
        terms,
        payments,
    )


async def participant_statements(
    conn: AsyncConnection, pid: int, address: str, since: datetime | None
) -> list[Statement]:
    query = select(statements).where(statements.c.participant_id == pid)
    if since is not None:
        query = query.where(statements.c.period_start >= since)
    rows = (await conn.execute(query.order_by(statements.c.period_start).limit(MAX_ROWS))).all()
    extras = await statement_extras(conn, [r.id for r in rows])
    return [_statement(r, address, (), extras.get(r.id, (None, ()))) for r in rows]


async def statement_detail(
    conn: AsyncConnection, statement_id: str, pid: int | None
) -> Statement | None:
    """A statement with its lines; ``pid`` restricts to that participant's own."""
    query = (
        select(statements, participants.c.address)
        .join(participants, participants.c.id == statements.c.participant_id)
        .where(statements.c.id == statement_id)
    )
    if pid is not None:
        query = query.where(statements.c.participant_id == pid)
    row = (await conn.execute(query)).one_or_none()
    if row is None:
        return None
    lines = await participant_lines(conn, row.participant_id, row.period_start, row.period_end)
    extras = await statement_extras(conn, [row.id])
    return _statement(row, row.address, tuple(lines), extras.get(row.id, (None, ())))


async def market_result(conn: AsyncConnection, interval: datetime, pid: int | None) -> MarketResult:
    row = (
        await conn.execute(
            select(intervals.c.state, intervals.c.welfare).where(intervals.c.start == interval)
        )
    ).one_or_none()
    state = "open" if row is None else row.state
    zone_rows = await conn.execute(
        select(zone_results)
        .where(zone_results.c.interval_start == interval)
        .order_by(zone_results.c.zone)
    )
    zone_views = tuple(
        ZoneResult(
            z.zone,
            format_price(z.price_ticks),
            z.bought_wh,
            z.sold_wh,
            z.utility_buy_wh,
            z.utility_sell_wh,
            z.flow_to_parent_wh,
        )
        for z in zone_rows
    )
    own: tuple[Fill, ...] = ()
    if pid is not None:
        own = tuple(
            _fill(r)
            for r in await conn.execute(
                select(fills)
                .where(fills.c.interval_start == interval, fills.c.participant_id == pid)
                .order_by(fills.c.order_id)
            )
        )
    return MarketResult(interval, state, zone_views, own, None if row is None else row.welfare)


async def market_range(
    conn: AsyncConnection, since: datetime, until: datetime
) -> list[MarketResult]:
    interval_rows = (
        await conn.execute(
            select(intervals.c.start, intervals.c.state, intervals.c.welfare)
            .where(intervals.c.start >= since, intervals.c.start < until)
            .order_by(intervals.c.start)
            .limit(2000)
        )
    ).all()
    by_interval: dict[datetime, list[ZoneResult]] = {}
    for z in await conn.execute(
        select(zone_results)
        .where(zone_results.c.interval_start >= since, zone_results.c.interval_start < until)
        .order_by(zone_results.c.interval_start, zone_results.c.zone)
    ):
        by_interval.setdefault(z.interval_start, []).append(
            ZoneResult(
                z.zone,
                format_price(z.price_ticks),
                z.bought_wh,
                z.sold_wh,
                z.utility_buy_wh,
                z.utility_sell_wh,
                z.flow_to_parent_wh,
            )
        )
    return [
        MarketResult(r.start, r.state, tuple(by_interval.get(r.start, ())), (), r.welfare)
        for r in interval_rows
    ]


async def events_since(
    conn: AsyncConnection, pid: int | None, since: int, limit: int = 500
) -> list[Event]:
    """Events after ``since``: the participant's own and the public ones (all public for None)."""
    visible: ColumnElement[bool] = events.c.public.is_(True)
    if pid is not None:
        visible = or_(visible, events.c.participant_id == pid)
    rows = await conn.execute(
        select(events).where(and_(events.c.id > since, visible)).order_by(events.c.id).limit(limit)
    )
    return [Event(r.id, r.kind, r.created_at, orjson.loads(r.body)) for r in rows]
