"""Join a grid from an invitation link as a test household, without Home Assistant.

    python examples/try_join.py 'https://grid.example.org/join#ABCD-…' [--name NAME]

It does what the integration's config flow does with a pasted link: reads the
grid's address and the code from it, makes a new key, joins, and prints the
household's address (its wallet on the local ledger) and balance. An operator
uses it to check, from where households are, that the public URL reaches the
grid and that invitations work; remove the test household afterwards with
``p2p-grid participants remove ADDRESS``. Needs the p2p_energy package
(``pip install .``); the key is not kept.
"""

from __future__ import annotations

import argparse
import asyncio

from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.invitation import parse_invitation


async def try_join(link: str, name: str) -> None:
    invitation = parse_invitation(link)
    if invitation.grid_url is None:
        raise SystemExit("this is a bare code: pass the whole link (the grid has no public_url?)")
    async with GridClient(invitation.grid_url, KeyPair.generate()) as client:
        info = await client.grid_info()
        member = await client.join(invitation.code, name)
        print(f"joined {info.name} ({info.grid}) at {invitation.grid_url}")
        print(f"as {member.name}, zone {member.zone}, role {member.role}")
        print(f"address (its wallet on the {info.ledger_kind} ledger): {client.address}")
        if info.ledger_kind == "local":
            account = await client.ledger_account()
            print(f"wallet balance: {account.balance} {account.unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("link", help="the invitation link p2p-grid invite printed")
    parser.add_argument("--name", default="Test household", help="the household's name")
    args = parser.parse_args()
    asyncio.run(try_join(args.link, args.name))


if __name__ == "__main__":
    main()
