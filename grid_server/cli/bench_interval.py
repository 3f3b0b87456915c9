"""``p2p-grid bench interval``: one whole interval of the market cycle for N households.

The grid's own code runs in process (no HTTP, like ``bench audit``): a
:class:`~grid_server.service.wiring.Grid` on a manual clock, envelopes handed straight to its
group-commit writer, the interval cycle and the payout worker driven by hand.
Every interval is one settlement period, so statements follow settlement.

Set-up, not timed (its seconds are printed): keys, invitations, then the
operator's street onboarding (``Onboarding.onboard``, what ``POST
/api/v1/operator/onboard`` calls): the households' signed joins committed in
the writer's batches and their local-ledger money minted in one transaction
per request of up to 20,000 households; then asset declarations (a solar
source on every other household, a meter on every one) and a float for the
grid.

Envelopes are signed in advance (households sign on their own machines);
their signing time is printed separately.

Timed, each phase separately, then the total (on PostgreSQL each phase is
preceded by an untimed ``ANALYZE``, what autovacuum does between the phases of
a real interval; its seconds are printed as ``analyze_seconds``):

1. ``orders`` — one order per household for the interval ahead: producers
   sell, the others buy, at prices that cross partially;
2. ``clearing`` — the clock passes gate closure and the cycle clears it;
3. ``readings`` — one readings envelope per household (source and meter);
4. ``settlement`` — the clock passes the settlement window: the cycle
   settles the interval and issues the period's statements;
5. ``payments`` — every household that owes pays its statement with a
   signed ``payment`` envelope (a local-ledger transfer to the grid);
6. ``payouts`` — the payout worker runs until nothing is left to pay: one
   payout to every producer the grid owes, paid in batches.

Then it checks that every household has exactly one statement, every
statement is paid, every producer owed money got exactly one payout, and the
ledger's balances add up to what was minted, and prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select, text

from grid_server.config import GridConfig, LedgerConfig, Settings
from grid_server.domain.clock import ManualClock
from grid_server.service.onboarding import MAX_HOUSEHOLDS
from grid_server.service.transaction import Outcome
from grid_server.service.wiring import build_grid
from grid_server.storage.schema import (
    ledger_accounts,
    participants,
    payout_items,
    payouts,
    statement_terms,
    statements,
)
from p2p_energy_client.crypto import KeyPair, b64encode
from p2p_energy_client.ledger.local import SignedTransfer
from p2p_energy_client.protocol import (
    Assets,
    Body,
    Envelope,
    Header,
    Join,
    LedgerKind,
    MeterDecl,
    Orders,
    OrderSpec,
    Payload,
    Payment,
    Reading,
    Readings,
    Side,
    SourceDecl,
    SourceKind,
    canonical_json,
)

from .bench_support import load_average, scratch_database

# The targets: (households, seconds) for a whole interval on each database.
TARGETS: dict[str, tuple[int, float]] = {"postgresql": (100_000, 60), "sqlite": (10_000, 10)}
PHASES: tuple[str, ...] = ("orders", "clearing", "readings", "settlement", "payments", "payouts")
START = datetime(2026, 1, 5, 0, 2, tzinfo=UTC)  # set-up happens here
INTERVAL_AHEAD = 2  # the benchmarked interval starts this many intervals after START's
FUNDS_MICRO = 10_000_000  # 10 EUR of local-ledger money for every household
PRODUCER_FLOAT_MICRO = 500_000  # the grid's float, per producer (more than any credit)
IN_FLIGHT = 2_048  # envelopes submitted and not yet answered (concurrent households)
MAX_INVITATIONS = 100_000  # per call of create_invitations

PV = SourceDecl("pv", "Roof", SourceKind.SOLAR, 6_000)  # at most 1,500 Wh an interval
MAIN = MeterDecl("main", "Main meter", 12_000)


def register(benchmarks: Any) -> None:
    parser = benchmarks.add_parser(
        "interval",
        help="one whole market interval (ingest, clearing, settlement, payments) for N households",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--households", type=_positive, default=1_000, help="households")
    parser.add_argument(
        "--database-url",
        help="PostgreSQL server to benchmark on (a scratch database is made beside it); "
        "default SQLite in a temporary folder",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.set_defaults(func=run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def run(args: argparse.Namespace) -> int:
    result = _run_loop(bench(args.households, database_url=args.database_url, seed=args.seed))
    print(json.dumps(result))
    return 0 if result["consistent"] else 1


def _run_loop(coro: Any) -> dict[str, Any]:
    try:
        import uvloop  # noqa: PLC0415 - the server's own loop (uvicorn[standard])
    except ImportError:  # pragma: no cover
        result: dict[str, Any] = asyncio.run(coro)
        return result
    return uvloop.run(coro)


async def bench(
    households: int,
    *,
    database_url: str | None = None,
    seed: int = 1,
    folder: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the benchmark; the JSON report as a dict (see the module doc)."""
    load_before = load_average()
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="p2p-bench-")))
        async with scratch_database(database_url, folder) as url:
            report = await _Bench(url, households, seed, progress).run()
    return {
        "benchmark": "interval",
        "households": households,
        "database": "postgresql" if url.startswith("postgres") else "sqlite",
        **report,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_before": load_before,
        "load_after": load_average(),
    }


class _Bench:
    def __init__(self, url: str, households: int, seed: int, progress: bool) -> None:
        self.n = households
        self.rng = random.Random(seed)
        self.progress = progress
        self.config = GridConfig(
            id="bench-grid",
            name="Interval benchmark grid",
            interval_minutes=15,
            gate_closure_seconds=300,
            settlement_window_seconds=300,
            # One interval per settlement period: statements right after settlement.
            settlement_period_seconds=900,
            order_horizon_seconds=6 * 3600,
            ledger=LedgerConfig(
                kind=LedgerKind.LOCAL,
                payout_policy="collected",
                # Pay every producer, however little it is owed.
                payout_threshold_micro=0,
            ),
        )
        settings = Settings(
            database_url=url,
            grid=self.config,
            run_cycle=False,
            # A throwaway key for the grid's ledger account (no key file is written).
            ledger_key=KeyPair.generate().seed_hex,
        )
        self.database = "postgresql" if url.startswith("postgres") else "sqlite"
        self.clock = ManualClock(START)
        self.grid = build_grid(settings, self.clock)
        self.keys: list[KeyPair] = []
        self.producer = [i % 2 == 0 for i in range(households)]
        self.seqs = [0] * households
        self.timings: dict[str, float] = {}
        # CPU seconds of this process (its threads too: SQLite's work, not PostgreSQL's):
        # what a phase costs whatever else the machine runs.
        self.cpu: dict[str, float] = {}
        self.signing = 0.0
        self.minted = 0
        self.onboard_seconds = 0.0
        self.analyze_seconds = 0.0

    def _say(self, text: str) -> None:
        if self.progress:
            print(f"bench interval: {text}", file=sys.stderr, flush=True)

    async def run(self) -> dict[str, Any]:
        grid = self.grid
        await grid.open()
        grid.writer.start()
        try:
            started = time.perf_counter()
            await self._setup()
            setup = time.perf_counter() - started - self.signing
            self._say(f"set-up {setup:.1f} s (+ {self.signing:.1f} s signing)")
            figures = await self._interval()
            checks = await self._check()
        finally:
            await grid.stop()
        total = sum(self.timings[p] for p in PHASES)
        households, seconds = TARGETS[self.database]
        return {
            "producers": sum(self.producer),
            **figures,
            "setup_seconds": round(setup, 2),
            "onboard_seconds": round(self.onboard_seconds, 2),  # part of the set-up
            "analyze_seconds": round(self.analyze_seconds, 2),  # PostgreSQL, between phases
            "signing_seconds": round(self.signing, 2),
            **{f"{p}_seconds": round(self.timings[p], 2) for p in PHASES},
            **{f"{p}_cpu_seconds": round(self.cpu[p], 2) for p in PHASES},
            "total_seconds": round(total, 2),
            "total_cpu_seconds": round(sum(self.cpu[p] for p in PHASES), 2),
            # The target is set at one size: a smaller run neither meets nor misses it.
            "target": {"households": households, "seconds": seconds},
            "met": total < seconds if self.n >= households else None,
            **checks,
        }

    # --- signing --------------------------------------------------------------------

    def _sign(
        self, items: Sequence[tuple[int, Body]], ts: datetime
    ) -> list[tuple[bytes, Envelope]]:
        """Signed envelopes (raw bytes and parsed, as the HTTP route hands them on)."""
        started = time.perf_counter()
        grid_id = self.config.id
        out = []
        for i, body in items:
            keys = self.keys[i]
            self.seqs[i] += 1
            payload = Payload(Header(grid_id, keys.address, self.seqs[i], ts), body)
            wire_payload = payload.to_wire()
            signed = canonical_json(wire_payload)
            signature = keys.sign(signed)
            wire = {
                "payload": wire_payload,
                "public_key": keys.public_key_b64,
                "signature": b64encode(signature),
            }
            out.append(
                (orjson.dumps(wire), Envelope(payload, keys.public_key, signature, wire, signed))
            )
        self.signing += time.perf_counter() - started
        return out

    async def _submit(self, signed: list[tuple[bytes, Envelope]], what: str) -> None:
        """Hand every envelope to the writer, ``IN_FLIGHT`` at a time; all must be accepted."""
        writer = self.grid.writer
        outcomes: list[Outcome | None] = [None] * len(signed)
        queue: Iterator[tuple[int, tuple[bytes, Envelope]]] = iter(enumerate(signed))

        async def household() -> None:
            for index, (raw, envelope) in queue:
                outcomes[index] = await writer.submit(raw, envelope)

        await asyncio.gather(*(household() for _ in range(min(IN_FLIGHT, len(signed)))))
        refused = [o for o in outcomes if o is None or o.status != 200]
        if refused:
            first = refused[0]
            detail = "no answer" if first is None else first.body[:300].decode(errors="replace")
            raise RuntimeError(f"{len(refused)} {what} envelopes refused; first: {detail}")

    # --- set-up ---------------------------------------------------------------------

    async def _setup(self) -> None:
        grid = self.grid
        n = self.n
        started = time.perf_counter()
        self.keys = [KeyPair.generate() for _ in range(n)]
        self.signing += time.perf_counter() - started  # keys are made at home too
        codes: list[str] = []
        for first in range(0, n, MAX_INVITATIONS):
            issued = await grid.operator.create_invitations(min(MAX_INVITATIONS, n - first))
            codes.extend(c.code for c in issued)
        now = self.clock.now()
        joins = self._sign([(i, Join(codes[i], f"House {i}")) for i in range(n)], now)
        await self._onboard(joins)
        producer = Assets((PV,), (MAIN,))
        consumer = Assets((), (MAIN,))
        declared = self._sign(
            [(i, producer if self.producer[i] else consumer) for i in range(n)], now
        )
        await self._submit(declared, "assets")
        self._say(f"{n} households joined, funded and declared their assets")
        payments = grid.payments
        grid_float = PRODUCER_FLOAT_MICRO * max(1, sum(self.producer))
        await payments.mint(payments.address, grid_float, "bench float")
        self.minted += grid_float
        # The intervals before the benchmarked one: cleared (empty) and settled.
        self.t = grid.schedule.start_of(START) + INTERVAL_AHEAD * grid.schedule.length
        self.clock.set(self.t - timedelta(minutes=9))
        await grid.cycle.run_due()

    async def _onboard(self, joins: list[tuple[bytes, Envelope]]) -> None:
        """The operator onboards the street: every join and its money, a chunk a request."""
        started = time.perf_counter()
        for first in range(0, len(joins), MAX_HOUSEHOLDS):
            chunk = joins[first : first + MAX_HOUSEHOLDS]
            result = await self.grid.onboarding.onboard(chunk, FUNDS_MICRO, "bench")
            if result["refused"] or result["funded"] != len(chunk):
                raise RuntimeError(f"onboarding went wrong: {result['refused'][:1]}")
            self.minted += FUNDS_MICRO * result["funded"]
        self.onboard_seconds = time.perf_counter() - started

    # --- the interval ---------------------------------------------------------------

    async def _timed(self, phase: str, coro: Any) -> None:
        await self._analyze()
        started, cpu = time.perf_counter(), time.process_time()
        await coro
        self.timings[phase] = time.perf_counter() - started
        self.cpu[phase] = time.process_time() - cpu
        self._say(f"{phase}: {self.timings[phase]:.2f} s ({self.cpu[phase]:.2f} s CPU)")

    async def _analyze(self) -> None:
        """PostgreSQL: fresh planner statistics, as autovacuum keeps them (not timed).

        The set-up fills tables in minutes that a real grid fills over months,
        and the phases of a real interval are minutes apart, time enough for
        autovacuum to analyze what the previous one added. Without statistics
        (autovacuum off, or not yet run) the planner takes a batch's ``IN``
        list of 512 ids for the whole table and scans it, every batch.
        """
        if not self.grid.db.is_postgres:
            return
        started = time.perf_counter()
        async with self.grid.db.write() as conn:
            await conn.execute(text("ANALYZE"))
        self.analyze_seconds += time.perf_counter() - started

    async def _interval(self) -> dict[str, Any]:
        offered = await self._orders()
        # 2. Past gate closure: clear.
        schedule = self.grid.schedule
        self.clock.set(schedule.gate_closure(self.t) + timedelta(seconds=1))
        await self._timed("clearing", self.grid.cycle.run_due())
        readings = await self._readings(offered)
        # 4. Past the settlement window: settle and issue the period's statements.
        self.clock.set(schedule.window_close(self.t) + timedelta(seconds=1))
        await self._timed("settlement", self.grid.cycle.run_due())
        payments = await self._payments()
        passes = await self._payouts()
        return {
            "orders": self.n,
            "readings_envelopes": readings,
            "payments": payments,
            "payout_passes": passes,
        }

    async def _orders(self) -> list[int]:
        """1. Orders for t: producers sell, the others buy; the prices cross partially.

        Returns what each household offered (0 for buyers).
        """
        rng = self.rng
        items: list[tuple[int, Body]] = []
        offered = [0] * self.n
        for i in range(self.n):
            if self.producer[i]:
                offered[i] = rng.randint(200, 1_000)
                spec = OrderSpec("o", Side.SELL, offered[i], _price(rng, 800, 2_000))
            else:
                spec = OrderSpec("o", Side.BUY, rng.randint(100, 1_000), _price(rng, 1_000, 2_800))
            items.append((i, Orders(self.t, (spec,))))
        orders = self._sign(items, self.clock.now())
        await self._timed("orders", self._submit(orders, "orders"))
        return offered

    async def _readings(self, offered: list[int]) -> int:
        """3. After the interval every household reports its meters.

        Producers make more than they use and offered, so each of them has a
        surplus (and a statement: a household whose net is exactly what it
        traded has nothing to settle and gets none).
        """
        rng = self.rng
        t = self.t
        self.clock.set(t + self.grid.schedule.length + timedelta(seconds=30))
        items: list[tuple[int, Body]] = []
        for i in range(self.n):
            if self.producer[i]:
                used = rng.randint(50, 400)
                made = rng.randint(offered[i] + used + 1, 1_500)
                body: Body = Readings((Reading(t, "pv", made), Reading(t, "main", used)))
            else:
                body = Readings((Reading(t, "main", rng.randint(100, 1_200)),))
            items.append((i, body))
        reports = self._sign(items, self.clock.now())
        await self._timed("readings", self._submit(reports, "readings"))
        return len(reports)

    async def _payments(self) -> int:
        """5. Households pay what they owe (each signs a transfer and an envelope)."""
        owed = await self._owed()
        address = self.grid.payments.address
        index = {k.address: i for i, k in enumerate(self.keys)}
        started = time.perf_counter()
        items: list[tuple[int, Body]] = []
        for statement_id, owner, amount in owed:
            i = index[owner]
            transfer = SignedTransfer.sign(
                self.keys[i],
                grid=self.config.id,
                recipient=address,
                amount=amount,
                seq=1,
                memo=statement_id,
            )
            items.append((i, Payment(statement_id, LedgerKind.LOCAL, transfer=transfer.to_wire())))
        self.signing += time.perf_counter() - started
        paying = self._sign(items, self.clock.now())
        await self._timed("payments", self._submit(paying, "payment"))
        return len(paying)

    async def _payouts(self) -> int:
        """6. The grid pays its producers (in batches); how many passes it took."""
        passes = 0
        payouts = self.grid.payouts

        async def pay_out() -> None:
            nonlocal passes
            while True:
                report = await payouts.run_once()
                passes += 1
                if report.failed or report.in_doubt or report.skipped:
                    raise RuntimeError(f"payout pass went wrong: {report.to_wire()}")
                if not report.paid:
                    if report.unfunded:
                        raise RuntimeError(f"{len(report.unfunded)} payouts unfunded")
                    return

        await self._timed("payouts", pay_out())
        return passes

    async def _owed(self) -> list[tuple[str, str, int]]:
        """``(statement, owner's address, ledger amount)`` of every statement owed to the grid."""
        async with self.grid.db.read() as conn:
            rows = await conn.execute(
                select(statements.c.id, participants.c.address, statement_terms.c.amount_due)
                .join(participants, participants.c.id == statements.c.participant_id)
                .join(statement_terms, statement_terms.c.statement_id == statements.c.id)
                .where(statement_terms.c.amount_due > 0)
                .order_by(statements.c.id)
            )
            return [(r.id, r.address, int(r.amount_due)) for r in rows]

    # --- checks ---------------------------------------------------------------------

    async def _check(self) -> dict[str, Any]:
        async with self.grid.db.read() as conn:
            members = int(await conn.scalar(select(func.count()).select_from(participants)) or 0)
            per_member = (
                await conn.execute(
                    select(statements.c.participant_id, func.count().label("n")).group_by(
                        statements.c.participant_id
                    )
                )
            ).all()
            unpaid = int(
                await conn.scalar(
                    select(func.count())
                    .select_from(statements)
                    .where(statements.c.status != "paid")
                )
                or 0
            )
            total_statements = int(
                await conn.scalar(select(func.count()).select_from(statements)) or 0
            )
            owed_to = set(
                (
                    await conn.execute(
                        select(statements.c.participant_id).where(statements.c.amount_due_micro < 0)
                    )
                ).scalars()
            )
            paid_out = (
                await conn.execute(
                    select(payouts.c.participant_id, func.count().label("n"))
                    .where(payouts.c.state == "done")
                    .group_by(payouts.c.participant_id)
                )
            ).all()
            not_done = int(
                await conn.scalar(
                    select(func.count()).select_from(payouts).where(payouts.c.state != "done")
                )
                or 0
            )
            paid_items = int(await conn.scalar(select(func.count()).select_from(payout_items)) or 0)
            balances = int(
                await conn.scalar(select(func.coalesce(func.sum(ledger_accounts.c.balance), 0)))
                or 0
            )
            _, minted = await self.grid.payments.store.totals(conn)
        once = {r.participant_id: int(r.n) for r in per_member}
        payout_counts = {r.participant_id: int(r.n) for r in paid_out}
        statements_once = len(once) == members == self.n and set(once.values()) == {1}
        payouts_once = (
            set(payout_counts) == owed_to
            and all(v == 1 for v in payout_counts.values())
            and not_done == 0
            and paid_items == len(owed_to)
        )
        conserved = balances == minted == self.minted
        return {
            "statements": total_statements,
            "producers_paid": len(payout_counts),
            "statements_once": statements_once,
            "all_paid": unpaid == 0,
            "payouts_once": payouts_once,
            "conserved": conserved,
            "minted": self.minted,
            "balances_total": balances,
            "consistent": statements_once and unpaid == 0 and payouts_once and conserved,
        }


def _price(rng: random.Random, low: int, high: int) -> str:
    """A price per kWh between ``low`` and ``high`` ten-thousandths."""
    return f"{rng.randint(low, high) / 10_000:.4f}"


__all__ = ["PHASES", "TARGETS", "bench", "register", "run"]
