"""Operator commands on the database: ``participants``, ``intervals``, ``prices``, ``zones``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from grid_server.service.wiring import Grid
from p2p_energy_client.units import parse_utc

from .locate import add_common, run_on_grid


def register(subparsers: Any) -> None:
    participants = subparsers.add_parser("participants", help="list, suspend, reinstate, remove")
    add_common(participants)
    participants.add_argument("action", choices=("list", "suspend", "reinstate", "remove"))
    participants.add_argument("address", nargs="?", help="the participant's address (0x…)")
    participants.set_defaults(func=run_participants)

    intervals = subparsers.add_parser("intervals", help="list intervals or show one")
    add_common(intervals)
    intervals.add_argument("action", choices=("list", "show"))
    intervals.add_argument("interval", nargs="?", help="interval start (UTC, e.g. …T10:00:00Z)")
    intervals.add_argument("--hours", type=int, default=24, help="list: hours around now")
    intervals.set_defaults(func=run_intervals)

    prices = subparsers.add_parser("prices", help="set utility prices from an interval on")
    add_common(prices)
    prices.add_argument("effective_from")
    prices.add_argument("retail")
    prices.add_argument("feed_in")
    prices.set_defaults(func=run_prices)

    zones = subparsers.add_parser("zones", help="add a zone or change its fee and capacities")
    add_common(zones)
    zones.add_argument("id")
    zones.add_argument("--parent")
    zones.add_argument("--fee", default="0")
    zones.add_argument("--capacity-up-wh", type=int)
    zones.add_argument("--capacity-down-wh", type=int)
    zones.set_defaults(func=run_zones)


def _with_grid(args: argparse.Namespace, job: Callable[[Grid], Awaitable[Any]]) -> int:
    """Run ``job`` on the existing grid and print its answer as JSON."""

    async def printed(grid: Grid) -> int:
        result = await job(grid)
        if result is not None:
            print(json.dumps(result, indent=2))
        return 0

    return run_on_grid(args, printed)


def run_participants(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _with_grid(args, lambda g: g.operator.list_participants())
    if not args.address:
        print("an address is needed")
        return 2
    status = {"suspend": "suspended", "reinstate": "active", "remove": "removed"}[args.action]
    return _with_grid(args, lambda g: g.operator.set_participant_status(args.address, status))


def run_intervals(args: argparse.Namespace) -> int:
    if args.action == "show":
        if not args.interval:
            print("an interval is needed")
            return 2
        return _with_grid(args, lambda g: g.operator.interval_detail(parse_utc(args.interval)))

    async def listing(grid: Grid) -> Any:
        now = grid.clock.now()
        span = timedelta(hours=args.hours)
        return await grid.operator.list_intervals(now - span, now + span)

    return _with_grid(args, listing)


def run_prices(args: argparse.Namespace) -> int:
    return _with_grid(
        args,
        lambda g: g.operator.set_price(parse_utc(args.effective_from), args.retail, args.feed_in),
    )


def run_zones(args: argparse.Namespace) -> int:
    return _with_grid(
        args,
        lambda g: g.operator.upsert_zone(
            args.id,
            parent=args.parent,
            fee=args.fee,
            capacity_up_wh=args.capacity_up_wh,
            capacity_down_wh=args.capacity_down_wh,
        ),
    )
