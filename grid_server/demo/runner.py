"""``p2p-grid demo``: a grid server and a simulated neighbourhood in one process.

Order of events:

1. The households are laid out (:func:`.neighbourhood.make_households`) and
   the demo grid sized for them (:func:`.grid.demo_grid`).
2. The grid server starts in-process on SQLite with a :class:`.clock.DemoClock`
   that stands still at ``start``; uvicorn serves it on ``host:port``.
3. The operator API issues one invitation per household (its zone and role);
   every household joins with its own key and declares its devices, through
   its :class:`~p2p_energy_client.grid_client.GridClient`, sharing one aiohttp session.
4. The clock starts. One task advances the physics every ``step`` of grid
   time and feeds every household's meters; a scheduler runs each household's
   routine once per interval at its own offset; each household listens to
   its live stream (or polls, for very large neighbourhoods).
5. At ``end`` (``--days``) the households keep reporting and paying until
   every interval before ``end`` is settled and its statements are issued
   and paid, then everything stops and the summary is computed from the
   grid's database. Ctrl-C stops the same way, just sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp
import uvicorn

from grid_server.api import create_app
from grid_server.api.dashboard import login_link
from grid_server.config import GridConfig, Settings
from grid_server.service.ledger_key import KEY_FILE
from grid_server.service.wiring import Grid
from grid_server.storage.cycle_queries import periods_issued
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.models import GridInfo
from p2p_energy_client.payments import make_payer
from p2p_energy_client.strategy import StrategyKind
from p2p_energy_client.units import format_price, interval_start, parse_price

from . import stats
from .clock import DemoClock
from .driver import DemoHousehold, Preferences, household_keys, offset_for
from .grid import FEED_IN, RETAIL, demo_grid
from .models import rng_for
from .neighbourhood import HouseholdSpec, Neighbourhood, make_households

_LOGGER = logging.getLogger(__name__)

DEFAULT_SPEED: Final = 300.0  # one 15-minute interval every 3 real seconds
# How many households the default speed keeps up with on a 2-core machine
# (measured, with margin: see docs/operators/demo.md).
HOUSEHOLDS_AT_DEFAULT_SPEED: Final = 60
SLOWDOWN_EXPONENT: Final = 1.2
# A June Monday, 03:00 UTC (05:00 in Frankfurt, about sunrise): the first
# simulated hours show the sun rising and the market waking up.
DEFAULT_START: Final = datetime(2026, 6, 15, 3, 0, tzinfo=UTC)
DEFAULT_PORT: Final = 8080
# Above this many households, poll once per interval instead of holding one
# WebSocket each (see docs/operators/demo.md: measured).
STREAM_LIMIT: Final = 200
JOIN_CONCURRENCY: Final = 16
REQUEST_CONNECTIONS: Final = 128
# The operator's money on the local ledger: every household's wallet, and the
# grid's float per household, from which producers are paid before consumers
# have paid (payout policy "float").
WALLET_MICRO: Final = 50_000_000  # 50 EUR
GRID_FLOAT_MICRO: Final = 500_000  # 0.50 EUR per household
# Households do their routine spread over this part of each interval, after
# the first simulation step of the interval has fed their meters, and with
# time to spare before the next interval's gate closes (5 minutes before it).
ROUTINE_SPREAD: Final = timedelta(minutes=6)
ROUTINE_SLOTS: Final = 60
# How long (grid time) the demo waits after ``end`` for the last settlements
# and payments before it gives up on them.
DRAIN_LIMIT: Final = timedelta(hours=3)
_PREFERENCES: Final = 21


@dataclass(slots=True)
class DemoOptions:
    households: int = 30
    speed: float | None = None  # None: DEFAULT_SPEED, slower for big neighbourhoods
    days: float | None = None  # None: until stopped
    seed: int = 1
    start: datetime = DEFAULT_START
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0: any free port; a busy port falls back to a free one
    database: Path | None = None  # default: a new file in a temporary directory
    step_seconds: int = 60
    events: str = "auto"  # "stream", "poll" or "auto"
    settlement_period_seconds: int | None = None
    settlement_window_seconds: int | None = None
    clouds: bool = True
    log_level: str = "WARNING"
    sharing: bool = False  # share deviations after delivery (the default rule)

    def step(self) -> int:
        return self.step_seconds

    def resolved_speed(self) -> float:
        """``speed``, or the default: 300x, slower above ``HOUSEHOLDS_AT_DEFAULT_SPEED``.

        The grid's work grows with the households (a little faster than in
        proportion), so a 2-core machine keeps up at 300 x (60 / N) ** 1.2:
        measured, 60 households at 300x and 1,000 at 10x (docs/operators/demo.md).
        """
        if self.speed is not None:
            return self.speed
        if self.households <= HOUSEHOLDS_AT_DEFAULT_SPEED:
            return DEFAULT_SPEED
        ratio = HOUSEHOLDS_AT_DEFAULT_SPEED / self.households
        return round(DEFAULT_SPEED * float(ratio**SLOWDOWN_EXPONENT), 1)

    def use_stream(self) -> bool:
        if self.events == "auto":
            return self.households <= STREAM_LIMIT
        return self.events == "stream"


@dataclass(slots=True)
class Status:
    """A moment of the demo, for the status line."""

    sim_time: datetime
    real_seconds: float
    stats: stats.LiveStats
    trades: int
    payments: int
    errors: int
    lag_seconds: float  # how far (grid time) the simulation trails the clock
    phase: str  # "running", "draining", "stopping"


@dataclass(slots=True)
class DemoResult:
    database: Path
    url: str
    start: datetime
    end: datetime
    summary: stats.Summary
    households: int
    real_seconds: float
    cpu_seconds: float
    interrupted: bool
    # The running phase alone (from the clock's start to ``end`` or Ctrl-C):
    # what the demo docs' capacity figure is measured from.
    run_real_seconds: float = 0.0
    run_cpu_seconds: float = 0.0
    run_sim_seconds: float = 0.0
    # Signs of an overloaded machine (grid time): how far the simulation fell
    # behind the clock, the longest report-and-trade routine of a household,
    # and readings the grid refused for good (e.g. sent after their window).
    max_lag_seconds: float = 0.0
    longest_routine_seconds: float = 0.0
    readings_rejected: int = 0
    over_cap: int = 0  # statements above a household's daily cap (wait for the owner)
    utility_settled_micro: int = 0  # what the utility paid the grid (minted, see _settle_utility)
    sharing: bool = False  # the grid shared deviations after delivery

    @property
    def cpu_ms_per_household_interval(self) -> float:
        intervals = self.run_sim_seconds / 900
        if not intervals or not self.households:
            return 0.0
        return 1000 * self.run_cpu_seconds / (self.households * intervals)


@dataclass
class Started:
    """What the demo prints when it is up."""

    url: str
    dashboard: str | None
    database: Path
    operator_token: str
    households: int
    speed: float
    start: datetime
    step_seconds: int
    streams: bool


def _free_port(host: str, port: int) -> int:
    """``port`` if it can be bound on ``host``, else 0 (let the OS choose)."""
    if port == 0:
        return 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return 0
    return port


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the demo stops households first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


def preferences(specs: list[HouseholdSpec], seed: int) -> list[Preferences]:
    """What the owners set in the integration; they differ, drawn from the seed.

    * Reserve prices in whole cents: minimum sell 0.08-0.14, maximum buy
      0.24-0.30 per kWh, so zone prices move between them as the sun and
      the demand move.
    * A fifth trade ``cautious``, the rest ``reserve`` (the default).
    * Intervals traded ahead: 1 (20 %), 2 (50 %) or the default 4 (30 %).
      Every tick re-places the orders of each interval ahead whose forecast
      moved, so this is most of a household's envelopes.
    """
    rng = rng_for(seed, _PREFERENCES, None)
    n = len(specs)
    sell_cents = rng.integers(0, 7, size=n)
    buy_cents = rng.integers(0, 7, size=n)
    cautious = rng.random(n) < 0.2
    ahead = rng.choice([1, 2, 4], p=[0.2, 0.5, 0.3], size=n)
    feed_in, retail = parse_price(FEED_IN), parse_price(RETAIL)
    return [
        Preferences(
            StrategyKind.CAUTIOUS if cautious[i] else StrategyKind.RESERVE,
            format_price(feed_in + int(sell_cents[i]) * 10_000),
            format_price(retail - int(buy_cents[i]) * 10_000),
            offset_for(spec.index, n, ROUTINE_SPREAD),
            int(ahead[i]),
        )
        for i, spec in enumerate(specs)
    ]


def _span(options: DemoOptions, interval_minutes: int) -> tuple[datetime, datetime | None]:
    """The first interval the demo runs, and the end of its span (None: until stopped)."""
    start = interval_start(options.start.astimezone(UTC), interval_minutes)
    if options.days is None:
        return start, None
    # Whole intervals only, so the span's last interval is complete.
    end = interval_start(start + timedelta(days=options.days), interval_minutes)
    if end <= start:
        raise ValueError("the demo needs at least one 15-minute interval (--days)")
    return start, end


class Demo:
    """One run of the demo; :meth:`run` does everything and returns the result."""

    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.specs = make_households(options.households, options.seed)
        kwargs: dict[str, int] = {}
        if options.settlement_period_seconds is not None:
            kwargs["settlement_period_seconds"] = options.settlement_period_seconds
        if options.settlement_window_seconds is not None:
            kwargs["settlement_window_seconds"] = options.settlement_window_seconds
        self.config: GridConfig = demo_grid(self.specs, sharing=options.sharing, **kwargs)
        step = options.step()
        if 900 % step:
            raise ValueError("the simulation step must divide the 15-minute interval")
        self.start, self.end = _span(options, self.config.interval_minutes)
        self.speed = options.resolved_speed()
        self.clock = DemoClock(self.start, self.speed)
        self.operator_token = secrets.token_urlsafe(24)
        self.households: list[DemoHousehold] = []
        self.neighbourhood = Neighbourhood(
            self.specs, self.start, seed=options.seed, step_s=step, clouds=options.clouds
        )
        self.stop_requested = asyncio.Event()
        self.phase = "starting"
        self._tasks: list[asyncio.Task[None]] = []
        self._routines: set[asyncio.Task[None]] = set()
        self.url = ""
        self.grid: Grid | None = None
        self._stepped = asyncio.Event()
        self.max_lag_seconds = 0.0
        self.minted_micro = 0
        self.utility_paid_micro = 0
        self._run_began: tuple[float, float] | None = None
        self._run_ended: tuple[float, float, datetime] | None = None
        self._grid_address = ""  # the grid's ledger address, once it is known

    # -- set-up --------------------------------------------------------------------------

    def database_path(self) -> Path:
        if self.options.database is not None:
            path = self.options.database
            if path.exists():
                raise FileExistsError(f"{path} exists; the demo starts a new grid in a new file")
            return path
        folder = Path(tempfile.mkdtemp(prefix="p2p-demo-"))
        return folder / "grid.db"

    def settings(self, database: Path) -> Settings:
        return Settings(
            database_url=f"sqlite:///{database}",
            operator_token=self.operator_token,
            host=self.options.host,
            port=self.options.port,
            log_level=self.options.log_level,
            # Every household comes from 127.0.0.1: no per-address limit; and
            # grid time runs up to 300 times faster: no per-key limit either.
            rate_per_address=1e9,
            burst_per_address=1_000_000_000,
            rate_per_key=1e9,
            burst_per_key=1_000_000_000,
            # Sessions are in grid time; at 300x an hour passes in 12 s.
            session_ttl_seconds=30 * 86_400,
            grid=self.config,
        )

    async def _issue_invitations(self, session: aiohttp.ClientSession) -> list[str]:
        """One invitation per household through the operator API, for its zone and role.

        The operator issues them in batches, one request per zone and role.
        """
        headers = {"Authorization": f"Bearer {self.operator_token}"}
        url = f"{self.url}/api/v1/operator/invitations"
        groups: dict[tuple[str, str], list[int]] = {}
        for spec in self.specs:
            groups.setdefault((spec.zone, spec.role), []).append(spec.index)
        codes: dict[int, str] = {}
        for (zone, role), members in sorted(groups.items()):
            body = {"zone": zone, "role": role, "count": len(members), "expires_in_seconds": 86_400}
            async with session.post(url, json=body, headers=headers) as resp:
                data = await resp.json()
                if resp.status != 201:
                    raise RuntimeError(f"the operator API refused invitations: {data}")
            issued = data.get("invitations", [data])  # a single code comes alone
            for index, invitation in zip(members, issued, strict=True):
                codes[index] = str(invitation["code"])
        return [codes[spec.index] for spec in self.specs]

    async def _operator(
        self, session: aiohttp.ClientSession, method: str, path: str, body: object = None
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.operator_token}"}
        url = f"{self.url}/api/v1/operator{path}"
        async with session.request(method, url, json=body, headers=headers) as resp:
            data = await resp.json()
            if resp.status >= 300:
                raise RuntimeError(f"the operator API refused {method} {path}: {data}")
            return data

    async def _fund(self, session: aiohttp.ClientSession, grid_address: str) -> None:
        """The operator mints each household's wallet and the grid's float (local ledger)."""
        limit = asyncio.Semaphore(JOIN_CONCURRENCY)

        async def mint(address: str, amount: int, memo: str) -> None:
            body = {"address": address, "amount": amount, "memo": memo}
            async with limit:
                await self._operator(session, "POST", "/ledger/mint", body)

        await asyncio.gather(
            mint(grid_address, GRID_FLOAT_MICRO * len(self.specs), "demo: the grid's float"),
            *(mint(h.address, WALLET_MICRO, "demo: household wallet") for h in self.households),
        )
        self.minted_micro += GRID_FLOAT_MICRO * len(self.specs) + WALLET_MICRO * len(self.specs)

    async def _settle_utility(self, session: aiohttp.ClientSession, grid_address: str) -> None:
        """Play the utility: pay the grid what it owes for each issued period.

        The utility is not on the grid's ledger. What it owes the grid for a
        settlement period (for the surplus it bought at the feed-in price,
        less the shortfall it sold at retail) is settled outside the ledger,
        which on the local ledger the operator books by minting it to the
        grid's account (docs/operators/payments.md, "Paying producers"). When the grid owes the
        utility instead, that money stays in the grid's account.
        """
        assert self.grid is not None
        done: set[datetime] = set()
        while True:
            for period, owed in await stats.utility_owed_by_period(self.grid):
                if period in done:
                    continue
                done.add(period)
                if owed > 0:
                    memo = f"demo: the utility settles {period:%Y-%m-%d %H:%M} UTC"
                    body = {"address": grid_address, "amount": owed, "memo": memo}
                    await self._operator(session, "POST", "/ledger/mint", body)
                    self.utility_paid_micro += owed
                    self.minted_micro += owed
            await asyncio.sleep(0.5)

    async def _join_all(self, session: aiohttp.ClientSession, grid_info: GridInfo) -> None:
        codes = await self._issue_invitations(session)
        limit = asyncio.Semaphore(JOIN_CONCURRENCY)
        owners = preferences(self.specs, self.options.seed)
        for spec in self.specs:
            client = GridClient(
                self.url,
                household_keys(self.options.seed, spec.index),
                session=session,
                grid_id=grid_info.grid,
                clock=self.clock.now,
            )
            self.households.append(DemoHousehold(spec, client, owners[spec.index]))

        async def join(household: DemoHousehold, code: str) -> None:
            # The payer for the grid's ledger, as the integration picks it.
            payer = make_payer(household.client, grid_info)
            async with limit:
                await household.join(code, grid_info, payer)

        await asyncio.gather(*(join(h, c) for h, c in zip(self.households, codes, strict=True)))

    # -- the running demo ------------------------------------------------------------------

    async def _simulate(self) -> None:
        """Advance the physics with the grid clock and feed every household's meters."""
        nb = self.neighbourhood
        step = timedelta(seconds=nb.step_s)
        while True:
            delay = self.clock.seconds_until(nb.now + step)
            if delay > 0:
                await asyncio.sleep(delay)
            lag = (self.clock.now() - nb.now).total_seconds() - nb.step_s
            self.max_lag_seconds = max(self.max_lag_seconds, lag)
            at = nb.advance()
            for i, household in enumerate(self.households):
                household.observe(nb.meters(i), at)
            stepped, self._stepped = self._stepped, asyncio.Event()
            stepped.set()
            # Let the event loop breathe between catch-up steps.
            await asyncio.sleep(0)

    async def _meters_reach(self, moment: datetime) -> None:
        """Wait until the simulation has fed the meters up to ``moment``.

        At home the meters are always current; here the simulation can fall
        behind the clock on a busy machine, and a household that reported
        before its meters covered the interval would send that interval an
        interval late, possibly after its settlement window.
        """
        while self.neighbourhood.now < moment:
            await self._stepped.wait()

    async def _schedule_routines(self) -> None:
        """Each household's routine once per interval, at its own offset."""
        length = timedelta(minutes=self.config.interval_minutes)
        first_offset = timedelta(seconds=self.neighbourhood.step_s)
        slots: dict[int, list[DemoHousehold]] = {}
        for household in self.households:
            slot = int(household.preferences.offset_s * ROUTINE_SLOTS / ROUTINE_SPREAD.seconds)
            slots.setdefault(min(slot, ROUTINE_SLOTS - 1), []).append(household)
        boundary = self.start
        while True:
            for slot in sorted(slots):
                at = boundary + first_offset + ROUTINE_SPREAD * slot / ROUTINE_SLOTS
                delay = self.clock.seconds_until(at)
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._meters_reach(boundary + first_offset)
                for household in slots[slot]:
                    task = asyncio.create_task(
                        household.tick(self._meters_at, self.clock.now, self._sleep_until)
                    )
                    self._routines.add(task)
                    task.add_done_callback(self._routines.discard)
            boundary += length

    def _meters_at(self) -> datetime:
        return self.neighbourhood.now

    async def _sleep_until(self, moment: datetime) -> None:
        delay = self.clock.seconds_until(moment)
        if delay > 0:
            await asyncio.sleep(delay)

    async def _streams(self) -> None:
        # Reconnect delays are real seconds; keep them short under acceleration.
        await asyncio.gather(
            *(h.run_stream(self.clock.now, reconnect_delay=0.5) for h in self.households)
        )

    def _counters(self) -> tuple[int, int, int]:
        trades = sum(h.counters.trades for h in self.households)
        payments = sum(h.counters.payments for h in self.households)
        errors = sum(h.counters.errors for h in self.households)
        return trades, payments, errors

    async def _status(
        self, report: Callable[[Status], None] | None, began: float, every: float
    ) -> None:
        assert self.grid is not None
        while True:
            live = await stats.live_stats(self.grid)
            if report is not None:
                trades, payments, errors = self._counters()
                lag = (self.clock.now() - self.neighbourhood.now).total_seconds()
                report(
                    Status(
                        self.neighbourhood.now,
                        time.monotonic() - began,
                        live,
                        trades,
                        payments,
                        errors,
                        max(lag - self.neighbourhood.step_s, 0.0),
                        self.phase,
                    )
                )
            await asyncio.sleep(every)

    async def _done_with_span(self) -> bool:
        """Everything before ``end`` settled, its statements issued, paid and paid out."""
        assert self.grid is not None
        assert self.end is not None
        # Periods first: statements are issued with their period row, so a
        # summary read after it sees them (read the other way round, a period
        # issued in between would look paid before its statements exist).
        period = timedelta(seconds=self.config.settlement_period_seconds)
        first_period = self.grid.schedule.period_start(self.start)
        periods_done = int((self.end - first_period) / period) if self.end > first_period else 0
        if await _periods_issued(self.grid, first_period, self.end) < periods_done:
            return False
        summary = await stats.summary(self.grid, self.start, self.end)
        intervals = int((self.end - self.start) / timedelta(minutes=self.config.interval_minutes))
        if summary.intervals_settled < intervals:
            return False
        # Households paid what they owe (unless above their daily cap: that
        # waits for the owner), and producers got what reached the threshold.
        return summary.statements_unpaid_due == self._over_cap() and not summary.payouts_pending

    def _over_cap(self) -> int:
        return sum(len(h.household.over_cap) for h in self.households if h.household is not None)

    async def _wait_for_end(self) -> bool:
        """Run until ``end`` plus draining, or until stopped; True when interrupted."""
        stop = asyncio.create_task(self.stop_requested.wait())
        try:
            if self.end is None:
                await stop
                return True
            self.phase = "running"
            delay = self.clock.seconds_until(self.end)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stop), delay)
            if stop.done():
                return True
            self._mark_run_end()
            self.phase = "draining"
            give_up = self.end + DRAIN_LIMIT
            while self.clock.now() < give_up and not stop.done():
                if await self._done_with_span():
                    return False
                await asyncio.sleep(0.2)
            return stop.done()
        finally:
            stop.cancel()

    async def run(
        self,
        *,
        on_started: Callable[[Started], None] | None = None,
        on_status: Callable[[Status], None] | None = None,
        status_every: float = 1.0,
    ) -> DemoResult:
        began = time.monotonic()
        cpu0 = time.process_time()
        database = self.database_path()
        write_grid_key(database.parent / KEY_FILE, self.options.seed)
        app = create_app(self.settings(database), self.clock)
        self.grid = app.state.grid
        server, server_task = await self._serve(app)
        interrupted = False
        # Every live stream holds a connection for good; requests need their own.
        streams = len(self.specs) if self.options.use_stream() else 0
        connector = aiohttp.TCPConnector(limit=streams + REQUEST_CONNECTIONS)
        session = aiohttp.ClientSession(connector=connector)
        try:
            await self._start_neighbourhood(session)
            if on_started is not None:
                on_started(self._started(app, database))
            interrupted = await self._run_neighbourhood(session, on_status, began, status_every)
        finally:
            self._mark_run_end()
            self.phase = "stopping"
            await self._stop_households(session)
            end = self.end or interval_start(self.neighbourhood.now, self.config.interval_minutes)
            try:
                # Read while the server still has its database open.
                summary = await stats.summary(self.grid, self.start, end)
            finally:
                server.should_exit = True
                with contextlib.suppress(asyncio.CancelledError):
                    await server_task
        result = DemoResult(
            database,
            self.url,
            self.start,
            end,
            summary,
            len(self.households),
            time.monotonic() - began,
            time.process_time() - cpu0,
            interrupted,
            sharing=self.config.sharing.enabled,
        )
        self._measure(result, end)
        return result

    async def _serve(self, app: Any) -> tuple[_Server, asyncio.Task[None]]:
        """The grid server on the demo's host and port (a free one if that is taken)."""
        options = self.options
        config = uvicorn.Config(
            app,
            host=options.host,
            port=_free_port(options.host, options.port),
            log_level=options.log_level.lower(),
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        server = _Server(config)
        server_task = asyncio.create_task(server.serve())
        while not server.started:
            if server_task.done():
                server_task.result()
                raise RuntimeError("the grid server stopped while starting")
            await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{options.host}:{bound}"
        return server, server_task

    async def _start_neighbourhood(self, session: aiohttp.ClientSession) -> None:
        """Join and fund every household, and let each meter take its first look."""
        options = self.options
        probe = GridClient(self.url, household_keys(options.seed, -1), session=session)
        grid_info = await probe.grid_info()
        self.phase = "joining"
        await self._join_all(session, grid_info)
        assert grid_info.ledger_address is not None
        self._grid_address = grid_info.ledger_address
        await self._fund(session, grid_info.ledger_address)
        nb = self.neighbourhood
        nb.prepare()
        for i, household in enumerate(self.households):
            household.observe(nb.meters(i), nb.now)

    def _started(self, app: Any, database: Path) -> Started:
        return Started(
            self.url,
            dashboard_url(app, self.url),
            database,
            self.operator_token,
            len(self.households),
            self.speed,
            self.start,
            self.neighbourhood.step_s,
            self.options.use_stream(),
        )

    async def _run_neighbourhood(
        self,
        session: aiohttp.ClientSession,
        on_status: Callable[[Status], None] | None,
        began: float,
        status_every: float,
    ) -> bool:
        """Start the clock and the simulation; True when it was interrupted before its end."""
        self.clock.run()
        self._run_began = (time.monotonic(), time.process_time())
        self.phase = "running"
        self._tasks = [
            asyncio.create_task(self._simulate(), name="demo-simulate"),
            asyncio.create_task(self._schedule_routines(), name="demo-routines"),
            asyncio.create_task(self._status(on_status, began, status_every)),
            asyncio.create_task(
                self._settle_utility(session, self._grid_address), name="demo-utility"
            ),
        ]
        if self.options.use_stream():
            self._tasks.append(asyncio.create_task(self._streams(), name="demo-streams"))
        watch = asyncio.create_task(self._watch_tasks())
        try:
            return await self._wait_for_end()
        finally:
            watch.cancel()

    def _measure(self, result: DemoResult, end: datetime) -> None:
        """The signs of an overloaded machine and the running phase's own figures."""
        result.max_lag_seconds = self.max_lag_seconds
        result.over_cap = self._over_cap()
        result.utility_settled_micro = self.utility_paid_micro
        result.longest_routine_seconds = max(
            (h.counters.longest_routine_s for h in self.households), default=0.0
        )
        result.readings_rejected = sum(
            h.household.snapshot(end).readings_rejected
            for h in self.households
            if h.household is not None
        )
        if self._run_began is not None and self._run_ended is not None:
            result.run_real_seconds = self._run_ended[0] - self._run_began[0]
            result.run_cpu_seconds = self._run_ended[1] - self._run_began[1]
            result.run_sim_seconds = (self._run_ended[2] - self.start).total_seconds()

    def _mark_run_end(self) -> None:
        if self._run_ended is None and self._run_began is not None:
            self._run_ended = (time.monotonic(), time.process_time(), self.clock.now())

    async def _watch_tasks(self) -> None:
        """A crashed simulation task stops the demo instead of leaving it silently frozen."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                _LOGGER.error("demo task %s failed", task.get_name(), exc_info=task.exception())
                self.stop_requested.set()

    async def _stop_households(self, session: aiohttp.ClientSession) -> None:
        for task in [*self._tasks, *self._routines]:
            task.cancel()
        for task in [*self._tasks, *self._routines]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await session.close()


def write_grid_key(path: Path, seed: int) -> None:
    """The grid's ledger key, derived from the seed (same seed, same grid address).

    Written where ``p2p-grid serve`` looks for it, next to the database, so the
    demo's database can be served again afterwards. An existing key is kept.
    """
    if path.exists():
        return
    seed_bytes = hashlib.sha256(f"p2p-demo-grid|{seed}".encode()).digest()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(KeyPair(seed_bytes).seed_hex + "\n")


async def _periods_issued(grid: Grid, since: datetime, until: datetime) -> int:
    async with grid.db.read() as conn:
        return await periods_issued(conn, since, until)


def dashboard_url(app: Any, base: str) -> str | None:
    """A one-time login link to the dashboard (it logs the operator in), when there is one."""
    paths = {getattr(route, "path", None) for route in app.routes}
    if "/dashboard/login" not in paths:
        return None
    return login_link(app, base)


__all__ = [
    "DEFAULT_SPEED",
    "DEFAULT_START",
    "Demo",
    "DemoOptions",
    "DemoResult",
    "Started",
    "Status",
]
