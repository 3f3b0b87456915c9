"""``p2p-grid invite``: issue one-time invitation links (with a QR code), or revoke one.

With ``[grid] public_url`` set, each invitation is printed as one link,
``https://grid.example.org/join#CODE``, and its QR code: the household pastes
the link into Home Assistant or scans the code; opened in a browser, the link
shows what to do. Without a public URL only the bare code is printed (the
household must then be told the grid's address too), with how to set it.
Links and codes go to stdout, one per line with ``--no-qr``; what they are
for goes to stderr. Codes are stored only as hashes: this is the only time
they are shown. Works on the existing grid only (see :mod:`.locate`).
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from datetime import timedelta
from typing import Any

from grid_server.service.invitations import invitation_link, qr_text
from grid_server.service.operator import IssuedInvitation, OperatorError
from grid_server.service.wiring import Grid
from p2p_energy_client.invitation import InvitationError, parse_invitation
from p2p_energy_client.units import format_utc

from .locate import add_common, run_on_grid

DESCRIPTION = """\
Issue one-time invitations to the grid. With [grid] public_url in the config,
each is one link, https://grid.example.org/join#CODE, printed with its QR code:
the household pastes it into Home Assistant or scans it; opened in a browser
it shows what to do. Without public_url only the code is printed. Links go to
stdout (one per line with --no-qr), what they are for to stderr. Codes are
kept only as hashes: this is the only time they are shown. Works on the
existing grid only: the config is --config, $P2P_CONFIG,
~/.config/p2p-grid/grid.toml or /etc/p2p-grid/grid.toml."""

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError("use a duration such as 30m, 12h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "invite",
        help="issue one-time invitation links (and QR codes), or revoke one",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument("--zone", help="zone the household joins (default: the grid's)")
    parser.add_argument("--role", choices=("consumer", "producer", "prosumer"))
    parser.add_argument("--expires", type=duration, default=timedelta(days=7), help="e.g. 7d")
    parser.add_argument("--count", type=int, default=1, help="how many invitations")
    parser.add_argument("--no-qr", action="store_true", help="links only, one per line")
    parser.add_argument(
        "--revoke", metavar="CODE", help="revoke this unused code (or link) instead"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_on_grid(args, functools.partial(_invite, args))


async def _invite(args: argparse.Namespace, grid: Grid) -> int:
    if args.revoke:
        return await _revoke(grid, args.revoke)
    issued = await grid.operator.create_invitations(
        args.count,
        zone=args.zone,
        role=args.role,
        expires_at=(grid.clock.now() + args.expires).replace(microsecond=0),
    )
    links = [invitation_link(grid.config, i.code) for i in issued]
    for invitation, link in zip(issued, links, strict=True):
        print(link or invitation.code)
        if link is not None and not args.no_qr:
            print(qr_text(link))
    print(_explanation(grid, issued[0], len(issued)), file=sys.stderr)
    return 0


async def _revoke(grid: Grid, text: str) -> int:
    try:
        code = parse_invitation(text).code
    except InvitationError as exc:
        raise OperatorError("invalid_field", str(exc), "code") from exc
    await grid.operator.revoke_invitation(code)
    print(f"revoked {code}")
    return 0


def _explanation(grid: Grid, first: IssuedInvitation, count: int) -> str:
    """What the printed invitations are and how a household uses them (for stderr)."""
    config = grid.config
    what = "One one-time invitation" if count == 1 else f"{count} one-time invitations"
    expires = "never" if first.expires_at is None else format_utc(first.expires_at)
    lines = [
        f"{what} to {config.name} ({config.id}): zone {first.zone or config.join_zone}, "
        f"role {first.role or 'any'}, valid until {expires}. Each joins one household once; "
        "codes are kept only as hashes, so this is the only time they are shown."
    ]
    if config.public_url is not None:
        lines.append(
            "The household pastes the link into Home Assistant (Settings > Devices & services "
            "> Add integration > P2P Energy) or scans the QR code; opened in a browser, the "
            "link shows these steps."
        )
    else:
        where = grid.settings.config or "the grid's config file"
        lines.append(
            "The grid has no public URL, so these are bare codes: the household also needs "
            "the address it reaches this server at. Add it to "
            f'{where}:\n\n  [grid]\n  public_url = "https://grid.example.org"\n\n'
            "and restart `p2p-grid serve`; then `p2p-grid invite` prints links and QR codes."
        )
    return "\n".join(lines)
