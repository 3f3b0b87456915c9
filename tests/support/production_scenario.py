"""A small neighbourhood driven through real server processes, and the checks after it.

Sellers have ten solar sources each, buyers ten consumer meters; every
reading goes in an envelope of its own, so a dozen households keep many
envelopes in flight. A household resends what was not acknowledged (a new
envelope with the same readings, as the integration's outbox does) and
records every acknowledged reading; :func:`check_history` compares those,
the log and the tables afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select

from grid_server.storage.db import Database
from grid_server.storage.schema import (
    events,
    intervals,
    ledger_entries,
    line_items,
    log_entries,
    participants,
    payouts,
    periods,
    readings,
    statements,
)
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.grid_client import GridClient, GridUnavailable
from p2p_energy_client.models import Event
from p2p_energy_client.protocol import (
    ErrorCode,
    MeterDecl,
    OrderSpec,
    ProtocolError,
    Reading,
    Side,
    SourceDecl,
    SourceKind,
)
from p2p_energy_client.units import format_utc
from tests.support.processes import Operator, SharedClock, eventually

# A Friday morning: intervals 10:00-10:45 make the period (statements) of 10:00.
START = datetime(2026, 11, 27, 10, 3, tzinfo=UTC)
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
Q = timedelta(minutes=15)
ASSETS = 10
SOURCE_W = 400  # 100 Wh per interval
METER_W = 800  # 200 Wh per interval


@dataclass
class Home:
    client: GridClient
    seller: bool
    acked: dict[tuple[str, datetime], int] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.client.address

    @property
    def assets(self) -> list[str]:
        return [f"{'s' if self.seller else 'm'}{k}" for k in range(ASSETS)]


async def persist[T](call: Callable[[], Awaitable[T]], *, within: float = 120.0) -> T:
    """Call until the grid answers: a dead or restarting server is retried, not skipped."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await call()
        except GridUnavailable:
            pass
        except ProtocolError as exc:
            if exc.code is not ErrorCode.UNAVAILABLE:
                raise
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the grid did not come back")
        await asyncio.sleep(0.2)


async def join(
    operator: Operator, urls: list[str], clock: SharedClock, sellers: int, buyers: int
) -> list[Home]:
    homes = []
    for n in range(sellers + buyers):
        client = GridClient(urls[n % len(urls)], KeyPair.generate(), clock=clock.now, timeout=15)
        homes.append(Home(client, seller=n < sellers))

    async def setup(n: int, home: Home) -> None:
        code = await operator.invite()
        await persist(lambda: home.client.join(code, f"Home {n} \u00e9"))
        if home.seller:
            sources = [SourceDecl(a, a, SourceKind.SOLAR, SOURCE_W) for a in home.assets]
            await persist(lambda: home.client.set_assets(sources, ()))
        else:
            meters = [MeterDecl(a, a, METER_W) for a in home.assets]
            await persist(lambda: home.client.set_assets((), meters))

    await asyncio.gather(*(setup(n, h) for n, h in enumerate(homes)))
    return homes


async def report(home: Home, items: list[Reading]) -> None:
    """Send each reading in an envelope of its own; record what the grid acknowledged."""
    for reading in items:
        result = await persist(lambda r=reading: home.client.send_readings([r]))  # type: ignore[misc]
        (ack,) = result.readings
        assert ack.status in ("accepted", "duplicate"), ack
        home.acked[(reading.asset, reading.interval)] = reading.energy_wh


def flood(home: Home, interval: datetime) -> list[Reading]:
    return [Reading(interval, a, 10 + k) for k, a in enumerate(home.assets)]


def metered(home: Home, interval: datetime) -> list[Reading]:
    return [Reading(interval, a, 70 if home.seller else 40) for a in home.assets]


async def place_orders(homes: list[Home], interval: datetime) -> None:
    async def one(home: Home) -> None:
        spec = (
            OrderSpec("s", Side.SELL, 800, "0.1000")
            if home.seller
            else OrderSpec("b", Side.BUY, 300, "0.2500")
        )
        await persist(lambda: home.client.submit_orders(interval, [spec]))

    await asyncio.gather(*(one(h) for h in homes))


async def close(homes: list[Home]) -> None:
    for home in homes:
        await home.client.close()


class Streams:
    """Every household's live stream (``GridClient.events``), collected."""

    def __init__(self, homes: list[Home]) -> None:
        self.received: dict[str, list[Event]] = {h.address: [] for h in homes}
        self._tasks = [asyncio.create_task(self._listen(h)) for h in homes]

    async def _listen(self, home: Home) -> None:
        async for event in home.client.events(reconnect_delay=0.2):
            self.received[home.address].append(event)

    async def check_complete(self, db: Database, *, within: float = 30.0) -> None:
        """Each stream delivered exactly the events visible to its household, in order."""
        expected = {a: await visible_events(db, a) for a in self.received}
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            if all([e.id for e in self.received[a]] == ids for a, ids in expected.items()):
                break
            await asyncio.sleep(0.1)
        for address, ids in expected.items():
            assert [e.id for e in self.received[address]] == ids, address

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def visible_events(db: Database, address: str) -> list[int]:
    async with db.read() as conn:
        pid = await conn.scalar(select(participants.c.id).where(participants.c.address == address))
        ids = await conn.scalars(
            select(events.c.id)
            .where(or_(events.c.public.is_(True), events.c.participant_id == pid))
            .order_by(events.c.id)
        )
        return list(ids)


def state_of(interval: datetime) -> Any:
    return select(intervals.c.state).where(intervals.c.start == interval)


async def no_crash(point: str) -> None:
    return None


async def drive(
    homes: list[Home],
    clock: SharedClock,
    db: Database,
    *,
    crash: Callable[[str], Awaitable[None]] = no_crash,
) -> None:
    """Four intervals from orders to payouts; ``crash(point)`` where a fault point is armed.

    10:00 and 10:15 carry readings only (ten envelopes per household and
    interval, all at once); households trade in 10:30 and 10:45; the period
    10:00-11:00 gets statements at 11:11 and the sellers are paid out.
    """
    for t in (T0 + 2 * Q, T0 + 3 * Q):
        await place_orders(homes, t)

    # Ingest: readings of 10:00 and 10:15, one envelope each, all at once.
    clock.set(T0 + Q + Q / 15)
    sending = asyncio.gather(*(report(h, flood(h, T0) + flood(h, T0 + Q)) for h in homes))
    await crash("ingest.commit")
    await sending

    # Clearing 10:30 (its gate closed at 10:25); 10:45 clears at 10:41.
    clock.set(T0 + Q + Q * 11 / 15)
    await crash("cycle.clear")
    await eventually(db, state_of(T0 + 2 * Q), "cleared")
    clock.set(T0 + 2 * Q + Q * 11 / 15)
    await eventually(db, state_of(T0 + 3 * Q), "cleared")
    clock.set(T0 + 3 * Q + Q / 15)
    await asyncio.gather(
        *(report(h, metered(h, T0 + 2 * Q) + metered(h, T0 + 3 * Q)) for h in homes)
    )

    # Settling 10:30 (its window closed at 10:55), then 10:45 and the period's statements.
    clock.set(T0 + 3 * Q + Q * 11 / 15)
    await crash("cycle.settle")
    await eventually(db, state_of(T0 + 2 * Q), "settled")
    clock.set(T0 + 4 * Q + Q * 11 / 15)
    await eventually(db, state_of(T0 + 3 * Q), "settled")

    # Paying the producers (from the grid's float).
    await crash("payout.send")
    done = select(func.count()).select_from(payouts).where(payouts.c.state == "done")
    await eventually(db, done, sum(h.seller for h in homes))


async def check_history(
    db: Database, homes: list[Home], cycle: list[datetime], period: datetime
) -> None:
    """Exactly once, nothing lost: readings, clearing, settlement, statements, payouts."""
    async with db.read() as conn:
        # Every acknowledged reading is stored, with the acknowledged value, and nothing else.
        stored = {
            (r.address, r.asset_id, r.interval_start): r.energy_wh
            for r in await conn.execute(
                select(
                    participants.c.address,
                    readings.c.asset_id,
                    readings.c.interval_start,
                    readings.c.energy_wh,
                ).join(participants, participants.c.id == readings.c.participant_id)
            )
        }
        acked = {(h.address, a, t): e for h in homes for (a, t), e in h.acked.items()}
        assert stored == acked
        # Each interval cleared once and settled once (the log and the tables agree).
        states = dict((await conn.execute(select(intervals.c.start, intervals.c.state))).all())
        assert all(states[t] == "settled" for t in cycle), states
        logged = Counter(
            (r.kind, r.ref)
            for r in await conn.execute(
                select(log_entries.c.kind, log_entries.c.ref).where(
                    log_entries.c.kind.in_(("market_result", "settlement", "statement", "payout"))
                )
            )
        )
        for t in states:
            assert logged[("market_result", format_utc(t))] == 1, t
        for t in cycle:
            assert logged[("settlement", format_utc(t))] == 1, t
        # One statement per participant with line items in the period, logged once.
        assert await conn.scalar(select(func.count()).select_from(periods)) == 1
        billed = await conn.scalar(
            select(func.count(func.distinct(line_items.c.participant_id))).where(
                line_items.c.interval_start >= period,
                line_items.c.interval_start < period + timedelta(hours=1),
            )
        )
        issued = (await conn.execute(select(statements.c.id, statements.c.status))).all()
        assert len(issued) == billed == len(homes)
        assert all(logged[("statement", s.id)] == 1 for s in issued)
        # Each seller paid out exactly once on the ledger; nothing in doubt or failed.
        sellers = {h.address for h in homes if h.seller}
        done = (await conn.execute(select(payouts.c.recipient, payouts.c.state))).all()
        assert sorted(r.recipient for r in done if r.state == "done") == sorted(sellers), done
        assert all(r.state == "done" for r in done), done
        paid = Counter(
            r.recipient
            for r in await conn.execute(
                select(ledger_entries.c.recipient).where(ledger_entries.c.kind == "transfer")
            )
        )
        assert paid == Counter(sellers)
        by_address = {
            r.address: r.status
            for r in await conn.execute(
                select(participants.c.address, statements.c.status).join(
                    participants, participants.c.id == statements.c.participant_id
                )
            )
        }
        assert all(by_address[a] == "paid" for a in sellers), by_address
        # Two log entries per payout: its intent, then its completion.
        assert sum(n for (kind, _), n in logged.items() if kind == "payout") == 2 * len(sellers)
