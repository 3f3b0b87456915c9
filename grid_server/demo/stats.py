"""What the demo reports: read from the grid's own database, exact integers throughout.

The demo runs the grid in-process, so it reads the tables directly (the same
rows the API serves). Energy in Wh, money in micro-units, prices in ticks;
"local" energy is what participants traded with each other (sold in the
market and not bought by the utility).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.service.wiring import Grid as GridService
from grid_server.storage.schema import (
    fills,
    intervals,
    ledger_entries,
    line_items,
    payments,
    payouts,
    periods,
    readings,
    statements,
    utility_prices,
    zone_results,
)

from .neighbourhood import BATTERY, SOLAR


@dataclass(frozen=True, slots=True)
class LiveStats:
    """For the status line: cheap aggregate queries, run a few times a second."""

    intervals_cleared: int
    intervals_settled: int
    local_wh: int  # traded between participants
    utility_sold_wh: int  # the utility sold into the market (at retail)
    utility_bought_wh: int  # the utility bought from the market (at feed-in)
    readings: int
    statements: int
    statements_paid: int
    paid_micro: int  # households' payments to the grid
    payments: int
    payouts: int  # the grid's payments to producers
    payouts_micro: int
    last_interval: datetime | None
    last_prices: dict[str, int]  # zone → price ticks of the last cleared interval


async def live_stats(grid: GridService) -> LiveStats:
    async with grid.db.read() as conn:
        counts = (
            await conn.execute(
                select(
                    func.count().filter(intervals.c.state.in_(("cleared", "settled"))),
                    func.count().filter(intervals.c.state == "settled"),
                    func.max(intervals.c.start).filter(
                        intervals.c.state.in_(("cleared", "settled"))
                    ),
                )
            )
        ).one()
        volumes = (
            await conn.execute(
                select(
                    func.coalesce(func.sum(zone_results.c.sold_wh), 0),
                    func.coalesce(func.sum(zone_results.c.utility_buy_wh), 0),
                    func.coalesce(func.sum(zone_results.c.utility_sell_wh), 0),
                )
            )
        ).one()
        n_readings = await conn.scalar(select(func.count()).select_from(readings))
        st = (
            await conn.execute(
                select(
                    func.count(),
                    func.count().filter(statements.c.status == "paid"),
                )
            )
        ).one()
        paid = (
            await conn.execute(
                select(func.count(), func.coalesce(func.sum(payments.c.credited), 0))
            )
        ).one()
        out = (
            await conn.execute(
                select(func.count(), func.coalesce(func.sum(payouts.c.amount), 0)).where(
                    payouts.c.state == "done"
                )
            )
        ).one()
        last = counts[2]
        prices: dict[str, int] = {}
        if last is not None:
            for row in await conn.execute(
                select(zone_results.c.zone, zone_results.c.price_ticks).where(
                    zone_results.c.interval_start == last
                )
            ):
                prices[row.zone] = int(row.price_ticks)
    return LiveStats(
        intervals_cleared=int(counts[0]),
        intervals_settled=int(counts[1]),
        local_wh=int(volumes[0]) - int(volumes[1]),
        utility_sold_wh=int(volumes[2]),
        utility_bought_wh=int(volumes[1]),
        readings=int(n_readings or 0),
        statements=int(st[0]),
        statements_paid=int(st[1]),
        paid_micro=int(paid[1]),
        payments=int(paid[0]),
        payouts=int(out[0]),
        payouts_micro=int(out[1]),
        last_interval=last,
        last_prices=prices,
    )


@dataclass(slots=True)
class Summary:
    """The demo's closing account over ``[start, end)`` (intervals by their start)."""

    start: datetime
    end: datetime
    intervals_cleared: int = 0
    intervals_settled: int = 0
    orders: int = 0
    readings: int = 0
    local_wh: int = 0
    market_from_utility_wh: int = 0  # utility's sales in the clearing (at retail)
    market_to_utility_wh: int = 0  # utility's purchases in the clearing (at feed-in)
    shortfall_wh: int = 0  # bought from the utility at retail after delivery
    surplus_wh: int = 0  # sold to the utility at feed-in after delivery
    # Money (micro-units) of the settled intervals: what participants paid
    # (net) with the market, and what the same metered energy would have cost
    # them at the status quo (buy everything at retail, sell at feed-in).
    participants_net_micro: int = 0
    status_quo_micro: int = 0
    grid_income_micro: int = 0  # link fees, congestion, rounding
    utility_income_micro: int = 0  # what the utility received, net
    market_savings_nano: int = 0  # from fills alone (cleared, maybe not yet settled)
    interval_imbalances: list[tuple[datetime, int]] = field(default_factory=list)
    statements: int = 0
    statements_paid: int = 0
    statements_due_micro: int = 0  # participants owe the grid (positive statements)
    statements_credit_micro: int = 0  # the grid owes participants (negative statements)
    paid_micro: int = 0  # paid on positive statements
    credited_micro: int = 0  # paid out on negative statements
    statements_unpaid_due: int = 0  # positive statements not (fully) paid yet
    payouts_pending: bool = False  # a producer is owed at least the payout threshold
    statement_mismatches: list[str] = field(default_factory=list)
    # The local ledger, over the whole run (not only the span).
    payments: int = 0
    payments_micro: int = 0
    payouts: int = 0
    payouts_micro: int = 0
    minted_micro: int = 0
    ledger_ok: bool = True
    ledger_mismatches: list[str] = field(default_factory=list)

    @property
    def savings_micro(self) -> int:
        """Community savings against the status quo, over the settled intervals."""
        return self.status_quo_micro - self.participants_net_micro

    @property
    def reconciled(self) -> bool:
        return (
            not self.interval_imbalances
            and not self.statement_mismatches
            and self.ledger_ok
            and not self.ledger_mismatches
        )


async def summary(grid: GridService, start: datetime, end: datetime) -> Summary:
    out = Summary(start, end)
    async with grid.db.read() as conn:
        await _intervals(conn, out)
        await _market(conn, out)
        await _settlement(conn, out)
        await _statements(conn, out, grid.config.ledger.payout_threshold_micro)
        await _ledger(grid, conn, out)
    return out


def _span(column: ColumnElement[datetime], out: Summary) -> ColumnElement[bool]:
    return and_(column >= out.start, column < out.end)


async def _intervals(conn: AsyncConnection, out: Summary) -> None:
    row = (
        await conn.execute(
            select(
                func.count().filter(intervals.c.state.in_(("cleared", "settled"))),
                func.count().filter(intervals.c.state == "settled"),
                func.coalesce(func.sum(intervals.c.orders), 0),
            ).where(_span(intervals.c.start, out))
        )
    ).one()
    out.intervals_cleared, out.intervals_settled, out.orders = int(row[0]), int(row[1]), int(row[2])
    out.readings = int(
        await conn.scalar(
            select(func.count()).select_from(readings).where(_span(readings.c.interval_start, out))
        )
        or 0
    )


async def _market(conn: AsyncConnection, out: Summary) -> None:
    row = (
        await conn.execute(
            select(
                func.coalesce(func.sum(zone_results.c.sold_wh), 0),
                func.coalesce(func.sum(zone_results.c.utility_buy_wh), 0),
                func.coalesce(func.sum(zone_results.c.utility_sell_wh), 0),
            ).where(_span(zone_results.c.interval_start, out))
        )
    ).one()
    out.local_wh = int(row[0]) - int(row[1])
    out.market_to_utility_wh = int(row[1])
    out.market_from_utility_wh = int(row[2])
    # Savings of the matched trades alone, exact in 10^-9: sellers against
    # feed-in, buyers against retail, at the prices in force per interval.
    price_rows = (
        await conn.execute(select(utility_prices).order_by(utility_prices.c.effective_from))
    ).all()
    by_interval = (
        await conn.execute(
            select(
                fills.c.interval_start,
                fills.c.side,
                func.sum(fills.c.filled_wh),
                func.sum(fills.c.filled_wh * fills.c.price_ticks),
            )
            .where(_span(fills.c.interval_start, out))
            .group_by(fills.c.interval_start, fills.c.side)
        )
    ).all()
    for interval, side, wh, value in by_interval:
        retail, feed_in = _prices_at(price_rows, interval)
        if side == "sell":
            out.market_savings_nano += int(value) - feed_in * int(wh)
        else:
            out.market_savings_nano += retail * int(wh) - int(value)


def _prices_at(rows: Sequence[Row[Any]], interval: datetime) -> tuple[int, int]:
    current = rows[0]
    for row in rows:
        if row.effective_from <= interval:
            current = row
    return int(current.retail_ticks), int(current.feed_in_ticks)


async def _settlement(conn: AsyncConnection, out: Summary) -> None:
    """Money of the settled intervals, and the check that each interval sums to zero."""
    settled = _span(line_items.c.interval_start, out)
    totals = (
        await conn.execute(
            select(
                line_items.c.interval_start,
                func.sum(line_items.c.amount_micro),
            )
            .where(settled)
            .group_by(line_items.c.interval_start)
        )
    ).all()
    out.interval_imbalances = [(t, int(s)) for t, s in totals if int(s) != 0]
    kinds = (
        await conn.execute(
            select(
                line_items.c.kind,
                line_items.c.participant_id.is_(None).label("own"),
                func.sum(line_items.c.energy_wh),
                func.sum(line_items.c.amount_micro),
            )
            .where(settled)
            .group_by(line_items.c.kind, line_items.c.participant_id.is_(None))
        )
    ).all()
    for kind, own, wh, amount in kinds:
        # Stored amounts are what an account pays (see settlement_port); the
        # utility's and the grid's own lines have kinds "utility:…"/"grid:…".
        if own:
            if str(kind).startswith("grid:"):
                out.grid_income_micro -= int(amount)
            elif str(kind).startswith("utility:"):
                out.utility_income_micro -= int(amount)
            continue
        out.participants_net_micro += int(amount)
        if kind == "shortfall_retail":
            out.shortfall_wh += int(wh)
        elif kind == "surplus_feed_in":
            out.surplus_wh += int(wh)
    # The status quo on the same meters: each participant's net per interval
    # bought at retail or sold at feed-in.
    settled_intervals = select(intervals.c.start).where(
        intervals.c.state == "settled",
        _span(intervals.c.start, out),
    )
    net_rows = (
        await conn.execute(
            select(
                readings.c.interval_start,
                readings.c.participant_id,
                func.sum(
                    case(
                        # The demo's households name their sources so (see .neighbourhood).
                        (readings.c.asset_id.in_((SOLAR, BATTERY)), readings.c.energy_wh),
                        else_=-readings.c.energy_wh,
                    )
                ),
            )
            .where(readings.c.interval_start.in_(settled_intervals))
            .group_by(readings.c.interval_start, readings.c.participant_id)
        )
    ).all()
    price_rows = (
        await conn.execute(select(utility_prices).order_by(utility_prices.c.effective_from))
    ).all()
    for interval, _pid, net_wh in net_rows:
        retail, feed_in = _prices_at(price_rows, interval)
        net = int(net_wh)
        if net < 0:
            out.status_quo_micro += -(-(retail * -net) // 1000)  # pays, rounded up
        else:
            out.status_quo_micro -= (feed_in * net) // 1000  # receives, rounded down


async def _statements(conn: AsyncConnection, out: Summary, threshold: int) -> None:
    rows = (
        await conn.execute(
            select(statements).where(
                statements.c.period_start >= out.start, statements.c.period_end <= out.end
            )
        )
    ).all()
    out.statements = len(rows)
    owed_to: dict[int, int] = {}
    for row in rows:
        due, paid = int(row.amount_due_micro), int(row.paid_micro)
        if row.status == "paid":
            out.statements_paid += 1
        if due > 0:
            out.statements_due_micro += due
            out.paid_micro += paid
            if paid < due:
                out.statements_unpaid_due += 1
        else:
            out.statements_credit_micro += -due
            out.credited_micro += -paid
            owed_to[row.participant_id] = owed_to.get(row.participant_id, 0) + paid - due
        lines = await conn.scalar(
            select(func.coalesce(func.sum(line_items.c.amount_micro), 0)).where(
                line_items.c.participant_id == row.participant_id,
                line_items.c.interval_start >= row.period_start,
                line_items.c.interval_start < row.period_end,
            )
        )
        if int(lines or 0) != due:
            out.statement_mismatches.append(f"{row.id}: due {due}, line items {int(lines or 0)}")
    out.payouts_pending = any(owed >= max(threshold, 1) for owed in owed_to.values())


async def _ledger(grid: GridService, conn: AsyncConnection, out: Summary) -> None:
    """The local ledger: its own check, and the grid's account against payments and payouts."""
    from grid_server.api.payments import verify_local_ledger  # noqa: PLC0415

    check = await verify_local_ledger(grid, conn)
    out.ledger_ok = bool(check["ok"])
    out.minted_micro = int(check["minted"])
    address = grid.payments.address
    received = (
        await conn.execute(select(func.count(), func.coalesce(func.sum(payments.c.received), 0)))
    ).one()
    out.payments, out.payments_micro = int(received[0]), int(received[1])
    paid_out = (
        await conn.execute(
            select(func.count(), func.coalesce(func.sum(payouts.c.amount), 0)).where(
                payouts.c.state == "done"
            )
        )
    ).one()
    out.payouts, out.payouts_micro = int(paid_out[0]), int(paid_out[1])
    into_grid = await conn.scalar(
        select(func.coalesce(func.sum(ledger_entries.c.amount), 0)).where(
            ledger_entries.c.kind == "transfer", ledger_entries.c.recipient == address
        )
    )
    out_of_grid = await conn.scalar(
        select(func.coalesce(func.sum(ledger_entries.c.amount), 0)).where(
            ledger_entries.c.kind == "transfer", ledger_entries.c.sender == address
        )
    )
    if int(into_grid or 0) != out.payments_micro:
        out.ledger_mismatches.append(
            f"transfers to the grid {int(into_grid or 0)} != payments recorded {out.payments_micro}"
        )
    if int(out_of_grid or 0) != out.payouts_micro:
        out.ledger_mismatches.append(
            f"transfers from the grid {int(out_of_grid or 0)} != payouts {out.payouts_micro}"
        )
    credited = await conn.scalar(select(func.coalesce(func.sum(payments.c.credited), 0)))
    paid_on_statements = await conn.scalar(
        select(func.coalesce(func.sum(statements.c.paid_micro), 0)).where(
            statements.c.amount_due_micro > 0
        )
    )
    if int(credited or 0) != int(paid_on_statements or 0):
        out.ledger_mismatches.append(
            f"payments credited {int(credited or 0)} != paid on statements "
            f"{int(paid_on_statements or 0)}"
        )


async def utility_owed_by_period(grid: GridService) -> list[tuple[datetime, int]]:
    """Per issued settlement period: what the utility owes the grid (negative: is owed)."""
    schedule = grid.schedule
    async with grid.db.read() as conn:
        starts = list((await conn.scalars(select(periods.c.start).order_by(periods.c.start))).all())
        out: list[tuple[datetime, int]] = []
        for start in starts:
            owed = await conn.scalar(
                select(func.coalesce(func.sum(line_items.c.amount_micro), 0)).where(
                    line_items.c.participant_id.is_(None),
                    line_items.c.kind.like("utility:%"),
                    line_items.c.interval_start >= start,
                    line_items.c.interval_start < schedule.period_end(start),
                )
            )
            out.append((start, int(owed or 0)))
    return out
