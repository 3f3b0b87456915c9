"""What the demo reports: read from the grid's own database, exact integers throughout.

The demo runs the grid in-process, so it reads the tables directly, through
the same queries (:mod:`grid_server.storage`) and the same savings rule
(:mod:`grid_server.service.dashboard.savings`) as the operator's dashboard.
Energy in Wh, money in micro-units, prices in ticks; "local" energy is what
participants traded with each other (sold in the market and not bought by
the utility).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.service.dashboard.savings import PriceSteps, market_totals, price_steps
from grid_server.service.local_ledger import verify_ledger
from grid_server.service.wiring import Grid as GridService
from grid_server.storage import intervals as stored_intervals
from grid_server.storage import ledger, payments, readings
from grid_server.storage import statements as stored_statements
from p2p_energy_client.units import micro_ceil, micro_floor

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
        counts = await stored_intervals.counts(conn)
        volumes = await stored_intervals.zone_totals(conn)
        by_status = await stored_statements.totals_by_status(conn)
        paid = await payments.payment_totals(conn)
        payouts, payouts_micro = await payments.payouts_done(conn)
        last = counts.last_cleared
        prices = (
            {}
            if last is None
            else {
                r.zone: int(r.price_ticks)
                for r in await stored_intervals.zone_results_at(conn, last)
            }
        )
        n_readings = await readings.count(conn)
    return LiveStats(
        intervals_cleared=counts.cleared,
        intervals_settled=counts.settled,
        local_wh=volumes.sold_wh - volumes.utility_buy_wh,
        utility_sold_wh=volumes.utility_sell_wh,
        utility_bought_wh=volumes.utility_buy_wh,
        readings=n_readings,
        statements=sum(t.count for t in by_status.values()),
        statements_paid=by_status["paid"].count if "paid" in by_status else 0,
        paid_micro=paid.credited,
        payments=paid.count,
        payouts=payouts,
        payouts_micro=payouts_micro,
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
    # Sharing after delivery (docs/developers/sharing.md): shortfalls covered
    # by neighbours' surpluses, what they paid for it, what the surpluses
    # earned, and the grid's spread (with the sharing link fees).
    shared_in_wh: int = 0
    shared_out_wh: int = 0
    shared_in_micro: int = 0  # paid by shortfalls for shared energy
    shared_out_micro: int = 0  # earned by surpluses for shared energy
    sharing_grid_micro: int = 0  # the grid's sharing_spread and sharing_link_fee lines
    # What households saved by sharing: the same energy with the utility (bought
    # at retail, sold at feed-in, per interval) minus what they paid for it.
    sharing_saved_micro: int = 0
    # Money (micro-units) of the settled intervals: what participants paid
    # (net) with the market, and what the same metered energy would have cost
    # them at the status quo (buy everything at retail, sell at feed-in).
    participants_net_micro: int = 0
    status_quo_micro: int = 0
    grid_income_micro: int = 0  # link fees, congestion, rounding
    utility_income_micro: int = 0  # what the utility received, net
    market_savings_nano: int = 0  # from the market alone (cleared, maybe not yet settled)
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
    def neighbourhood_wh(self) -> int:
        """Energy that stayed in the neighbourhood: traded ahead plus shared after delivery."""
        return self.local_wh + self.shared_in_wh

    @property
    def sharing_balanced(self) -> bool:
        """Every shared Wh one household received, another gave. (Its money is in the
        interval sums: each line is rounded on its own, the remainder is the grid's.)"""
        return self.shared_in_wh == self.shared_out_wh

    @property
    def reconciled(self) -> bool:
        return (
            self.sharing_balanced
            and not self.interval_imbalances
            and not self.statement_mismatches
            and self.ledger_ok
            and not self.ledger_mismatches
        )


async def summary(grid: GridService, start: datetime, end: datetime) -> Summary:
    out = Summary(start, end)
    async with grid.db.read() as conn:
        steps = await price_steps(conn)
        await _intervals(conn, out)
        await _market(conn, out, steps)
        await _settlement(conn, out)
        await _sharing(conn, out, steps)
        await _status_quo(conn, out, steps)
        await _statements(conn, out, grid.config.ledger.payout_threshold_micro)
        await _ledger(grid, conn, out)
    return out


async def _intervals(conn: AsyncConnection, out: Summary) -> None:
    counts = await stored_intervals.counts(conn, out.start, out.end)
    out.intervals_cleared, out.intervals_settled = counts.cleared, counts.settled
    out.orders = counts.orders
    out.readings = await readings.count(conn, out.start, out.end)


async def _market(conn: AsyncConnection, out: Summary, steps: PriceSteps) -> None:
    """Energy and savings of the matched trades alone, as the dashboard counts them."""
    totals = await market_totals(conn, steps, out.start, out.end)
    out.local_wh = totals.local_wh
    out.market_to_utility_wh = totals.to_utility_wh
    out.market_from_utility_wh = totals.from_utility_wh
    out.market_savings_nano = totals.savings_nano


async def _settlement(conn: AsyncConnection, out: Summary) -> None:
    """Money of the settled intervals, and the check that each interval sums to zero."""
    out.interval_imbalances = [
        (t, int(s))
        for t, s in await stored_intervals.line_totals_by_interval(conn, out.start, out.end)
        if int(s) != 0
    ]
    for kind, own, wh, amount in await stored_intervals.line_totals_by_kind(
        conn, out.start, out.end
    ):
        # Stored amounts are what an account pays (see settlement_port); the
        # utility's and the grid's own lines have kinds "utility:…"/"grid:…".
        if own:
            if str(kind).startswith(("grid:sharing_spread", "grid:sharing_link_fee")):
                out.sharing_grid_micro -= int(amount)
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
        elif kind == "shared_in":
            out.shared_in_wh += int(wh)
            out.shared_in_micro += int(amount)
        elif kind == "shared_out":
            out.shared_out_wh += int(wh)
            out.shared_out_micro -= int(amount)


async def _sharing(conn: AsyncConnection, out: Summary, steps: PriceSteps) -> None:
    """What sharing saved households against settling the same deviations with the utility."""
    for t, kind, wh, amount in await stored_intervals.shared_line_totals(conn, out.start, out.end):
        retail, feed_in = steps.at(t)
        if kind == "shared_in":  # would have been bought at retail; paid ``amount``
            out.sharing_saved_micro += micro_ceil(retail * int(wh)) - int(amount)
        else:  # would have been sold at feed-in; received ``-amount``
            out.sharing_saved_micro += -int(amount) - micro_floor(feed_in * int(wh))


async def _status_quo(conn: AsyncConnection, out: Summary, steps: PriceSteps) -> None:
    """The status quo on the same meters: each participant's net per settled interval
    bought at retail or sold at feed-in, rounded toward the grid as settlement rounds."""
    # The demo's households name their sources so (see .neighbourhood).
    for interval, _pid, net_wh in await readings.net_export_of_settled(
        conn, out.start, out.end, (SOLAR, BATTERY)
    ):
        retail, feed_in = steps.at(interval)
        net = int(net_wh)
        if net < 0:
            out.status_quo_micro += micro_ceil(retail * -net)
        else:
            out.status_quo_micro -= micro_floor(feed_in * net)


async def _statements(conn: AsyncConnection, out: Summary, threshold: int) -> None:
    rows = await stored_statements.within_with_line_totals(conn, out.start, out.end)
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
        if int(row.line_total) != due:
            out.statement_mismatches.append(
                f"{row.id}: due {due}, line items {int(row.line_total)}"
            )
    out.payouts_pending = any(owed >= max(threshold, 1) for owed in owed_to.values())


async def _ledger(grid: GridService, conn: AsyncConnection, out: Summary) -> None:
    """The local ledger: its own check, and the grid's account against payments and payouts."""
    check = await verify_ledger(grid.payments.store, conn)
    out.ledger_ok = bool(check["ok"])
    out.minted_micro = int(check["minted"])
    paid = await payments.payment_totals(conn)
    out.payments, out.payments_micro = paid.count, paid.received
    out.payouts, out.payouts_micro = await payments.payouts_done(conn)
    into_grid, out_of_grid = await ledger.transfers(conn, grid.payments.address)
    if into_grid != out.payments_micro:
        out.ledger_mismatches.append(
            f"transfers to the grid {into_grid} != payments recorded {out.payments_micro}"
        )
    if out_of_grid != out.payouts_micro:
        out.ledger_mismatches.append(
            f"transfers from the grid {out_of_grid} != payouts {out.payouts_micro}"
        )
    paid_on_statements = await stored_statements.paid_to_grid(conn)
    if paid.credited != paid_on_statements:
        out.ledger_mismatches.append(
            f"payments credited {paid.credited} != paid on statements {paid_on_statements}"
        )


async def utility_owed_by_period(grid: GridService) -> list[tuple[datetime, int]]:
    """Per issued settlement period: what the utility owes the grid (negative: is owed)."""
    schedule = grid.schedule
    async with grid.db.read() as conn:
        return [
            (start, await stored_intervals.utility_owed(conn, start, schedule.period_end(start)))
            for start in await stored_statements.issued_periods(conn)
        ]
