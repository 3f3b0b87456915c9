"""``p2p-grid invite``: issue a one-time invitation code (printed on stdout)."""

from __future__ import annotations

import argparse
import asyncio
import re
from datetime import timedelta
from typing import Any

from grid_server.service.operator import OperatorError
from grid_server.service.wiring import build_grid

from .serve import add_common, settings_from

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError("use a duration such as 30m, 12h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("invite", help="issue a one-time invitation code")
    add_common(parser)
    parser.add_argument("--zone", help="zone the household joins (default: the grid's)")
    parser.add_argument("--role", choices=("consumer", "producer", "prosumer"))
    parser.add_argument("--expires", type=duration, default=timedelta(days=7), help="e.g. 7d")
    parser.add_argument("--count", type=int, default=1, help="how many codes")
    parser.add_argument("--revoke", metavar="CODE", help="revoke this code instead")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    grid = build_grid(settings_from(args))

    async def go() -> int:
        await grid.open()
        try:
            if args.revoke:
                await grid.operator.revoke_invitation(args.revoke)
                print(f"revoked {args.revoke}")
                return 0
            expires = grid.clock.now() + args.expires
            for _ in range(args.count):
                issued = await grid.operator.create_invitation(
                    zone=args.zone, role=args.role, expires_at=expires
                )
                print(issued.code)
            return 0
        except OperatorError as exc:
            print(f"error: {exc} ({exc.code}, {exc.field})")
            return 2
        finally:
            await grid.db.dispose()

    return asyncio.run(go())
