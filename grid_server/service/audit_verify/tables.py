"""The tables against the log: every row is what replaying the log implies (see
:mod:`grid_server.service.audit_replay`), and nothing more.

Each delivery interval is compared as soon as its ``settlement`` entry is
replayed (nothing can change it afterwards), the rest at the end, when
``chain_heads`` must also name the last entry.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.storage import audit_snapshot as snapshot
from grid_server.storage import audit_store
from grid_server.storage import ledger as stored_ledger
from p2p_energy_client.units import format_utc

from ..audit_replay import (
    FILL_FIELDS,
    INTERVAL_FIELDS,
    LEDGER_HEAD_FIELDS,
    NO_ENTRY,
    ORDER_FIELDS,
    PARTICIPANT_FIELDS,
    READING_FIELDS,
    ZONE_RESULT_FIELDS,
    Inconsistency,
    Replay,
    compare_multiset,
    compare_rows,
)
from .findings import Findings, VerifyReport

Address = Callable[[int], str | None]


class TablesMatchLog:
    """Replays the log's entries and compares the tables with what they imply.

    ``enabled`` is off when the verification covers part of the log only,
    and goes off at the first entry the replay cannot apply (what follows
    would only repeat that problem).
    """

    def __init__(
        self,
        findings: Findings,
        report: VerifyReport,
        conn: AsyncConnection,
        addresses: dict[int, str],
    ) -> None:
        self.findings = findings
        self.report = report
        self.conn = conn
        self.grid = report.grid
        self.addresses = addresses
        self.enabled = report.state_checked
        self.replay = Replay()
        self.compared: set[datetime] = set()
        self._apply: dict[str, Callable[[int, datetime, dict[str, Any]], None]] = {
            "market_result": self.replay.market_result,
            "statement": self.replay.statement,
            "operator": self.replay.operator,
            "payment": self.replay.payment,
            "payout": self.replay.payout,
            "reading_flags": self.replay.reading_flags,
        }

    def stop_at(self, seq: int) -> None:
        """The replay cannot go on meaningfully after entry ``seq``."""
        self.enabled = False
        self.report.notes.append(f"state comparison stopped at entry {seq}")

    def envelope(self, seq: int, created_at: datetime, wire: dict[str, Any]) -> None:
        if self.enabled:
            self.replay.envelope(seq, created_at, wire)

    async def entry(self, seq: int, kind: str, created_at: datetime, body: bytes) -> None:
        """A grid decision (not an envelope, root or anchor)."""
        if not self.enabled:
            return
        record = orjson.loads(body)
        if kind == "settlement":
            await self.compare_interval(self.replay.settlement(seq, created_at, record))
        elif kind == "participant":
            self.replay.participant_entry(seq, record)
        elif kind == "ledger":
            self.replay.ledger(seq, created_at, self.grid, record)
        elif kind in self._apply:
            self._apply[kind](seq, created_at, record)
        else:
            self.replay.not_replayed[kind] += 1

    # --- one interval ---

    async def compare_interval(self, t: datetime) -> None:
        part = self.replay.partitions.pop(t, None)
        self.compared.add(t)
        if part is None:
            return
        self.report.intervals_compared += 1
        label = format_utc(t)
        addr = self.addresses.get

        async def rows(table: str) -> Any:
            return await snapshot.interval_rows(self.conn, table, t)

        found = compare_rows(
            f"readings {label}",
            READING_FIELDS,
            part.readings,
            _readings(await rows("readings"), addr),
        )
        found += compare_multiset(
            f"reading_history {label}",
            part.history,
            _history(await rows("reading_history"), addr),
            str,
        )
        found += compare_rows(
            f"orders {label}",
            ORDER_FIELDS,
            Replay.order_rows(part),
            _orders(await rows("orders"), addr),
        )
        want_interval = {} if part.interval is None else {(): part.interval}
        found += compare_rows(
            f"intervals {label}",
            INTERVAL_FIELDS,
            want_interval,
            _interval(await snapshot.interval(self.conn, t), cleared=part.interval is not None),
        )
        found += compare_rows(
            f"zone_results {label}",
            ZONE_RESULT_FIELDS,
            part.zones,
            _zone_results(await rows("zone_results")),
        )
        found += compare_rows(
            f"fills {label}", FILL_FIELDS, part.fills, _fills(await rows("fills"), addr)
        )
        found += compare_multiset(
            f"line_items {label}", part.lines, _lines(await rows("line_items"), addr), str
        )
        self.findings.extend(found)

    # --- at the end ---

    async def chain_head(self) -> None:
        """``chain_heads`` names the last entry (when the whole log is verified)."""
        head = await audit_store.chain_head(self.conn, self.grid)
        if head is None or int(head.seq) != self.report.last_seq:
            self.findings.problem(
                self.report.last_seq, "chain_heads", self.grid, "does not name the last entry"
            )

    async def finish(self) -> None:
        """Everything not compared yet: the rest of the intervals, then the other tables."""
        if not self.enabled:
            return
        orphans = await snapshot.orphan_envelopes(self.conn, self.grid)
        if orphans:
            self.findings.problem(
                NO_ENTRY,
                "envelopes",
                "(no log entry)",
                f"{orphans} rows name log entries that do not exist",
            )
        for t in sorted(self.replay.partitions):
            await self.compare_interval(t)
        await self._intervals_only_tables_know()
        await self._members()
        await self._statements_and_setup()
        await self._payments()
        await self._ledger()
        await self._meters()

    async def _meters(self) -> None:
        """The operator's decisions on assets, and the flagged readings with theirs."""
        addr = self.addresses.get
        decision_rows = {
            (addr(int(r.participant_id)), r.asset_id): (
                r.kind,
                r.declared_power_w,
                r.declared_capacity_wh,
                r.approved_power_w,
                r.approved_capacity_wh,
                r.note,
                r.decided_at,
            )
            for r in await self._all("asset_decisions")
        }
        self.findings.extend(self.replay.decisions.compare(decision_rows))
        flag_rows = {
            (addr(int(r.participant_id)), r.interval_start, r.asset_id): (
                int(r.reading_wh),
                int(r.bound_wh),
                r.code,
                r.flagged_at,
                r.decision,
                r.note,
                r.decided_at,
            )
            for r in await self._all("reading_flags")
        }
        self.findings.extend(self.replay.flags.compare(flag_rows))

    async def _intervals_only_tables_know(self) -> None:
        for table in snapshot.BY_INTERVAL:
            for t in await snapshot.interval_starts(self.conn, table):
                if t not in self.compared:
                    self.findings.problem(
                        NO_ENTRY, table, format_utc(t), "rows for an interval no log entry touched"
                    )
        for t in await snapshot.closed_intervals(self.conn):
            if t not in self.compared:
                self.findings.problem(
                    NO_ENTRY, "intervals", format_utc(t), "is cleared, but the log never cleared it"
                )

    async def _all(self, table: str) -> Any:
        return await snapshot.all_rows(self.conn, table)

    async def _members(self) -> None:
        addr = self.addresses.get
        participant_rows = {
            (r.address,): (
                bytes(r.public_key),
                r.name,
                r.zone,
                r.role,
                r.status,
                int(r.last_seq),
                r.joined_at,
                r.status_changed_at,
            )
            for r in await self._all("participants")
        }
        self.findings.extend(
            compare_rows(
                "participants", PARTICIPANT_FIELDS, self.replay.participant_rows(), participant_rows
            )
        )
        asset_rows = [
            (
                addr(int(r.participant_id)),
                r.asset_id,
                r.category,
                r.kind,
                r.name,
                r.rated_power_w,
                r.valid_from,
                r.valid_until,
                r.charge_meter,
                r.usable_capacity_wh,
            )
            for r in await self._all("assets")
        ]
        self.findings.extend(compare_multiset("assets", self.replay.asset_rows(), asset_rows, str))

    async def _statements_and_setup(self) -> None:
        addr = self.addresses.get
        statement_rows = {
            (r.id,): (
                addr(int(r.participant_id)),
                r.period_start,
                r.period_end,
                r.currency,
                int(r.amount_due_micro),
                int(r.paid_micro),
                r.status,
                r.issued_at,
                int(r.intervals),
            )
            for r in await self._all("statements")
        }
        self.findings.extend(self.replay.statements.compare(statement_rows))
        zone_rows = {
            (r.id,): (
                r.name,
                r.parent,
                int(r.fee_ticks),
                r.capacity_up_wh,
                r.capacity_down_wh,
                r.updated_at,
            )
            for r in await self._all("zones")
        }
        self.findings.extend(self.replay.zones.compare(zone_rows))
        price_rows = {
            (r.effective_from,): (int(r.retail_ticks), int(r.feed_in_ticks), r.created_at)
            for r in await self._all("utility_prices")
        }
        self.findings.extend(self.replay.prices.compare(price_rows))

    async def _payments(self) -> None:
        replay = self.replay
        addr = self.addresses.get
        terms_rows = {
            (r.statement_id,): (r.ledger, r.unit, r.rate, int(r.amount_due), int(r.paid), r.due_at)
            for r in await self._all("statement_terms")
        }
        self.findings.extend(replay.terms.compare(terms_rows))
        payment_rows = {
            (r.tx_id,): (
                r.statement_id,
                addr(int(r.participant_id)),
                r.ledger,
                int(r.received),
                int(r.credited),
                int(r.envelope),
                r.recorded_at,
            )
            for r in await self._all("payments")
        }
        self.findings.extend(replay.payments.compare(payment_rows))
        payout_rows = {
            (int(r.id),): (
                r.tx_id,
                addr(int(r.participant_id)),
                r.ledger,
                int(r.amount),
                r.state,
                r.created_at,
                r.completed_at,
                None if r.error is None else r.error[:500],
            )
            for r in await self._all("payouts")
        }
        self.findings.extend(replay.payouts.compare(payout_rows))
        item_rows = {
            (int(r.payout_id), r.statement_id): (int(r.amount),)
            for r in await self._all("payout_items")
        }
        self.findings.extend(replay.payout_items.compare(item_rows))

    async def _ledger(self) -> None:
        replay = self.replay
        entry_rows = {
            (int(r._mapping["index"]),): (
                r.tx_id,
                r.kind,
                r.sender,
                r.recipient,
                int(r.amount),
                int(r.seq),
                r.memo,
                None if r.public_key is None else bytes(r.public_key),
                None if r.signature is None else bytes(r.signature),
                bytes(r.prev_hash),
                bytes(r.hash),
                r.created_at,
            )
            for r in await self._all("ledger_entries")
        }
        self.findings.extend(replay.ledger_entries.compare(entry_rows))
        account_rows = {
            (r.address,): (int(r.balance), int(r.seq))
            for r in await self._all("ledger_accounts")
            if r.balance or r.seq or (r.address,) in replay.accounts.rows
        }
        self.findings.extend(replay.accounts.compare(account_rows))
        head = await stored_ledger.head(self.conn, self.grid)
        if head is not None:
            have = (int(head.entries), bytes(head.hash), int(head.minted), int(head.mints))
            self.findings.extend(
                compare_rows(
                    "ledger_heads",
                    LEDGER_HEAD_FIELDS,
                    {(self.grid,): (replay.ledger_head, replay.ledger_head_seq or NO_ENTRY - 1)},
                    {(self.grid,): have},
                )
            )


# --- one interval's rows as the replay holds them -----------------------------------------


def _readings(rows: Any, addr: Address) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {
        (addr(int(r.participant_id)), r.asset_id): (
            int(r.energy_wh),
            int(r.envelope),
            r.recorded_at,
            int(r.revision),
        )
        for r in rows
    }


def _history(rows: Any, addr: Address) -> list[tuple[Any, ...]]:
    return [
        (
            addr(int(r.participant_id)),
            r.asset_id,
            int(r.energy_wh),
            int(r.envelope),
            r.recorded_at,
            int(r.revision),
            r.replaced_at,
            int(r.replaced_by),
        )
        for r in rows
    ]


def _orders(rows: Any, addr: Address) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {
        (addr(int(r.participant_id)), r.order_id): (
            r.side,
            int(r.energy_wh),
            r.price,
            int(r.price_ticks),
            r.zone,
            int(r.envelope),
            r.placed_at,
        )
        for r in rows
    }


def _interval(row: Any, *, cleared: bool) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """The ``intervals`` row; an open one the log never cleared is as good as none."""
    if row is None or (not cleared and row.state == "open"):
        return {}
    return {(): (row.state, row.cleared_at, row.settled_at, row.welfare, row.orders)}


def _zone_results(rows: Any) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {
        (r.zone,): (
            int(r.price_ticks),
            int(r.bought_wh),
            int(r.sold_wh),
            int(r.utility_buy_wh),
            int(r.utility_sell_wh),
            int(r.flow_to_parent_wh),
        )
        for r in rows
    }


def _fills(rows: Any, addr: Address) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {
        (addr(int(r.participant_id)), r.order_id): (
            r.side,
            r.zone,
            int(r.energy_wh),
            int(r.filled_wh),
            int(r.price_ticks),
            int(r.limit_ticks),
        )
        for r in rows
    }


def _lines(rows: Any, addr: Address) -> list[tuple[Any, ...]]:
    return [
        (
            None if r.participant_id is None else addr(int(r.participant_id)),
            r.kind,
            int(r.energy_wh),
            int(r.price_ticks),
            int(r.amount_micro),
        )
        for r in rows
    ]


__all__ = ["Inconsistency", "TablesMatchLog"]
