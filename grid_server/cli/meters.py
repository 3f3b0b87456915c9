"""``p2p-grid meters``: approve or refuse households' assets, decide on implausible readings.

See docs/operators/meters.md. Every decision is appended to the audit log and
answered as JSON, as the operator API answers it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from grid_server.service.meters import FLAG_DECISIONS
from grid_server.service.operator import OperatorError
from grid_server.service.wiring import Grid
from p2p_energy_client.units import parse_utc

from .locate import add_common, run_on_grid

EXIT_REFUSED = 1


def register(subparsers: Any) -> None:
    meters = subparsers.add_parser(
        "meters",
        help="approve or refuse assets above the grid's limits; decide on flagged readings",
        description="Assets declared above [grid.meters.approval] wait for you; readings "
        "above their plausible bound are settled at it and hold their statement's payout "
        "until you decide (docs/operators/meters.md).",
    )
    actions = meters.add_subparsers(dest="action", metavar="COMMAND", required=True)

    assets = actions.add_parser("assets", help="households' assets and their approval")
    add_common(assets)
    assets.add_argument("--waiting", action="store_true", help="only those waiting for you")
    assets.set_defaults(func=run_assets)

    for name, what in (("approve", "approve an asset"), ("refuse", "refuse an asset")):
        decide = actions.add_parser(name, help=what)
        add_common(decide)
        decide.add_argument("address", help="the household's address (0x…)")
        decide.add_argument("asset", help="the asset's id as the household declared it")
        if name == "approve":
            decide.add_argument("--power-w", type=int, help="approve at this rating (W)")
            decide.add_argument("--capacity-wh", type=int, help="a battery's capacity (Wh)")
        decide.add_argument("--note", default="", help="why (kept in the audit log)")
        decide.set_defaults(func=run_decide_asset, approve=name == "approve")

    flags = actions.add_parser("flags", help="readings flagged as implausible")
    add_common(flags)
    flags.add_argument("--all", action="store_true", help="decided ones too")
    flags.set_defaults(func=run_flags)

    release = actions.add_parser(
        "release", help="settle a flagged reading at its bound, or accept it; its payout goes on"
    )
    add_common(release)
    release.add_argument("address")
    release.add_argument("asset")
    release.add_argument("interval", help="interval start (UTC, e.g. …T10:00:00Z)")
    release.add_argument(
        "--settle",
        choices=FLAG_DECISIONS,
        required=True,
        help="bound: pay what was settled; reading: the reading was right, settle it in full",
    )
    release.add_argument("--note", default="", help="why (kept in the audit log)")
    release.set_defaults(func=run_release)


def _printed(args: argparse.Namespace, job: Any) -> int:
    async def run(grid: Grid) -> int:
        try:
            result = await job(grid)
        except OperatorError as exc:
            print(f"p2p-grid meters {args.action}: {exc}")
            return EXIT_REFUSED
        print(json.dumps(result, indent=2))
        return 0

    return run_on_grid(args, run)


def run_assets(args: argparse.Namespace) -> int:
    return _printed(args, lambda g: g.meters.assets(waiting_only=args.waiting))


def run_decide_asset(args: argparse.Namespace) -> int:
    return _printed(
        args,
        lambda g: g.meters.decide_asset(
            args.address,
            args.asset,
            approve=args.approve,
            power_w=getattr(args, "power_w", None),
            capacity_wh=getattr(args, "capacity_wh", None),
            note=args.note,
        ),
    )


def run_flags(args: argparse.Namespace) -> int:
    return _printed(args, lambda g: g.meters.flags(open_only=not args.all))


def run_release(args: argparse.Namespace) -> int:
    try:
        interval = parse_utc(args.interval)
    except ValueError as exc:
        print(f"p2p-grid meters release: interval: {exc}")
        return 2
    return _printed(
        args,
        lambda g: g.meters.decide_flag(args.address, interval, args.asset, args.settle, args.note),
    )
