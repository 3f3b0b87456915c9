"""``p2p-grid demo``: a simulated neighbourhood trading against a real grid, in accelerated time.

Needs the ``demo`` extra (pvlib, demandlib); everything heavy is imported
only when the command runs, so ``p2p-grid --help`` works without it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p2p_energy_client.units import format_money_micro, format_price, parse_utc

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

    from grid_server.demo.runner import DemoOptions, DemoResult, Started, Status

EXIT_INTERRUPTED = 130


def start_time(text: str) -> datetime:
    """``--start``: an RFC 3339 UTC time, ``today`` (00:00 UTC) or ``now``."""
    now = datetime.now(UTC)
    if text == "now":
        return now.replace(microsecond=0)
    if text == "today":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        return parse_utc(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            "use an RFC 3339 UTC time such as 2026-06-15T03:00:00Z, 'today' or 'now'"
        ) from exc


def positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return value

    return parse


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a grid with a simulated neighbourhood in accelerated time",
        description=(
            "Start a grid server on SQLite and a simulated neighbourhood of households "
            "(pvlib solar, BDEW demand profiles, batteries) that run the Home Assistant "
            "integration's own client code against it, in accelerated time."
        ),
    )
    parser.add_argument(
        "--households", type=positive(int), default=30, help="how many (default 30)"
    )
    parser.add_argument(
        "--speed",
        type=positive(float),
        help="simulated seconds per real second (default 300: an interval every 3 s; "
        "above 60 households 300 x (60/N)^1.2, so a 2-core machine keeps up)",
    )
    parser.add_argument(
        "--days",
        type=positive(float),
        help="simulate this many days, then stop and print a summary (default: until Ctrl-C)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--start",
        type=start_time,
        help="simulated start, RFC 3339 UTC, 'today' or 'now' (default 2026-06-15T03:00:00Z)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument(
        "--port", type=int, default=8080, help="port (default 8080; a busy port: any free one)"
    )
    parser.add_argument(
        "--database", type=Path, help="SQLite file to create (default: in a temporary directory)"
    )
    parser.add_argument(
        "--step",
        type=positive(int),
        default=60,
        help="simulation step: how often meters update, in seconds (default 60)",
    )
    parser.add_argument(
        "--events",
        choices=("auto", "stream", "poll"),
        default="auto",
        help="how households learn results: live stream or polling "
        "(default auto: stream up to 200 households)",
    )
    parser.add_argument(
        "--no-clouds", action="store_true", help="clear sky every day (clouds are on by default)"
    )
    parser.add_argument(
        "--sharing",
        choices=("on", "off"),
        default="off",
        help="share what the market did not match between neighbours after delivery "
        "(default off; docs/developers/sharing.md)",
    )
    parser.add_argument("--log-level", default="WARNING", help="log level (default WARNING)")
    parser.set_defaults(func=run)


def options_from(args: argparse.Namespace) -> DemoOptions:
    # Heavy (pvlib, demandlib, the app): only `demo` needs it, not every command's start.
    from grid_server.demo.runner import DEFAULT_START, DemoOptions  # noqa: PLC0415

    return DemoOptions(
        households=args.households,
        speed=args.speed,
        days=args.days,
        seed=args.seed,
        start=args.start or DEFAULT_START,
        host=args.host,
        port=args.port,
        database=args.database,
        step_seconds=args.step,
        events=args.events,
        clouds=not args.no_clouds,
        log_level=args.log_level.upper(),
        sharing=args.sharing == "on",
    )


def run(args: argparse.Namespace) -> int:
    try:
        # Heavy (the demo extra): imported only when the demo runs (module doc).
        from rich.console import Console  # noqa: PLC0415

        from grid_server.demo.runner import Demo  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - depends on the installation
        print(
            f"the demo needs the 'demo' extra ({exc.name} is missing): "
            "pip install -e '.[demo]' or run scripts/demo",
            file=sys.stderr,
        )
        return 1
    options = options_from(args)
    # soft_wrap: a long line stays one line in logs and pipes.
    console = Console(highlight=False, soft_wrap=True)
    _configure_logging(console, options.log_level)
    if options.database is not None and options.database.exists():
        console.print(f"[red]{options.database} exists[/]; the demo creates a new grid database.")
        return 1
    try:
        demo = Demo(options)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    view = _View(console, demo.specs)
    result = asyncio.run(_run(demo, view))
    view.summary(result)
    return EXIT_INTERRUPTED if result.interrupted and options.days is not None else 0


async def _run(demo: Any, view: _View) -> DemoResult:
    loop = asyncio.get_running_loop()
    presses = 0

    def interrupt() -> None:
        nonlocal presses
        presses += 1
        if presses > 1:
            # A second Ctrl-C while stopping: stop now, whatever is in flight.
            raise KeyboardInterrupt
        view.stopping()
        demo.stop_requested.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, interrupt)
    try:
        result: DemoResult = await demo.run(on_started=view.started, on_status=view.status)
    finally:
        view.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
    return result


def _configure_logging(console: Console, level: str) -> None:
    from rich.logging import RichHandler  # noqa: PLC0415 - imported when the demo runs

    handler = RichHandler(console=console, show_path=False, markup=False)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _kwh(wh: int) -> str:
    return f"{wh / 1000:,.1f} kWh"


def _money(micro: int, currency: str = "EUR") -> str:
    return f"{format_money_micro(micro)} {currency}"


class _View:
    """The start-up banner, the live status line (rich) and the closing summary."""

    def __init__(self, console: Console, specs: list[Any]) -> None:
        self.console = console
        self.specs = specs
        self.live: Live | None = None
        self.interactive = console.is_terminal
        self._last_hour: datetime | None = None
        self._started: Started | None = None

    def started(self, info: Started) -> None:
        from rich.live import Live  # noqa: PLC0415 - imported when the demo runs (module doc)

        self._started = info
        kinds = Counter(spec.kind for spec in self.specs)
        zones = Counter(spec.zone for spec in self.specs)
        c = self.console
        c.print(
            f"[bold]p2p_energy demo[/]: {info.households} households "
            f"({kinds['consumer']} consumers, {kinds['pv']} with PV, "
            f"{kinds['pv+battery']} with PV and a battery) on "
            + ", ".join(f"{zone} {count}" for zone, count in sorted(zones.items()))
        )
        c.print(
            f"  simulated time from {info.start:%Y-%m-%d %H:%M} UTC at {info.speed:g}x "
            f"(one 15-minute interval every {900 / info.speed:.1f} s), "
            f"step {info.step_seconds} s, "
            f"{'live stream' if info.streams else 'polling'}"
        )
        if info.dashboard:
            c.print(f"  dashboard      [bold link={info.dashboard}]{info.dashboard}[/]")
            c.print(
                f"                 (a one-time login link; later log in at {info.url}/dashboard/ "
                "with the operator token)"
            )
        else:
            c.print("  dashboard      (not in this build)")
        c.print(f"  grid server    {info.url}  (API {info.url}/openapi.json)")
        c.print(f"  database       {info.database}")
        c.print(f"  operator token {info.operator_token}")
        c.print("  Ctrl-C stops.")
        if self.interactive:
            self.live = Live(console=c, refresh_per_second=4, transient=True)
            self.live.start()

    def status(self, status: Status) -> None:
        line = _status_line(status)
        if self.live is not None:
            self.live.update(line)
            return
        hour = status.sim_time.replace(minute=0, second=0, microsecond=0)
        if hour != self._last_hour:
            self._last_hour = hour
            self.console.print(line)

    def stopping(self) -> None:
        self.console.print("stopping: households first, then the grid server …")

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def summary(self, result: DemoResult) -> None:
        for line in summary_lines(result):
            self.console.print(line)


def _status_line(status: Status) -> str:
    stats = status.stats
    prices = " ".join(
        f"{zone} {format_price(ticks)}"
        for zone, ticks in sorted(stats.last_prices.items())
        if zone != "substation"
    )
    lag = (
        f" [yellow]lagging {status.lag_seconds / 60:.0f} min[/]" if status.lag_seconds > 300 else ""
    )
    phase = "" if status.phase == "running" else f" [dim]({status.phase})[/]"
    return (
        f"[bold]{status.sim_time:%a %d %b %H:%M}[/] UTC · "
        f"cleared {stats.intervals_cleared} · "
        f"local {_kwh(stats.local_wh)} · "
        f"utility in {_kwh(stats.utility_sold_wh)} out {_kwh(stats.utility_bought_wh)} · "
        f"prices {prices or '-'} · "
        f"statements {stats.statements} · "
        f"paid {stats.payments} ({_money(stats.paid_micro)}) · "
        f"paid out {stats.payouts} ({_money(stats.payouts_micro)})"
        f"{lag}{phase}"
    )


def summary_lines(result: DemoResult) -> list[str]:
    s = result.summary
    intervals = int((s.end - s.start).total_seconds() // 900)
    from_utility = s.market_from_utility_wh + s.shortfall_wh
    to_utility = s.market_to_utility_wh + s.surplus_wh
    ok = s.reconciled
    return [
        "",
        f"[bold]Summary[/] {s.start:%Y-%m-%d %H:%M} – {s.end:%Y-%m-%d %H:%M} UTC "
        f"({intervals} intervals, {result.households} households"
        f"{', interrupted' if result.interrupted else ''})",
        f"  intervals cleared / settled     {s.intervals_cleared} / {s.intervals_settled}",
        f"  orders, readings                {s.orders:,}, {s.readings:,}",
        f"  traded between neighbours       {_kwh(s.local_wh)}",
        f"  bought from the utility         {_kwh(from_utility)} "
        f"(in the market {_kwh(s.market_from_utility_wh)}, after delivery {_kwh(s.shortfall_wh)})",
        f"  sold to the utility             {_kwh(to_utility)} "
        f"(in the market {_kwh(s.market_to_utility_wh)}, after delivery {_kwh(s.surplus_wh)})",
        *_sharing_lines(result),
        f"  community savings vs status quo {_money(s.savings_micro)} "
        f"(households paid {_money(s.participants_net_micro)} net; "
        f"{_money(s.status_quo_micro)} at retail/feed-in)",
        f"  grid income (fees, congestion)  {_money(s.grid_income_micro)}; "
        f"utility {_money(s.utility_income_micro)}",
        f"  statements issued / paid        {s.statements} / {s.statements_paid}: "
        f"households owed {_money(s.statements_due_micro)} and paid {_money(s.paid_micro)}; "
        f"producers were owed {_money(s.statements_credit_micro)} and got "
        f"{_money(s.credited_micro)}"
        + (f"; {result.over_cap} above a daily cap" if result.over_cap else ""),
        f"  local ledger                    {s.payments} payments "
        f"({_money(s.payments_micro)}) to the grid, {s.payouts} payouts "
        f"({_money(s.payouts_micro)}) to producers, the utility settled "
        f"{_money(result.utility_settled_micro)}; minted in all {_money(s.minted_micro)}",
        "  money reconciliation            "
        + (
            "[green]OK[/]: every settled interval sums to zero, every statement equals its "
            "line items, "
            + ("every shared Wh received was given, " if result.sharing else "")
            + "the ledger's chain and balances verify, and the grid's account "
            "matches the payments and payouts"
            if ok
            else "[red]MISMATCH[/]: "
            + "; ".join(
                [str(x) for x in s.interval_imbalances[:3]]
                + s.statement_mismatches[:3]
                + s.ledger_mismatches
                + ([] if s.ledger_ok else ["the local ledger does not verify"])
                + (
                    []
                    if s.sharing_balanced
                    else [f"shared in {s.shared_in_wh} Wh != shared out {s.shared_out_wh} Wh"]
                )
            )
        ),
        f"  run                             {result.real_seconds:.0f} s real, "
        f"{result.cpu_seconds:.0f} s CPU "
        f"({result.cpu_ms_per_household_interval:.0f} ms CPU per household and interval; "
        f"slowest report-and-trade {result.longest_routine_seconds / 60:.0f} simulated min)",
        *_overload_lines(result),
        f"Database: {result.database}",
    ]


def _sharing_lines(result: DemoResult) -> list[str]:
    """Sharing after delivery, and what stayed in the neighbourhood with it."""
    s = result.summary
    if not result.sharing:
        return ["  shared after delivery           off (--sharing on to share)"]
    return [
        f"  shared after delivery           {_kwh(s.shared_in_wh)}: shortfalls paid "
        f"{_money(s.shared_in_micro)}, surpluses earned {_money(s.shared_out_micro)}, "
        f"the grid's spread and link fees {_money(s.sharing_grid_micro)} (in its income)",
        f"  stayed in the neighbourhood     {_kwh(s.neighbourhood_wh)} "
        f"(traded {_kwh(s.local_wh)} + shared {_kwh(s.shared_in_wh)})",
        f"  sharing saved households        {_money(s.sharing_saved_micro)} against the utility "
        f"taking the same deviations (in the savings below)",
    ]


def _overload_lines(result: DemoResult) -> list[str]:
    """Say so when the machine did not keep up, and what to do about it."""
    if not result.readings_rejected and result.max_lag_seconds <= 600:
        return []
    return [
        f"  [yellow]the machine did not keep up[/]: {result.readings_rejected} readings "
        f"arrived after their settlement window, the simulation fell up to "
        f"{result.max_lag_seconds / 60:.0f} simulated minutes behind; "
        "try a lower --speed or fewer --households"
    ]
